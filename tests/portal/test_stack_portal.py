"""The complete login portal on the whole stack (`bia-binder up --auth dev`, sandboxed), with the real
portal environments built from their lock files once for the module (uv's cache is shared by the run):

- the default environment's kernels each run a cell in a logged-in session (R, Octave, Kotlin, Bash),
  ImageJ measures a synthetic image from Python, ImJoy is installed and off;
- the deep-learning environment runs a cellpose model from a weights directory the test fills;
- the home is encrypted at rest: ciphertext while stopped, readable while running, never opened by
  another user's session, opened again after `up` restarts, quota kept;
- pages make no request off the origin (Playwright), and the logs hold no e-mail address.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import re
import secrets
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from bia_binder.builder import EnvBuilder
from bia_binder.environments import default as portal_environments
from tests.kernel import run_cell
from tests.stack import PROJECT_ROOT, BinderStack, hub_api

from .test_stack_login import logged_in_client, start_from_api, user_token, wait_until_stopped

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

PASSWORD = secrets.token_hex(8)
TIMINGS = PROJECT_ROOT / "test-artifacts" / "portal-timings.json"
SECRET_NAME = "cohort-results-7f3a.txt"
SECRET_TEXT = "plain-text-finding-" + secrets.token_hex(6)
EMAIL = re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

CONFIG = """
c.HomeManager.quota = "64M"
c.BinderSpawner.models_dir = {models!r}
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 2}}
c.EnvBuilder.build_timeout = 1500
c.ResourceProfiles.logged_in = [
    {{"slug": "small", "display_name": "Small", "mem_limit": "6G", "cpu_limit": 2, "storage": "persistent"}},
]
"""


def record_timing(name: str, seconds: float) -> None:
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    timings = json.loads(TIMINGS.read_text()) if TIMINGS.exists() else {}
    timings[name] = round(seconds, 1)
    TIMINGS.write_text(json.dumps(timings, indent=2) + "\n")


def start_stack(data_dir: Path, models: Path) -> BinderStack:
    return BinderStack(
        data_dir=data_dir,
        extra_args=["--auth", "dev"],
        config=CONFIG.format(models=str(models)),
        env={"BIA_BINDER_DEV_PASSWORD": PASSWORD},
    ).start(timeout=600)  # two shared cores under other engineers' load: a start can take minutes


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, models_dir):
    data_dir = tmp_path_factory.mktemp("portal-stack")
    running = start_stack(data_dir, models_dir)
    holder = {"stack": running}
    yield holder
    holder["stack"].stop()


def wait_ready(stack: BinderStack, username: str, timeout: float = 1500) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        server = hub_api(stack, "GET", f"users/{username}").json()["servers"].get("")
        if server is None:
            raise AssertionError(f"the server of {username} failed to start:\n{stack.log_tail(80)}")
        if server["ready"]:
            return
        time.sleep(1)
    raise TimeoutError(f"the server of {username} did not become ready:\n{stack.log_tail()}")


def start_session(stack: BinderStack, username: str, environment: str) -> str:
    """Start ``username``'s session in ``environment``; its token."""
    started = start_from_api(stack, username, {"profile": "small", "environment": environment})
    assert started.status_code in (201, 202), started.text
    wait_ready(stack, username)
    return user_token(stack, username)


def stop_session(stack: BinderStack, username: str) -> None:
    assert hub_api(stack, "DELETE", f"users/{username}/server").status_code in (202, 204)
    wait_until_stopped(stack, username, timeout=120)


@pytest.fixture(scope="module")
def ada(stack):
    """ada's session in the default environment (its first build is the cost of this module)."""
    started = time.monotonic()
    token = start_session(stack["stack"], "ada", "default")
    record_timing("default environment: build (if not cached) + first session start, s", time.monotonic() - started)
    return token


def url(stack: BinderStack, username: str) -> str:
    return f"{stack.url}/user/{username}/"


# --- kernels --------------------------------------------------------------------------------------


def test_every_kernel_is_listed(stack, ada):
    specs = httpx.get(f"{url(stack['stack'], 'ada')}api/kernelspecs", headers={"Authorization": f"token {ada}"}, timeout=30)
    names = set(specs.json()["kernelspecs"])
    assert {"python3", "ir", "octave", "kotlin", "bash"} <= names, names


