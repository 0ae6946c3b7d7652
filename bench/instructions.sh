#!/usr/bin/env bash
# bench/instructions.sh: user-space instructions per proxied request, for
# gangway and nginx, counted by valgrind's callgrind. Unlike req/s this
# figure does not move with the machine's load, so it shows what a change
# to the data path costs or saves.
#
# Each proxy runs twice under callgrind, loaded with N0 and N0 + N
# requests (h2load --h1, 64 connections, GET / with the bench Host); the
# difference over N is the cost of one request, start-up and shutdown
# cancelled out. The backend is bench/backend. Only user space is counted:
# the kernel's share (the system calls, the same four per request for
# both) is not.
#
# glibc copies and clears large blocks with `rep movsb` / `rep stosb`,
# which callgrind counts as one instruction per byte although the CPU
# moves 32 or more bytes a cycle; the tunables below keep glibc on its
# vector loops, so that a copy counts about what it costs (for both
# proxies alike).
#
# Options (environment): INSTR_REQUESTS (N, default 10000),
# INSTR_PEERS (default "gangway nginx"), INSTR_KEEP (a directory to copy
# the callgrind profiles to, for callgrind_annotate), INSTR_HOSTS (a
# routing table of that many more hosts, h00001.test ..., each routed like
# bench.test, and the requests sent to the one in the middle: case 6's
# table, counted), INSTR_LOGS=1 (access logs on, as in case 1's second
# figure: gangway RUST_LOG=info to a file, nginx's access_log combined),
# INSTR_GANGWAY (the gangway binary to count, default the release build;
# target/pgo/gangway for the profile-guided one of scripts/build-pgo.sh).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${INSTR_REQUESTS:-10000}
NHOSTS=${INSTR_HOSTS:-0}
LOGS=${INSTR_LOGS:-0}
HIT=bench.test
if ((NHOSTS > 0)); then HIT=$(printf 'h%05d.test' $(((NHOSTS + 1) / 2))); fi
host_list() { if ((NHOSTS > 0)); then seq -f 'h%05g.test' 1 "$NHOSTS"; fi; }
N0=2000
read -r -a PEERS <<<"${INSTR_PEERS:-gangway nginx}"
GANGWAY=${INSTR_GANGWAY:-$ROOT/target/release/gangway}
BACKEND_BIN=$ROOT/target/release/gangway-bench-backend

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v h2load >/dev/null || missing+=(nghttp2-client)
command -v nginx >/dev/null || missing+=(nginx)
if ((${#missing[@]})); then
    as_root=""
    [[ $(id -u) != 0 ]] && as_root=sudo
    $as_root apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# gangway's release build only when it is the one counted.
packages=(-p gangway-bench-backend)
[[ -z ${INSTR_GANGWAY:-} ]] && packages+=(-p gangway)
(cd "$ROOT" && cargo build --release --locked -q "${packages[@]}")

WORK=$(mktemp -d /tmp/gangway-instr.XXXXXX)
GANGWAY_LEVEL=warn NGINX_ACCESS=off
if ((LOGS)); then GANGWAY_LEVEL=info NGINX_ACCESS="$WORK/access.log combined"; fi
BACKEND_PID=""
cleanup() {
    [[ -n $BACKEND_PID ]] && kill "$BACKEND_PID" 2>/dev/null
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
BPORT=$(free_port) PPORT=$(free_port) APORT=$(free_port)
taskset -c 1 "$BACKEND_BIN" --listen "127.0.0.1:$BPORT" >"$WORK/backend.log" 2>&1 &
BACKEND_PID=$!

cat >"$WORK/gangway.toml" <<T
[[pools]]
name = "backend"
targets = ["127.0.0.1:$BPORT"]
timeouts = { max_idle_per_target = 1024 }

[[routes]]
name = "bench"
hosts = ["bench.test"]
pool = "backend"
T
host_list | awk '{printf "\n[[routes]]\nname = \"r%d\"\nhosts = [\"%s\"]\npool = \"backend\"\n", NR, $1}' >>"$WORK/gangway.toml"
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<T
worker_processes 1;
daemon off;
master_process off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log $NGINX_ACCESS;
    client_body_temp_path $WORK/nginx/cb; proxy_temp_path $WORK/nginx/p;
    fastcgi_temp_path $WORK/nginx/f; uwsgi_temp_path $WORK/nginx/u; scgi_temp_path $WORK/nginx/s;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$BPORT; keepalive 1024; keepalive_requests 1000000; }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Real-IP \$remote_addr;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Host \$host;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_buffering off;
    server { listen 127.0.0.1:$PPORT default_server; return 404; }
    server_names_hash_max_size 65536;
    server_names_hash_bucket_size 64;
    server { listen 127.0.0.1:$PPORT; server_name bench.test; location / { proxy_pass http://backend; } }
$(host_list | awk -v port="$PPORT" '{printf "    server { listen 127.0.0.1:%s; server_name %s; location / { proxy_pass http://backend; } }\n", port, $1}')
}
T

export GLIBC_TUNABLES=glibc.cpu.x86_rep_movsb_threshold=4294967295:glibc.cpu.x86_rep_stosb_threshold=4294967295

# Runs one proxy under callgrind with `requests` requests; prints its
# instruction total.
counted_run() {
    local peer=$1 requests=$2 out=$WORK/callgrind.$1.$2 pid i
    case $peer in
    gangway)
        GANGWAY_CONFIG=$WORK/gangway.toml HTTP_PORT=$PPORT CONTROL_PLANE_ADDR=127.0.0.1:$APORT \
            DOCKER_HOST=unix://$WORK/no-docker.sock GANGWAY_WORKERS=1 RUST_LOG=$GANGWAY_LEVEL \
            taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" "$GANGWAY" >"$WORK/$peer.log" 2>&1 &
        ;;
    nginx)
        taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$out" \
            nginx -c "$WORK/nginx.conf" -e "$WORK/nginx/error.log" >"$WORK/$peer.log" 2>&1 &
        ;;
    esac
    pid=$!
    for i in $(seq 150); do
        curl -fs -o /dev/null -H 'Host: bench.test' "http://127.0.0.1:$PPORT/" && break
        ((i == 150)) && { echo "$peer did not start: $(cat "$WORK/$peer.log")" >&2; exit 1; }
        sleep 0.2
    done
    taskset -c 1 h2load --h1 -n "$requests" -c 64 -t 1 -H ":authority: $HIT" \
        "http://127.0.0.1:$PPORT/" >"$WORK/h2load.log" 2>&1
    grep -q "$requests succeeded" "$WORK/h2load.log" || { echo "$peer: requests failed: $(cat "$WORK/h2load.log")" >&2; exit 1; }
    kill -INT "$pid" 2>/dev/null || true
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    awk '/^(summary|totals):/ {print $2; exit}' "$out"
}

printf '| proxy | instructions per request | ratio to nginx |\n| --- | ---: | ---: |\n' >"$WORK/table"
declare -A PER=()
for peer in "${PEERS[@]}"; do
    a=$(counted_run "$peer" "$N0")
    b=$(counted_run "$peer" $((N0 + N)))
    PER[$peer]=$(((b - a) / N))
done
for peer in "${PEERS[@]}"; do
    ratio=-
    [[ -n ${PER[nginx]:-} ]] && ratio=$(awk -v a="${PER[$peer]}" -v b="${PER[nginx]}" 'BEGIN {printf "%.2f", a / b}')
    printf '| %s | %d | %s |\n' "$peer" "${PER[$peer]}" "$ratio" >>"$WORK/table"
done
if [[ -n ${INSTR_KEEP:-} ]]; then
    mkdir -p "$INSTR_KEEP" && cp "$WORK"/callgrind.* "$INSTR_KEEP"/
fi
tables=""
((NHOSTS > 0)) && tables="; $NHOSTS more hosts, requests to $HIT"
echo "user-space instructions per request (callgrind, h2load --h1 -c64, $N requests$tables; commit $(git -C "$ROOT" rev-parse --short HEAD))"
cat "$WORK/table"
