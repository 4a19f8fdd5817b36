"""The starter notebook of a study: ``explore-<name>.ipynb``, made with nbformat from a metadata snapshot.

What comes from outside (the launch link, the archive's metadata) reaches code cells only as
quoted Python literals in the one cell tagged ``parameters`` (papermill's convention), and each
value is checked to be a plain ``str``/``int``/``bool`` before ``repr`` writes it; the cell is
parsed back and compared before the notebook is written. Every other code cell is fixed text
below, the same for every study. Titles, authors and descriptions go into Markdown, escaped.

The same snapshot, template version and parameters give the same bytes: cell ids are numbered,
nothing depends on the time, and the JSON is written with sorted keys.
"""

from __future__ import annotations

import ast
import re
from typing import Any
from urllib.parse import quote, urlsplit

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from .snapshot import first_ome_zarr

#: bump when the generated notebook changes: it is part of every permanent link
TEMPLATE_VERSION = 1

#: where the deep-learning cell looks for model weights unless the parameters say otherwise
DEFAULT_MODEL_WEIGHTS = "~/models/cellpose/cyto3"

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+!|~$&-])")


def md(text: Any) -> str:
    """``text`` as literal Markdown: one line, every character Markdown or HTML would interpret escaped."""
    flat = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", flat)


def md_link(label: str, url: str) -> str:
    """A Markdown link to an http(s) URL (anything else is shown as text, not linked)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return md(label)
    safe = quote(url, safe=":/?&=#%@+,;~")
    return f"[{md(label)}]({safe})"


def notebook_name(study_name: str) -> str:
    return f"explore-{study_name}.ipynb"


# --- the parameters cell ----------------------------------------------------------------------------

PARAMETER_COMMENTS = {
    "source": "archive: bia, idr or biostudies",
    "accession": "the study, as in its permanent link",
    "study_version": "the archive's version of the study when this notebook was made",
    "metadata_hash": "sha256 of study.json, the metadata snapshot this notebook was made from",
    "image": "the image to open first (BIA uuid or IDR id); empty: the first OME-Zarr image",
    "biostudies_accession": "where the study's files are downloaded from",
    "max_table_rows": "rows of the datasets and images table",
    "max_thumbnails": "thumbnails drawn (fetched in parallel)",
    "viewer_max_size": "the viewer shows the largest pyramid level at most this many pixels wide",
    "model_weights": "local path of the deep-learning cell's model weights",
    "permanent_link": "launches exactly this notebook in exactly this environment",
    "template_version": "version of the notebook template",
    "environment_lock": "sha256 of the environment's lock file",
}


def parameters_source(parameters: dict[str, Any]) -> str:
    """The ``parameters`` cell: one ``name = literal  # comment`` per line, checked to parse back to ``parameters``."""
    lines = ["# Parameters (papermill convention): plain literals only, filled in when the notebook was made."]
    for name, value in parameters.items():
        if not name.isidentifier() or type(value) not in (str, int, bool):
            raise ValueError(f"parameter {name!r} must be a str, int or bool, not {type(value).__name__}")
        comment = PARAMETER_COMMENTS.get(name, "")
        lines.append(f"{name} = {value!r}" + (f"  # {comment}" if comment else ""))
    source = "\n".join(lines)
    check_parameters(source, parameters)
    return source


def check_parameters(source: str, expected: dict[str, Any]) -> None:
    """Only ``name = <constant>`` statements, with exactly the expected values (defence in depth: repr of a
    str is always one quoted literal, and this proves it for the cell as written)."""
    found = {}
    for statement in ast.parse(source).body:
        if not (
            isinstance(statement, ast.Assign)
            and len(statement.targets) == 1
            and isinstance(statement.targets[0], ast.Name)
            and isinstance(statement.value, ast.Constant)
        ):
            raise ValueError("the parameters cell may only assign literals")
        found[statement.targets[0].id] = statement.value.value
    if found != expected:
        raise ValueError("the parameters cell does not read back as written")


# --- the fixed cells ---------------------------------------------------------------------------------

