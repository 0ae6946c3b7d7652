#!/usr/bin/env bash
# bench/run.sh: gangway side by side with nginx, same backend, same core.
#
# One command: installs what is missing (Debian packages), builds gangway and
# the test backend, runs the backend in a local container, starts gangway and
# nginx (each pinned to CPU 0), loads each with wrk (pinned to CPU 1, where the
# backend also runs) in interleaved rounds, and prints a markdown table of
# medians. The table is also written to bench/out/latest.md.
#
# Options (environment):
#   BENCH_SECONDS      measured seconds per run (default 8)
#   BENCH_ROUNDS       interleaved rounds per target (default 3)
#   BENCH_CONNECTIONS  wrk connections (default 64)
#   BENCH_WARMUP       warmup seconds before each measured run (default 2)
#   BENCH_BUILD_TRIES  cargo build attempts, 60 s apart (default 3): the
#                      workspace is edited concurrently, a broken build may be
#                      fixed a minute later
#   BENCH_QUIET_WAIT   seconds to wait at most, before each run, for the
#                      machine to be quiet (default 15; 0 = don't wait): on
#                      a shared machine other builds/tests skew the figures
set -euo pipefail

SECONDS_PER_RUN=${BENCH_SECONDS:-8}
ROUNDS=${BENCH_ROUNDS:-3}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
WARMUP=${BENCH_WARMUP:-2}
BUILD_TRIES=${BENCH_BUILD_TRIES:-3}
QUIET_WAIT=${BENCH_QUIET_WAIT:-15}

HOST_HEADER=bench.test
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=$ROOT/bench/out
TAG=gwbench-$$
NET=$TAG
CONTAINER=$TAG-backend
IMAGE=gwbench-backend:$$

WORK=""            # temp dir, made after the trap is set
GANGWAY_PID=""
NGINX_PID=""
NET_CREATED=0
IMAGE_CREATED=0
CONTAINER_CREATED=0

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup ---
# Always runs (EXIT trap), also after a failure half-way: everything this run
# started is stopped and removed, by its own pid / name.
stop_pid() {
    local pid=$1 sig=${2:-TERM} i
    [[ -n $pid ]] || return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    set +e
    stop_pid "$GANGWAY_PID"; GANGWAY_PID=""
    stop_pid "$NGINX_PID" QUIT; NGINX_PID=""
    ((CONTAINER_CREATED)) && docker rm -f "$CONTAINER" >/dev/null 2>&1
    ((NET_CREATED)) && docker network rm "$NET" >/dev/null 2>&1
    ((IMAGE_CREATED)) && docker image rm -f "$IMAGE" >/dev/null 2>&1
    [[ -n $WORK && -d $WORK ]] && rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ setup ---
ensure_tools() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx-light)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v curl >/dev/null || missing+=(curl)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    command -v docker >/dev/null || die "docker is required (not installable here by this script)"
    docker info >/dev/null 2>&1 || die "the Docker daemon is not reachable"
    # nginx-light's package starts a system nginx on :80; ours does not need it
    # and it costs nothing idle, so it is left alone.
}

build() {
    local try
    for try in $(seq "$BUILD_TRIES"); do
        log "cargo build --release (try $try/$BUILD_TRIES)"
        if (cd "$ROOT" && cargo build --release -q -p gangway -p gangway-testkit); then
            return 0
        fi
        ((try < BUILD_TRIES)) && { log "build failed; the workspace may be mid-edit, retrying in 60 s"; sleep 60; }
    done
    die "cargo build failed $BUILD_TRIES times (see above)"
}

