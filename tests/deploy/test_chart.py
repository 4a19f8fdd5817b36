"""The chart renders, with values made from config files, into objects Kubernetes 1.32 and the newest accept."""

from __future__ import annotations

import ipaddress
import json
import shutil

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from traitlets.config import PyFileConfigLoader

from bia_binder.deploy.quantities import bytes_of
from bia_binder.deploy.validate import ValuesError, check_jupyterhub_values
from bia_binder.deploy.values import chart_values, load_config
from bia_binder.sessions.profiles import ResourceProfiles
from tests.deploy.charts import CHART, REFERENCE_CHARTS, by_kind, chart_with_dependencies, render
from tests.deploy.configs import ALL

#: the Kubernetes versions every object must validate for: the oldest we support and the newest bundled
KUBERNETES_VERSIONS = ("1.32.0", kubernetes_validate.latest_version() + ".0")
#: custom resources of dask-gateway's chart (traefik's and its own): validated against their CRDs' schemas
CUSTOM_API_GROUPS = ("traefik.io/", "traefik.containo.us/", "gateway.dask.org/")


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    return helm.Chart.load(chart_with_dependencies(tmp_path_factory.mktemp("chart")))


@pytest.fixture(scope="module")
def z2jh_schema():
    return yaml.safe_load((REFERENCE_CHARTS / "jupyterhub" / "values.schema.yaml").read_text())


def values_for(tmp_path, name):
    config = tmp_path / f"{name}_config.py"
    config.write_text(ALL[name])
    return chart_values(load_config(config))


@pytest.fixture(scope="module", params=sorted(ALL))
def rendered(request, chart, tmp_path_factory):
    values = values_for(tmp_path_factory.mktemp(request.param), request.param)
    return request.param, values, render(chart, values.values)


def test_chart_declares_the_upstream_charts_from_their_repositories():
    metadata = yaml.safe_load((CHART / "Chart.yaml").read_text())
    lock = yaml.safe_load((CHART / "Chart.lock").read_text())
    repositories = {d["name"]: d["repository"] for d in metadata["dependencies"]}
    assert repositories == {"jupyterhub": "https://hub.jupyter.org/helm-chart/", "dask-gateway": "https://helm.dask.org/"}
    assert {d["name"]: (d["repository"], d["version"]) for d in lock["dependencies"]} == {
        d["name"]: (d["repository"], d["version"]) for d in metadata["dependencies"]
    }


def test_chart_lock_is_in_sync_as_helm_checks_it(tmp_path):
    """`helm dependency build` checks Chart.lock's digest before downloading: ours passes (the build then stops
    at the download, offline); a lock that does not match Chart.yaml is refused."""
    shutil.copytree(CHART, tmp_path / "ok", ignore=shutil.ignore_patterns("charts"))
    with pytest.raises(helm.HelmError) as offline:
        helm.dependency_build(tmp_path / "ok", skip_refresh=True)
    assert "out of sync" not in str(offline.value)
    shutil.copytree(CHART, tmp_path / "stale", ignore=shutil.ignore_patterns("charts"))
    chart_yaml = tmp_path / "stale" / "Chart.yaml"
    chart_yaml.write_text(chart_yaml.read_text().replace('version: "4.3.3"', 'version: "4.3.2"'))
    with pytest.raises(helm.HelmError, match="out of sync"):
        helm.dependency_build(tmp_path / "stale", skip_refresh=True)


