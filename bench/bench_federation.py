"""Federation benchmark (issue 17): a warm launch through the gateway against the same launch sent straight
to the member, in one run.

    direct       request → ready at the member that holds the environment (the baseline)
    gateway      the same launch through `bia-binder federation` (resolve once, ask the members what they
                 hold, place, stream the member's events)                       (target ≤ 1.1× direct)

    failover     kill -9 of the member that holds a ref, then a launch of that ref through the gateway: it
                 builds on the other member. Baseline ("one launch"): a launch of another ref of the same
                 size straight to that other member, just before (target: failover ≤ the baseline plus
                 the time to detect the failure, the gateway's c.HealthMonitor.interval, 1 s here).

Two `bia-binder up` members on loopback behind the gateway; the environment is built once, then the two
kinds of warm launch alternate (so load spikes hit both alike). Each session is stopped before the next
launch. Each number is the median of --runs (warm) and --failover-runs runs.

Usage: python bench/bench_federation.py [--runs 7] [--failover-runs 3]   (from the project root, after `make install`)
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


# one small requirement per ref: every failover and baseline launch builds an environment of the same size
PACKAGES = ["toolz", "attrs", "idna", "click", "pytz", "wrapt", "tabulate", "colorama", "decorator", "six"]


def failover(fed: FederatedStack, run: int) -> tuple[float, float]:
    """(seconds to ready of a launch whose member was just killed, seconds of one launch that builds)."""
    spec = fed.git_spec(f"bench/failover{run}", {"requirements.txt": f"{PACKAGES[2 * run]}\n"})
    _seconds, ready = timed(lambda: fed.launch(spec))
    stop_session(ready)
    holder = ready["federation_member"]
    other = next(name for name in fed.names if name != holder)
    fresh = fed.git_spec(f"bench/fresh{run}", {"requirements.txt": f"{PACKAGES[2 * run + 1]}\n"})
    one_launch, ready = timed(lambda: fed.launch(fresh, url=fed.members[other].url))
    stop_session(ready)
    fed.kill(holder)
    seconds, ready = timed(lambda: fed.launch(spec))
    if ready["federation_member"] != other:
        raise RuntimeError(f"the launch went to {ready['federation_member']}, not to the surviving {other}")
    stop_session(ready)
    fed.restart(holder)
    fed.wait_for(lambda: fed.member_status(holder)["state"] == "up", 120, f"{holder} up again at the gateway")
    return seconds, one_launch


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--failover-runs", type=int, default=3)
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
        failovers = [failover(fed, run) for run in range(args.failover_runs)]
    d, g = statistics.median(direct), statistics.median(gateway)
    f, one = statistics.median(t for t, _ in failovers), statistics.median(b for _, b in failovers)
    print(f"\nFederation benchmark ({args.runs} runs each, medians; same machine, same run)\n")
    print("| measurement | median | baseline | ratio | target met |")
    print("|---|---|---|---|---|")
    print(f"| warm launch straight to the member | {d:.2f} s | - | - | - |")
    print(f"| warm launch through the gateway | {g:.2f} s | {d:.2f} s direct | {g / d:.2f}× | {'yes' if g <= 1.1 * d else 'no'} (≤ 1.1×) |")
    detect = 1.0  # c.HealthMonitor.interval of tests/federation/stack.py
    print(
        f"| launch right after kill -9 of its member (builds elsewhere) | {f:.2f} s | {one:.2f} s one launch that builds "
        f"| +{f - one:.2f} s | {'yes' if f <= one + detect else 'no'} (≤ one launch + {detect:g} s detection) |"
    )
    print(f"\nfailover runs (failover s, one launch s): {[(round(a, 2), round(b, 2)) for a, b in failovers]}")


if __name__ == "__main__":
    main()