# A port nothing listens on: ask the kernel for an ephemeral one (python3), else
# probe random ports with bash's /dev/tcp. Ports already handed out are skipped.
# Sets the variable named $1 (not echoed: a $(...) subshell would lose USED_PORTS).
USED_PORTS=" "
free_port() {
    local -n port_var=$1
    local p i
    for i in $(seq 50); do
        if command -v python3 >/dev/null; then
            p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        else
            p=$((20000 + RANDOM % 40000))
            (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        fi
        [[ $USED_PORTS == *" $p "* ]] && continue
        USED_PORTS+="$p "
        port_var=$p; return 0
    done
    die "no free port found"
}

# Bounded wait until `curl ARGS...` succeeds (exit 0 with -f: HTTP 2xx).
wait_http() {
    local what=$1 tries=$2; shift 2
    local i
    for i in $(seq "$tries"); do
        curl -fs -o /dev/null --max-time 1 "$@" && return 0
        sleep 0.1
    done
    die "$what did not become ready (curl $*)"
}

# The backend image: no registry, so a rootfs made of the release binary and
# exactly the shared libraries ldd names (at their absolute paths, the loader
# included), imported with docker import.
build_backend_image() {
    local bin=$ROOT/target/release/gangway-test-backend rootfs=$WORK/rootfs lib
    mkdir -p "$rootfs"
    cp "$bin" "$rootfs/backend"
    for lib in $(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        cp -L --parents "$lib" "$rootfs/"
    done
    tar -C "$rootfs" -c . | docker import --change 'ENTRYPOINT ["/backend"]' - "$IMAGE" >/dev/null
    IMAGE_CREATED=1
}

start_backend() {
    docker network create "$NET" >/dev/null; NET_CREATED=1
    CONTAINER_CREATED=1   # set first: a failed run may still leave a container
    docker run -d --name "$CONTAINER" --cpuset-cpus=1 --network "$NET" \
        -e BACKEND_NAME=bench \
        -l "reverse-proxy.host=$HOST_HEADER" -l reverse-proxy.port=80 \
        "$IMAGE" >/dev/null
    BACKEND_IP=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$NET\").IPAddress}}" "$CONTAINER")
    [[ -n $BACKEND_IP ]] || die "no IP for $CONTAINER on $NET"
    BACKEND_PID=$(docker inspect -f '{{.State.Pid}}' "$CONTAINER")
    wait_http backend 100 -H "Host: $HOST_HEADER" "http://$BACKEND_IP:80/"
}

# gangway with logs off (RUST_LOG=warn) or on (RUST_LOG=info); its stdout and
# stderr go to a file either way, so warnings under load can be reported.
start_gangway() {
    local logs=$1 level=warn
    [[ $logs == on ]] && level=info
    GANGWAY_LOG=$WORK/gangway-$logs.log
    PROXY_DOCKER_NETWORK=$NET HTTP_PORT=$GANGWAY_PORT \
        CONTROL_PLANE_ADDR=127.0.0.1:$GANGWAY_ADMIN_PORT \
        GANGWAY_WORKERS=1 RUST_LOG=$level \
        taskset -c 0 "$ROOT/target/release/gangway" >"$GANGWAY_LOG" 2>&1 &
    GANGWAY_PID=$!
    wait_http "gangway /readyz" 100 "http://127.0.0.1:$GANGWAY_ADMIN_PORT/readyz"
    # Discovery is asynchronous: wait until the route to the container works.
    wait_http "gangway route" 100 -H "Host: $HOST_HEADER" "http://127.0.0.1:$GANGWAY_PORT/"
}

# nginx configured as close to gangway as nginx allows: one worker, upstream
# keepalive, HTTP/1.1 upstream, the same forwarding headers, no buffering
# (gangway streams). keepalive_requests is raised on both sides because
# gangway does not close a connection after N requests and nginx's default of
# 1000 would make wrk reconnect every 1000 requests.
start_nginx() {
    local logs=$1
    local dir=$WORK/nginx-$logs access="off"
    mkdir -p "$dir"; chmod 755 "$WORK" "$dir"
    [[ $logs == on ]] && access="$dir/access.log combined"
    cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log $access;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    upstream backend {
        server $BACKEND_IP:80;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        server_name $HOST_HEADER;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_buffering off;
        }
    }
}
EOF
    NGINX_ERROR_LOG=$dir/error.log
    taskset -c 0 nginx -e "$dir/error.log" -c "$dir/nginx.conf" -p "$dir" &
    NGINX_PID=$!
    wait_http nginx 100 -H "Host: $HOST_HEADER" "http://127.0.0.1:$NGINX_PORT/"
    # The worker is the master's only child; it does the proxying.
    NGINX_WORKER_PID=$(cat "/proc/$NGINX_PID/task/$NGINX_PID/children" | awk '{print $1}')
    [[ -n $NGINX_WORKER_PID ]] || die "no nginx worker process"
}

