"""Rendering our chart offline: the upstream charts from shared/reference-data stand in for `helm dependency build`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml

from tests.stack import PROJECT_ROOT

CHART = PROJECT_ROOT / "deploy" / "helm" / "bia-binder"
REFERENCE_CHARTS = PROJECT_ROOT.parent / "shared" / "reference-data" / "charts"
SUBCHARTS = ("jupyterhub", "dask-gateway")


def chart_with_dependencies(workdir: Path) -> Path:
    """A copy of our chart with the upstream charts in its charts/ (what `helm dependency build` would put there)."""
    chart = workdir / "bia-binder"
    shutil.copytree(CHART, chart, ignore=shutil.ignore_patterns("charts"))
    for name in SUBCHARTS:
        shutil.copytree(REFERENCE_CHARTS / name, chart / "charts" / name)
    return chart


def render(chart: helm.Chart, values: dict[str, Any], namespace: str = "binder") -> list[dict[str, Any]]:
    """Every object the chart renders for ``values`` (templates and CRDs), each with its template path."""
    manifests = chart.render(values, name="bia-binder", namespace=namespace, is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith((".yaml", ".yml")):
            continue  # NOTES.txt
        for document in yaml.safe_load_all(text):
            if document:
                objects.append({"template": path, "object": document})
    for crd in chart.crds:
        for document in yaml.safe_load_all(crd["data"]):
            if document:
                objects.append({"template": crd["filename"], "object": document})
    return objects


def by_kind(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [
        o["object"]
        for o in objects
        if o["object"]["kind"] == kind and (name is None or o["object"]["metadata"]["name"] == name)
    ]
