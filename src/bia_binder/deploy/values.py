"""The chart's values from the config file ``bia-binder up`` reads: one description of the service, two runtimes.

    config file ──► ResourceProfiles  → jupyterhub.singleuser (anonymous tier) + profileList (logged-in tiers)
                    HomeManager.quota → jupyterhub.singleuser.storage.capacity (a PVC per logged-in user)
                    culler settings   → jupyterhub.cull (12 h idle, 1 week of age)
                    Admission         → jupyterhub.hub.activeServerLimit, the binder service's per-repo quota
                    authenticator     → jupyterhub.hub.config (GenericOAuthenticator for LS Login)
                    BinderService, *Provider, ContainerBuilder → binder.config (the service's own config)
                    KubernetesDeployment → host, TLS, images, registry, node pools, Secrets' names

Sizes reach KubeSpawner as integers (its traits read "8G" as GiB, like the local sandbox) and
Kubernetes as exact quantities (``8Gi``): a pod's limits are the local sandbox's, byte for byte.
No secret is ever written: values name the Secrets (OIDC client, registry, provider tokens), and
config traits that hold one are left out with a warning (:attr:`ChartValues.warnings`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from traitlets.config import Config, PyFileConfigLoader

from ..builder.container import ContainerBuilder
from ..portal.auth import AUTHENTICATOR_CLASSES, LS_LOGIN_ISSUER
from ..portal.culling import TEMPORARY_USERS_GROUP
from ..portal.dask import DaskGatewayService
from ..portal.homes import HomeManager
from ..sessions.admission import Admission
from ..sessions.profiles import GPU_RESOURCE, ResourceProfile, ResourceProfiles
from .quantities import quantity
from .settings import PRIVATE_RANGES, KubernetesDeployment

#: names our templates give the objects other parts reach (fixed, as z2jh's with fullnameOverride "")
BINDER_SERVICE_NAME = "bia-binder"
BINDER_PORT = 8585
HUB_URL = "http://hub:8081"
DASK_GATEWAY_NAME = "dask-gateway"
#: where logged-in users' homes are mounted (the z2jh images' user)
HOME_MOUNT_PATH = "/home/jovyan"
#: config traits that hold secrets by name: never copied into values
SECRET_TRAIT = re.compile(r"(token|secret|password|passphrase|private_key|api_key)$", re.IGNORECASE)
#: sections of the operator's config the binder service reads in a cluster
SERVICE_SECTIONS = re.compile(r"^(BinderService|Launcher|Admission|ContainerBuilder|KubernetesBuilder|RepoProvider|\w+Provider)$")
#: BinderService traits that only make sense on one machine
LOCAL_ONLY_SERVICE_TRAITS = {"data_dir", "ip", "port", "allow_local_repos", "prebuild_default_environment"}


@dataclass
class ChartValues:
    values: dict[str, Any]
    #: what was left out and why (secret-holding traits), one line each
    warnings: list[str] = field(default_factory=list)


def load_config(path: str | Path) -> Config:
    """The operator's Python config file, as ``bia-binder up --config`` loads it."""
    path = Path(path).resolve()
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def auth_mode_of(config: Config) -> str:
    """Which login the config describes: an OIDC client configured → ``oidc``, else anonymous only (``none``)."""
    for section in ("GenericOAuthenticator", "OAuthenticator"):
        if section in config and config[section]:
            return "oidc"
    return "none"


def chart_values(config: Config, auth: str | None = None) -> ChartValues:
    """Values for ``deploy/helm/bia-binder`` from a loaded config (``auth``: none or oidc; default from the config)."""
    auth = auth or auth_mode_of(config)
    if auth not in ("none", "oidc"):
        raise ValueError(f"on Kubernetes logins are OIDC (LS Login) or none, not {auth!r}: use --auth oidc or none")
    deployment = KubernetesDeployment(config=config)
    profiles = ResourceProfiles(config=config)
    warnings: list[str] = []
    values = {
        "jupyterhub": jupyterhub_values(config, deployment, profiles, auth),
        "dask-gateway": dask_gateway_values(config, deployment, profiles),
        "binder": binder_values(config, deployment, warnings),
        "builder": builder_values(config, deployment),
        "ingress": {
            "enabled": True,
            "host": deployment.host,
            "className": deployment.ingress_class,
            "tlsSecret": deployment.tls_secret,
            "clusterIssuer": deployment.cluster_issuer,
        },
        "networkPolicy": {"enabled": True, "privateRanges": list(PRIVATE_RANGES)},
    }
    return ChartValues(values, warnings)