stop_proxies() {
    stop_pid "$GANGWAY_PID"; GANGWAY_PID=""
    stop_pid "$NGINX_PID" QUIT; NGINX_PID=""
}

# ----------------------------------------------------------- measurement ---
CLK_TCK=$(getconf CLK_TCK)
# CPU seconds*CLK_TCK (utime+stime) a process has used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
# Busy ticks (user+nice+system, softirq excluded) of CPU $1 since boot.
core_ticks() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4}' /proc/stat; }
peak_rss_mib() { awk '/^VmHWM:/ {printf "%.1f MiB", $2 / 1024}' "/proc/$1/status" 2>/dev/null; }

# Converts wrk's latency ("812.00us", "1.23ms", "1.02s") to milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0
        else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

# Bounded wait until, for half a second, other processes use under 10 % of
# each core (ours are idle between runs). Shared machines run builds and
# tests of other people; a run under such load is flagged in the table.
wait_quiet() {
    local i a0 b0 a1 b1 half=$((CLK_TCK / 2))
    for i in $(seq $((QUIET_WAIT * 2))); do
        a0=$(core_ticks 0); b0=$(core_ticks 1)
        sleep 0.5
        a1=$(core_ticks 0); b1=$(core_ticks 1)
        if ((a1 - a0 < half / 10 && b1 - b0 < half / 10)); then return 0; fi
    done
    ((QUIET_WAIT == 0)) || log "  machine not quiet after ${QUIET_WAIT} s, measuring anyway"
}

# One measured run: warmup (discarded), then the real run. Appends
# "rps p50ms p99ms errors cpu% other-cpu0% busy-cpu1%" to $WORK/results/<mode>-<target>.
# CPU% is the pid's CPU use during the measured run: 100 means its core
# was saturated, so req/s is then a cost-per-request figure.
run_wrk() {
    local mode=$1 target=$2 url=$3 pid=$4
    local out=$WORK/wrk/$mode-$target-$(date +%s%N).txt t0 t1 c0 c1 a0 a1 b0 b1
    wait_quiet
    taskset -c 1 wrk -t1 "-c$CONNECTIONS" "-d${WARMUP}s" -H "Host: $HOST_HEADER" "$url" >/dev/null
    c0=$(cpu_ticks "$pid"); a0=$(core_ticks 0); b0=$(core_ticks 1); t0=$(date +%s%N)
    taskset -c 1 wrk -t1 "-c$CONNECTIONS" "-d${SECONDS_PER_RUN}s" --latency -H "Host: $HOST_HEADER" "$url" >"$out"
    c1=$(cpu_ticks "$pid"); a1=$(core_ticks 0); b1=$(core_ticks 1); t1=$(date +%s%N)
    local rps p50 p99 errors cpu other0 busy1
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(to_ms "$(awk '/Latency Distribution/ {d=1} d && $1 == "50%" {print $2; exit}' "$out")")
    p99=$(to_ms "$(awk '/Latency Distribution/ {d=1} d && $1 == "99%" {print $2; exit}' "$out")")
    # Socket errors (connect/read/write/timeout) plus non-2xx/3xx responses.
    errors=$(awk '/Socket errors:/ {gsub(",", ""); s += $4 + $6 + $8 + $10}
                  /Non-2xx or 3xx responses:/ {s += $5} END {print s + 0}' "$out")
    cpu=$(awk -v c="$((c1 - c0))" -v t="$((t1 - t0))" -v hz="$CLK_TCK" \
        'BEGIN {printf "%.0f", 100 * (c / hz) / (t / 1e9)}')
    # Noise: CPU 0 time not used by the proxy under test (other processes on
    # a shared machine; for the backend target, nothing of ours runs there),
    # and how busy CPU 1 (wrk + backend) was: near 100 the load side limits.
    local own=$((c1 - c0))
    [[ $target == backend ]] && own=0
    other0=$(awk -v c="$((a1 - a0 - own))" -v t="$((t1 - t0))" -v hz="$CLK_TCK" \
        'BEGIN {v = 100 * (c / hz) / (t / 1e9); printf "%.0f", v < 0 ? 0 : v}')
    busy1=$(awk -v c="$((b1 - b0))" -v t="$((t1 - t0))" -v hz="$CLK_TCK" \
        'BEGIN {printf "%.0f", 100 * (c / hz) / (t / 1e9)}')
    [[ -n $rps ]] || die "could not parse wrk output: $(cat "$out")"
    echo "$rps $p50 $p99 $errors $cpu $other0 $busy1" >>"$WORK/results/$mode-$target"
    log "  $mode $target: $rps req/s, p50 ${p50} ms, p99 ${p99} ms, errors $errors, cpu ${cpu}%, other on CPU 0 ${other0}%, CPU 1 busy ${busy1}%"
    if ((errors > 0)); then
        log "  wrk reported errors for $target:"; grep -E 'Socket errors|Non-2xx' "$out" >&2 || true
    fi
}

# Median of column $2 (1-based) of file $1, printed with format $3.
median() {
    awk -v col="$2" '{print $col}' "$1" | sort -g |
        awk -v fmt="${3:-%.2f}" '{v[NR] = $1} END {
            if (NR == 0) { print "n/a"; exit }
            if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
            printf fmt, m }'
}
sum_col() { awk -v col="$2" '{s += $col} END {print s + 0}' "$1"; }

