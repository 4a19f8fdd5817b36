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
PKGS="$PKGS g++ patch python3.11-dev libbz2-dev libssl-dev"
missing=""
for p in $PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends $missing >/dev/null \
    || echo "warning: could not install$missing; see README 'Known limits'" >&2
else
  echo "note: system packages missing:$missing (install them with your package manager; bia-binder doctor says what each is for)" >&2
fi
exit 0
