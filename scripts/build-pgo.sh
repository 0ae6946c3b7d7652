#!/usr/bin/env bash
# scripts/build-pgo.sh: builds gangway with profile-guided optimisation and
# leaves it at target/pgo/gangway.
#
# A proxy's request path runs through many small functions spread over
# its crates and their dependencies (the parser, the header map, the
# runtime, the allocator); laid out without knowing which are hot, they
# miss the instruction cache on every request. This script builds gangway
# once with instrumentation, runs it under a training load, and builds it
# again with the counts: the compiler then inlines along the hot paths and
# places hot code together. bench/README.md ("Profile-guided build") has
# what it changes and by how much.
#
# The training load is not one of the benchmark's cases: several routes,
# browser-like request fields, uploads, HTTPS over HTTP/1.1 and HTTP/2,
# large and small responses, new and kept connections, access logs on
# and off, one backend over HTTP/1.1 and one over h2c.
#
# Needs llvm-profdata of the LLVM version rustc was built with (`rustc
# -vV`): rustup's llvm-tools component, or Debian's llvm-<major> package,
# which the script installs when it is missing; and wrk and h2load for the
# load (Debian's wrk and nghttp2-client, installed likewise). Takes about
# two release builds' time (some 12 minutes on 2 cores).
#
# Options (environment): PGO_TRAIN_SECONDS (seconds per load, default 2).
#
# `scripts/build-pgo.sh --source-id` prints what identifies the sources a
# build is made from (gangway's crates and the lock file, with "-dirty"
# when they have changes not committed); the build leaves the same in
# target/pgo/source, so that bench/run.sh knows when it can reuse one.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

source_id() {
    local id
    id=$(git -C "$ROOT" ls-tree HEAD crates Cargo.toml Cargo.lock | git hash-object --stdin | cut -c1-12)
    [[ -z $(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock) ]] || id+=-dirty
    echo "$id"
}
if [[ ${1:-} == --source-id ]]; then
    source_id
    exit 0
fi

SECONDS_EACH=${PGO_TRAIN_SECONDS:-2}
OUT=$ROOT/target/pgo
HOST=$(rustc -vV | sed -n 's/^host: //p')
LLVM_MAJOR=$(rustc -vV | sed -n 's/^LLVM version: \([0-9]*\).*/\1/p')
# One target directory for both builds, and an explicit --target, so that
# the instrumentation (RUSTFLAGS) reaches gangway's own code only: build
# scripts and proc macros are built once, without it, and shared.
BUILD_DIR=$ROOT/target/pgo-build
BIN=$BUILD_DIR/$HOST/release/gangway
BACKEND_BIN=$ROOT/target/release/gangway-bench-backend