# --- sessions: profiles, storage, culling, login ------------------------------------------------


def profile_override(profile: ResourceProfile, deployment: KubernetesDeployment) -> dict[str, Any]:
    """KubeSpawner traits of one profile: the limits of ResourceProfile.kubespawner_override (bytes, exact
    quantities), plus where GPU profiles run and what anonymous sessions may not have (a PVC)."""
    override = profile.kubespawner_override()
    # requests equal to limits by default: a session gets what the local sandbox would give it, never less
    override["mem_guarantee"] = int(profile.mem_limit * deployment.request_fraction)
    override["cpu_guarantee"] = round(profile.cpu_limit * deployment.request_fraction, 3)
    limits = dict(override.get("extra_resource_limits", {}))
    if "ephemeral-storage" in limits:
        limits["ephemeral-storage"] = quantity(profile.disk_limit)
    if limits:
        override["extra_resource_limits"] = limits
        override["extra_resource_guarantees"] = {k: v for k, v in limits.items() if k == GPU_RESOURCE}
        if not override["extra_resource_guarantees"]:
            del override["extra_resource_guarantees"]
    if profile.gpus:
        override["node_selector"] = {**deployment.user_node_selector, **deployment.gpu_node_selector}
        override["tolerations"] = copy.deepcopy(deployment.gpu_tolerations)
    return override


def profile_list(profiles: ResourceProfiles, deployment: KubernetesDeployment) -> list[dict[str, Any]]:
    """The logged-in tiers as KubeSpawner's ``profile_list`` (z2jh ``singleuser.profileList``)."""
    return [
        {**entry, "kubespawner_override": profile_override(profile, deployment)}
        for entry, profile in zip(profiles.kubespawner_profile_list(), profiles.logged_in_profiles(), strict=True)
    ]


def culler_settings(config: Config) -> dict[str, int]:
    """The culler of the config file: 12 h idle and 1 week of age unless its ``idle-culler`` service says otherwise."""
    settings = {"timeout": 12 * 3600, "maxAge": 7 * 24 * 3600, "every": 600, "concurrency": 10}
    flags = {"--timeout": "timeout", "--max-age": "maxAge", "--cull-every": "every", "--concurrency": "concurrency"}
    services = config.get("JupyterHub", {}).get("services", []) or []
    for service in services:
        if isinstance(service, dict) and service.get("name") == "idle-culler":
            for arg in service.get("command", []):
                name, _, value = str(arg).partition("=")
                if name in flags and value.isdigit():
                    settings[flags[name]] = int(value)
    return settings


def oidc_config(config: Config, deployment: KubernetesDeployment) -> dict[str, Any]:
    """GenericOAuthenticator for LS Login as ``configure_auth(c, "oidc")`` sets it, the operator's settings on top
    (client id and secret come from the OIDC Secret through the environment, never from values)."""
    issuer = LS_LOGIN_ISSUER
    section: dict[str, Any] = {
        "authorize_url": f"{issuer}/authorize",
        "token_url": f"{issuer}/token",
        "userdata_url": f"{issuer}/userinfo",
        "scope": ["openid", "email", "profile"],
        "enable_pkce": True,
        "username_claim": "sub",
        "login_service": "LS Login",
        "allow_all": True,
        "oauth_callback_url": f"https://{deployment.host}/hub/oauth_callback",
    }
    for name in ("OAuthenticator", "GenericOAuthenticator"):
        for key, value in dict(config.get(name, {})).items():
            if key not in ("client_id", "client_secret"):
                section[key] = plain(value)
    return section