# One mode (logs off / on): start both proxies, interleave rounds so drift
# (thermal, noisy neighbours) hits every target alike, record peak RSS.
measure_mode() {
    local mode=$1 r targets
    start_gangway "$mode"
    start_nginx "$mode"
    # The direct-to-backend ceiling does not depend on proxy logging: once.
    targets=(gangway nginx)
    [[ $mode == off ]] && targets=(backend gangway nginx)
    for r in $(seq "$ROUNDS"); do
        log "logs $mode, round $r/$ROUNDS"
        local t
        for t in "${targets[@]}"; do
            case $t in
                backend) run_wrk "$mode" backend "http://$BACKEND_IP:80/" "$BACKEND_PID" ;;
                gangway) run_wrk "$mode" gangway "http://127.0.0.1:$GANGWAY_PORT/" "$GANGWAY_PID" ;;
                nginx) run_wrk "$mode" nginx "http://127.0.0.1:$NGINX_PORT/" "$NGINX_WORKER_PID" ;;
            esac
        done
    done
    RSS[$mode-gangway]=$(peak_rss_mib "$GANGWAY_PID")
    RSS[$mode-nginx]="$(peak_rss_mib "$NGINX_WORKER_PID") (worker)"
    RSS[$mode-backend]=$(peak_rss_mib "$BACKEND_PID")
    check_gangway_log "$mode"
    if [[ -s $NGINX_ERROR_LOG ]]; then
        PROBLEMS+=("nginx (logs $mode) error log: $(head -1 "$NGINX_ERROR_LOG")")
    fi
    stop_proxies
}

# Warnings/errors gangway logged under load are findings, not noise, except
# those about containers this run did not create: the Docker daemon may be
# shared (other test runs), and gangway watches every container on it.
check_gangway_log() {
    local mode=$1 ours others
    # JSON log lines carry "level":"WARN"; text ones " WARN ".
    local level='"level":"(WARN|ERROR)"| (WARN|ERROR) '
    ours=$(grep -E "$level" "$GANGWAY_LOG" | grep -vE '"container":"' || true)
    ours+=$(grep -E "$level" "$GANGWAY_LOG" | grep -F "\"container\":\"$CONTAINER\"" || true)
    others=$(grep -E "$level" "$GANGWAY_LOG" | grep -E '"container":"' | grep -cvF "\"container\":\"$CONTAINER\"" || true)
    if [[ -n $ours ]]; then
        log "gangway logged warnings/errors (logs $mode):"
        awk 'NR <= 5' <<<"$ours" >&2
        PROBLEMS+=("gangway (logs $mode) logged $(wc -l <<<"$ours") warning/error lines, e.g. \`$(awk 'NR == 1' <<<"$ours" | cut -c1-300)\`")
    fi
    if ((others > 0)); then
        PROBLEMS+=("gangway (logs $mode) logged $others warnings about containers of other users of this Docker daemon: containers came and went during the run, so gangway also did discovery work on CPU 0")
    fi
}