METADATA = '''\
import json
from pathlib import Path

from bia_binder import data

snapshot = json.loads(Path("study.json").read_text())
images = [entry for dataset in snapshot["datasets"] for entry in dataset["images"]]
files = [entry for dataset in snapshot["datasets"] for entry in dataset["files"]]


def refreshed_metadata():
    """What the archive says now (None where this source has nothing newer to say)."""
    if source == "bia":
        live = data.bia.study(accession).json
        return {"version": live.get("version"), "title": live.get("title")}
    if source == "biostudies":
        return {"files": data.biostudies.study(accession).info.get("files")}
    if "/" in accession:  # an IDR object: image/123, screen/456...
        kind, number = accession.split("/")
        return {"name": getattr(data.idr, kind)(int(number)).name}
    return None


try:
    live = refreshed_metadata()
except data.DataAccessError as error:
    print(f"The archive's API is not reachable now ({error}); using the snapshot in study.json")
else:
    if source == "bia" and live["version"] != study_version:
        print(f"The archive has version {live['version']} of {accession} (this notebook: {study_version}): "
              "launch the study again for a notebook of the latest version")
    else:
        print(f"Metadata refreshed from the API: {accession} is unchanged ({live})")
print(f"{snapshot['title']}: {len(snapshot['datasets'])} datasets, {len(images)} images and {len(files)} files listed"
      + (" (listing capped: the archive has more)" if any(d["images_truncated"] or d["files_truncated"]
                                                         for d in snapshot["datasets"]) else ""))
'''

TABLE = '''\
import html
import io
from concurrent.futures import ThreadPoolExecutor

import httpx
import matplotlib.pyplot as plt
from IPython.display import HTML, display


def human_size(size):
    if not size:
        return ""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000


rows = [(dataset["title"], entry) for dataset in snapshot["datasets"] for entry in dataset["images"]]
cells = "".join(
    "<tr>" + "".join(f"<td>{html.escape(str(value))}</td>" for value in (
        title, entry["name"], ", ".join(entry["formats"]),
        " × ".join(f"{axis}={size}" for axis, size in entry["dimensions"].items()),
        human_size(entry["size_bytes"]), entry["id"])) + "</tr>"
    for title, entry in rows[:max_table_rows]
)
header = "".join(f"<th>{name}</th>" for name in ("dataset", "image", "format", "dimensions", "size", "id"))
display(HTML(f"<table><thead><tr>{header}</tr></thead><tbody>{cells}</tbody></table>"))
if len(rows) > max_table_rows:
    print(f"showing {max_table_rows} of {len(rows)} images (max_table_rows)")


def thumbnail(entry):
    """The archive's own thumbnail where it has one, else the smallest level of the OME-Zarr pyramid."""
    if entry["thumbnail_url"]:
        response = httpx.get(entry["thumbnail_url"], timeout=30, follow_redirects=True)
        if response.status_code == 200:
            return plt.imread(io.BytesIO(response.content))
    if entry["ome_zarr_url"]:
        return data.open_ome_zarr(entry["ome_zarr_url"]).thumbnail(256)
    return None


drawable = [entry for entry in images if entry["thumbnail_url"] or entry["ome_zarr_url"]][:max_thumbnails]
with ThreadPoolExecutor(8) as pool:
    thumbnails = [(entry, picture) for entry, picture in zip(drawable, pool.map(thumbnail, drawable))
                  if picture is not None]
if thumbnails:
    figure, axes = plt.subplots(1, len(thumbnails), figsize=(3 * len(thumbnails), 3), squeeze=False)
    for axis, (entry, picture) in zip(axes[0], thumbnails):
        axis.imshow(picture)
        axis.set_title(entry["name"][:30], fontsize=8)
        axis.axis("off")
    plt.show()
else:
    print("No thumbnails: this study has no converted images yet (see its files below)")
'''

OPEN_OME_ZARR = '''\
chosen = [entry for entry in images if entry["ome_zarr_url"] and (not image or entry["id"] == image)]
if not chosen:
    raise LookupError(f"image {image!r} has no OME-Zarr in the snapshot; set image = '' in the parameters cell")
entry = chosen[0]
ome = data.open_ome_zarr(entry["ome_zarr_url"])  # lazy: only metadata is read here
axes = "".join(ome.axes)
units = ome.axis_units
print(f"{entry['name']} ({entry['id']}): OME-Zarr {ome.version}, axes {axes}")
for number, (level, scale) in enumerate(zip(ome.levels, ome.scales)):
    physical = ", ".join(f"{a}={s:g}{units.get(a, '')}" for a, s in zip(axes, scale) if a in "zyx")
    print(f"  level {number}: shape {level.shape}, chunks {level.chunksize}, {level.dtype}; pixel size {physical}")
print("channels:", ", ".join(channel.name for channel in ome.channels))
# the largest level the viewer and the analysis can hold: at most viewer_max_size pixels wide
level_number = next((n for n, level in enumerate(ome.levels) if max(level.shape[-2:]) <= viewer_max_size),
                    len(ome.levels) - 1)
volume = ome.levels[level_number]
print(f"viewer and analysis use level {level_number}: {volume.shape}")
'''

