"""Federation benchmark (issue 17): a warm launch through the gateway against the same launch sent straight
to the member, in one run.

    direct       request → ready at the member that holds the environment (the baseline)
    gateway      the same launch through `bia-binder federation` (resolve once, ask the members what they
                 hold, place, stream the member's events)                       (target ≤ 1.1× direct)

Two `bia-binder up` members on loopback behind the gateway; the environment is built once, then the two
kinds of launch alternate (so load spikes hit both alike). Each session is stopped before the next launch.
Each number is the median of --runs runs.

Usage: python bench/bench_federation.py [--runs 7]   (from the project root, after `make install`)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.federation.stack import FederatedStack  # noqa: E402


def timed(launch) -> tuple[float, dict]:
    started = time.perf_counter()
    events = launch()
    elapsed = time.perf_counter() - started
    if events[-1]["phase"] != "ready":
        raise RuntimeError(f"launch failed: {events[-1]}")
    return elapsed, events[-1]


def stop_session(ready: dict) -> None:
    httpx.post(f"{ready['url']}api/shutdown", headers={"Authorization": f"token {ready['token']}"}, timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with FederatedStack(members=2) as fed:
        spec = fed.git_spec("bench/federated", {"requirements.txt": "six\n"})
        _seconds, ready = timed(lambda: fed.launch(spec))  # the one build
        stop_session(ready)
        member_url = fed.members[ready["federation_member"]].url
        direct, gateway = [], []
        for _ in range(args.runs):
            seconds, ready = timed(lambda: fed.launch(spec, url=member_url))
            direct.append(seconds)
            stop_session(ready)
            seconds, ready = timed(lambda: fed.launch(spec))
            gateway.append(seconds)
            assert "building" not in str(ready), "a warm launch"
            stop_session(ready)
    d, g = statistics.median(direct), statistics.median(gateway)
    print(f"\nFederation benchmark ({args.runs} runs each, medians; same machine, same run)\n")
    print("| measurement | median | baseline | ratio | target met |")
    print("|---|---|---|---|---|")
    print(f"| warm launch straight to the member | {d:.2f} s | - | - | - |")
    print(f"| warm launch through the gateway | {g:.2f} s | {d:.2f} s direct | {g / d:.2f}× | {'yes' if g <= 1.1 * d else 'no'} (≤ 1.1×) |")


if __name__ == "__main__":
    main()
