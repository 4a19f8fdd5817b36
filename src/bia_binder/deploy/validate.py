"""Checks of the jupyterhub (z2jh) values that the chart itself lets through.

z2jh validates values against its ``values.schema.yaml``, but ``hub.config`` is free-form there:
any section goes, and a misplaced one is silently ignored by the hub. A deployment that put
``singleuser`` under ``hub.config`` advertised limits that never applied. :func:`check_jupyterhub_values`
runs the schema and then demands that every ``hub.config`` section be a traitlets class name that
JupyterHub or KubeSpawner reads, so that mistake fails before anything is installed.
"""

from __future__ import annotations

import re
from typing import Any

import jsonschema

#: a traitlets Configurable's name (JupyterHub, KubeSpawner, GenericOAuthenticator...)
CLASS_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
#: top-level keys of the z2jh chart: one of these under hub.config is a value in the wrong place
Z2JH_TOP_LEVEL = {"hub", "proxy", "singleuser", "scheduling", "cull", "prePuller", "ingress", "rbac", "debug", "custom"}


class ValuesError(ValueError):
    """Values the chart would accept but that do not do what they say; the message lists every problem."""


def hub_config_mistakes(jupyterhub_values: dict[str, Any]) -> list[str]:
    """Sections of ``hub.config`` that no Configurable reads (each a one-line explanation)."""
    problems = []
    for section in (jupyterhub_values.get("hub", {}).get("config") or {}):
        if section in Z2JH_TOP_LEVEL:
            problems.append(
                f"hub.config.{section}: '{section}' is a top-level key of the jupyterhub chart; under hub.config it is "
                f"ignored (move it to jupyterhub.{section})"
            )
        elif not CLASS_NAME.match(section):
            problems.append(
                f"hub.config.{section}: hub.config sections are Configurable class names (e.g. JupyterHub, "
                "KubeSpawner); this one would be ignored"
            )
    return problems


def schema_errors(values: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Violations of the z2jh schema by ``values`` (the chart's defaults merged with ours, as Helm checks them)."""
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(top level)'}: {error.message}"
        for error in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))
    ]


def check_jupyterhub_values(merged_values: dict[str, Any], schema: dict[str, Any] | None = None) -> None:
    """Raise :class:`ValuesError` naming every problem: schema violations (when ``schema`` is given), then
    ``hub.config`` sections that would be ignored."""
    problems = (schema_errors(merged_values, schema) if schema is not None else []) + hub_config_mistakes(merged_values)
    if problems:
        raise ValuesError("jupyterhub values: " + "; ".join(problems))
