"""A launch end to end on an emulated cluster: z2jh's hub with our values, our binder service, build and session pods.

    client ──► proxy (configurable-http-proxy) ──► binder service ──► build pod (test kubelet: repo2docker
          stand-in builds with bia-binder, pushes to the test registry)
                                               └─► hub (z2jh's jupyterhub_config.py + our extraConfig)
                                                   └─► KubeSpawner ──► session pod (test kubelet: the built
                                                       environment's jupyter lab on 127.0.0.N)

The hub and the service run as in their pods: from the rendered ConfigMaps and Secret, with
the generated service token. Test-only values (as an operator's second values file) put every
address on loopback and point the clients at the emulated API.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import helm_python as helm
import httpx
import pytest

from bia_binder.deploy.values import chart_values, load_config
from tests.deploy.charts import by_kind, chart_with_dependencies, render
from tests.deploy.cluster import free_port
from tests.deploy.fixtures import start_emulated_cluster, stop_emulated_cluster
from tests.deploy.z2jh import SERVICE_ENVIRONMENT, secret_value, write_hub_files
from tests.stack import PROJECT_ROOT

pytestmark = pytest.mark.slow

CONFIG = """
c.KubernetesDeployment.host = "binder.example.org"
c.KubernetesDeployment.registry_prefix = {prefix!r}
c.ResourceProfiles.anonymous = {{"slug": "anonymous", "mem_limit": "2G", "cpu_limit": 1, "disk_limit": "1G"}}
c.BinderService.banner = "Emulated cluster"
"""

TEST_HUB_CONFIG = """
# (test) every address on loopback; the proxy started by the hub, as `bia-binder up` does
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.JupyterHub.hub_connect_url = "http://127.0.0.1:{hub}"
c.ConfigurableHTTPProxy.should_start = True
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api}"
c.Proxy.extra_routes = {{"/": "http://127.0.0.1:{binder}"}}
for service in c.JupyterHub.services:
    if service["name"] == "binder":
        service["url"] = "http://127.0.0.1:{binder}"
# no dask-gateway in this test
c.JupyterHub.services = [s for s in c.JupyterHub.services if s["name"] != "dask-gateway"]
c.KubeSpawner.start_timeout = 120
c.KubeSpawner.http_timeout = 60
"""

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{{name: emulated, cluster: {{server: "{url}"}}}}]
contexts: [{{name: emulated, context: {{cluster: emulated, user: hub, namespace: binder}}}}]
current-context: emulated
users: [{{name: hub, user: {{token: emulated}}}}]
"""


