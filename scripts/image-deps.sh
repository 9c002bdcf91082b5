#!/usr/bin/env bash
# Install what scripts/image-test.sh needs to build and run the image without Docker Hub or a
# Docker daemon, idempotently (apt-get update runs once, only if something is missing):
# podman with runc (crun refuses this machine's hybrid cgroup layout), debootstrap for the
# stand-in base images, slirp4netns/netavark for container networking.
# Then checks that podman can run at all and says why not in one line if it cannot.
# Prints the containers.conf that image-test.sh points CONTAINERS_CONF at.
set -euo pipefail

CACHE="${OPENCLAW_SPACE_CACHE:-$HOME/.cache/openclaw-space}"
CONF="$CACHE/image/containers.conf"

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v slirp4netns >/dev/null || missing+=(slirp4netns)
[ -x /usr/lib/podman/netavark ] || command -v netavark >/dev/null || missing+=(netavark)
command -v iptables >/dev/null || missing+=(iptables)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "image-deps: need root to apt-get install ${missing[*]}" >&2; exit 1; }
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" uidmap fuse-overlayfs aardvark-dns >&2
fi

# runc, not crun. The ulimits are added by scripts/image-standins.sh, which can probe them.
mkdir -p "$(dirname "$CONF")"
if [ ! -f "$CONF" ] || ! grep -q '^runtime = "runc"' "$CONF"; then
  printf '%s\n' "# Written by scripts/image-deps.sh; used through CONTAINERS_CONF by scripts/image-test.sh only." \
    "[engine]" 'runtime = "runc"' > "$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
fi

if ! out="$(CONTAINERS_CONF="$CONF" podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1)"; then
  echo "image-deps: podman cannot run here: $(echo "$out" | tail -1)" >&2
  exit 1
fi
echo "$CONF"
