"""dask-gateway on the whole stack: `bia-binder up --auth dev` runs it, it says clusters wait for
the default environment until a session built it, then a logged-in user's notebook computes on a
gateway cluster whose workers run that same environment as the unprivileged cluster user."""

from __future__ import annotations

import json
import os
import pwd
import secrets

import pytest
from dask_gateway import Gateway, JupyterHubAuth

from bia_binder.portal.auth import DEV_PASSWORD_ENV
from tests.kernel import run_cell
from tests.stack import BinderStack, hub_api

from .test_dask import wait_for_gateway
from .test_stack_login import start_from_api, user_token, wait_until_ready

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="clusters drop to the cluster user, which needs root"),
    # dask_gateway.Gateway.__del__ closes an already closed gateway again and complains
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

#: the default environment of this stack: what a gateway cluster needs, kept small for the build
DEFAULT_REQUIREMENTS = "dask-gateway\ndistributed\nnumpy\n"
CONFIG = """
c.BinderSpawner.default_environment_requirements = {requirements!r}
# the refusal test needs the default environment missing for a while (test_stack_login checks the prebuild)
c.BinderService.prebuild_default_environment = False
"""

#: run in a logged-in user's notebook: the DASK_GATEWAY__* settings and the session's token are all it needs
NOTEBOOK = """
import json, os, sys
import dask.array as da
from dask_gateway import Gateway
with Gateway() as gateway:
    cluster = gateway.new_cluster()
    try:
        cluster.scale(1)
        with cluster.get_client() as client:
            client.wait_for_workers(1, timeout=240)
            total = int(da.ones((1000, 1000), chunks=(250, 250)).sum().compute())
            workers = list(client.run(lambda: [os.getuid(), sys.prefix]).values())
    finally:
        cluster.shutdown()
print(json.dumps({"total": total, "workers": workers, "prefix": sys.prefix, "uid": os.getuid()}))
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    requirements = tmp_path_factory.mktemp("default-env") / "requirements.txt"
    requirements.write_text(DEFAULT_REQUIREMENTS)
    with BinderStack(
        extra_args=["--auth", "dev"],
        config=CONFIG.format(requirements=str(requirements)),
        env={DEV_PASSWORD_ENV: secrets.token_hex(8)},
    ) as running:
        yield running


def gateway_for(stack: BinderStack, token: str) -> Gateway:
    tcp_address = json.loads((stack.data_dir / "dask-gateway" / "dask_gateway_config.json").read_text())["Proxy"]["tcp_address"]
    address = f"{stack.url}/services/dask-gateway"
    wait_for_gateway(address)
    return Gateway(address=address, proxy_address=f"gateway://{tcp_address}", auth=JupyterHubAuth(api_token=token))


def test_up_reports_the_gateway(stack):
    assert "dask-gateway: on for logged-in users" in stack.log_tail(10_000)


def test_clusters_wait_for_the_default_environment_saying_so(stack):
    assert hub_api(stack, "POST", "users/bob").status_code == 201
    with gateway_for(stack, user_token(stack, "bob")) as gateway:
        # bob's token reaches the gateway: listing works, creating says why it cannot yet
        assert gateway.list_clusters() == []
        with pytest.raises(ValueError, match="default bioimage environment, which is not built yet: start a session"):
            gateway.new_cluster()


@pytest.mark.timeout(900)
async def test_a_notebook_computes_on_a_gateway_cluster(stack):
    started = start_from_api(stack, "alice", {"environment": "default"})  # builds the default environment
    assert started.status_code in (201, 202), started.text
    wait_until_ready(stack, "alice", timeout=600)
    seen = json.loads(await run_cell(f"{stack.url}/user/alice/", user_token(stack, "alice"), NOTEBOOK, timeout=400))
    assert seen["total"] == 1_000_000
    nobody = pwd.getpwnam("nobody").pw_uid
    # the worker ran as the cluster user, in the very environment of the notebook
    assert seen["workers"] == [[nobody, seen["prefix"]]]
    assert seen["uid"] != nobody
