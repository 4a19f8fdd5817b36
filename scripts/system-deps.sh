#!/usr/bin/env bash
# Installs the system packages bia-binder uses, where this host lets us (root + apt).
# bubblewrap: session sandbox; chromium: browser tests; rclone: data transfer in sessions;
# e2fsprogs: ext4 images for home quotas; slirp4netns, nftables, iproute2: each session's own
# network namespace (no host loopback, no private ranges); util-linux: setpriv (the sandbox drops
# to the session's uid with it); fscrypt: encrypted homes.
# The portal's languages (kernels in the default environment, docs/portal.md): r-base-core +
# r-cran-irkernel (R), octave (Octave), default-jdk-headless (Kotlin kernel, ImageJ), imagej (ImageJ 1).
# g++, patch, python3.11-dev, libbz2-dev, libssl-dev: build zeroc-ice for OMERO (scripts/build-omero-wheels.sh).
set -u
PKGS="bubblewrap chromium rclone e2fsprogs slirp4netns nftables iproute2 util-linux fscrypt"
PKGS="$PKGS r-base-core r-cran-irkernel octave default-jdk-headless imagej"
# OMERO's build tools go in a batch of their own: apt refuses a whole batch that names a package the
# distribution lacks (python3.11-dev on a newer Debian), and that must not cost the sandbox its packages
BUILD_PKGS="g++ patch python3.11-dev libbz2-dev libssl-dev"

missing_of() {
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || printf ' %s' "$p"; done
}

missing="$(missing_of $PKGS)"
build_missing="$(missing_of $BUILD_PKGS)"
[ -z "$missing$build_missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages:$missing$build_missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  for batch in "$missing" "$build_missing"; do
    [ -n "$batch" ] || continue
    apt-get install -y -qq --no-install-recommends $batch >/dev/null \
      || echo "warning: could not install$batch; see README 'Known limits'" >&2
  done
else
  echo "note: system packages missing:$missing$build_missing (install them with your package manager; bia-binder doctor says what each is for)" >&2
fi
exit 0