@pytest.mark.parametrize(
    ("kernel", "code", "expected"),
    [
        ("ir", "sum(1:10)", "[1] 55"),
        ("octave", "sum(1:10)", "ans = 55"),
        ("kotlin", "(1..10).sum() * 2", "110"),
        # the bash kernel, and the terminal's rclone (the host's, on the session's PATH)
        ("bash", "echo $((6 * 7)) $(rclone version | head -1 | cut -d' ' -f1)", "42 rclone"),
    ],
)
async def test_kernel_runs_a_cell(stack, ada, kernel, code, expected):
    started = time.monotonic()
    output = await run_cell(url(stack["stack"], "ada"), ada, code, timeout=480, kernel_name=kernel, results=True)
    record_timing(f"kernel {kernel}: start + first cell, s", time.monotonic() - started)
    assert expected in output, output


IMAGEJ = """
import numpy as np, tifffile, json
from bia_binder import imagej
image = np.zeros((64, 48), dtype=np.uint16)
image[16:48, 8:40] = 1000          # a bright square: mean = 1000 * 32*32 / (64*48)
tifffile.imwrite("synthetic.tif", image)
IJ = imagej.start()
imp = IJ.openImage("synthetic.tif")
print(json.dumps({"mean": imp.getStatistics().mean, "expected": float(image.mean()),
                  "from_numpy": imagej.from_numpy(image).getStatistics().mean, "version": str(IJ.getVersion())}))
"""


async def test_imagej_measures_a_synthetic_image_offline(stack, ada):
    seen = json.loads(await run_cell(url(stack["stack"], "ada"), ada, IMAGEJ, timeout=180))
    assert seen["mean"] == pytest.approx(seen["expected"]) == pytest.approx(1000 * 32 * 32 / (64 * 48))
    assert seen["from_numpy"] == pytest.approx(seen["expected"])
    assert seen["version"].startswith("1.")  # Debian's ImageJ, no Maven download (the session has no network)


def test_imjoy_is_installed_and_off_by_default(stack, ada):
    page = httpx.get(f"{url(stack['stack'], 'ada')}lab", headers={"Authorization": f"token {ada}"}, timeout=60)
    assert page.status_code == 200
    config = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', page.text, re.S)[1])
    installed = {extension["name"] for extension in config["federated_extensions"]}
    assert "imjoy-jupyterlab-extension" in installed
    assert "imjoy-jupyterlab-extension" in config["disabledExtensions"]


OMERO = """
import os, shutil, socket
home_used = shutil.disk_usage(os.environ["HOME"]).used
import Ice, omero, ezomero
probe = socket.socket(); probe.bind(("127.0.0.1", 0)); port = probe.getsockname()[1]; probe.close()
client = omero.client("127.0.0.1", port)  # nobody listens there: Ice itself must say so
try:
    client.createSession("public", "public")
except Ice.ConnectionRefusedException:
    print("refused", Ice.stringVersion())
finally:
    client.__del__()
print("home grew by", (shutil.disk_usage(os.environ["HOME"]).used - home_used) // 2**20, "MiB")
"""


async def test_omero_client_runs_on_its_ice_runtime(stack, ada):
    # the compiled IcePy extension (the wheel `make omero-wheels` built) loads and really connects; its
    # bytecode was compiled at build time (uncompiled, `import omero` wrote 30 MB of .pyc into the home)
    assert await run_cell(url(stack["stack"], "ada"), ada, OMERO, timeout=120) == "refused 3.6.5\nhome grew by 0 MiB\n"


# --- encrypted home -------------------------------------------------------------------------------


async def test_home_is_readable_while_running_and_quota_holds(stack, ada):
    running = stack["stack"]
    code = f"open({SECRET_NAME!r}, 'w').write({SECRET_TEXT!r}); print(open({SECRET_NAME!r}).read())"
    assert await run_cell(url(running, "ada"), ada, code) == SECRET_TEXT + "\n"
    fill = (
        "import errno\ntry:\n    with open('fill.bin', 'wb') as f:\n        for _ in range(128): f.write(b'x' * 2**20); f.flush()\n"
        "except OSError as e:\n    print(errno.errorcode[e.errno])\nimport os; os.remove('fill.bin')"
    )
    assert (await run_cell(url(running, "ada"), ada, fill)).strip() == "ENOSPC"
    mount_point = running.data_dir / "homes" / "mnt" / "ada"
    assert os.path.ismount(mount_point) and (mount_point / "home" / SECRET_NAME).read_text() == SECRET_TEXT


