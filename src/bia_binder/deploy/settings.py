"""What only a cluster needs, configured in the same file as everything else (``c.KubernetesDeployment.*``).

The single machine ignores this section; ``bia-binder kubernetes values`` reads it next to the
sections both modes share (``ResourceProfiles``, ``HomeManager``, ``Admission``, providers...).
Secrets are named here, never given: the chart references Secrets the operator creates.
"""

from __future__ import annotations

from traitlets import Dict, Enum, Float, Int, List, Unicode
from traitlets.config import LoggingConfigurable

from .. import __version__

#: the private ranges and link-local block (cloud metadata at 169.254.169.254) sessions never reach
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "169.254.0.0/16")


class KubernetesDeployment(LoggingConfigurable):
    """The cluster's names and addresses: host, images, registry, Secrets, node pools."""

    host = Unicode("binder.example.org", help="DNS name users reach (the Ingress host and its TLS certificate).").tag(
        config=True
    )
    tls_secret = Unicode("bia-binder-tls", help="Secret cert-manager writes the TLS certificate into.").tag(config=True)
    cluster_issuer = Unicode(
        "letsencrypt", help="cert-manager ClusterIssuer that signs the certificate (empty: bring your own Secret)."
    ).tag(config=True)
    ingress_class = Unicode("nginx", help="IngressClass of the cluster's ingress controller.").tag(config=True)

    image = Unicode(
        f"ghcr.io/bia-binder/bia-binder:{__version__}",
        help="Image with bia-binder on the z2jh hub image (deploy/docker/Dockerfile): runs the hub and the binder "
        "service.",
    ).tag(config=True)
    session_image = Unicode(
        f"ghcr.io/bia-binder/bioimage:{__version__}",
        help="Image of logged-in sessions started without a repository (the default bioimage environment).",
    ).tag(config=True)

    registry_prefix = Unicode(
        "registry.example.org/bia-binder/env-",
        help="Where built images are pushed: images are <prefix><key>:latest. Overridden by "
        "c.ContainerBuilder.image_prefix when the config sets it.",
    ).tag(config=True)
    registry_url = Unicode(
        "",
        help="The registry's API (https://registry.example.org); default: https:// + the prefix's host. The binder "
        "service asks it whether an image exists before building.",
    ).tag(config=True)
    registry_secret = Unicode(
        "bia-binder-registry",
        help="Secret of type kubernetes.io/dockerconfigjson with push (and pull) credentials for the registry.",
    ).tag(config=True)
    oauth_secret = Unicode(
        "bia-binder-oauth", help="Secret with keys client-id and client-secret of the OIDC client (LS Login)."
    ).tag(config=True)
    provider_secret = Unicode(
        "bia-binder-provider-tokens",
        help="Optional Secret whose keys become the binder service's environment (GITHUB_ACCESS_TOKEN, "
        "GITLAB_PRIVATE_TOKEN, ...).",
    ).tag(config=True)

    storage_class = Unicode("", help="StorageClass of users' home PVCs (empty: the cluster's default).").tag(config=True)
    user_node_selector = Dict(help="nodeSelector of every session pod (a user node pool).").tag(config=True)
    gpu_node_selector = Dict(
        {"nvidia.com/gpu.present": "true"}, help="nodeSelector of GPU profiles (the GPU operator labels its nodes)."
    ).tag(config=True)
    gpu_tolerations = List(
        [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        help="Tolerations of GPU profiles (GPU node pools are usually tainted).",
    ).tag(config=True)
    build_node_selector = Dict(help="nodeSelector of build pods and the podman daemons (a build node pool).").tag(
        config=True
    )
    build_engine = Enum(
        ["podman"], default_value="podman", help="The container engine build pods talk to, one daemon per build node."
    ).tag(config=True)
    image_retention_hours = Int(
        168, help="Images unused for this long are removed from build nodes by the cleaner (disks do not fill)."
    ).tag(config=True)

    request_fraction = Float(
        1.0,
        help="Pods request this fraction of their profile's memory and CPU (limits stay the profile's). 1: every "
        "session is guaranteed its limits; lower packs more sessions per node, at the risk of evictions under "
        "memory pressure.",
    ).tag(config=True)

    data_endpoints = List(
        Dict(),
        help="Data services sessions may reach although they are in private ranges, e.g. "
        "[{'cidr': '10.20.0.0/24', 'ports': [443]}] for an institute's S3. The public internet is always reachable.",
    ).tag(config=True)
    binder_replicas = Int(2, help="Replicas of the binder service (a PodDisruptionBudget keeps one up).").tag(config=True)
    user_placeholders = Int(
        0, help="Placeholder pods holding room for that many sessions, so new users do not wait for a node to scale up."
    ).tag(config=True)
