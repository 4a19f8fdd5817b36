"""IDR studies and objects: ``/v2/idr/<idrNNNN[A-Z]>`` and ``/v2/idr/{project,screen,dataset,plate,image}/<id>``."""

from __future__ import annotations

from .archive import ArchiveProvider


class IDRProvider(ArchiveProvider):
    name = "idr"
    archive = "IDR"
    display_config = {
        "displayName": "IDR study or object",
        "id": "idr",
        "spec": {"validateRegex": r"idr\d{4}[A-Z]?|(project|screen|dataset|plate|image)/\d+"},
        "detect": {"regex": r"^(?<repo>idr\d{4}[A-Z]?|(project|screen|dataset|plate|image)/\d+)$"},
        "repo": {"label": "IDR study or object", "placeholder": "example: idr0062A or image/6001247", "urlEncode": False},
        "ref": {"enabled": False},
    }