def test_a_stopped_home_is_ciphertext(stack, ada):
    running = stack["stack"]
    stop_session(running, "ada")
    mount_point = running.data_dir / "homes" / "mnt" / "ada"
    assert not os.path.ismount(mount_point)
    raw = (running.data_dir / "homes" / "images" / "ada.img").read_bytes()
    assert SECRET_NAME.encode() not in raw and SECRET_TEXT.encode() not in raw
    # the operator mounts the image: names are scrambled and contents refused without the key
    subprocess.run(["mount", "-o", "loop,ro", str(running.data_dir / "homes" / "images" / "ada.img"), str(mount_point)], check=True)
    try:
        names = os.listdir(mount_point / "home")
        assert names and not {SECRET_NAME, ".jupyter", ".local"} & set(names)  # names are ciphertext too
        files = [mount_point / "home" / name for name in names if (mount_point / "home" / name).is_file()]
        assert files  # the secret, at least
        for file in files:
            with pytest.raises(OSError) as refused:
                file.read_bytes()
            assert refused.value.errno == errno.ENOKEY
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)


async def test_another_users_session_never_opens_it(stack):
    running = stack["stack"]
    token = start_session(running, "bea", "default")
    homes = running.data_dir / "homes"
    probe = f"""
import json, os
hits = []
for top in ("/home", "/mnt", "/media", "/srv", "/var/lib"):
    for folder, _dirs, files in os.walk(top, onerror=lambda error: None):
        hits += [os.path.join(folder, name) for name in files if name == {SECRET_NAME!r}]
print(json.dumps({{"hits": hits, "ada_home": os.path.exists({str(homes / "mnt" / "ada" / "home")!r}),
                  "ada_image": os.path.exists({str(homes / "images" / "ada.img")!r}),
                  "ada_key": os.path.exists({str(homes / "keys" / "ada.key")!r})}}))
"""
    seen = json.loads(await run_cell(url(running, "bea"), token, probe, timeout=300))
    assert seen == {"hits": [], "ada_home": False, "ada_image": False, "ada_key": False}
    assert not os.path.ismount(running.data_dir / "homes" / "mnt" / "ada")  # ada's image stays closed meanwhile
    stop_session(running, "bea")


async def test_the_home_opens_again_after_up_restarts(stack, models_dir):
    old = stack["stack"]
    old.stop()  # `up` and the hub stop; the data dir, keys and environments stay
    restarted = start_stack(old.data_dir, models_dir)
    stack["stack"] = restarted
    token = start_session(restarted, "ada", "default")
    assert await run_cell(url(restarted, "ada"), token, f"print(open({SECRET_NAME!r}).read())") == SECRET_TEXT + "\n"
    stop_session(restarted, "ada")


# --- deep learning --------------------------------------------------------------------------------

TINY_MODEL = """
import sys, torch
from cellpose import resnet_torch
torch.manual_seed(0)
# cellpose 3's architecture (CellposeModel builds this one), random weights: proves the loading path only
net = resnet_torch.CPnet([2, 32, 64, 128, 256], 3, sz=3, mkldnn=False, max_pool=True, diam_mean=30.0)
net.save_model(sys.argv[1])
"""

RUN_MODEL = """
import json, numpy as np, torch
from bia_binder import models
image = np.zeros((64, 64), dtype=np.float32)
image[20:40, 20:40] = 1.0
model = models.cellpose("tiny", gpu=False, nchan=2)
masks, flows, styles = model.eval(image, channels=[0, 0], diameter=30, compute_masks=True)
try:
    models.cellpose("cyto3")
    missing = ""
except models.ModelNotFound as e:
    missing = str(e)
import bioimageio.core
from stardist.models import Config2D, StarDist2D   # TensorFlow (CPU) beside torch
config = Config2D(n_rays=8, grid=(2, 2), n_channel_in=1, unet_n_depth=1, unet_n_filter_base=4)
labels, _ = StarDist2D(config, name=None, basedir=None).predict_instances(image)
print(json.dumps({"torch": torch.__version__, "shape": list(masks.shape), "cuda": torch.cuda.is_available(),
                  "missing": missing, "stardist_shape": list(labels.shape)}))
"""


