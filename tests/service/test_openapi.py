"""The OpenAPI description is valid and documents every route the service has."""

from __future__ import annotations

import json
import re

from bia_binder.service.handlers import openapi_document, routes


def documented_paths() -> set[str]:
    return set(json.loads(openapi_document())["paths"])


def test_the_description_is_openapi_3_1_with_the_launch_events():
    document = json.loads(openapi_document())
    assert document["openapi"].startswith("3.1")
    phases = document["components"]["schemas"]["LaunchEvent"]["properties"]["phase"]["enum"]
    assert phases == ["waiting", "fetching", "building", "built", "launching", "ready", "failed"]


def test_every_route_is_documented():
    paths = documented_paths()
    # a route's regex → the documented path it serves (path parameters as {name})
    for pattern, _handler in routes("/"):
        if pattern == "/?":
            continue
        documented = any(re.fullmatch(pattern, re.sub(r"\{[^}]+\}", "x", path)) for path in paths)
        assert documented, f"route {pattern} is not in openapi.yaml"
