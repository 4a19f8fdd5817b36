"""The portal's ready-made environments without building them: locks complete and in step with their
requirements.in, keys that follow the lock and postBuild, the spawn form's choices, models' messages."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bia_binder import models
from bia_binder.builder import EnvBuilder
from bia_binder.environments import default as portal_environments
from bia_binder.events import LaunchError
from bia_binder.portal.options import JULIA_NOTE, options_from_form, parse_session_options, render_options_form
from bia_binder.sessions.profiles import ResourceProfiles

ENVIRONMENTS = Path(portal_environments.__file__).parent
LOCKED = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requested(requirements_in: Path) -> set[str]:
    names = set()
    for line in requirements_in.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(normalized(re.split(r"[<>=!~\[; ]", line)[0]))
    return names


@pytest.mark.parametrize("name", ["bioimage", "deeplearning"])
def test_every_requested_package_is_pinned_in_the_lock(name):
    lock = (ENVIRONMENTS / name / "requirements.txt").read_text().splitlines()
    pins = {normalized(m[1]): m[2] for line in lock if (m := LOCKED.match(line))}
    assert requested(ENVIRONMENTS / name / "requirements.in") <= set(pins)
    # and the packages the builder adds to every session, so that the lock decides their versions too
    for package in EnvBuilder().session_packages:
        assert normalized(re.split(r"[<>=!~\[; ]", package)[0]) in pins, package
    assert all(LOCKED.match(line) or not line.split("#")[0].strip() for line in lock), "only pins in a lock"


def test_deep_learning_lock_takes_torch_from_local_cpu_wheels():
    lock = (ENVIRONMENTS / "deeplearning" / "requirements.txt").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu\b", lock, re.M)
    assert not re.search(r"^nvidia-", lock, re.M)  # no CUDA libraries


def test_key_follows_the_lock_and_the_post_build(tmp_path):
    builder = EnvBuilder(cache_dir=str(tmp_path))
    plain = portal_environments.environment_key(builder, "six\n")
    assert plain == portal_environments.environment_key(builder, "six\n", "")
    assert plain != portal_environments.environment_key(builder, "six\n", "#!/bin/sh\necho\n")
    assert portal_environments.read_post_build(ENVIRONMENTS / "bioimage" / "requirements.txt").startswith("#!/bin/sh")
    assert portal_environments.read_post_build(tmp_path / "requirements.txt") == ""


def test_post_build_names_each_kernel_it_registers_or_why_not(tmp_path):
    """The postBuild against a bare prefix: each kernel is listed only where the host has the language."""
    prefix = tmp_path / "env"
    (prefix / "share" / "jupyter" / "kernels" / "octave").mkdir(parents=True)
    (prefix / "share" / "jupyter" / "kernels" / "kotlin").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # a python whose sys.prefix is the bare prefix; no R, octave-cli or java on PATH
    (bin_dir / "python").write_text(f"#!/bin/sh\nif [ \"$1\" = -c ]; then echo {prefix}; exit 0; fi\nexit 0\n")
    (bin_dir / "python").chmod(0o755)
    for tool in ("mkdir", "rm", "cat"):  # only these: no R, octave-cli or java on PATH
        (bin_dir / tool).symlink_to(shutil.which(tool))
    done = subprocess.run(
        ["/bin/sh", str(ENVIRONMENTS / "bioimage" / "postBuild")],
        capture_output=True, text=True, timeout=60, env={"PATH": str(bin_dir)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "no R kernel" in done.stdout and "no Octave kernel" in done.stdout and "no Kotlin kernel" in done.stdout
    assert sorted(p.name for p in (prefix / "share" / "jupyter" / "kernels").iterdir()) == []  # none shown broken
    page_config = (prefix / "etc" / "jupyter" / "labconfig" / "page_config.json").read_text()
    assert '"imjoy-jupyterlab-extension": true' in page_config


def test_deep_learning_is_a_choice_in_the_form_and_the_api():
    assert parse_session_options({"environment": "deeplearning"}).portal_environment == "deeplearning"
    assert parse_session_options({"environment": "default"}).portal_environment == "default"
    assert options_from_form({"environment": ["deeplearning"], "profile": ["gpu"]}) == {
        "profile": "gpu", "environment": "deeplearning",
    }  # fmt: skip
    with pytest.raises(LaunchError, match="neither 'default' nor a repository"):
        parse_session_options({"environment": "julia"})
    form = render_options_form(ResourceProfiles().logged_in_profiles(), ["R", "Octave", "Kotlin"])
    assert 'value="deeplearning"' in form and "kernels: Python, R, Octave, Kotlin" in form
    assert "Julia is not in this server" in form and "container builder" in JULIA_NOTE and "conda" in JULIA_NOTE
    assert "kernels:" not in render_options_form(ResourceProfiles().logged_in_profiles())  # none named before a build


def test_a_missing_model_says_in_one_line_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("BIA_BINDER_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("CELLPOSE_LOCAL_MODELS_PATH", raising=False)
    with pytest.raises(models.ModelNotFound) as missing:
        models.weights("cellpose", "cyto3")
    message = str(missing.value)
    assert str(tmp_path / "cellpose" / "cyto3") in message and "\n" not in message
    (tmp_path / "cellpose").mkdir()
    (tmp_path / "cellpose" / "cyto3").write_bytes(b"weights")
    assert models.weights("cellpose", "cyto3") == tmp_path / "cellpose" / "cyto3"


def private_models_dir(root: Path) -> Path:
    """A models directory as umask 077 leaves it (``mktemp -d``, pytest's tmp_path): nothing for other uids."""
    (root / "cellpose").mkdir(parents=True, mode=0o700)
    (root / "cellpose" / "tiny").write_bytes(b"weights")
    (root / "cellpose" / "tiny").chmod(0o600)
    root.chmod(0o700)
    return root


def weights_as_another_uid(models_dir: Path) -> subprocess.CompletedProcess:
    """``models.weights`` as a session's uid sees it (root reads anything; a session does not). The process
    gets ``models_dir`` as an open descriptor, as a session gets it as a bind mount: the permissions of
    ``models_dir`` and below count, not those of the (private) directories above it."""
    fd = os.open(models_dir, os.O_PATH | os.O_DIRECTORY)
    # the library too, as a session gets it: a checkout below a private (0700) directory is reachable so only
    # (bia_binder and its models module import nothing outside the standard library)
    library = os.open(Path(models.__file__).parents[1], os.O_PATH | os.O_DIRECTORY)
    code = "from bia_binder import models; print(models.weights('cellpose', 'tiny'))"
    try:
        return subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
            env={"BIA_BINDER_MODELS_DIR": f"/proc/self/fd/{fd}", "PYTHONPATH": f"/proc/self/fd/{library}"},
            capture_output=True, text=True, timeout=60, pass_fds=(fd, library),
        )  # fmt: skip
    finally:
        os.close(fd)
        os.close(library)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to act as another uid")