def deep_learning_python(stack: BinderStack) -> Path:
    path = Path(portal_environments.DEEP_LEARNING_REQUIREMENTS)
    builder = EnvBuilder(cache_dir=str(stack.data_dir / "envs"))
    key = portal_environments.environment_key(
        builder, portal_environments.read_requirements(path), portal_environments.read_post_build(path)
    )
    return stack.data_dir / "envs" / key / "env" / "bin" / "python"


def torch_wheels_at_hand() -> bool:
    """A torch wheel in one of the builder's default find-links directories (PyPI's torch is CUDA's)."""
    with tempfile.TemporaryDirectory(prefix="find-links-") as scratch:
        find_links = EnvBuilder(cache_dir=scratch).find_links
    return any(next(Path(directory).glob("torch-*.whl"), None) for directory in find_links)


@pytest.mark.skipif(not torch_wheels_at_hand(), reason="no local torch CPU wheels (c.EnvBuilder.find_links, /opt/wheels)")
async def test_deep_learning_environment_runs_a_local_model(stack, models_dir):
    running = stack["stack"]
    started = time.monotonic()
    token = start_session(running, "turing", "deeplearning")
    record_timing("deep-learning environment: build (if not cached) + session start, s", time.monotonic() - started)
    # the operator's models directory: a tiny cellpose network made with the environment's own torch
    (models_dir / "cellpose").mkdir(exist_ok=True)
    python = deep_learning_python(running)
    subprocess.run([str(python), "-c", TINY_MODEL, str(models_dir / "cellpose" / "tiny")], check=True, timeout=300)
    output = await run_cell(url(running, "turing"), token, RUN_MODEL, timeout=300)
    # the cell's streams hold the libraries' own chatter too (cellpose's and TensorFlow's warnings,
    # StarDist's "Using default values"): the answer is the last line the cell prints
    seen = json.loads(output.strip().splitlines()[-1])
    assert seen["torch"].endswith("+cpu") and seen["shape"] == [64, 64] and seen["cuda"] is False
    assert seen["stardist_shape"] == [64, 64]
    assert str(models_dir / "cellpose" / "cyto3") in seen["missing"] and "\n" not in seen["missing"]
    stop_session(running, "turing")


# --- privacy --------------------------------------------------------------------------------------


async def test_pages_make_no_request_off_the_origin(stack):
    from playwright.async_api import async_playwright

    from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, PageWatch, new_context

    running = stack["stack"]
    token = start_session(running, "cleo", "default")
    assert token
    watch = PageWatch()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=120_000)
        try:
            context = await new_context(browser, watch)
            page = await context.new_page()
            await page.goto(f"{running.url}/hub/login")
            await page.fill("input[name=username]", "cleo")
            await page.fill("input[name=password]", PASSWORD)
            await page.click("input[type=submit], button[type=submit]")
            await page.wait_for_load_state("networkidle")
            for path in ("/hub/home", "/user/cleo/lab", "/hub/token"):
                await page.goto(f"{running.url}{path}")
                await page.wait_for_load_state("networkidle", timeout=120_000)
            await asyncio.sleep(3)  # what JupyterLab asks for after it settles (news, update checks)
            lab_requests = [r for r in watch.requests if "/user/cleo/" in r]
        finally:
            await browser.close()
    assert lab_requests, "JupyterLab did not load"
    assert watch.off_host_requests() == []
    stop_session(running, "cleo")


def test_up_says_homes_are_encrypted(stack):
    from bia_binder.portal.encryption import host_support

    expected = "home encryption: on:" if host_support() is None else "home encryption: off:"
    assert expected in stack["stack"].log_path.read_text(errors="replace")


def test_logs_hold_no_email_address(stack):
    running = stack["stack"]
    logs = [running.log_path, *running.data_dir.glob("sessions/.*.log")]
    found = {}
    for log in logs:
        hits = {m.group().decode() for m in EMAIL.finditer(log.read_bytes())}
        if hits:
            found[log.name] = sorted(hits)[:5]
    assert len(logs) > 1 and found == {}