def jupyterhub_values(
    config: Config, deployment: KubernetesDeployment, profiles: ResourceProfiles, auth: str
) -> dict[str, Any]:
    anonymous = profiles.anonymous_profile()
    homes = HomeManager(config=config)
    admission = Admission(config=config)
    session_name, session_tag = split_image(deployment.session_image)
    hub_name, hub_tag = split_image(deployment.image)
    hub_config: dict[str, Any] = {
        "JupyterHub": {
            "spawner_class": "bia_binder.sessions.kubernetes.BinderKubeSpawner",
            # one origin: the hub under /hub/, the binder service at / (as `bia-binder up` routes it)
            "hub_routespec": "/hub/",
            "allow_named_servers": False,
        },
        "Proxy": {"extra_routes": {"/": f"http://{BINDER_SERVICE_NAME}:{BINDER_PORT}"}},
        "BinderKubeSpawner": {
            "anonymous_override": profile_override(anonymous, deployment),
            "allowed_image_prefix": image_prefix(config, deployment),
        },
    }
    authenticator = {key: plain(v) for key, v in dict(config.get("Authenticator", {})).items()}
    extra_env: dict[str, Any] = {}
    if auth == "oidc":
        hub_config["JupyterHub"]["authenticator_class"] = AUTHENTICATOR_CLASSES["oidc"]
        hub_config["GenericOAuthenticator"] = oidc_config(config, deployment)
        extra_env = {
            env: {"valueFrom": {"secretKeyRef": {"name": deployment.oauth_secret, "key": key}}}
            for env, key in (("OAUTH_CLIENT_ID", "client-id"), ("OAUTH_CLIENT_SECRET", "client-secret"))
        }
    else:
        hub_config["JupyterHub"]["authenticator_class"] = "null"
    if authenticator:
        hub_config["Authenticator"] = authenticator
    hub: dict[str, Any] = {
        "image": {"name": hub_name, "tag": hub_tag},
        "config": hub_config,
        "extraConfig": {
            "bia-binder": "from bia_binder.deploy.hub import configure_hub\nconfigure_hub(c, cull=get_config(\"cull\"))\n",
        },
        "services": {
            "binder": {"url": f"http://{BINDER_SERVICE_NAME}:{BINDER_PORT}", "display": False},
            DASK_GATEWAY_NAME: {"url": f"http://traefik-{DASK_GATEWAY_NAME}", "display": False},
        },
        "networkPolicy": {"enabled": True},
    }
    if extra_env:
        hub["extraEnv"] = extra_env
    if admission.max_sessions:
        hub["activeServerLimit"] = admission.max_sessions
    storage: dict[str, Any] = {
        "type": "dynamic",
        "capacity": quantity(homes.quota),
        "homeMountPath": HOME_MOUNT_PATH,
        "dynamic": {"storageAccessModes": ["ReadWriteOnce"]},
    }
    if deployment.storage_class:
        storage["dynamic"]["storageClass"] = deployment.storage_class
    singleuser: dict[str, Any] = {
        "image": {"name": session_name, "tag": session_tag},
        # the defaults are the anonymous tier's: a pod nothing else sized gets the smallest limits
        "memory": {"limit": anonymous.mem_limit, "guarantee": int(anonymous.mem_limit * deployment.request_fraction)},
        "cpu": {"limit": anonymous.cpu_limit, "guarantee": round(anonymous.cpu_limit * deployment.request_fraction, 3)},
        "storage": storage,
        "profileList": profile_list(profiles, deployment),
        "networkPolicy": session_network_policy(deployment),
        "cloudMetadata": {"blockWithIptables": True, "ip": "169.254.169.254"},
        "startTimeout": 300,
    }
    if anonymous.disk_limit:
        singleuser["extraResource"] = {"limits": {"ephemeral-storage": quantity(anonymous.disk_limit)}}
    if deployment.user_node_selector:
        singleuser["nodeSelector"] = dict(deployment.user_node_selector)
    cull = {"enabled": True, "users": False, "adminUsers": True, "removeNamedServers": False, **culler_settings(config)}
    return {
        "fullnameOverride": "",
        "hub": hub,
        "proxy": {"service": {"type": "ClusterIP"}},
        "singleuser": singleuser,
        "cull": cull,
        "scheduling": {
            "userScheduler": {"enabled": True},
            "podPriority": {"enabled": True},
            "userPlaceholder": {"enabled": deployment.user_placeholders > 0, "replicas": deployment.user_placeholders},
        },
        # images are built per repository: nothing to pre-pull but the default session image
        "prePuller": {"hook": {"enabled": False}, "continuous": {"enabled": False}},
        "ingress": {"enabled": False},  # ours routes the whole origin (binder pages and hub) to the proxy
    }