log() { printf '[pgo %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

apt_install() {
    log "installing $*"
    local sudo=""
    ((EUID == 0)) || sudo=sudo
    $sudo apt-get update -qq >/dev/null 2>&1 || true
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

find_profdata() {
    local candidate
    for candidate in \
        "$(rustc --print sysroot)/lib/rustlib/$HOST/bin/llvm-profdata" \
        "$(command -v "llvm-profdata-$LLVM_MAJOR" || true)" \
        "/usr/lib/llvm-$LLVM_MAJOR/bin/llvm-profdata"; do
        [[ -n $candidate && -x $candidate ]] && { echo "$candidate"; return 0; }
    done
    return 1
}

PROFDATA=$(find_profdata || true)
if [[ -z $PROFDATA ]]; then
    apt_install "llvm-$LLVM_MAJOR" || true
    PROFDATA=$(find_profdata) || die "no llvm-profdata for LLVM $LLVM_MAJOR (rustc's): install Debian's llvm-$LLVM_MAJOR or run \`rustup component add llvm-tools\`; \`cargo build --release -p gangway\` builds gangway without profiles"
fi
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
((${#missing[@]} == 0)) || apt_install "${missing[@]}"
for tool in wrk h2load curl openssl python3; do
    command -v "$tool" >/dev/null || die "$tool is needed for the training load"
done

WORK=$(mktemp -d /tmp/gangway-pgo.XXXXXX)
declare -a PIDS=()
cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

log "building gangway with instrumentation (llvm-profdata: $PROFDATA)"
(cd "$ROOT" && cargo build --release --locked -q -p gangway-bench-backend)
(cd "$ROOT" && RUSTFLAGS="-Cprofile-generate=$WORK/unused" CARGO_TARGET_DIR=$BUILD_DIR \
    cargo build --release --locked -q -p gangway --target "$HOST")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BACKEND_PORT=$(free_port)
"$BACKEND_BIN" --listen "127.0.0.1:$BACKEND_PORT" >"$WORK/backend.log" 2>&1 &
PIDS+=($!)
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=train.test \
    -addext "subjectAltName=DNS:train.test,DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
cat >"$WORK/gangway.toml" <<EOF
[[pools]]
name = "h1"
targets = ["127.0.0.1:$BACKEND_PORT"]

[[pools]]
name = "h2c"
protocol = "h2c"
targets = ["127.0.0.1:$BACKEND_PORT"]

[[routes]]
name = "site"
hosts = ["train.test", "www.train.test"]
pool = "h1"

[[routes]]
name = "api"
hosts = ["api.train.test"]
pool = "h2c"
EOF
for i in $(seq 200); do printf '\n[[routes]]\nname = "r%d"\nhosts = ["s%d.train.test"]\npool = "h1"\n' "$i" "$i"; done >>"$WORK/gangway.toml"
head -c 20000 /dev/zero | tr '\0' 'x' >"$WORK/upload"

BROWSER=(-H 'User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0'
    -H 'Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'
    -H 'Accept-Language: en-GB,en;q=0.5' -H 'Accept-Encoding: gzip, deflate, br'
    -H 'Cookie: session=4f1c2a; theme=dark')

# Runs the instrumented gangway at log level $1 under the loads below; the
# profile is written when it exits.
train() {
    local level=$1 http https admin pid
    http=$(free_port) https=$(free_port) admin=$(free_port)
    LLVM_PROFILE_FILE="$WORK/profiles/gangway-$level-%p.profraw" \
        GANGWAY_CONFIG=$WORK/gangway.toml HTTP_PORT=$http HTTPS_ENABLED=true HTTPS_PORT=$https \
        TLS_CERT_PATH=$WORK/cert.pem TLS_KEY_PATH=$WORK/key.pem CONTROL_PLANE_ADDR=127.0.0.1:$admin \
        DOCKER_HOST=unix://$WORK/no-docker.sock GANGWAY_WORKERS=1 RUST_LOG=$level \
        "$BIN" >"$WORK/gangway-$level.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    for _ in $(seq 100); do
        curl -fs -o /dev/null -H 'Host: train.test' "http://127.0.0.1:$http/" && break
        sleep 0.1
    done
    curl -fs -o /dev/null -H 'Host: train.test' "http://127.0.0.1:$http/" || die "gangway did not start: $(cat "$WORK/gangway-$level.log")"
    local d=${SECONDS_EACH}s
    log "training at log level $level"
    wrk -t1 -c48 -d"$d" "${BROWSER[@]}" -H 'Host: www.train.test' "http://127.0.0.1:$http/" >/dev/null
    wrk -t1 -c32 -d"$d" -H 'Host: s117.train.test' "http://127.0.0.1:$http/?page=2" >/dev/null
    wrk -t1 -c8 -d"$d" -H 'Host: train.test' "http://127.0.0.1:$http/1m" >/dev/null
    h2load --h1 -c16 -D "$SECONDS_EACH" -d "$WORK/upload" -H 'Host: train.test' "http://127.0.0.1:$http/" >/dev/null
    h2load --h1 -c16 -D "$SECONDS_EACH" -H 'Host: api.train.test' "http://127.0.0.1:$http/" >/dev/null
    wrk -t1 -c32 -d"$d" "${BROWSER[@]}" -H 'Host: train.test' "https://localhost:$https/" >/dev/null
    h2load -c8 -m50 -D "$SECONDS_EACH" "${BROWSER[@]}" -H ':authority: train.test' "https://localhost:$https/" >/dev/null
    wrk -t1 -c8 -d"$d" -H 'Host: train.test' -H 'Connection: close' "https://localhost:$https/" >/dev/null
    wrk -t1 -c8 -d"$d" -H 'Host: nowhere.test' "http://127.0.0.1:$http/" >/dev/null
    kill -INT "$pid"
    wait "$pid" || true
}
mkdir -p "$WORK/profiles"
train warn
train info
ls "$WORK"/profiles/*.profraw >/dev/null 2>&1 || die "the training runs wrote no profile"
"$PROFDATA" merge -o "$WORK/gangway.profdata" "$WORK"/profiles/*.profraw

log "building gangway with the profile"
(cd "$ROOT" && RUSTFLAGS="-Cprofile-use=$WORK/gangway.profdata" CARGO_TARGET_DIR=$BUILD_DIR \
    cargo build --release --locked -q -p gangway --target "$HOST")
mkdir -p "$OUT"
cp "$BIN" "$OUT/gangway"
source_id >"$OUT/source"
log "built $OUT/gangway (sources $(cat "$OUT/source"))"
