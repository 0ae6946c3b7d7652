#!/usr/bin/env bash
# Runs gangway's whole test suite: formatting, lints, unit tests and the
# end-to-end tests against the real Docker engine. Installs what it needs on
# a fresh Debian machine (curl, openssl, the Docker engine, cargo-nextest).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '== %s\n' "$*"; }

apt_install() {
    log "installing $*"
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
command -v docker >/dev/null || missing+=(docker.io)
command -v tar >/dev/null || missing+=(tar)
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# The end-to-end tests need a running engine; start one if it is installed
# but not running (a fresh machine that just installed docker.io).
if ! docker info >/dev/null 2>&1; then
    log "starting the Docker engine"
    (service docker start || (dockerd >/tmp/dockerd.log 2>&1 &)) >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "the Docker engine is not reachable; see /tmp/dockerd.log" >&2; exit 1; }
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install cargo-nextest --locked
fi

log "cargo fmt --check"
cargo fmt --all -- --check

# The bench and build scripts are not run here (they take minutes and a
# quiet machine), but they must at least parse.
log "bash -n on the scripts"
for script in scripts/*.sh bench/*.sh fuzz/run.sh; do
    bash -n "$script"
done

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# One build shared by every test: the binaries the end-to-end tests start
# (gangway, the test backend) and the test executables themselves.
log "building"
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --no-run

log "running the tests"
cargo nextest run --workspace --locked --no-fail-fast "$@"