def session_network_policy(deployment: KubernetesDeployment) -> dict[str, Any]:
    """z2jh's singleuser NetworkPolicy: the internet yes; private ranges and the metadata server no (the hub API
    stays reachable: z2jh always allows it); listed data endpoints in private ranges yes."""
    egress = [
        {
            "to": [{"ipBlock": {"cidr": endpoint["cidr"]}}],
            "ports": [{"port": int(port), "protocol": "TCP"} for port in endpoint.get("ports", [443])],
        }
        for endpoint in deployment.data_endpoints
    ]
    return {
        "enabled": True,
        "egressAllowRules": {
            "cloudMetadataServer": False,
            "dnsPortsCloudMetadataServer": False,
            "dnsPortsKubeSystemNamespace": True,
            "dnsPortsPrivateIPs": True,
            "nonPrivateIPs": True,
            "privateIPs": False,
        },
        "egress": egress,
    }


# --- dask-gateway ---------------------------------------------------------------------------------


def dask_gateway_values(config: Config, deployment: KubernetesDeployment, profiles: ResourceProfiles) -> dict[str, Any]:
    """dask-gateway's Kubernetes backend with JupyterHub auth, clusters in the session image, sized by
    ``c.DaskGatewayService`` as on one machine."""
    gateway = DaskGatewayService(config=config)
    image_name, image_tag = split_image(deployment.session_image)
    worker_memory = min(profiles.logged_in_profiles()[0].mem_limit, gateway.max_memory)
    return {
        "fullnameOverride": DASK_GATEWAY_NAME,
        "gateway": {
            "prefix": f"/services/{DASK_GATEWAY_NAME}",
            "auth": {
                "type": "jupyterhub",
                "jupyterhub": {
                    # z2jh generates the token of every hub.services entry into its `hub` Secret
                    "apiTokenFromSecretName": "hub",
                    "apiTokenFromSecretKey": f"hub.services.{DASK_GATEWAY_NAME}.apiToken",
                    "apiUrl": f"{HUB_URL}/hub/api",
                },
            },
            "backend": {
                "image": {"name": image_name, "tag": image_tag},
                "worker": {
                    "cores": {"limit": 1, "request": 1},
                    "memory": {"limit": quantity(worker_memory // 4), "request": quantity(worker_memory // 4)},
                },
                "scheduler": {"cores": {"limit": 1, "request": 1}, "memory": {"limit": "2Gi", "request": "2Gi"}},
            },
            "extraConfig": {
                "limits": (
                    f"c.ClusterConfig.cluster_max_cores = {gateway.max_cores!r}\n"
                    f"c.ClusterConfig.cluster_max_memory = {gateway.max_memory!r}\n"
                    f"c.ClusterConfig.idle_timeout = {gateway.cluster_idle_timeout!r}\n"
                ),
            },
        },
        "traefik": {"service": {"type": "ClusterIP"}},
    }


# --- the binder service and its builder -----------------------------------------------------------


def image_prefix(config: Config, deployment: KubernetesDeployment) -> str:
    return str(config.get("ContainerBuilder", {}).get("image_prefix") or deployment.registry_prefix)


def registry_url(config: Config, deployment: KubernetesDeployment) -> str:
    if deployment.registry_url:
        return deployment.registry_url.rstrip("/")
    return "https://" + urlsplit("//" + image_prefix(config, deployment)).netloc


def binder_values(config: Config, deployment: KubernetesDeployment, warnings: list[str]) -> dict[str, Any]:
    """The binder service's Deployment and its config (BinderService, providers, builder) as JSON sections."""
    service_config: dict[str, Any] = {}
    for section, traits in config.items():
        if not SERVICE_SECTIONS.match(section) or not isinstance(traits, Config):
            continue
        kept = {}
        for name, value in traits.items():
            if SECRET_TRAIT.search(name):
                warnings.append(
                    f"c.{section}.{name} holds a secret and is not written into values: put it in the Secret "
                    f"{deployment.provider_secret!r} as an environment variable the service reads instead"
                )
            elif not (section == "BinderService" and name in LOCAL_ONLY_SERVICE_TRAITS):
                kept[name] = plain(value)
        if kept:
            service_config[section] = kept
    container = ContainerBuilder(config=config)
    service_config.setdefault("BinderService", {}).update(
        {
            "container_builds": "always",
            "ip": "0.0.0.0",
            "port": BINDER_PORT,
            "public_url": f"https://{deployment.host}/",
            # logged-in sessions run the session image: no local default environment to build
            "prebuild_default_environment": False,
        }
    )
    service_config.setdefault("ContainerBuilder", {}).update(
        {
            "engine": "kubernetes",
            "image_prefix": image_prefix(config, deployment),
            "registry_secret": deployment.registry_secret,
            "repo2docker_image": container.repo2docker_image,
            "engine_socket": PODMAN_SOCKET,
            "build_node_selector": dict(deployment.build_node_selector),
        }
    )
    service_config.setdefault("KubernetesBuilder", {}).update({"registry_url": registry_url(config, deployment)})
    # unset, the limit would be derived from the service pod's own free memory, which says nothing about the
    # nodes: the hub's activeServerLimit (the same number) and the cluster's capacity bound sessions instead
    service_config.setdefault("Admission", {}).setdefault("max_sessions", 0)
    name, tag = split_image(deployment.image)
    return {
        "name": BINDER_SERVICE_NAME,
        "replicas": deployment.binder_replicas,
        "image": {"name": name, "tag": tag},
        "port": BINDER_PORT,
        "hubUrl": HUB_URL,
        "providerSecret": deployment.provider_secret,
        "config": service_config,
    }


#: where the podman daemon's API socket is on a build node (hostPath), and in build pods
PODMAN_SOCKET_DIR = "/var/run/bia-binder-podman"
PODMAN_SOCKET = f"{PODMAN_SOCKET_DIR}/podman.sock"


def builder_values(config: Config, deployment: KubernetesDeployment) -> dict[str, Any]:
    container = ContainerBuilder(config=config)
    return {
        "enabled": True,
        "engine": deployment.build_engine,
        "socketDir": PODMAN_SOCKET_DIR,
        "nodeSelector": dict(deployment.build_node_selector),
        "registrySecret": deployment.registry_secret,
        "retentionHours": deployment.image_retention_hours,
        "resources": {"limits": {"memory": container.build_memory_limit, "cpu": container.build_cpu_limit}},
    }


# --- helpers --------------------------------------------------------------------------------------


def split_image(image: str) -> tuple[str, str]:
    """``registry:5000/org/name:tag`` → (``registry:5000/org/name``, ``tag``); no tag → ``latest``."""
    name, sep, tag = image.rpartition(":")
    if not sep or "/" in tag:
        return image, "latest"
    return name, tag


def plain(value: Any) -> Any:
    """A config value as YAML can hold it (sets become sorted lists, traitlets containers plain ones)."""
    if isinstance(value, (set, frozenset)):
        return sorted(plain(v) for v in value)
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value
