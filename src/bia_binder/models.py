"""Model weights in a session, from the directory the operator pre-fills (sessions download nothing).

    from bia_binder import models
    model = models.cellpose("cyto3")          # cellpose.models.CellposeModel on <models>/cellpose/cyto3
    path = models.weights("bioimageio", "affable-shark")

The directory is ``c.BinderSpawner.models_dir`` (``$BIA_BINDER_MODELS_DIR`` in deep-learning
sessions), with one folder per tool; cellpose and torch also find it through their own variables
(``CELLPOSE_LOCAL_MODELS_PATH``, ``TORCH_HOME``). A missing model is one line saying where to put it.
"""

from __future__ import annotations

import os
from pathlib import Path

MODELS_DIR_ENV = "BIA_BINDER_MODELS_DIR"
DEFAULT_MODELS_DIR = "/var/lib/bia-binder/models"
#: tool → the variable that tool itself reads for its weights
TOOL_ENV = {"cellpose": "CELLPOSE_LOCAL_MODELS_PATH", "torch": "TORCH_HOME", "bioimageio": "BIOIMAGEIO_CACHE_PATH"}


class ModelNotFound(FileNotFoundError):
    """The weights are not in the models directory; the message says where they belong."""


def tool_dir(tool: str) -> Path:
    if env := os.environ.get(TOOL_ENV.get(tool, ""), ""):
        return Path(env)
    return Path(os.environ.get(MODELS_DIR_ENV) or DEFAULT_MODELS_DIR) / tool


def weights(tool: str, name: str) -> Path:
    """The path of model ``name`` of ``tool`` (a file or a folder), or :class:`ModelNotFound`."""
    path = tool_dir(tool) / name
    try:
        found = path.exists()
    except PermissionError:
        # the session runs as its own uid: weights the operator left private to root are invisible here
        raise ModelNotFound(
            f"{tool} model {name!r} at {path} is not readable by this session: the operator makes the models "
            "directory readable by other users (chmod -R a+rX, or c.BinderSpawner.open_models_dir = True)"
        ) from None
    if not found:
        raise ModelNotFound(
            f"{tool} model {name!r} is not installed: the operator puts its weights at {path} "
            f"(the models directory, c.BinderSpawner.models_dir); sessions cannot download models"
        )
    return path


def open_to_sessions(root: str | Path) -> list[str]:
    """Give "others" read access to ``root`` and what is below it (search on directories), as the hub does
    before a deep-learning session starts; the paths it changed.

    Sessions run as uids of their own and see the directory through a read-only bind mount, which keeps the
    host's permissions: a directory made with umask 077 (``mktemp -d``, a hardened root shell) would be
    invisible to them. Only read bits are added (never write, never execute on files); symlinks are left
    alone (their targets are not in the sandbox). Directories above ``root`` are not touched: the sandbox
    mounts ``root`` itself, so what other host users can reach is unchanged where those stay closed.
    """
    changed = []

    def open_one(path: str, bits: int) -> None:
        mode = os.lstat(path).st_mode
        if mode & bits != bits:
            os.chmod(path, (mode | bits) & 0o7777)
            changed.append(path)

    root = os.path.realpath(root)  # a models_dir that is a symlink: its target is what the sandbox mounts
    open_one(root, 0o005)
    for directory, dirnames, filenames in os.walk(root):
        for entry in dirnames:
            if not os.path.islink(path := os.path.join(directory, entry)):
                open_one(path, 0o005)
        for entry in filenames:
            if not os.path.islink(path := os.path.join(directory, entry)):
                open_one(path, 0o004)
    return changed


def cellpose(name: str, **kwargs):
    """A ``cellpose.models.CellposeModel`` with the local weights ``name`` (CPU unless ``gpu=True``)."""
    from cellpose import models as cellpose_models

    return cellpose_models.CellposeModel(pretrained_model=str(weights("cellpose", name)), **kwargs)
