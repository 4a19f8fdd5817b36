#!/usr/bin/env bash
# Builds the one wheel OMERO needs that PyPI does not have for Python 3.11: zeroc-ice 3.6.5 (omero-py
# pins Ice 3.6; PyPI has only its sdist, which predates 3.11). Two lines of it do not compile on 3.11,
# fixed by scripts/patches/zeroc-ice-3.6.5-python3.11.patch. The wheel goes to .wheels, one of the
# builder's find-links (builder.CHECKOUT_WHEELS), so the default portal lock installs it offline.
# `make omero-wheels` (and `make install`, which goes on without it); does nothing when the wheel is there.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
VERSION=3.6.5
SHA256=4235ffeb605bcd4e22e716577f7d61e4aa1bc82f65276bb542701a81b7933356
OUT=$root/.wheels
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# for the interpreter sessions' environments link to (Debian's python3.11 where it exists)
PY=$(.venv/bin/python -c "from bia_binder.builder.builder import EnvBuilder; print(EnvBuilder(cache_dir='$work/envs').python)")
tag=$("$PY" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')
compgen -G "$OUT/zeroc_ice-$VERSION-$tag-*.whl" >/dev/null && exit 0
echo "building the zeroc-ice $VERSION wheel for $PY (OMERO; about 2.5 minutes on two cores, once)"
# the sdist's hash is checked before pip runs anything of it
echo "zeroc-ice==$VERSION --hash=sha256:$SHA256" > "$work/pin.txt"
.venv/bin/python -m pip download -q --no-deps --no-binary zeroc-ice --require-hashes -r "$work/pin.txt" -d "$work" 2> >(grep -v "is ignored: it is neither" >&2)
tar xzf "$work/zeroc-ice-$VERSION.tar.gz" -C "$work"
patch -s -p1 -d "$work/zeroc-ice-$VERSION" < scripts/patches/zeroc-ice-3.6.5-python3.11.patch
# setup.py through scripts/setup_parallel.py rather than a PEP 517 build: its C++ compiles on every core
.venv/bin/uv venv -q --python "$PY" "$work/venv"
.venv/bin/uv pip install -q --python "$work/venv/bin/python" setuptools wheel
(cd "$work/zeroc-ice-$VERSION" && "$work/venv/bin/python" "$root/scripts/setup_parallel.py" -q bdist_wheel -d "$work/dist" >"$work/build.log" 2>&1) \
  || { tail -20 "$work/build.log" >&2; echo "error: zeroc-ice did not build (needs g++, python3.11-dev, libbz2-dev, libssl-dev)" >&2; exit 1; }
mkdir -p "$OUT"
wheel=$(basename "$work"/dist/zeroc_ice-*.whl)
# copied under a name uv ignores, then renamed: an interrupted copy never looks like a wheel
cp "$work/dist/$wheel" "$OUT/.$wheel.partial"
mv "$OUT/.$wheel.partial" "$OUT/$wheel"
echo "$OUT/$wheel"
