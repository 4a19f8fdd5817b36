"""rclone in every session, with the EBI's public data already configured as remotes.

Remotes in the generated ``rclone.conf`` (all anonymous, read-only in practice):

``biostudies:``  BioStudies' public HTTP mirror of its FTP area (``https://ftp.ebi.ac.uk/biostudies/``)
``ebi-s3:``      EBI's S3 endpoint (``https://livingobjects.ebi.ac.uk``), anonymous
``bia:``         alias of ``ebi-s3:bioimaging-integrator-data`` (BioImage Archive's OME-Zarr)
``idr:``         alias of ``ebi-s3:idr``

so a user types ``rclone copy bia:S-BIAD609/... ~/data``. The hub configuration calls::

    from bia_binder.portal.rclone import configure_rclone
    configure_rclone(c, "/var/lib/bia-binder/rclone.conf")

which writes the file and points every session at it (``RCLONE_CONFIG``). A user's own
``rclone config`` changes need a writable copy: ``cp $RCLONE_CONFIG ~/.rclone.conf`` and
``export RCLONE_CONFIG=~/.rclone.conf``. The rclone binary is Debian's package (``make install``).
"""

from __future__ import annotations

import configparser
import io
import os
from pathlib import Path

from traitlets import Dict, Unicode
from traitlets.config import Config, LoggingConfigurable

RCLONE_CONFIG_ENV = "RCLONE_CONFIG"


class RcloneRemotes(LoggingConfigurable):
    """The remotes every session's rclone knows."""

    biostudies_url = Unicode(
        "https://ftp.ebi.ac.uk/biostudies/",
        help="Base URL of BioStudies' public HTTP file mirror (the `biostudies:` remote).",
    ).tag(config=True)

    s3_endpoint = Unicode(
        "https://livingobjects.ebi.ac.uk",
        help="EBI's S3-compatible endpoint, read anonymously (the `ebi-s3:` remote).",
    ).tag(config=True)

    s3_bucket_aliases = Dict(
        {"bia": "bioimaging-integrator-data", "idr": "idr"},
        help="Short remote names for buckets on the EBI S3 endpoint: {remote name: bucket}.",
    ).tag(config=True)

    extra_remotes = Dict(
        {},
        help="More remotes, as rclone.conf sections: {name: {option: value}} (e.g. a lab's own S3).",
    ).tag(config=True)

    def sections(self) -> dict[str, dict[str, str]]:
        remotes: dict[str, dict[str, str]] = {
            "biostudies": {"type": "http", "url": self.biostudies_url},
            "ebi-s3": {
                "type": "s3",
                "provider": "Other",
                "endpoint": self.s3_endpoint,
                # no keys and no env_auth: rclone then sends unsigned (anonymous) requests
                "env_auth": "false",
                "force_path_style": "true",
            },
        }
        for alias, bucket in self.s3_bucket_aliases.items():
            remotes[alias] = {"type": "alias", "remote": f"ebi-s3:{bucket}"}
        for name, options in self.extra_remotes.items():
            remotes[name] = {key: str(value) for key, value in options.items()}
        return remotes

    def config_text(self) -> str:
        parser = configparser.ConfigParser(interpolation=None)
        parser.read_dict(self.sections())
        out = io.StringIO()
        parser.write(out)
        return out.getvalue()

    def write(self, path: Path | str) -> Path:
        """Write the config (world-readable: it holds no secrets) atomically to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(self.config_text())
        partial.chmod(0o644)
        os.replace(partial, path)
        return path


def configure_rclone(c: Config, config_path: Path | str, remotes: RcloneRemotes | None = None) -> Path:
    """Write ``rclone.conf`` at ``config_path`` (from ``c.RcloneRemotes``) and give every session ``RCLONE_CONFIG``."""
    remotes = remotes or RcloneRemotes(config=c)
    path = remotes.write(config_path)
    c.Spawner.environment.update({RCLONE_CONFIG_ENV: str(path)})
    return path
