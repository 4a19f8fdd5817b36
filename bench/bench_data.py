"""Benchmark: read a whole OME-Zarr level over HTTP with added latency, bia_binder.data against
ome-zarr-py's Reader and plain zarr + dask, and the ideal of fetching every chunk raw with 64
plain threads; for chunks of 256 KiB, 512 KiB and 2 MiB (what studies really use), plus the time
to a first thumbnail. Prints a table of medians per chunk size; each method reads in its own process after
a discarded warm-up, rounds interleave the methods (see ``_measure.py``) in a new random order
each round; thumbnails are cold.

Memory: this VM's host takes back the pages a guest has freed within about two seconds, and
touching them again costs 0.3 s per 256 MiB (measured: one fresh 256 MiB array written by 64
threads took 0.50 s after a 2.5 s pause, 0.21 s right after another array was freed). Every
method that returns an array pays that for its result; the ideal, which keeps no bytes, never
does, and which method got pages still mapped depended on which ran before it. So by default
each reader writes and frees 1.25x the level's size, untimed, just before each timed read
(memory "at hand"); ``--reclaimed-memory`` instead pauses 2.5 s before each read, so every
result lands on memory the host took back. ``ideal_into_array`` (the ideal's fetches, each
body copied into one fresh array) is the floor of any reader that returns an array, under
either condition. Rounds still run the methods in a new random order, so load spikes hit all.

    .venv/bin/python bench/bench_data.py                 # 256 MiB, 20 ms, 5 runs, 3 chunk sizes (~8 minutes)
    .venv/bin/python bench/bench_data.py --chunks 512K --size-mib 512 --latency-ms 50 --runs 5
    .venv/bin/python bench/bench_data.py --chunks 2M --reclaimed-memory --methods ideal_into_array,bia_binder
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

BENCH = Path(__file__).resolve().parent
#: uint16 chunk shapes (rows, columns) by name: 2 MiB is bioformats2raw's default (1024²),
#: 512 KiB and 256 KiB are what many studies' converters wrote
CHUNKS = {"256K": (256, 512), "512K": (512, 512), "1M": (512, 1024), "2M": (1024, 1024), "4M": (1024, 2048)}
IDEAL = "ideal_threads"
#: a pause after which this VM's host has taken back the pages freed before it
RECLAIM_SECONDS = 2.5
METHODS = (
    (IDEAL, "ideal: every chunk raw, 64 plain threads"),
    ("ideal_into_array", "the same, each body copied into one fresh array"),
    ("ideal_async", "every chunk raw, aiohttp, 128 in flight"),
    ("bia_binder", "bia_binder.data open_ome_zarr(...).levels[0] (dask)"),
    ("bia_binder_no_threads", "the same, BIA_BINDER_FETCH_THREADS=0 (aiohttp only)"),
    ("bia_binder_zarr", "bia_binder.data open_ome_zarr(...).arrays[0][...]"),
    ("ome_zarr_py", "ome-zarr-py Reader node.data[0]"),
    ("zarr_dask", "zarr.open_array + dask.array.from_zarr"),
)


def write_image(root: Path, size_mib: int, chunk: tuple[int, int] = CHUNKS["2M"]) -> tuple[int, ...]:
    """An OME-Zarr 0.4 image (zarr v2, blosc-lz4) with a pyramid down to 512 px for thumbnails."""
    planes = max(1, size_mib * 2**20 // (4096 * 4096 * 2))
    shape = (1, planes, 4096, 4096)
    rng = np.random.default_rng(0)
    group = zarr.open_group(root, mode="w", zarr_format=2)
    levels = 4
    for level in range(levels):
        side = 4096 >> level
        array = group.create_array(
            str(level), shape=(1, planes, side, side), dtype="uint16",
            chunks=(1, 1, min(chunk[0], side), min(chunk[1], side)),
            chunk_key_encoding={"name": "v2", "separator": "/"},
        )
        for z in range(planes):  # noisy data: compresses little, like real camera images
            array[0, z] = rng.integers(0, 4096, size=(side, side), dtype=np.uint16)
    axes = [{"name": "c", "type": "channel"}] + [{"name": a, "type": "space", "unit": "micrometer"} for a in "zyx"]
    group.attrs["multiscales"] = [{
        "version": "0.4", "axes": axes,
        "datasets": [{"path": str(level), "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, 2.0**level, 2.0**level]}]} for level in range(levels)],
    }]
    group.attrs["omero"] = {"channels": [{"label": "noise", "color": "FFFFFF", "window": {"start": 0, "end": 4095}}]}
    return shape


def start_server(root: Path, latency_ms: float) -> tuple[subprocess.Popen, str]:
    server = subprocess.Popen(
        [sys.executable, str(BENCH / "_latency_server.py"), str(root), "--latency-ms", str(latency_ms)],
        stdout=subprocess.PIPE, text=True,
    )
    port = server.stdout.readline().strip()
    if not port.isdigit():
        server.kill()
        raise SystemExit("the benchmark server did not start")
    return server, f"http://127.0.0.1:{port}/image.zarr"


def cold(method: str, url: str) -> float:
    """One timing in a fresh process (thumbnail, import)."""
    result = subprocess.run(
        [sys.executable, str(BENCH / "_measure.py"), method, url],
        capture_output=True, text=True, timeout=300, check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{method} failed:\n{result.stderr[-2000:]}")
    return float(result.stdout.strip().splitlines()[-1])


class Reader:
    """A process reading level 0 with one method, timed on request."""

    def __init__(self, method: str, url: str, warm_mib: int = 0) -> None:
        self.method = method
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "_measure.py"), method, url, str(warm_mib)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise SystemExit(f"{method} failed to start (see its output above)")

    def run(self) -> float:
        self.process.stdin.write("run\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit(f"{self.method} died (see its output above)")
        return float(answer)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def measure(chunk_name: str, args: argparse.Namespace) -> dict[str, float]:
    """Median seconds per method for one chunk size; prints its table."""
    with tempfile.TemporaryDirectory(prefix="bench-data-") as tmp:
        started = time.perf_counter()
        shape = write_image(Path(tmp) / "image.zarr", args.size_mib, CHUNKS[chunk_name])
        level_mib = math.prod(shape) * 2 / 2**20
        rows, columns = CHUNKS[chunk_name]
        print(f"\n{chunk_name} chunks: level 0 {shape} uint16 = {level_mib:.0f} MiB in {rows}x{columns} chunks "
              f"(written in {time.perf_counter() - started:.1f} s); {args.latency_ms:g} ms per request; "
              f"median of {args.runs} runs; memory {'reclaimed' if args.reclaimed_memory else 'at hand'}", flush=True)
        server, url = start_server(Path(tmp), args.latency_ms)
        try:
            warm_mib = 0 if args.reclaimed_memory else math.ceil(1.25 * level_mib)
            readers = [Reader(name, url, warm_mib) for name in args.methods]
            seconds: dict[str, list[float]] = {name: [] for name in args.methods}
            order = random.Random(0)
            try:
                for _ in range(args.runs):
                    for reader in order.sample(readers, len(readers)):
                        if args.reclaimed_memory:
                            time.sleep(RECLAIM_SECONDS)
                        seconds[reader.method].append(reader.run())
            finally:
                for reader in readers:
                    reader.close()
            medians = {name: statistics.median(values) for name, values in seconds.items()}
            if args.thumbnails:
                medians["thumbnail"] = statistics.median(cold("thumbnail", url) for _ in range(args.runs))
                medians["import"] = statistics.median(cold("import", url) for _ in range(args.runs))
        finally:
            server.terminate()
            server.wait(timeout=10)

    print(f"{'method':<52} {'median s':>9} {'MiB/s':>8} {'% ideal':>8} {'x ome-zarr-py':>14}")
    baseline = medians.get("ome_zarr_py", math.nan)
    for name, label in METHODS:
        if name in medians:
            rate = level_mib / medians[name]
            print(f"{label:<52} {medians[name]:>9.2f} {rate:>8.0f} {100 * medians[IDEAL] / medians[name]:>7.0f}% "
                  f"{baseline / medians[name]:>13.1f}x", flush=True)
    return medians


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256, help="size of the level read (default 256)")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="latency added to every request (default 20)")
    parser.add_argument("--runs", type=int, default=5, help="runs per method; the table shows medians (default 5)")
    parser.add_argument("--chunks", default="256K,512K,2M", help=f"chunk sizes, of {', '.join(CHUNKS)} (default 256K,512K,2M)")
    parser.add_argument("--reclaimed-memory", action="store_true",
                        help="pause before each read so results land on memory the host took back (see above)")
    parser.add_argument("--methods", default=",".join(name for name, _ in METHODS),
                        help="methods to time (default all; the ideal is always timed)")
    args = parser.parse_args()
    known = [name for name, _ in METHODS]
    args.methods = [IDEAL] + [m.strip() for m in args.methods.split(",") if m.strip() and m.strip() != IDEAL]
    if not set(args.methods) <= set(known):
        parser.error(f"unknown method {sorted(set(args.methods) - set(known))[0]!r}; choose from {', '.join(known)}")
    names = [name.strip() for name in args.chunks.split(",")]
    unknown = [name for name in names if name not in CHUNKS]
    if unknown:
        parser.error(f"unknown chunk size {unknown[0]!r}; choose from {', '.join(CHUNKS)}")

    results = {}
    for index, name in enumerate(names):
        args.thumbnails = index == len(names) - 1 and args.methods == known  # timed once, on the last image
        results[name] = measure(name, args)

    print(f"\nsummary ({args.size_mib} MiB level, {args.latency_ms:g} ms per request, median of {args.runs} runs):")
    print(f"{'chunks':<8} {'ideal s':>8} {'into array s':>13} {'dask s':>8} {'% ideal':>8} {'% into array':>13} "
          f"{'zarr s':>8} {'% ideal':>8} {'ome-zarr-py s':>14} {'dask x ozp':>11}")
    for name, medians in results.items():
        m = {method: medians.get(method, math.nan) for method, _ in METHODS}
        print(f"{name:<8} {m[IDEAL]:>8.2f} {m['ideal_into_array']:>13.2f} {m['bia_binder']:>8.2f} "
              f"{100 * m[IDEAL] / m['bia_binder']:>7.0f}% {100 * m['ideal_into_array'] / m['bia_binder']:>12.0f}% "
              f"{m['bia_binder_zarr']:>8.2f} {100 * m[IDEAL] / m['bia_binder_zarr']:>7.0f}% {m['ome_zarr_py']:>14.2f} "
              f"{m['ome_zarr_py'] / m['bia_binder']:>10.1f}x")
    if "thumbnail" in results[names[-1]]:
        last = results[names[-1]]
        print(f"{'first thumbnail (cold process, smallest level)':<52} {last['thumbnail']:>9.2f}")
        print(f"{'import bia_binder.data (cold process)':<52} {last['import']:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
