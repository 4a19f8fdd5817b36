"""Public bioimage data without downloading first: BioStudies, the BioImage Archive, IDR, OME-Zarr.

>>> from bia_binder import data
>>> data.biostudies.study("S-BIAD609").files()
>>> data.bia.study("S-BIAD609").images()
>>> data.idr.image(6001247).to_dask(level=0)
>>> data.open_ome_zarr("s3://idr/zarr/v0.4/idr0062A/6001247.zarr")

Endpoints default to the public services; override per call (``url=``) or with
``BIA_BINDER_BIOSTUDIES_URL``, ``BIA_BINDER_BIA_API_URL``, ``BIA_BINDER_IDR_URL`` and
``BIA_BINDER_S3_ENDPOINT``. Every request is retried on 5xx and timeouts with backoff
(``BIA_BINDER_HTTP_TIMEOUT`` seconds, ``BIA_BINDER_HTTP_RETRIES``, ``BIA_BINDER_HTTP_BACKOFF``,
``BIA_BINDER_HTTP_CONNECTIONS``), then fails with an error saying what was asked for. A whole
level of plain chunks is read by ``BIA_BINDER_FETCH_THREADS`` threads (default 64; 0 leaves it to
zarr); other layouts (sharded, filtered) as slabs on ``BIA_BINDER_READ_LOOPS`` event loops at once
(default 4).

This package needs only the ``data`` extra (zarr, dask, httpx, aiohttp, numpy, tqdm), never
the service's dependencies.
"""

from . import _requirements

_requirements.check()  # before the imports below: one clear line where the repository's pins won

from . import bia, biostudies, idr  # noqa: E402
from ._http import DataAccessError, MalformedResponseError, NotFoundError  # noqa: E402
from .omezarr import MetadataError, open_ome_zarr  # noqa: E402

__all__ = [
    "DataAccessError",
    "MalformedResponseError",
    "MetadataError",
    "NotFoundError",
    "bia",
    "biostudies",
    "idr",
    "open_ome_zarr",
]
