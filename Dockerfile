# syntax=docker/dockerfile:1
# openclaw-space: the OpenClaw gateway on a Hugging Face Docker Space, with `entrypoint` as PID 1.
#
#   docker build -t openclaw-space .
#   docker run --rm -p 7860:7860 -e OPENCLAW_GATEWAY_TOKEN=... openclaw-space
#   docker run --rm openclaw-space status      # or backup, restore, verify, config, --help
#
# scripts/deploy-space.py uploads it, as it is, to a Space. Add tools in a stage of your own at
# the end (see spaces/huggingface/README.md) rather than editing the stages here. Checked in CI
# as text by scripts/check-dockerfile.py (tests/space.rs), and built and run by
# scripts/image-test.sh.
# No secret belongs in this file, a build arg or an ENV: Spaces pass secrets at run time.

# Versions are pinned so a rebuild is the same image. The build stage uses the same Debian
# release as the runtime, so the binary links against the same glibc.
ARG RUST_IMAGE=rust:1.95.0-slim-bookworm
ARG NODE_IMAGE=node:24.21.0-bookworm-slim

# --- build: the entrypoint binary ---------------------------------------------------------
FROM ${RUST_IMAGE} AS build
WORKDIR /build
COPY Cargo.toml Cargo.lock ./
# .cargo/config.toml: build flags of the bundled SQLite (its sqlite_dbpage table).
COPY .cargo ./.cargo
COPY src ./src
# --locked: build exactly what Cargo.lock says. The cache mounts only speed up rebuilds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked \
    && install -m 0755 target/release/entrypoint /usr/local/bin/entrypoint

# --- runtime: Node 24 + the pinned OpenClaw + entrypoint ------------------------------------
FROM ${NODE_IMAGE} AS runtime
# The OpenClaw release this image runs. Never `latest`: a rebuild (every commit to the Space
# repo, every restart) would silently upgrade the gateway under an existing state dir.
ARG OPENCLAW_VERSION=2026.9.6

# ca-certificates: HTTPS to the Hub and model providers. The rest is what Spaces Dev Mode needs
# (bash, curl, wget, procps, git, git-lfs).
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       bash ca-certificates curl wget procps git git-lfs \
    && rm -rf /var/lib/apt/lists/*

# Installed as root into /usr/local (read-only for the app), but never *run* as root here: the
# first CLI call creates its log folder in /tmp owned by whoever ran it, and the uid-1000
# runtime would then hit EACCES. Clear npm's and the install scripts' leftovers for the same reason.
RUN npm install -g --no-audit --no-fund --loglevel=error "openclaw@${OPENCLAW_VERSION}" \
    && npm cache clean --force \
    && rm -rf /tmp/* /root/.npm

# Spaces run the container as uid 1000. The node image already has uid 1000 ("node"); rename it
# to the conventional "user" with HOME /home/user (Dev Mode and the HF docs expect that path).
# The symlink is made now, as root, so no later step needs root; its target is copied last.
RUN usermod --login user --home /home/user --move-home node \
    && groupmod --new-name user node \
    && mkdir -p /app \
    && chown 1000:1000 /app /home/user \
    && ln -s /app/entrypoint /usr/local/bin/entrypoint

USER user
ENV HOME=/home/user \
    PORT=7860 \
    OPENCLAW_NO_AUTO_UPDATE=1

# A warm Node compile cache, so every start skips compiling OpenClaw's modules (measured by
# scripts/image-test.sh). OpenClaw keeps it in $TMPDIR/node-compile-cache/openclaw/<version>/
# <install marker>/ (no NODE_COMPILE_CACHE: setting it makes OpenClaw re-spawn itself), so
# another OpenClaw version never reads this one. Filled by starting the gateway once, as uid 1000
# like at run time (never as root: see above), on loopback with a throwaway state dir; then
# everything else it left in /tmp goes. A gateway that does not get ready in 180 s leaves a
# cold cache and a warning, not a failed build. This layer depends on OpenClaw only, so a
# change to the entrypoint does not redo it.
RUN mkdir -p /tmp/warm; \
    OPENCLAW_HOME=/tmp/warm OPENCLAW_GATEWAY_TOKEN=build-time-warm-up-only \
       openclaw gateway --allow-unconfigured --bind loopback --port 7860 >/tmp/warm/log 2>&1 & \
    pid=$!; i=0; \
    until curl -fso /dev/null http://127.0.0.1:7860/readyz; do \
      i=$((i + 1)); \
      if [ "$i" -ge 180 ] || ! kill -0 "$pid" 2>/dev/null; then \
        echo "warning: the gateway did not get ready; the compile cache stays cold"; tail -20 /tmp/warm/log; break; \
      fi; \
      sleep 1; \
    done; \
    kill -TERM "$pid" 2>/dev/null; wait "$pid"; \
    find /tmp -mindepth 1 -maxdepth 1 ! -name node-compile-cache -exec rm -rf {} + \
    && du -sh /tmp/node-compile-cache

# The app lives in /app owned by uid 1000 (a Dev Mode requirement); PATH finds it from there.
COPY --from=build --chown=1000:1000 /usr/local/bin/entrypoint /app/entrypoint
WORKDIR /app
EXPOSE 7860
# entrypoint is PID 1 and gets SIGTERM itself (it stops the gateway and takes a final backup).
# Exec form, and an ENTRYPOINT of our own: the node base image's `docker-entrypoint.sh` would
# otherwise wrap every command (`docker run IMAGE status` would run `node status`). So
# `docker run IMAGE` runs the service and `docker run IMAGE status|backup|restore|verify|config`
# reaches entrypoint.
ENTRYPOINT ["/app/entrypoint"]
CMD ["run"]
