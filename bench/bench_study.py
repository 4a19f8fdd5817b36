"""Study launch benchmark (issue 15), against the archives' stand-ins, in one run:

    warm repository launch   request → ready for a repository whose environment is built (the baseline)
    study launch             request → ready for a study never launched before (a new accession each run:
                             metadata read, notebook written, the prebuilt study environment reused)
                             target ≤ 1.3× the warm repository launch
    first thumbnail cell     the starter notebook's datasets/images/thumbnails cell, every request to the
                             archive and its image store delayed 20 ms; target ≤ 1 s

Usage: python bench/bench_study.py [--runs 5]   (from the project root, after `make install`)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import quote

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench_launch import stop_session, timed_launch  # noqa: E402
from tests.data import fake_services  # noqa: E402
from tests.stack import BinderStack  # noqa: E402

LATENCY = 0.020


def delayed(handler_class):
    """Every request to the stand-ins (API and, through /s3proxy/, the image store) waits LATENCY first."""
    original = handler_class.do_GET

    def do_get(self):
        if getattr(self.server, "latency", 0):
            time.sleep(self.server.latency)
        return original(self)

    handler_class.do_GET = do_get


def thumbnail_cell_seconds(stack: BinderStack, archives, ready: dict, runs: int) -> list[float]:
    """Run the notebook's first cells in the study environment; time the thumbnail cell."""
    import nbformat
    from nbclient import NotebookClient

    from tests.studies.conftest import endpoint_environ

    headers = {"Authorization": f"token {ready['token']}"}
    listing = httpx.get(f"{ready['url']}api/contents", headers=headers, timeout=30).json()
    name = next(item["name"] for item in listing["content"] if item["name"].endswith(".ipynb"))
    work = Path(stack.data_dir) / "bench-notebook"
    work.mkdir(exist_ok=True)
    for file_name in (name, "study.json"):
        body = httpx.get(f"{ready['url']}api/contents/{file_name}?type=file&format=text&content=1", headers=headers, timeout=30).json()
        (work / file_name).write_text(body["content"])
    python = Path(stack.data_dir) / "envs" / ready["image"] / "env" / "bin" / "python"
    kernels = Path(stack.data_dir) / "bench-jupyter" / "kernels" / "study-env"
    kernels.mkdir(parents=True, exist_ok=True)
    (kernels / "kernel.json").write_text(json.dumps(
        {"argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"], "display_name": "study", "language": "python"}))
    os.environ["JUPYTER_PATH"] = str(kernels.parents[1])
    os.environ.update(endpoint_environ(archives))
    os.environ["BIA_BINDER_S3_ENDPOINT"] = f"{archives.url}/s3proxy"  # the image store behind the same delay
    times = []
    for _ in range(runs):
        notebook = nbformat.read(work / name, as_version=4)
        client = NotebookClient(notebook, kernel_name="study-env", timeout=120, resources={"metadata": {"path": str(work)}})
        with client.setup_kernel():
            for index, cell in enumerate(notebook.cells[:6]):
                started = time.perf_counter()
                client.execute_cell(cell, index)
                if index == 5:
                    times.append(time.perf_counter() - started)
                    assert any("image/png" in o.get("data", {}) for o in cell.outputs), "no thumbnail figure"
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from tests.studies.conftest import endpoint_environ
    from tests.studies.standins import start_services, upload_thumbnail
    from tests.data.conftest import s3 as s3_fixture

    delayed(fake_services.Handler)
    s3_generator = s3_fixture.__wrapped__(_TmpFactory())  # the tests' S3 stand-in with its OME-Zarr stores
    s3 = next(s3_generator)
    archives = start_services()
    archives.s3_endpoint = s3.endpoint
    upload_thumbnail(s3.endpoint)
    for run in range(args.runs + 1):
        archives.services.clone_study(f"S-BIAD{7000 + run}")
    config = "\n".join([
        f"c.BIAProvider.api_url = {archives.url + '/bia'!r}",
        "c.StudyEnvironment.prebuild = True",
        "",
    ])
    environ = {**endpoint_environ(archives), "BIA_BINDER_S3_ENDPOINT": f"{archives.url}/s3proxy"}
    try:
        with BinderStack(config=config, env=environ) as stack:
            clone_url, sha = stack.git.create_repo("bench/six", {"requirements.txt": "six\n"})
            spec = f"git/{quote(clone_url, safe='')}/{sha}"
            _, ready = timed_launch(stack, spec)  # builds the repository's environment: not measured
            stop_session(stack, ready)
            _, ready = timed_launch(stack, "bia/S-BIAD7000")  # waits for the prebuilt study environment
            stop_session(stack, ready)
            archives.latency = LATENCY
            warm, study = [], []
            for run in range(1, args.runs + 1):
                seconds, ready = timed_launch(stack, spec)
                warm.append(seconds)
                stop_session(stack, ready)
                seconds, ready = timed_launch(stack, f"bia/S-BIAD{7000 + run}")
                study.append(seconds)
                if run < args.runs:
                    stop_session(stack, ready)
            thumbnails = thumbnail_cell_seconds(stack, archives, ready, args.runs)
            stop_session(stack, ready)
    finally:
        archives.stop()
        next(s3_generator, None)
    w, s, t = (statistics.median(x) for x in (warm, study, thumbnails))
    print(f"\nStudy benchmark ({args.runs} runs each, medians; same machine, same run; archive latency 20 ms)\n")
    print("| measurement | median | baseline / target | ratio | target met |")
    print("|---|---|---|---|---|")
    print(f"| warm repository launch, request → ready (baseline) | {w:.2f} s | - | - | - |")
    print(f"| first launch of a new study, request → ready | {s:.2f} s | {w:.2f} s | {s / w:.2f}× | {'yes' if s <= 1.3 * w else 'no'} (≤ 1.3×) |")
    print(f"| first thumbnail cell of the notebook | {t:.2f} s | 1 s | - | {'yes' if t <= 1 else 'no'} (≤ 1 s) |")


class _TmpFactory:
    """Enough of pytest's tmp_path_factory for the S3 fixture."""

    def mktemp(self, name: str) -> Path:
        import tempfile

        return Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))


if __name__ == "__main__":
    main()
