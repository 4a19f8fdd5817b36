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
    if not path.exists():
        raise ModelNotFound(
            f"{tool} model {name!r} is not installed: the operator puts its weights at {path} "
            f"(the models directory, c.BinderSpawner.models_dir); sessions cannot download models"
        )
    return path


def cellpose(name: str, **kwargs):
    """A ``cellpose.models.CellposeModel`` with the local weights ``name`` (CPU unless ``gpu=True``)."""
    from cellpose import models as cellpose_models

    return cellpose_models.CellposeModel(pretrained_model=str(weights("cellpose", name)), **kwargs)