async def wait_for(url: str, process: subprocess.Popen, what: str, log: Path, timeout: float = 120) -> None:
    """Until ``url`` answers 200 (through the proxy: its route is there too)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with httpx.AsyncClient(timeout=5) as client:
        while asyncio.get_running_loop().time() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"{what} exited ({process.returncode}):\n{log.read_text()[-3000:]}")
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.3)
    raise AssertionError(f"{what} did not answer at {url}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
async def deployment(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("deployment")
    emulated = await start_emulated_cluster(workdir)
    ports = {name: free_port() for name in ("public", "hub", "proxy_api", "binder")}
    (workdir / "config.py").write_text(CONFIG.format(prefix=emulated.image_prefix))
    values = chart_values(load_config(workdir / "config.py")).values
    jupyterhub = values["jupyterhub"]
    jupyterhub["cull"]["enabled"] = False  # z2jh's culler calls the hub at localhost:8081
    jupyterhub["hub"]["extraConfig"]["zz-test"] = TEST_HUB_CONFIG.format(**ports)
    objects = render(helm.Chart.load(chart_with_dependencies(workdir / "chart")), values)

    hub_config_py = write_hub_files(objects, workdir / "etc-jupyterhub")
    (workdir / "kubeconfig").write_text(KUBECONFIG.format(url=emulated.cluster.url))
    (workdir / "hub").mkdir()
    path = os.pathsep.join([str(PROJECT_ROOT / "node_modules" / ".bin"), str(Path(sys.executable).parent), os.environ["PATH"]])
    hub_env = {**os.environ, **SERVICE_ENVIRONMENT, "KUBECONFIG": str(workdir / "kubeconfig"), "PATH": path,
               "CONFIGPROXY_AUTH_TOKEN": secret_value(objects, "hub.config.ConfigurableHTTPProxy.auth_token")}  # fmt: skip
    hub_log = workdir / "hub.log"
    hub = subprocess.Popen(
        [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(hub_config_py)],
        cwd=workdir / "hub", env=hub_env, stdout=hub_log.open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,  # its proxy too is stopped with its process group
    )  # fmt: skip

    # the binder service as its Deployment runs it: the rendered config, the token from the hub's Secret
    [config_map] = by_kind(objects, "ConfigMap", "bia-binder-config")
    service_config = json.loads(config_map["data"]["binder_config.json"])
    service_config["BinderService"].update(ip="127.0.0.1", public_url=f"http://127.0.0.1:{ports['public']}/")
    service_config["RepoProvider"] = {"allow_local_repos": True}  # the git server is on loopback
    service_config["KubernetesBuilder"].update(kube_api_url=emulated.cluster.url, namespace="binder")
    service_config["KubernetesBuilder"]["registry_url"] = f"http://{emulated.registry.host}"
    (workdir / "binder_config.json").write_text(json.dumps(service_config))
    service_log = workdir / "binder.log"
    service = subprocess.Popen(
        [sys.executable, "-m", "bia_binder.service.app"],
        env={**os.environ, "PATH": path, "BIA_BINDER_UP_DATA_DIR": str(workdir / "binder-data"),
             "BIA_BINDER_UP_CONFIG_FILE": str(workdir / "binder_config.json"),
             "BIA_BINDER_UP_SERVICE_PORT": str(ports["binder"]),
             "JUPYTERHUB_API_URL": f"http://127.0.0.1:{ports['hub']}/hub/api",
             "JUPYTERHUB_API_TOKEN": secret_value(objects, "hub.services.binder.apiToken")},
        stdout=service_log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    public = f"http://127.0.0.1:{ports['public']}"
    try:
        await wait_for(f"{public}/hub/api", hub, "the hub", hub_log)
        await wait_for(f"{public}/versions", service, "the binder service", service_log)
        yield {"url": public, "emulated": emulated, "hub_log": hub_log, "service_log": service_log}
    finally:
        for process in (service, hub):
            process.terminate()
        for process in (service, hub):
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # whatever it started (the proxy) goes too
            process.wait()
        await stop_emulated_cluster(emulated)


async def launch(url: str, spec: str, timeout: float = 300) -> list[dict]:
    events = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(30, read=timeout)) as client:
        async with client.stream("GET", f"{url}/build/{spec}", headers={"Accept": "text/event-stream"}) as response:
            if response.status_code != 200 or "event-stream" not in response.headers.get("content-type", ""):
                body = (await response.aread()).decode(errors="replace")[:500]
                raise AssertionError(f"/build answered {response.status_code}: {body}")
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                    if events[-1].get("phase") in ("ready", "failed"):
                        break
    return events


def pod_logs(emulated) -> str:
    """The session pods' output, for a failure's message."""
    return "\n".join(f"--- {name}:\n{bytes(log[-2000:]).decode(errors='replace')}"
                     for (_, name), log in emulated.cluster.logs.items() if name.startswith("jupyter-"))


def spec_of(emulated, name: str, files: dict[str, str]) -> tuple[str, str]:
    url, sha = emulated.git.create_repo(name, files)
    return f"git/{quote(url, safe='')}/{sha}", sha


async def test_two_launches_of_one_ref_build_once_and_answer_through_the_proxy(deployment):
    emulated = deployment["emulated"]
    spec, sha = spec_of(emulated, "org/cells", {"requirements.txt": "# the session packages only\n",
                                                 "analysis.py": "print('segmenting')\n"})  # fmt: skip
    first, second = await asyncio.gather(launch(deployment["url"], spec), launch(deployment["url"], spec))
    for events in (first, second):
        assert events[-1]["phase"] == "ready", f"{events[-3:]}\n{pod_logs(emulated)}"
    builds = emulated.cluster.created_pods("build-")
    assert len(builds) == 1, f"one build pod for one ref: {builds}"
    logs = [e["message"] for e in first + second if e["phase"] == "building"]
    assert any("Successfully pushed" in m for m in logs), "the build pod's log streams as building events"
    ready = first[-1]
    assert ready["image"].startswith(emulated.image_prefix)
    # the session pods: KubeSpawner's, from the built image, on their own loopback address
    sessions = emulated.cluster.pods("singleuser-server")
    assert len(sessions) == 2
    assert {p["spec"]["containers"][0]["image"] for p in sessions} == {ready["image"]}
    assert all(p["status"]["podIP"].startswith("127.0.0.") for p in sessions)
    env = {e["name"]: e.get("value") for e in sessions[0]["spec"]["containers"][0]["env"]}
    assert "JUPYTERHUB_API_TOKEN" not in env, "anonymous session pods hold no hub token"
    async with httpx.AsyncClient(timeout=30) as client:
        # the session answers through the proxy: the repository's files, served by the built environment's server
        contents = await client.get(f"{ready['url']}api/contents/analysis.py", params={"token": ready["token"]})
        assert contents.status_code == 200, contents.text
        assert "segmenting" in contents.json()["content"]
        health = (await client.get(f"{deployment['url']}/health")).json()
    async with httpx.AsyncClient(timeout=30) as stranger:  # no cookie from the request above
        refused = await stranger.get(f"{ready['url']}api/contents/analysis.py", params={"token": "wrong"})
        assert refused.status_code == 403
    checks = {c["service"]: c["ok"] for c in health["checks"]}
    assert checks["Kubernetes API"] and checks["Registry"] and checks["JupyterHub API"]

    # a third launch finds the image in the registry: no second build pod
    third = await launch(deployment["url"], spec)
    assert third[-1]["phase"] == "ready"
    assert len(emulated.cluster.created_pods("build-")) == 1
    assert any(e["phase"] == "built" and "Found built image" in e["message"] for e in third)


async def test_a_failing_build_pod_ends_the_launch_with_failed(deployment):
    spec, _ = spec_of(deployment["emulated"], "org/broken", {"requirements.txt": "not a requirement !!\n"})
    events = await launch(deployment["url"], spec)
    assert events[-1]["phase"] == "failed", events[-3:]
    assert "image build failed (exit status 1" in events[-1]["message"]
    assert events[-1]["status_code"] == 500
    assert not deployment["emulated"].cluster.pods("build"), "the failed build pod is removed"
