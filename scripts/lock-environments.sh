#!/usr/bin/env bash
# Pins the portal environments (src/bia_binder/environments/*/requirements.in) into their lock files
# (requirements.txt beside each), with the packages the builder adds to every session: `make locks`.
# Run it after editing a requirements.in; commit both files. TORCH_WHEELS: where torch's CPU wheels are.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
PY=${PYTHON_VERSION:-3.11}
TORCH_WHEELS=${TORCH_WHEELS:-/opt/wheels}
# at a fixed path: the locks name it in their "via" comments, which must not change from run to run
# (removed afterwards: the directory of uv's cache must hold nothing else, see EnvBuilder._build_area)
mkdir -p .cache && session=.cache/session-packages.in
trap 'rm -f "$session"' EXIT
# the notebook server and the optional groups (data library, resource usage): a build adds both
.venv/bin/python - > "$session" <<'PY'
import tempfile
from bia_binder.builder.builder import EnvBuilder
builder = EnvBuilder(cache_dir=tempfile.mkdtemp())
print("\n".join([*builder.session_packages, *(p for group in builder.extra_packages.values() for p in group)]))
PY
for dir in src/bia_binder/environments/*; do
  # the study environment is locked as a pylock.toml by its own recipe (docs/study.md)
  [ -f "$dir/requirements.in" ] && [ ! -f "$dir/pylock.toml" ] || continue
  links=()
  grep -q '^torch' "$dir/requirements.in" && links+=(--find-links "$TORCH_WHEELS")
  # OMERO's zeroc-ice: the wheel `make omero-wheels` builds (PyPI has none for 3.11)
  grep -q '^omero-py' "$dir/requirements.in" && links+=(--find-links .wheels)
  echo "locking $dir"
  "$UV" pip compile -q --python-version "$PY" --no-header --annotation-style line "${links[@]}" \
    "$dir/requirements.in" "$session" -o "$dir/requirements.txt"
done
