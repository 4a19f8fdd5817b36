"""Session pods from KubeSpawner's own get_pod_manifest(), configured by z2jh from our rendered chart:
their limits are the local sandbox's, byte for byte."""

from __future__ import annotations

import helm_python as helm
import pytest
from jupyterhub.objects import Server

from bia_binder.deploy.quantities import bytes_of
from bia_binder.deploy.values import chart_values, load_config
from bia_binder.sessions.kubernetes import BinderKubeSpawner
from bia_binder.sessions.profiles import ResourceProfiles
from tests.deploy.charts import chart_with_dependencies, render
from tests.deploy.configs import ALL
from tests.deploy.z2jh import SERVICE_ENVIRONMENT, hub_config

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: none, cluster: {server: "http://127.0.0.1:9"}}]
contexts: [{name: none, context: {cluster: none, user: none, namespace: binder}}]
current-context: none
users: [{name: none, user: {token: unused}}]
"""


class User:
    """What KubeSpawner reads of a JupyterHub user."""

    def __init__(self, name):
        self.name, self.id, self.url, self.escaped_name = name, 7, f"/user/{name}/", name
        self.groups, self.admin = [], False


@pytest.fixture(scope="module")
def chart(tmp_path_factory):
    return helm.Chart.load(chart_with_dependencies(tmp_path_factory.mktemp("chart")))


@pytest.fixture
def setup(chart, tmp_path, monkeypatch):
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    # read at kubernetes_asyncio's import, and only if no other test loaded a configuration before
    from kubernetes_asyncio.config import kube_config

    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(tmp_path / "kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    for name, value in SERVICE_ENVIRONMENT.items():  # what Kubernetes sets in the hub pod
        monkeypatch.setenv(name, value)

    def configured(name):
        config_file = tmp_path / f"{name}.py"
        config_file.write_text(ALL[name])
        operator_config = load_config(config_file)
        values = chart_values(operator_config).values
        hub = hub_config(render(chart, values), tmp_path / name)
        return ResourceProfiles(config=operator_config), hub, values

    return configured


async def manifest(hub_cfg, username, user_options):
    spawner = BinderKubeSpawner(config=hub_cfg, user=User(username), _mock=True)
    spawner.server = Server(base_url=f"/user/{username}/")
    spawner.api_token = "hub-token-of-the-session"
    spawner.user_options = dict(user_options)
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    return spawner, pod.to_dict() if hasattr(pod, "to_dict") else pod


def resources(pod):
    [container] = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return container, container["resources"]


@pytest.mark.parametrize("name", sorted(ALL))
async def test_logged_in_profiles_have_the_local_limits_exactly(setup, name):
    profiles, hub, values = setup(name)
    for profile in profiles.logged_in_profiles():
        spawner, pod = await manifest(hub, "alice", {"profile": profile.slug})
        container, res = resources(pod)
        assert bytes_of(str(res["limits"]["memory"])) == profile.mem_limit == profile.cgroup_limits().memory_bytes
        assert bytes_of(str(res["requests"]["memory"])) == profile.mem_limit
        assert float(res["limits"]["cpu"]) == profile.cpu_limit == profile.cgroup_limits().cpus
        if profile.gpus:
            assert res["limits"]["nvidia.com/gpu"] == str(profile.gpus)
            selector = values["jupyterhub"]["singleuser"]["profileList"]
            expected = next(p for p in selector if p["slug"] == profile.slug)["kubespawner_override"]
            assert pod["spec"]["node_selector"] == expected["node_selector"]
            assert [t["key"] for t in pod["spec"]["tolerations"]] >= [t["key"] for t in expected["tolerations"]]
        else:
            assert "nvidia.com/gpu" not in res["limits"]
        # a PVC per logged-in user, of HomeManager.quota, mounted as the home
        claims = [v for v in pod["spec"]["volumes"] if v.get("persistent_volume_claim")]
        assert claims and spawner.storage_pvc_ensure
        assert spawner.storage_capacity == values["jupyterhub"]["singleuser"]["storage"]["capacity"]
        assert any(m["mount_path"] == "/home/jovyan" for m in container["volume_mounts"])


@pytest.mark.parametrize("name", sorted(ALL))
async def test_anonymous_sessions_are_bounded_ephemeral_and_hold_no_hub_token(setup, name):
    profiles, hub, _ = setup(name)
    anonymous = profiles.anonymous_profile()
    image = "registry.example.org/bia-binder/env-0123abcd:latest"
    spawner, pod = await manifest(
        hub, "binder-org-repo-1a2b3c4d", {"image": image, "token": "launch-token", "repo_url": "https://x.org/r"}
    )
    container, res = resources(pod)
    assert container["image"] == image
    assert bytes_of(str(res["limits"]["memory"])) == anonymous.mem_limit
    assert float(res["limits"]["cpu"]) == anonymous.cpu_limit
    assert bytes_of(res["limits"]["ephemeral-storage"]) == anonymous.disk_limit
    assert not [v for v in pod["spec"].get("volumes") or [] if v.get("persistent_volume_claim")]
    assert not spawner.storage_pvc_ensure
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["JUPYTER_TOKEN"] == "launch-token"
    assert not [k for k in env if k.startswith("JUPYTERHUB_")]
    assert "hub-token-of-the-session" not in str(pod) and "launch-token" not in " ".join(container["args"] or [])
    assert env["BINDER_REPO_URL"] == "https://x.org/r"
    assert "token" not in spawner.user_options  # not kept in the hub's database


async def test_anonymous_launches_run_only_our_images(setup):
    _, hub, _ = setup("default")
    with pytest.raises(Exception, match="not one of ours"):
        await manifest(hub, "binder-x-1a2b3c4d", {"image": "docker.io/evil/miner:latest", "token": "t"})
    with pytest.raises(Exception, match="needs the `image`"):
        await manifest(hub, "binder-x-1a2b3c4d", {"token": "t"})