# ---------------------------------------------------------------- report ---
table() {
    local mode=$1 nginx_rps t f rps p50 p99 ratio errors cpu other0 busy1
    nginx_rps=$(median "$WORK/results/$mode-nginx" 1)
    echo "### Access logs $mode"
    echo
    echo "| target | req/s | p50 ms | p99 ms | ratio to nginx (req/s) | peak RSS | CPU % | other load CPU 0 % | CPU 1 busy % | errors |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for t in backend gangway nginx; do
        f=$WORK/results/$mode-$t
        [[ -s $f ]] || continue
        rps=$(median "$f" 1); p50=$(median "$f" 2); p99=$(median "$f" 3)
        cpu=$(median "$f" 5 %.0f); errors=$(sum_col "$f" 4)
        other0=$(median "$f" 6 %.0f); busy1=$(median "$f" 7 %.0f)
        ratio=$(awk -v a="$rps" -v b="$nginx_rps" 'BEGIN {printf "%.2f", a / b}')
        local name=$t
        [[ $t == backend ]] && name="backend direct (ceiling)"
        echo "| $name | $(median "$f" 1 %.0f) | $p50 | $p99 | $ratio | ${RSS[$mode-$t]:-} | $cpu | $other0 | $busy1 | $errors |"
    done
    echo
}

report() {
    local commit dirty=""
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [[ -n $(git -C "$ROOT" status --porcelain -- crates Cargo.toml Cargo.lock 2>/dev/null) ]] && dirty=" (+ uncommitted changes)"
    echo "## gangway vs nginx, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "- machine: $(nproc) CPUs, kernel $(uname -r); proxies pinned to CPU 0, wrk and backend to CPU 1"
    echo "- $(nginx -v 2>&1), $(wrk -v 2>&1 | head -1 | awk '{print $1, $2}')"
    echo "- gangway commit $commit$dirty, GANGWAY_WORKERS=1"
    echo "- wrk -t1 -c$CONNECTIONS, ${SECONDS_PER_RUN} s runs after ${WARMUP} s warmup, $ROUNDS interleaved rounds, medians shown"
    echo
    table off
    table on
    echo "Ratios are from one run on one machine; compare them, not absolute figures across machines."
    echo "CPU % is the measured process (nginx: its worker) during the runs; 100 means its core was the limit."
    echo "'other load CPU 0' is CPU 0 time used by anything else (a shared machine); 'CPU 1 busy' is wrk + backend (+ others): near 100 the load side limits."
    local best ceil
    best=$(for f in "$WORK"/results/off-gangway "$WORK"/results/off-nginx; do median "$f" 1; echo; done | sort -g | tail -1)
    ceil=$(median "$WORK/results/off-backend" 1)
    if awk -v c="$ceil" -v b="$best" 'BEGIN {exit !(c < 1.3 * b)}'; then
        PROBLEMS+=("the backend ceiling ($ceil req/s) is less than 1.3x the best proxy ($best req/s): the proxies may be limited by CPU 1 (wrk + backend), not by themselves")
    fi
    local noisy
    noisy=$(cat "$WORK"/results/* | awk '$6 > 10 {n++} END {print n + 0}')
    if ((noisy > 0)); then
        PROBLEMS+=("in $noisy of $(cat "$WORK"/results/* | wc -l) runs other processes used more than 10 % of CPU 0: the machine was not quiet, figures are noisy")
    fi
    if ((${#PROBLEMS[@]})); then
        echo
        echo "Problems seen:"
        local p
        for p in "${PROBLEMS[@]}"; do echo "- $p"; done
    fi
}

# ------------------------------------------------------------------ main ---
main() {
    declare -gA RSS=()
    PROBLEMS=()
    ensure_tools
    build
    WORK=$(mktemp -d /tmp/gwbench.XXXXXX)
    mkdir -p "$WORK/results" "$WORK/wrk" "$OUT_DIR"
    log "building backend image $IMAGE"
    build_backend_image
    log "starting backend container on network $NET"
    start_backend
    free_port GANGWAY_PORT; free_port GANGWAY_ADMIN_PORT; free_port NGINX_PORT
    log "backend $BACKEND_IP:80, gangway :$GANGWAY_PORT (admin :$GANGWAY_ADMIN_PORT), nginx :$NGINX_PORT"
    measure_mode off
    measure_mode on
    report | tee "$OUT_DIR/latest.md"
}

main "$@"
