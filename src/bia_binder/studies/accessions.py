"""What a study launch names, checked before anything else happens.

``/v2/bia/S-BIAD609``, ``/v2/idr/idr0062A``, ``/v2/idr/image/6001247``, ``/v2/biostudies/S-BSST7``,
each optionally followed by ``/<pin>`` (a permanent link: study version, metadata hash, notebook
template version, environment lock). Every part is matched whole against a strict pattern: an
accession or id carrying quotes, newlines, spaces or code is refused here with a 400, before any
request to an archive, and what passes can only ever be letters, digits and dashes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from ..events import LaunchError

BIA_ACCESSION = re.compile(r"S-(?:BIAD|BSST)\d{1,9}")
BIOSTUDIES_ACCESSION = re.compile(r"S-[A-Z]{2,6}\d{1,9}|E-[A-Z]{4}-\d{1,9}")
IDR_STUDY = re.compile(r"idr\d{4}[A-Z]?")
IDR_KINDS = ("project", "screen", "dataset", "plate", "image")
IDR_ID = re.compile(r"[1-9]\d{0,17}")
#: v<study version>-<metadata hash>-t<template version>-e<environment lock hash>
PIN = re.compile(r"v(?P<version>\d{1,9})-(?P<metadata>[0-9a-f]{12})-t(?P<template>\d{1,4})-e(?P<lock>[0-9a-f]{12})")
#: ``image=`` of a launch link: a BIA image uuid or an IDR image id
IMAGE_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: the only query keys a study launch link may carry
QUERY_KEYS = ("labpath", "urlpath", "image")

EXAMPLES = {
    "bia": "S-BIAD609 or S-BSST7",
    "idr": "idr0062A, or project/, screen/, dataset/, plate/ or image/ followed by a number",
    "biostudies": "S-BSST7 or S-BIAD609",
}


class BadStudySpec(LaunchError):
    def __init__(self, message: str):
        super().__init__(message, 400)


@dataclass(frozen=True)
class Pin:
    version: int
    metadata: str  # first 12 hex digits of the metadata snapshot's sha256
    template: int
    lock: str  # first 12 hex digits of the environment lock's sha256

    def __str__(self) -> str:
        return f"v{self.version}-{self.metadata}-t{self.template}-e{self.lock}"

    @classmethod
    def parse(cls, text: str) -> Pin:
        match = PIN.fullmatch(text)
        if not match:
            raise BadStudySpec(f"{shown(text)} is not a permanent-link pin (like v0-0123456789ab-t1-e0123456789ab)")
        return cls(int(match["version"]), match["metadata"], int(match["template"]), match["lock"])


@dataclass(frozen=True)
class StudySpec:
    """A validated study reference: ``source`` (bia, idr, biostudies), ``kind`` and ``identifier``."""

    source: str
    kind: str  # "study" (BIA/BioStudies accession, IDR idrNNNNA) or an IDR object kind
    identifier: str
    pin: Pin | None = None

    @property
    def path(self) -> str:
        """The spec without its pin: ``S-BIAD609``, ``image/6001247``."""
        return self.identifier if self.kind == "study" else f"{self.kind}/{self.identifier}"

    @property
    def name(self) -> str:
        """A name for files and users: ``S-BIAD609``, ``idr0062A``, ``idr-image-6001247``."""
        return self.identifier if self.kind == "study" else f"idr-{self.kind}-{self.identifier}"

    def pinned(self, pin: Pin) -> StudySpec:
        return StudySpec(self.source, self.kind, self.identifier, pin)

    def persistent(self, pin: Pin) -> str:
        return f"{self.path}/{pin}"


def shown(text: str, limit: int = 60) -> str:
    """``text`` quoted for a message: control characters visible, long input cut."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return repr(cut)


def parse(source: str, raw_spec: str) -> StudySpec:
    """The study ``raw_spec`` (as sent, percent-escapes and all) names at ``source``; BadStudySpec otherwise."""
    spec = unquote(raw_spec)
    parts = spec.split("/")
    pin = None
    if source == "idr":
        kind, rest = ("study", parts) if parts and parts[0] not in IDR_KINDS else (parts[0], parts[1:])
        if kind == "study":
            identifier, rest = (rest[0], rest[1:]) if rest else ("", [])
            ok = IDR_STUDY.fullmatch(identifier) is not None
        else:
            identifier, rest = (rest[0], rest[1:]) if rest else ("", [])
            ok = IDR_ID.fullmatch(identifier) is not None
    elif source in ("bia", "biostudies"):
        kind, identifier, rest = "study", parts[0], parts[1:]
        pattern = BIA_ACCESSION if source == "bia" else BIOSTUDIES_ACCESSION
        ok = pattern.fullmatch(identifier) is not None
    else:
        raise LaunchError(f"Unknown study source {source!r}: use bia, idr or biostudies", 404)
    if not ok:
        raise BadStudySpec(f"{shown(spec)} is not a {source} study: give e.g. {EXAMPLES[source]}")
    if len(rest) > 1:
        raise BadStudySpec(f"{shown(spec)} is not a {source} study (and pin): give e.g. {EXAMPLES[source]}")
    if rest:
        pin = Pin.parse(rest[0])
    return StudySpec(source, kind, identifier, pin)


def image_parameter(value: str) -> str:
    """``image=`` checked: a BIA image uuid or an IDR image id, else BadStudySpec."""
    if value == "" or IMAGE_UUID.fullmatch(value) or IDR_ID.fullmatch(value):
        return value
    raise BadStudySpec(f"image={shown(value)} must be a BIA image uuid or an IDR image id (digits only)")


def query_parameters(arguments: dict[str, list[bytes]]) -> None:
    """Refuse every query key but ``labpath``, ``urlpath`` and ``image`` (and repeated keys)."""
    unknown = sorted(set(arguments) - set(QUERY_KEYS))
    if unknown:
        raise BadStudySpec(
            f"Unknown query parameter {shown(unknown[0])}: a study link accepts only {', '.join(QUERY_KEYS)}"
        )
    repeated = [key for key, values in arguments.items() if len(values) > 1]
    if repeated:
        raise BadStudySpec(f"Query parameter {repeated[0]} is given more than once")
