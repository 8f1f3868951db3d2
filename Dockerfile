# stackhook: the `stackhook serve` provider, for Function Compute custom
# containers, Kubernetes, or any container host.
#
#   docker build -t stackhook .
#   docker run --rm -p 9000:9000 -e STACKHOOK_SECRET_KEY=... stackhook
#
# Every `stackhook serve` flag has a STACKHOOK_* environment variable
# (`docker run --rm stackhook --help` lists them). Give every replica the same
# STACKHOOK_SECRET_KEY, or mount a volume at /var/lib/stackhook: without
# either, each container creates its own key and Custom::RandomString values
# change at the resource's next Update. tests/dockerfile.rs checks this file.
#
# The journal lives in /var/lib/stackhook too. Without a volume mounted
# there, it is gone with the container, which is what the default
# STACKHOOK_JOURNAL_LIFETIME=process assumes: on SIGTERM, work still waiting
# for a poll after the grace period is answered FAILED before exit, so no
# stack waits for it. With a volume that the next container opens, set
# STACKHOOK_JOURNAL_LIFETIME=persistent, and that work stays in the journal
# and resumes at the next start:
#
#   docker run --rm -p 9000:9000 -v stackhook-state:/var/lib/stackhook \
#     -e STACKHOOK_JOURNAL_LIFETIME=persistent -e STACKHOOK_SECRET_KEY=... stackhook

# The toolchain stackhook is developed and tested with; not older than
# `rust-version` in Cargo.toml's [workspace.package].
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Everything the workspace is built from, nothing else (see .dockerignore):
# the core crate (src/), the built-in handlers, and crates/ (cloud clients,
# test kit, and the CLI with the `stackhook new` templates).
COPY Cargo.toml Cargo.lock README.md ./
COPY src ./src
COPY handlers ./handlers
COPY crates ./crates
# The guides and the README are compiled as the core crate's doc tests.
COPY docs ./docs
# Cargo checks that every declared target exists, even for a --bin build.
COPY benches ./benches
# --locked: exactly the dependency versions in Cargo.lock. The binary is the
# stackhook-cli package's.
RUN cargo build --release --locked -p stackhook-cli --bin stackhook \
    && cp target/release/stackhook /usr/local/bin/stackhook

FROM debian:bookworm-slim
# CA certificates for HTTPS callbacks; a system user with a fixed uid, so
# `runAsNonRoot` policies can verify it; the state directory it owns.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 stackhook \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/stackhook --shell /usr/sbin/nologin stackhook \
    && mkdir -p /var/lib/stackhook \
    && chown 10001:10001 /var/lib/stackhook \
    && chmod 0700 /var/lib/stackhook
COPY --from=build /usr/local/bin/stackhook /usr/local/bin/stackhook
ENV STACKHOOK_STATE_DIR=/var/lib/stackhook
WORKDIR /var/lib/stackhook
USER 10001:10001
# Function Compute's default CAPort, and stackhook's default listen port.
EXPOSE 9000
# SIGTERM (the default stop signal): in-flight requests, and polls due within
# STACKHOOK_SHUTDOWN_GRACE (20 s), finish and answer; handlers still running
# are then answered FAILED, work still waiting is settled as above, answers
# get a final 5 s, and stackhook exits 0, about 26 s after the signal at most.
# `docker stop` sends SIGKILL after 10 s unless told otherwise: use
# `docker stop --time 30` (or `docker run --stop-timeout 30`), or a shorter grace.
ENTRYPOINT ["/usr/local/bin/stackhook", "serve"]
