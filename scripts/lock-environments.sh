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
mkdir -p .cache && session=.cache/session-packages.in
.venv/bin/python -c 'from bia_binder.builder.builder import EnvBuilder; print("\n".join(EnvBuilder().session_packages))' > "$session"
for dir in src/bia_binder/environments/*; do
  [ -f "$dir/requirements.in" ] || continue
  links=()
  grep -q '^torch' "$dir/requirements.in" && links=(--find-links "$TORCH_WHEELS")
  echo "locking $dir"
  "$UV" pip compile -q --python-version "$PY" --no-header --annotation-style line "${links[@]}" \
    "$dir/requirements.in" "$session" -o "$dir/requirements.txt"
done