def test_a_private_models_directory_is_opened_to_sessions_read_only(tmp_path):
    root = private_models_dir(tmp_path / "models")
    secret = tmp_path / "secret"
    secret.write_text("not a model")
    secret.chmod(0o600)
    (root / "outside").symlink_to(secret)
    refused = weights_as_another_uid(root)
    assert refused.returncode != 0 and "not readable by this session" in refused.stderr
    assert "cellpose/tiny" in refused.stderr.strip().splitlines()[-1]  # one line, naming the model

    changed = models.open_to_sessions(root)
    assert sorted(changed) == sorted(str(p) for p in (root, root / "cellpose", root / "cellpose" / "tiny"))
    opened = weights_as_another_uid(root)
    assert opened.returncode == 0 and opened.stdout.strip().endswith("/cellpose/tiny"), opened.stderr
    assert (root / "cellpose" / "tiny").stat().st_mode & 0o777 == 0o604  # read only: no write, no execute
    assert root.stat().st_mode & 0o777 == 0o705
    assert secret.stat().st_mode & 0o777 == 0o600  # a symlink's target is never opened
    assert models.open_to_sessions(root) == []  # a second start changes nothing


def test_gpu_profiles_get_the_gpu_lock_and_deep_learning_sessions_the_models(tmp_path):
    from types import SimpleNamespace

    from traitlets.config import Config

    from bia_binder.sessions.spawner import BinderSpawner, model_environment

    config = Config()
    config.BinderSpawner.deep_learning_gpu_requirements = str(tmp_path / "cuda" / "requirements.txt")
    spawner = BinderSpawner(user=SimpleNamespace(name="ada", url="/user/ada/"), config=config, sessions_dir=str(tmp_path))
    profiles = {p.slug: p for p in spawner.profiles.logged_in_profiles()}
    choice = parse_session_options({"environment": "deeplearning"})
    assert spawner.portal_environment_file(choice, profiles["gpu"]) == str(tmp_path / "cuda" / "requirements.txt")
    assert spawner.portal_environment_file(choice, profiles["standard"]) == spawner.deep_learning_requirements
    default = parse_session_options({"environment": "default"})
    assert spawner.portal_environment_file(default, profiles["gpu"]) == spawner.default_environment_requirements
    assert model_environment("/models") == {
        "BIA_BINDER_MODELS_DIR": "/models", "CELLPOSE_LOCAL_MODELS_PATH": "/models/cellpose",
        "TORCH_HOME": "/models/torch", "BIOIMAGEIO_CACHE_PATH": "/models/bioimageio",
    }  # fmt: skip


def test_the_default_lock_pins_omero_and_its_ice_runtime():
    lock = (ENVIRONMENTS / "bioimage" / "requirements.txt").read_text()
    assert re.search(r"^zeroc-ice==3\.6\.5 ", lock, re.M) and re.search(r"^omero-py==", lock, re.M)
    assert re.search(r"^ezomero==", lock, re.M)


async def test_a_lock_pinning_ice_without_its_wheel_fails_at_once_naming_the_make_target(tmp_path):
    requirements = (ENVIRONMENTS / "bioimage" / "requirements.txt").read_text()
    empty = tmp_path / "wheels"
    empty.mkdir()
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"), find_links=[str(empty)])
    log: list[str] = []
    with pytest.raises(LaunchError) as refused:
        await portal_environments.cached_or_built(builder, requirements, log.append, str(tmp_path))
    assert refused.value.status_code == 503
    assert "zeroc-ice==3.6.5" in str(refused.value) and "make omero-wheels" in str(refused.value)
    assert "\n" not in str(refused.value) and not any("Building" in line for line in log)  # nothing was built
    assert not builder.lookup(portal_environments.environment_key(builder, requirements))


def test_a_find_links_directory_holding_the_ice_wheel_passes_the_check_for_that_version_only(tmp_path):
    (tmp_path / "zeroc_ice-3.6.5-cp311-cp311-linux_x86_64.whl").write_bytes(b"")
    builder = EnvBuilder(cache_dir=str(tmp_path / "envs"), find_links=[str(tmp_path)])
    portal_environments.check_wheels_at_hand(builder, "zeroc-ice==3.6.5 # via omero-py\n")  # no error
    with pytest.raises(LaunchError):
        portal_environments.check_wheels_at_hand(builder, "zeroc-ice==3.6.4 # another version\n")