FILES = '''\
display(HTML("<table><thead><tr><th>file</th><th>size</th></tr></thead><tbody>" + "".join(
    f"<tr><td>{html.escape(entry['path'])}</td><td>{human_size(entry['size'])}</td></tr>"
    for entry in files[:max_table_rows]) + "</tbody></table>"))
IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
pick = next((entry for entry in files if entry["path"].lower().endswith(IMAGE_SUFFIXES)), files[0] if files else None)
if pick is None:
    raise LookupError(f"{accession} lists no files")
study_files = data.biostudies.study(biostudies_accession)
local = study_files.download(pick["path"], "downloads", progress=False)
print(f"downloaded {pick['path']} to {local} ({local.stat().st_size} bytes)")
print(f"the same with rclone: rclone copy 'biostudies:{study_files.rel_path}/Files/{pick['path']}' downloads/")
'''

OPEN_DOWNLOADED = '''\
import numpy as np
from skimage import io as skio

picture = np.asarray(skio.imread(local))
# one plane per channel: (y, x) and (y, x, channels) files both become (c, y, x)
volume = picture[np.newaxis] if picture.ndim == 2 else np.moveaxis(picture, -1, 0)
axes = "cyx"
print(f"{pick['path']}: {picture.shape} {picture.dtype}, viewed as {axes} {volume.shape}")
preview = volume[0].astype(float)
plt.figure(figsize=(4, 4))
plt.imshow(preview, cmap="gray")
plt.title(pick["path"].rsplit("/", 1)[-1][:40], fontsize=8)
plt.axis("off")
plt.show()
'''

VIEWER = '''\
import ipywidgets as widgets
import numpy as np


def plane_at(positions):
    index = tuple(positions.get(axis, slice(None)) if axis not in "yx" else slice(None) for axis in axes)
    return np.asarray(volume[index], dtype=float)


def png_of(plane):
    buffer = io.BytesIO()
    low, high = np.percentile(plane, (1, 99.5)) if plane.size else (0, 1)
    plt.imsave(buffer, plane, cmap="gray", vmin=low, vmax=high if high > low else low + 1, format="png")
    return buffer.getvalue()


sliders = {
    axis: widgets.IntSlider(value=volume.shape[axes.index(axis)] // 2 if axis == "z" else 0, min=0,
                            max=volume.shape[axes.index(axis)] - 1, description=axis,
                            disabled=volume.shape[axes.index(axis)] == 1, continuous_update=False)
    for axis in "tcz" if axis in axes
}
view = widgets.Image(format="png", value=png_of(plane_at({a: s.value for a, s in sliders.items()})))


def redraw(_change=None):
    view.value = png_of(plane_at({a: s.value for a, s in sliders.items()}))


for slider in sliders.values():
    slider.observe(redraw, names="value")
viewer = widgets.VBox([*sliders.values(), view])
display(viewer)
'''

ANALYSIS = '''\
import csv

from skimage import filters, measure

plane = plane_at({axis: (volume.shape[axes.index(axis)] // 2 if axis == "z" else 0) for axis in "tcz" if axis in axes})
threshold = filters.threshold_otsu(plane) if plane.min() < plane.max() else plane.max()
labels = measure.label(plane > threshold)
regions = measure.regionprops_table(labels, intensity_image=plane,
                                    properties=("label", "area", "centroid", "intensity_mean"))
csv_path = Path(f"regions-{accession.replace('/', '-')}.csv")
with csv_path.open("w", newline="") as out:
    writer = csv.writer(out)
    writer.writerow(regions)
    writer.writerows(zip(*regions.values()))
print(f"{labels.max()} regions above the Otsu threshold {threshold:.1f}; their measurements are in {csv_path}")
'''

DEEP_LEARNING = '''\
weights = Path(model_weights).expanduser()
if not weights.is_file():
    print(f"No model weights at {weights}: to segment with Cellpose, run `pip install cellpose`, put its cyto3 "
          "weights there (python -m cellpose --help explains the download) and run this cell again")
else:
    try:
        from cellpose import models
    except ImportError:
        print(f"Found weights at {weights}, but cellpose is not installed: run `pip install cellpose` and this cell again")
    else:
        model = models.CellposeModel(pretrained_model=str(weights))
        masks = model.eval(plane)[0]
        print(f"Cellpose found {int(masks.max())} cells in the analysed plane")
'''