def test_every_object_validates_strictly_for_kubernetes_1_32_and_the_newest(rendered):
    _, _, objects = rendered
    kinds = {o["object"]["kind"] for o in objects}
    # ours and the upstream charts' are all there
    assert {"Deployment", "Service", "PodDisruptionBudget", "Role", "RoleBinding", "DaemonSet", "Ingress",
            "NetworkPolicy", "ConfigMap", "Secret", "CustomResourceDefinition"} <= kinds  # fmt: skip
    crds = {
        (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"]): version["schema"]["openAPIV3Schema"]
        for crd in (o["object"] for o in objects if o["object"]["kind"] == "CustomResourceDefinition")
        for version in crd["spec"]["versions"]
    }
    checked = 0
    for item in objects:
        obj = item["object"]
        if obj["apiVersion"].startswith(CUSTOM_API_GROUPS):
            # custom resources (traefik's routes of dask-gateway) against the schema of their CRD, in the render
            schema = crds.get((obj["apiVersion"], obj["kind"]))
            assert schema is not None, f"no CRD for {obj['apiVersion']} {obj['kind']} in the chart"
            errors = [e.message for e in jsonschema.Draft7Validator(schema["properties"]["spec"]).iter_errors(obj["spec"])]
            assert not errors, f"{item['template']} {obj['kind']}/{obj['metadata']['name']}: {errors}"
            continue
        for version in KUBERNETES_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{item['template']} {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {e}")
        checked += 1
    assert checked > 40


def test_jupyterhub_values_match_the_z2jh_schema(rendered, chart, z2jh_schema):
    _, values, _ = rendered
    z2jh = next(c for c in [helm.Chart.load(REFERENCE_CHARTS / "jupyterhub")])
    merged = z2jh.merge_values(values.values["jupyterhub"])
    check_jupyterhub_values(merged, z2jh_schema)  # raises with every problem


def test_singleuser_under_hub_config_is_rejected(z2jh_schema):
    """The public deployment's mistake: limits under hub.config.singleuser, which z2jh ignores silently."""
    z2jh = helm.Chart.load(REFERENCE_CHARTS / "jupyterhub")
    mistaken = {"hub": {"config": {"singleuser": {"memory": {"limit": "8G"}}, "JupyterHub": {"admin_access": False}}}}
    merged = z2jh.merge_values(mistaken)
    with pytest.raises(ValuesError, match=r"hub\.config\.singleuser.*move it to jupyterhub\.singleuser"):
        check_jupyterhub_values(merged, z2jh_schema)
    with pytest.raises(ValuesError, match="Configurable class names"):
        check_jupyterhub_values(z2jh.merge_values({"hub": {"config": {"kubeSpawner": {}}}}), z2jh_schema)
    # the schema itself still catches what it knows: a wrong type
    with pytest.raises(ValuesError, match=r"cull\.timeout"):
        check_jupyterhub_values(z2jh.merge_values({"cull": {"timeout": "soon"}}), z2jh_schema)


def test_values_carry_the_config_over(tmp_path):
    values = values_for(tmp_path, "profiles").values
    hub = values["jupyterhub"]
    singleuser = hub["singleuser"]
    assert singleuser["storage"]["capacity"] == "20Gi"  # HomeManager.quota "20G" = 20 GiB, not 20·10⁹
    assert singleuser["storage"]["type"] == "dynamic"
    assert [p["slug"] for p in singleuser["profileList"]] == ["small", "medium", "odd", "huge"]
    assert singleuser["profileList"][2]["kubespawner_override"]["mem_limit"] == 1500000000
    assert singleuser["extraResource"]["limits"]["ephemeral-storage"] == "5Gi"
    assert hub["cull"] == {"enabled": True, "users": False, "adminUsers": True, "removeNamedServers": False,
                           "timeout": 3600, "maxAge": 86400, "every": 300, "concurrency": 5}  # fmt: skip
    assert hub["hub"]["activeServerLimit"] == 300
    service = values["binder"]["config"]
    assert service["Admission"] == {"max_sessions": 300, "per_repo_quota": 50}
    assert service["BinderService"]["banner"] == "<b>Maintenance</b> on Friday"
    assert service["GitHubProvider"] == {"api_url": "https://github.example.org/api/v3"}
    assert service["ContainerBuilder"]["engine"] == "kubernetes"
    assert values["ingress"]["host"] == "binder.embassy.example"


def test_default_culling_is_12_hours_idle_and_a_week_of_age(tmp_path):
    values = values_for(tmp_path, "default").values
    cull = values["jupyterhub"]["cull"]
    assert (cull["timeout"], cull["maxAge"]) == (12 * 3600, 7 * 24 * 3600)
    # not derived from the service pod's own memory: the cluster bounds sessions
    assert values["binder"]["config"]["Admission"] == {"max_sessions": 0}
    assert "activeServerLimit" not in values["jupyterhub"]["hub"]


def test_no_secret_reaches_the_values(tmp_path):
    for name in ("profiles", "gpu"):
        result = values_for(tmp_path, name)
        text = json.dumps(result.values)
        assert "ghp_not_for_values" not in text and "never-in-values" not in text
    assert any("GitHubProvider.access_token" in w for w in values_for(tmp_path, "profiles").warnings)
    hub = values_for(tmp_path, "gpu").values["jupyterhub"]["hub"]
    assert hub["config"]["JupyterHub"]["authenticator_class"] == "oauthenticator.generic.GenericOAuthenticator"
    oauth = hub["config"]["GenericOAuthenticator"]
    assert oauth["authorize_url"] == "https://login.aai.lifescience-ri.eu/oidc/authorize"
    assert oauth["oauth_callback_url"] == "https://gpu.binder.example.org/hub/oauth_callback"
    assert "client_secret" not in oauth and "client_id" not in oauth
    assert hub["extraEnv"]["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"] == {
        "name": "bia-binder-oauth", "key": "client-secret"}  # fmt: skip


def test_profile_limits_are_the_local_byte_counts(tmp_path):
    """JupyterHub reads "8G" as GiB, Kubernetes as 10⁹: every quantity must be the local limit exactly."""
    config = tmp_path / "c.py"
    config.write_text(ALL["profiles"])
    loaded = load_config(config)
    local = {p.slug: p for p in ResourceProfiles(config=loaded).logged_in_profiles()}
    for entry in chart_values(loaded).values["jupyterhub"]["singleuser"]["profileList"]:
        override = entry["kubespawner_override"]
        assert override["mem_limit"] == local[entry["slug"]].mem_limit
        assert override["cpu_limit"] == local[entry["slug"]].cpu_limit
    assert bytes_of("8Gi") == 8 * 1024**3 and bytes_of("8G") == 8 * 10**9


def test_ours_objects(rendered):
    name, values, objects = rendered
    [deployment] = by_kind(objects, "Deployment", "bia-binder")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    token = next(e for e in container["env"] if e["name"] == "JUPYTERHUB_API_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "hub", "key": "hub.services.binder.apiToken"}
    # the hub registers the service and generates that token into its Secret
    [hub_secret] = by_kind(objects, "Secret", "hub")
    assert "hub.services.binder.apiToken" in hub_secret["data"]
    assert by_kind(objects, "PodDisruptionBudget", "bia-binder")[0]["spec"]["minAvailable"] == 1
    [role] = by_kind(objects, "Role", "bia-binder-builds")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods", "pods/log"],
                              "verbs": ["create", "get", "list", "watch", "delete"]}]  # fmt: skip
    [ingress] = by_kind(objects, "Ingress", "bia-binder")
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert ingress["spec"]["tls"][0]["hosts"] == [values.values["ingress"]["host"]]
    assert ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "proxy-public"
    [config_map] = by_kind(objects, "ConfigMap", "bia-binder-config")
    assert json.loads(config_map["data"]["binder_config.json"]) == values.values["binder"]["config"]
    [podman] = by_kind(objects, "DaemonSet", "bia-binder-podman")
    cleaner = podman["spec"]["template"]["spec"]["containers"][1]
    assert "image prune" in cleaner["command"][-1] and "until=168h" in cleaner["command"][-1]


def _egress_cidrs(policy):
    blocks = [peer["ipBlock"] for rule in policy["spec"].get("egress", []) for peer in rule.get("to", []) if "ipBlock" in peer]
    return blocks


def test_sessions_reach_the_internet_and_data_endpoints_but_no_private_range_or_metadata(rendered):
    name, values, objects = rendered
    [policy] = by_kind(objects, "NetworkPolicy", "singleuser")
    metadata = ipaddress.ip_address("169.254.169.254")
    allowed_private = {e["cidr"] for e in values.values["jupyterhub"]["singleuser"]["networkPolicy"]["egress"]
                       for e in [e["to"][0]["ipBlock"]]}  # fmt: skip
    internet = False
    for rule in policy["spec"]["egress"]:
        ports = {p["port"] for p in rule.get("ports", [])}
        for peer in rule.get("to", []):
            if "ipBlock" not in peer:
                # pods: the hub's API (8081) and the proxy's public port (8000), never its API (8001)
                labels = peer.get("podSelector", {}).get("matchLabels", {})
                if labels.get("component") == "hub":
                    assert ports == {8081}
                elif labels.get("component") == "proxy":
                    assert ports == {8000}
                continue
            block = ipaddress.ip_network(peer["ipBlock"]["cidr"])
            excepted = [ipaddress.ip_network(e) for e in peer["ipBlock"].get("except", [])]
            reachable_metadata = metadata in block and not any(metadata in e for e in excepted)
            assert not reachable_metadata, f"{block} lets sessions reach the metadata server"
            if block.prefixlen == 0:
                internet = True
                for private in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
                    assert any(ipaddress.ip_network(private).subnet_of(e) for e in excepted), private
            elif block.is_private and ports != {53}:  # DNS servers may have private addresses
                assert str(block) in allowed_private, f"{block} is private and not a listed data endpoint"
    assert internet
    if name == "gpu":
        assert "10.20.0.0/24" in allowed_private


def test_builds_reach_only_the_internet_and_binder_is_reached_only_from_proxy_and_hub(rendered):
    _, _, objects = rendered
    [builds] = by_kind(objects, "NetworkPolicy", "bia-binder-builds")
    assert builds["spec"]["ingress"] == []
    for block in _egress_cidrs(builds):
        assert "169.254.0.0/16" in block["except"] and "10.0.0.0/8" in block["except"]
    [binder] = by_kind(objects, "NetworkPolicy", "bia-binder")
    sources = [peer["podSelector"]["matchLabels"]["component"] for peer in binder["spec"]["ingress"][0]["from"]]
    assert sorted(sources) == ["hub", "proxy"]


def test_gpu_profile_requests_gpus_on_gpu_nodes(tmp_path):
    values = values_for(tmp_path, "gpu").values
    [gpu] = [p for p in values["jupyterhub"]["singleuser"]["profileList"] if p["slug"] == "gpu"]
    override = gpu["kubespawner_override"]
    assert override["extra_resource_limits"] == {"nvidia.com/gpu": "2"}
    assert override["node_selector"] == {"cloud.example/accelerator": "a100"}
    assert override["tolerations"] == [{"key": "gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}]
    assert values["jupyterhub"]["scheduling"]["userPlaceholder"] == {"enabled": True, "replicas": 4}
    assert values["jupyterhub"]["singleuser"]["storage"]["dynamic"]["storageClass"] == "fast-rwo"


def test_dask_gateway_uses_the_kubernetes_backend_and_jupyterhub_auth(rendered, tmp_path):
    """The gateway's rendered config file, loaded as dask-gateway-server loads it."""
    _, values, objects = rendered
    [config_map] = by_kind(objects, "ConfigMap", "api-dask-gateway")
    (tmp_path / "dask_gateway_config.py").write_text(config_map["data"]["dask_gateway_config.py"])
    loaded = PyFileConfigLoader("dask_gateway_config.py", path=str(tmp_path)).load_config()
    assert loaded.DaskGateway.backend_class == "dask_gateway_server.backends.kubernetes.KubeBackend"
    assert loaded.DaskGateway.authenticator_class == "dask_gateway_server.auth.JupyterHubAuthenticator"
    assert loaded.JupyterHubAuthenticator.jupyterhub_api_url == "http://hub:8081/hub/api"
    image = values.values["dask-gateway"]["gateway"]["backend"]["image"]
    assert loaded.KubeClusterConfig.image == f"{image['name']}:{image['tag']}"
    assert loaded.ClusterConfig.cluster_max_memory == 32 * 1024**3  # c.DaskGatewayService.max_memory
    [gateway] = by_kind(objects, "Deployment", "api-dask-gateway")
    env = {e["name"]: e for e in gateway["spec"]["template"]["spec"]["containers"][0].get("env", [])}
    assert env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "hub", "key": "hub.services.dask-gateway.apiToken"}  # fmt: skip
    # the hub registers the gateway as a service (and generates that token)
    assert "hub.services.dask-gateway.apiToken" in by_kind(objects, "Secret", "hub")[0]["data"]


def test_cli_writes_values_that_render(tmp_path, chart):
    from bia_binder.cli import main

    config = tmp_path / "c.py"
    config.write_text(ALL["gpu"])
    assert main(["kubernetes", "values", "--config", str(config), "--output", str(tmp_path / "values.yaml")]) == 0
    values = yaml.safe_load((tmp_path / "values.yaml").read_text())
    assert by_kind(render(chart, values), "Deployment", "hub")
    assert main(["kubernetes", "values", "--config", str(tmp_path / "missing.py")]) == 1


def test_helm_lint_finds_no_error(chart, tmp_path):
    values = values_for(tmp_path, "gpu").values
    result = helm.lint(chart_with_dependencies(tmp_path / "lint"), values, strict=True, namespace="binder",
                       kube_version="1.32.0")  # fmt: skip
    assert result["errors"] == [], result
    assert all(m["severity"] <= 1 for m in result["messages"]), result["messages"]  # informational only
