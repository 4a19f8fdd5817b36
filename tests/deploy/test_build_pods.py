"""The Kubernetes build executor against the emulated API: one build pod per ref, its log, its outcome."""

from __future__ import annotations

import asyncio

import pytest

from bia_binder.builder.kubernetes import KubernetesBuilder
from bia_binder.events import LaunchError
from tests.deploy.fixtures import start_emulated_cluster, stop_emulated_cluster

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
async def emulated(tmp_path_factory):
    emulated = await start_emulated_cluster(tmp_path_factory.mktemp("cluster"))
    yield emulated
    for made in BUILDERS:
        await made.close()
    await stop_emulated_cluster(emulated)


#: the builders a test made, closed with the cluster (their API clients hold connections)
BUILDERS: list[KubernetesBuilder] = []


def builder(emulated, **traits) -> KubernetesBuilder:
    BUILDERS.append(made := KubernetesBuilder(
        kube_api_url=emulated.cluster.url,
        registry_url=f"http://{emulated.registry.host}",
        image_prefix=emulated.image_prefix,
        namespace="binder",
        registry_secret="bia-binder-registry",
        **traits,
    ))  # fmt: skip
    return made


async def test_two_replicas_building_one_ref_share_one_pod_and_a_failed_pod_fails(emulated):
    url, sha = emulated.git.create_repo("org/analysis", {"requirements.txt": "# only the session packages\n"})
    first, second = builder(emulated), builder(emulated)
    key = first.cache_key("git", sha)
    logs: tuple[list[str], list[str]] = ([], [])
    assert not await first.image_exists(key)
    images = await asyncio.gather(
        first.build(url, sha, key, logs[0].append), second.build(url, sha, key, logs[1].append)
    )
    assert images[0] == images[1] == f"{emulated.image_prefix}{key}"
    assert emulated.cluster.created_pods("build-") == [f"build-{key}"], "one build pod per resolved ref"
    assert emulated.cluster.conflicts == [("pods", f"build-{key}")], "the second launch joined on 409 Conflict"
    assert any("Successfully pushed" in line for line in logs[0]), logs[0]
    assert not emulated.cluster.pods("build"), "the ended build pod is removed"
    # the registry holds the image now: a new replica does not build it again
    assert await builder(emulated).image_exists(key)

    bad_url, bad_sha = emulated.git.create_repo("org/broken", {"requirements.txt": "this is !! not a requirement\n"})
    failing = builder(emulated)
    bad_key = failing.cache_key("git", bad_sha)
    with pytest.raises(LaunchError, match=r"the image build failed \(exit status 1, Error\): Error during build") as e:
        await failing.build(bad_url, bad_sha, bad_key, lambda line: None)
    assert e.value.status_code == 500
    assert not await failing.image_exists(bad_key)
    assert not emulated.cluster.pods("build"), "a failed build pod is removed too: a retry builds again"
    pod = next(o for v, kind, p, o in emulated.cluster.history if p == "pods" and o["metadata"]["name"] == f"build-{bad_key}")
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["volumes"][1]["secret"]["items"] == [{"key": ".dockerconfigjson", "path": "config.json"}]


async def test_health_reports_the_api_and_the_registry(emulated):
    checks = {c["service"]: c["ok"] for c in await builder(emulated).health_checks()}
    assert checks == {"Kubernetes API": True, "Registry": True}
    down = KubernetesBuilder(kube_api_url="http://127.0.0.1:9", registry_url="http://127.0.0.1:9", api_timeout=2)
    BUILDERS.append(down)
    assert {c["service"]: c["ok"] for c in await down.health_checks()} == {"Kubernetes API": False, "Registry": False}