PROVENANCE = '''\
import importlib.metadata
import platform

print("Permanent link:", permanent_link)
print(f"Made from {accession} version {study_version} (metadata {metadata_hash[:12]}), template {template_version}, "
      f"environment lock {environment_lock[:12]}")
print("Python", platform.python_version())
for package in ("numpy", "dask", "zarr", "scikit-image", "matplotlib", "ipywidgets", "httpx"):
    try:
        print(f"  {package} {importlib.metadata.version(package)}")
    except importlib.metadata.PackageNotFoundError:
        print(f"  {package} not installed")
'''


def header_markdown(snapshot: dict[str, Any]) -> str:
    title = snapshot["title"] or snapshot["accession"]
    lines = [f"# {md(title)}", "", f"**{md(snapshot['accession'])}**"]
    if snapshot["authors"]:
        shown = ", ".join(snapshot["authors"][:12]) + (" et al." if len(snapshot["authors"]) > 12 else "")
        lines += ["", f"**Authors:** {md(shown)}"]
    licence = snapshot["licence"]
    lines += ["", f"**Licence:** {md_link(licence, licence) if licence.startswith('http') else md(licence or 'not stated')}"]
    if snapshot["doi"]:
        doi = snapshot["doi"].removeprefix("https://doi.org/")
        lines += ["", f"**DOI:** {md_link(doi, 'https://doi.org/' + doi)}"]
    if snapshot["release_date"]:
        lines += ["", f"**Released:** {md(snapshot['release_date'][:10])}"]
    links = " · ".join(md_link(name, url) for name, url in sorted(snapshot["links"].items()))
    lines += ["", f"**Links:** {links}"]
    if snapshot["description"]:
        description = snapshot["description"]
        lines += ["", md(description[:1500] + ("..." if len(description) > 1500 else ""))]
    lines += ["", "This notebook was made by bia-binder from the study's metadata (`study.json`). Run it top to "
              "bottom: it reads the images straight from the archive, nothing is downloaded first."]
    return "\n".join(lines)


def make_notebook(snapshot: dict[str, Any], parameters: dict[str, Any]) -> nbformat.NotebookNode:
    """The starter notebook of ``snapshot``; ``parameters`` go into the ``parameters`` cell as literals."""
    has_zarr = first_ome_zarr(snapshot) is not None
    cells = [
        new_markdown_cell(header_markdown(snapshot)),
        new_code_cell(parameters_source(parameters), metadata={"tags": ["parameters"]}),
        new_markdown_cell("## Metadata\nThe snapshot this notebook was made from, checked against the archive's API."),
        new_code_cell(METADATA),
        new_markdown_cell("## Datasets and images\nFormat, dimensions and size of each image listed, and thumbnails: "
                          "the archive's own where it has them, otherwise the smallest level of the image pyramid."),
        new_code_cell(TABLE),
    ]
    if has_zarr:
        cells += [
            new_markdown_cell("## The first OME-Zarr image\nOpened lazily as dask arrays through `bia_binder.data`: "
                              "chunks are read only when a computation needs them."),
            new_code_cell(OPEN_OME_ZARR),
        ]
    else:
        cells += [
            new_markdown_cell("## Files\nThis study has no OME-Zarr images yet. Its files, and one of them downloaded "
                              "through BioStudies (or with rclone, as printed)."),
            new_code_cell(FILES),
            new_code_cell(OPEN_DOWNLOADED),
        ]
    cells += [
        new_markdown_cell("## Slice viewer\nChannels, z and t (where the image has them)."),
        new_code_cell(VIEWER),
        new_markdown_cell("## Classical analysis\nOtsu threshold, connected components and their measurements, "
                          "saved as CSV. Runs anywhere, no GPU or model needed."),
        new_code_cell(ANALYSIS),
        new_markdown_cell("## Deep learning\nRuns a Cellpose model when its weights are on this machine "
                          "(`model_weights` in the parameters cell)."),
        new_code_cell(DEEP_LEARNING),
        new_markdown_cell("## Provenance"),
        new_code_cell(PROVENANCE),
    ]
    for number, cell in enumerate(cells):
        cell["id"] = f"cell-{number:02d}"  # nbformat makes random ids: these keep the bytes reproducible
    notebook = new_notebook(cells=cells)
    notebook.metadata = {
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "bia_binder": {"template_version": TEMPLATE_VERSION, "source": snapshot["source"],
                       "accession": snapshot["accession"]},
    }
    nbformat.validate(notebook)
    return notebook


def notebook_bytes(snapshot: dict[str, Any], parameters: dict[str, Any]) -> bytes:
    return (nbformat.writes(make_notebook(snapshot, parameters)) + "\n").encode()
