"""What the test kubelet runs for the repo2docker image: repo2docker's command line, building with bia-binder.

``jupyter-repo2docker --no-run --ref REF --image-name NAME [--push] -- URL`` clones URL at REF and
builds its environment (``bia-binder build``, the real builder), then "pushes" it: the test
registry (``BIA_TEST_REGISTRY``, the image's environment) holds NAME, whose files are that
environment (its ``bin`` on PATH) and the repository as the working directory. Its output is the
build log, its exit status the build's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.deploy.cluster import Registry  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(prog="jupyter-repo2docker")
    parser.add_argument("--no-run", action="store_true")
    parser.add_argument("--ref")
    parser.add_argument("--image-name", required=True)
    parser.add_argument("--push", action="store_true")
    parser.add_argument("repo")
    args = parser.parse_args()
    print(f"Picked Git content provider.\nCloning into '{args.repo}' at {args.ref}...", flush=True)
    build = subprocess.Popen(
        [os.environ["BIA_TEST_BIA_BINDER"], "build", args.repo, "--ref", args.ref, "--json",
         "--data-dir", os.environ["BIA_TEST_BUILD_DATA"]],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    last = {}
    assert build.stdout is not None
    for line in build.stdout:
        try:
            last = json.loads(line)
        except ValueError:
            print(line, end="", flush=True)
            continue
        print(last.get("message", "").rstrip("\n"), flush=True)
    if build.wait() or last.get("phase") != "built":
        print(f"Error during build: {last.get('message', 'build failed').strip()}", flush=True)
        return 1
    if args.push:
        registry = Registry(Path(os.environ["BIA_TEST_REGISTRY"]))
        registry.add(args.image_name, [str(Path(last["environment"]) / "bin")], workdir=last["repo_dir"])
        print(f"Successfully pushed {args.image_name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
