#!/usr/bin/env bash
# bench/run.sh: gangway side by side with nginx, HAProxy and Caddy.
#
# One command: installs what is missing (Debian packages), builds gangway and
# the bench backend (bench/backend), starts every peer with the same backend,
# the same Host-based route and the same logging, loads them in interleaved
# rounds (proxies pinned to CPU 0; backend and load tools to CPU 1), and
# prints a markdown report of medians, also written to bench/RESULTS.md.
# bench/README.md describes the cases, the targets and how to read it.
#
# Options (environment):
#   BENCH_QUICK=1       2 s runs, 1 round, no quiet wait: checks that every
#                       case works (figures are rough)
#   BENCH_SECONDS       measured seconds per run (default 3; quick 2)
#   BENCH_ROUNDS        interleaved rounds (default 3; quick 1)
#   BENCH_WARMUP        warmup seconds before each run of the first round
#                       (default 1)
#   BENCH_CONNECTIONS   wrk connections (default 64)
#   BENCH_IDLE_CONNS    idle connections of case 5 (default 10000)
#   BENCH_HOSTS         hosts of the big routing table of case 6 (default 10000)
#   BENCH_CHURN_RATE    route changes per second of case 7 (default 50)
#   BENCH_PEERS         peers to run (default "gangway nginx haproxy caddy")
#   BENCH_DOCKER_CHURN  auto (default: if Docker answers), 1 or 0: case 7
#                       also changes gangway's routes through Docker labels
#   BENCH_QUIET_WAIT    seconds to wait at most, before each run, for other
#                       processes to leave the CPUs alone (default 5; quick 0)
#   BENCH_RESULTS       where to write the report (default bench/RESULTS.md)
#   BENCH_BUILD_TRIES   cargo build attempts, 60 s apart (default 3)
#   BENCH_PGO           1: gangway is the profile-guided build of
#                       scripts/build-pgo.sh (made first unless
#                       target/pgo/gangway was built from the same sources;
#                       about 12 minutes more); 0 (default): the plain
#                       `cargo build --release`
set -euo pipefail

QUICK=${BENCH_QUICK:-0}
if [[ $QUICK == 1 ]]; then
    DURATION=${BENCH_SECONDS:-2}
    ROUNDS=${BENCH_ROUNDS:-1}
    QUIET_WAIT=${BENCH_QUIET_WAIT:-0}
else
    DURATION=${BENCH_SECONDS:-3}
    ROUNDS=${BENCH_ROUNDS:-3}
    QUIET_WAIT=${BENCH_QUIET_WAIT:-5}
fi
WARMUP=${BENCH_WARMUP:-1}
CONNECTIONS=${BENCH_CONNECTIONS:-64}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
NHOSTS=${BENCH_HOSTS:-10000}
CHURN_RATE=${BENCH_CHURN_RATE:-50}
read -r -a WANTED_PEERS <<<"${BENCH_PEERS:-gangway nginx haproxy caddy}"
DOCKER_CHURN=${BENCH_DOCKER_CHURN:-auto}
BUILD_TRIES=${BENCH_BUILD_TRIES:-3}
PGO=${BENCH_PGO:-0}

HOST_HEADER=bench.test
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS=${BENCH_RESULTS:-$ROOT/bench/RESULTS.md}
GANGWAY=$ROOT/target/release/gangway
BACKEND_BIN=$ROOT/target/release/gangway-bench-backend
HANDSHAKES_BIN=$ROOT/target/release/gangway-bench-handshakes
HIT_HOST=$(printf 'h%05d.test' $(((NHOSTS + 1) / 2)))   # one in the middle
COMMAND_LINE="$(env | grep -E '^BENCH_' | sort | tr '\n' ' ' || true)bench/run.sh${*:+ $*}"
STARTED_AT=$(date +%s)

WORK=""                 # temp dir, made after the trap is set
declare -a STARTED=()   # pids of every process this run started
declare -A PORT=() PID=() ADMIN=() RSS=() SKIP=()
declare -a PEERS=() PROBLEMS=()
BACKEND_PID=""
DOCKER_NET="" DOCKER_CONTAINER="" DOCKER_IMAGE=""

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
problem() { PROBLEMS+=("$*"); log "problem: $*"; }

# ---------------------------------------------------------------- cleanup ---
# Every process is stopped by its own pid, children first (nginx workers),
# also after a failure half-way or Ctrl-C.
descendants() {
    local pid=$1 child all
    all=$(cat /proc/"$pid"/task/*/children 2>/dev/null || true)
    for child in $all; do
        echo "$child"
        descendants "$child"
    done
}

stop_pid() {
    local pid=$1 kids i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kids=$(descendants "$pid")
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
}

cleanup() {
    local rc=$? pid
    set +e
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    if [[ -n $DOCKER_CONTAINER ]]; then docker rm -f "$DOCKER_CONTAINER" >/dev/null 2>&1; fi
    if [[ -n $DOCKER_NET ]]; then docker network rm "$DOCKER_NET" >/dev/null 2>&1; fi
    if [[ -n $DOCKER_IMAGE ]]; then docker image rm -f "$DOCKER_IMAGE" >/dev/null 2>&1; fi
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ ${BENCH_KEEP_WORK:-0} == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in the background, pinned to CPU $1, output to file $2;
# records the pid in STARTED and in the variable named $3.
start_bg() {
    local cpu=$1 out=$2 var=$3
    shift 3
    taskset -c "$cpu" "$@" >"$out" 2>&1 &
    local pid=$!
    STARTED+=("$pid")
    printf -v "$var" '%s' "$pid"
}

# ------------------------------------------------------------------ setup ---
as_root() { if ((EUID == 0)); then "$@"; else sudo "$@"; fi; }

apt_install() {
    log "installing $*"
    as_root apt-get update -qq >/dev/null 2>&1 || true
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

ensure_tools() {
    local missing=() p
    command -v wrk >/dev/null || missing+=(wrk)
    command -v h2load >/dev/null || missing+=(nghttp2-client)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    command -v python3 >/dev/null || missing+=(python3)
    for p in "${WANTED_PEERS[@]}"; do
        case $p in
            nginx | haproxy | caddy) command -v "$p" >/dev/null || missing+=("$p") ;;
        esac
    done
    if ((${#missing[@]})); then
        # One by one: a peer that cannot be installed is skipped, a tool is
        # required.
        for p in "${missing[@]}"; do apt_install "$p" || true; done
    fi
    for p in wrk h2load taskset curl openssl python3; do
        command -v "$p" >/dev/null || die "$p is required and could not be installed"
    done
    for p in "${WANTED_PEERS[@]}"; do
        if [[ $p != gangway ]] && ! command -v "$p" >/dev/null; then
            SKIP[$p]="not installable here (apt-get install -y $p failed)"
            problem "$p skipped: ${SKIP[$p]}"
            continue
        fi
        PEERS+=("$p")
    done
    # Distribution packages start a system service on :80; ours use their
    # own ports and configuration and leave it alone.
    [[ $(nproc) -ge 2 ]] || die "needs 2 CPUs (proxy on CPU 0, load on CPU 1)"
    # Case 5 needs a file descriptor per connection in the proxy and in the
    # client, and HAProxy reserves two per connection (client and server
    # side) of its maxconn.
    ulimit -Hn 1048576 2>/dev/null || true
    ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    local limit
    limit=$(ulimit -n)
    if ((limit < 2 * IDLE_CONNS + 1100)); then
        local fit=$(((limit - 1100) / 2 / 1000 * 1000))
        problem "the file descriptor limit is $limit here (ulimit -Hn; raising it needs CAP_SYS_RESOURCE): case 5 holds $fit connections instead of $IDLE_CONNS, the most HAProxy's maxconn accounting (2 descriptors a connection) allows"
        IDLE_CONNS=$fit
    fi
    MAXCONN=$((IDLE_CONNS + 500))
}

build() {
    local try packages=(-p gangway-bench-backend)
    # The profile-guided gangway is made by build_pgo, not here.
    ((PGO)) || packages=(-p gangway "${packages[@]}")
    for try in $(seq "$BUILD_TRIES"); do
        log "cargo build --release ${packages[*]} (try $try/$BUILD_TRIES)"
        if (cd "$ROOT" && cargo build --release -q "${packages[@]}"); then
            return 0
        fi
        if ((try < BUILD_TRIES)); then
            log "build failed; the workspace may be mid-edit, retrying in 60 s"
            sleep 60
        fi
    done
    die "cargo build failed $BUILD_TRIES times (see above)"
}

# The profile-guided build, made again unless the one there was built
# from these sources (gangway's crates and Cargo.lock, committed).
build_pgo() {
    local id
    id=$("$ROOT/scripts/build-pgo.sh" --source-id)
    if [[ $id == *-dirty || ! -x $ROOT/target/pgo/gangway ||
        $(cat "$ROOT/target/pgo/source" 2>/dev/null) != "$id" ]]; then
        log "scripts/build-pgo.sh (the profile-guided build, about 12 minutes)"
        "$ROOT/scripts/build-pgo.sh" || die "the profile-guided build failed (see above)"
    else
        log "the profile-guided build of sources $id is there already"
    fi
    GANGWAY=$ROOT/target/pgo/gangway
}

# A port nothing listens on (the kernel picks it); never one handed out
# already. Sets the variable named $1.
USED_PORTS=" "
free_port() {
    local p i
    for i in $(seq 50); do
        p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
        [[ $USED_PORTS == *" $p "* ]] && continue
        USED_PORTS+="$p "
        printf -v "$1" '%s' "$p"
        return 0
    done
    die "no free port found"
}

# Bounded wait until `curl ARGS...` gets a 2xx; 1 if it never does, or
# as soon as process $WAIT_PID (if set) has exited.
WAIT_PID=""
wait_http() {
    local tries=$1 i
    shift
    for i in $(seq "$tries"); do
        curl -fsk -o /dev/null --max-time 1 "$@" && return 0
        if [[ -n $WAIT_PID ]] && ! kill -0 "$WAIT_PID" 2>/dev/null; then return 1; fi
        sleep 0.1
    done
    return 1
}

make_cert() {
    # RSA 2048, the most common certificate: the handshake figure is then
    # what a typical site pays (the server's RSA signature dominates it).
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=$HOST_HEADER" \
        -addext "subjectAltName=DNS:$HOST_HEADER,DNS:localhost,IP:127.0.0.1" \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" >/dev/null 2>&1
    cat "$WORK/cert.pem" "$WORK/key.pem" >"$WORK/combined.pem"
}

start_backend() {
    free_port BACKEND_PORT
    start_bg 1 "$WORK/backend.log" BACKEND_PID "$BACKEND_BIN" --listen "127.0.0.1:$BACKEND_PORT"
    wait_http 100 "http://127.0.0.1:$BACKEND_PORT/" || die "the backend did not start: $(cat "$WORK/backend.log")"
}

# ------------------------------------------------------------ the peers ---
# Each peer runs four instances, all pinned to CPU 0 and idle but for the
# one under load:
#   main   HTTP and HTTPS (TLS 1.3, ALPN h2 and http/1.1), 1 host, logs off
#   logs   HTTP, 1 host, access log on (to a file)
#   hosts  HTTP, $NHOSTS hosts, logs off
#   churn  HTTP, 1 host + 1 route that case 7 keeps changing, logs off
#   idle   HTTP, 1 host, logs off, no load but case 5's idle connections
# Every instance routes Host: bench.test (and, for "hosts", h00001.test ...)
# to the one backend, answers 404 to any other host, and keeps up to 1024
# idle connections to the backend.
INSTANCES=(main logs hosts churn idle)

host_list() { seq -f 'h%05g.test' 1 "$NHOSTS"; }

# --- gangway: routes from its TOML file; Docker unused (an address where
# no Docker listens) except by the "docker" churn instance.
gangway_config() {
    local inst=$1
    cat <<EOF
[[pools]]
name = "backend"
targets = ["127.0.0.1:$BACKEND_PORT"]
timeouts = { max_idle_per_target = 1024 }

[[routes]]
name = "bench"
hosts = ["$HOST_HEADER"]
pool = "backend"
EOF
    if [[ $inst == hosts ]]; then
        host_list | awk '{printf "\n[[routes]]\nname = \"r%d\"\nhosts = [\"%s\"]\npool = \"backend\"\n", NR, $1}'
    fi
}

start_gangway() {
    local inst=$1 dir=$WORK/gangway-$1 level=warn https=false docker_host network
    mkdir -p "$dir"
    gangway_config "$inst" >"$dir/gangway.toml"
    cp "$dir/gangway.toml" "$dir/base.toml"
    [[ $inst == logs ]] && level=info
    [[ $inst == main ]] && https=true
    docker_host=unix://$WORK/no-docker.sock network=gwbench-none
    if [[ $inst == docker ]]; then docker_host=unix:///var/run/docker.sock network=$DOCKER_NET; fi
    free_port "PORT[gangway.$inst]"
    free_port "ADMIN[gangway.$inst]"
    [[ $inst == main ]] && free_port "PORT[gangway.tls]"
    start_bg 0 "$dir/out.log" "PID[gangway.$inst]" env \
        GANGWAY_CONFIG="$dir/gangway.toml" HTTP_PORT="${PORT[gangway.$inst]}" \
        HTTPS_ENABLED=$https HTTPS_PORT="${PORT[gangway.tls]:-0}" \
        TLS_CERT_PATH="$WORK/cert.pem" TLS_KEY_PATH="$WORK/key.pem" \
        CONTROL_PLANE_ADDR="127.0.0.1:${ADMIN[gangway.$inst]}" \
        DOCKER_HOST="$docker_host" PROXY_DOCKER_NETWORK="$network" \
        GANGWAY_WORKERS=1 RUST_LOG=$level "$GANGWAY"
}

# --- nginx: one worker, upstream keepalive, HTTP/1.1 to the backend, the
# forwarding headers gangway sets, no response buffering (gangway, HAProxy
# and Caddy stream) with 64 KiB reads, keepalive_requests raised (the
# others do not close a connection after N requests).
nginx_config() {
    local inst=$1 dir=$WORK/nginx-$1 access=off tls_default="" tls="" level=warn
    [[ $inst == logs ]] && access="$dir/access.log combined"
    # The churn instance logs its reloads ("reconfiguring"), to count them.
    [[ $inst == churn ]] && level=notice
    if [[ $inst == main ]]; then
        # Listen options (ssl, http2, backlog) once per socket, on the
        # default server; the others share the socket.
        tls_default="listen 127.0.0.1:${PORT[nginx.tls]} ssl http2 default_server backlog=4096;"
        tls="listen 127.0.0.1:${PORT[nginx.tls]};"
    fi
    cat <<EOF
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log $level;
events { worker_connections $((2 * MAXCONN)); }
http {
    access_log $access;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    keepalive_requests 1000000;
    server_names_hash_max_size 65536;
    server_names_hash_bucket_size 64;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.3;
    upstream backend {
        server 127.0.0.1:$BACKEND_PORT;
        keepalive 1024;
        keepalive_requests 1000000;
    }
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Real-IP \$remote_addr;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Host \$host;
    proxy_set_header X-Forwarded-Proto \$scheme;
    proxy_buffering off;
    proxy_buffer_size 64k;
    proxy_buffers 4 64k;
    proxy_busy_buffers_size 128k;
    server {
        listen 127.0.0.1:${PORT[nginx.$inst]} default_server backlog=4096;
        $tls_default
        return 404;
    }
    server {
        listen 127.0.0.1:${PORT[nginx.$inst]};
        $tls
        server_name $HOST_HEADER;
        location / { proxy_pass http://backend; }
    }
EOF
    if [[ $inst == hosts ]]; then
        host_list | awk -v port="${PORT[nginx.$inst]}" \
            '{printf "    server { listen 127.0.0.1:%s; server_name %s; location / { proxy_pass http://backend; } }\n", port, $1}'
    fi
    [[ $inst == churn ]] && echo "    # CHURN"
    echo "}"
}

start_nginx() {
    local inst=$1 dir=$WORK/nginx-$1
    mkdir -p "$dir"
    chmod 755 "$WORK" "$dir"
    free_port "PORT[nginx.$inst]"
    [[ $inst == main ]] && free_port "PORT[nginx.tls]"
    nginx_config "$inst" >"$dir/base.conf"
    # The churn route's initial form, so that the first change is a change.
    sed "s|# CHURN|server { listen 127.0.0.1:${PORT[nginx.$inst]}; server_name churn-0.test; location / { proxy_pass http://backend; } }|" \
        "$dir/base.conf" >"$dir/nginx.conf"
    start_bg 0 "$dir/out.log" "PID[nginx.$inst]" nginx -e "$dir/error.log" -c "$dir/nginx.conf" -p "$dir"
}

# --- HAProxy: one thread, http-reuse always, the host looked up in a map
# file (one line, or $NHOSTS), X-Forwarded-For and -Proto set.
haproxy_config() {
    local inst=$1 dir=$WORK/haproxy-$1 logs="" httplog="" tls=""
    if [[ $inst == logs ]]; then
        logs="log stdout format raw local0"
        httplog=$'log global\n    option httplog'
    fi
    if [[ $inst == main ]]; then
        tls="bind 127.0.0.1:${PORT[haproxy.tls]} ssl crt $WORK/combined.pem alpn h2,http/1.1 ssl-min-ver TLSv1.3"
    fi
    cat <<EOF
global
    nbthread 1
    maxconn $MAXCONN
    stats socket $dir/admin.sock mode 600 level admin
    $logs

defaults
    mode http
    maxconn $MAXCONN
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-request 30s
    timeout http-keep-alive 60s
    http-reuse always
    option forwardfor
    $httplog

frontend fe
    bind 127.0.0.1:${PORT[haproxy.$inst]}
    $tls
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    use_backend %[req.hdr(host),field(1,:),lower,map($dir/hosts.map)]
    default_backend be_none

backend be_app
    server backend 127.0.0.1:$BACKEND_PORT

backend be_none
    http-request return status 404
EOF
}

start_haproxy() {
    local inst=$1 dir=$WORK/haproxy-$1
    mkdir -p "$dir"
    free_port "PORT[haproxy.$inst]"
    [[ $inst == main ]] && free_port "PORT[haproxy.tls]"
    haproxy_config "$inst" >"$dir/haproxy.cfg"
    {
        echo "$HOST_HEADER be_app"
        if [[ $inst == hosts ]]; then host_list | sed 's/$/ be_app/'; fi
        if [[ $inst == churn ]]; then echo "churn-0.test be_app"; fi
    } >"$dir/hosts.map"
    start_bg 0 "$dir/out.log" "PID[haproxy.$inst]" haproxy -db -f "$dir/haproxy.cfg"
}

# --- Caddy: GOMAXPROCS=1, JSON configuration (the Caddyfile's own
# format), a reverse_proxy route per host, the admin API on its own port.
caddy_route() {
    # $1: JSON list of hosts, $2: optional @id
    local id=""
    [[ -n ${2:-} ]] && id="\"@id\": \"$2\", "
    printf '{%s"match": [{"host": %s}], "handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:%s"}], "transport": {"protocol": "http", "keep_alive": {"max_idle_conns_per_host": 1024}}}], "terminal": true}' \
        "$id" "$1" "$BACKEND_PORT"
}

caddy_config() {
    local inst=$1 dir=$WORK/caddy-$1 routes logs="" logging="" tls_server="" tls_app=""
    routes=$(caddy_route "[\"$HOST_HEADER\"]")
    if [[ $inst == hosts ]]; then
        # One route with every host: Caddy sorts a large host list and
        # looks it up by binary search; $NHOSTS routes would be tried one
        # by one (see bench/README.md).
        routes="$routes, $(caddy_route "$(host_list | awk 'BEGIN {printf "["} {printf "%s\"%s\"", (NR > 1 ? ", " : ""), $1} END {printf "]"}')")"
    fi
    [[ $inst == churn ]] && routes="$routes, $(caddy_route '["churn-0.test"]' churn)"
    routes="$routes, {\"handle\": [{\"handler\": \"static_response\", \"status_code\": 404}]}"
    if [[ $inst == logs ]]; then
        logs=', "logs": {"default_logger_name": "access"}'
        logging=", \"access\": {\"writer\": {\"output\": \"file\", \"filename\": \"$dir/access.log\"}, \"include\": [\"http.log.access.access\"]}"
    fi
    if [[ $inst == main ]]; then
        tls_server=", \"tls\": {\"listen\": [\"127.0.0.1:${PORT[caddy.tls]}\"], \"protocols\": [\"h1\", \"h2\"], \"automatic_https\": {\"disable\": true}, \"tls_connection_policies\": [{\"protocol_min\": \"tls1.3\"}], \"routes\": [$routes]}"
        tls_app=", \"tls\": {\"certificates\": {\"load_files\": [{\"certificate\": \"$WORK/cert.pem\", \"key\": \"$WORK/key.pem\"}]}}"
    fi
    cat <<EOF
{
  "admin": {"listen": "127.0.0.1:${ADMIN[caddy.$inst]}", "config": {"persist": false}},
  "storage": {"module": "file_system", "root": "$dir/data"},
  "logging": {"logs": {"default": {"level": "WARN", "exclude": ["http.log.access.access"]}$logging}},
  "apps": {
    "http": {
      "http_port": ${PORT[caddy.$inst]},
      "servers": {
        "plain": {"listen": ["127.0.0.1:${PORT[caddy.$inst]}"], "protocols": ["h1"], "automatic_https": {"disable": true}, "routes": [$routes]$logs}$tls_server
      }
    }$tls_app
  }
}
EOF
}

start_caddy() {
    local inst=$1 dir=$WORK/caddy-$1
    mkdir -p "$dir"
    free_port "PORT[caddy.$inst]"
    free_port "ADMIN[caddy.$inst]"
    [[ $inst == main ]] && free_port "PORT[caddy.tls]"
    caddy_config "$inst" >"$dir/caddy.json"
    start_bg 0 "$dir/out.log" "PID[caddy.$inst]" env GOMAXPROCS=1 HOME="$dir" \
        XDG_DATA_HOME="$dir/data" XDG_CONFIG_HOME="$dir/config" \
        caddy run --config "$dir/caddy.json"
}

# Starts every instance of every peer, then waits until each routes
# bench.test (and the big table's hit host); a peer that does not start is
# skipped, with its log in the report.
start_peers() {
    local p inst ok=() port
    for p in "${PEERS[@]}"; do
        for inst in "${INSTANCES[@]}"; do "start_$p" "$inst"; done
    done
    for p in "${PEERS[@]}"; do
        local failed=""
        for inst in "${INSTANCES[@]}"; do
            port=${PORT[$p.$inst]}
            local host=$HOST_HEADER
            [[ $inst == hosts ]] && host=$HIT_HOST
            WAIT_PID=${PID[$p.$inst]}
            if ! wait_http 300 -H "Host: $host" "http://127.0.0.1:$port/"; then
                WAIT_PID=""
                failed="$inst instance did not answer on :$port: $(tail -q -n3 "$WORK/$p-$inst/out.log" "$WORK/$p-$inst/error.log" 2>/dev/null | tr '\n' ' ' | cut -c1-400 || true)"
                break
            fi
            WAIT_PID=""
            # Host-based: any other host gets 404, not the backend.
            if curl -fs -o /dev/null -H "Host: nobody.test" "http://127.0.0.1:$port/"; then
                failed="$inst instance answers 2xx for an unknown host"
                break
            fi
        done
        if [[ -z $failed ]] && ! wait_http 50 --resolve "$HOST_HEADER:${PORT[$p.tls]}:127.0.0.1" "https://$HOST_HEADER:${PORT[$p.tls]}/"; then
            failed="no HTTPS answer on :${PORT[$p.tls]}"
        fi
        if [[ -z $failed ]]; then
            # TLS 1.3 and ALPN h2, as cases 2 and 3 assume.
            local tls
            tls=$(curl -sk -v --http2 -o /dev/null --resolve "$HOST_HEADER:${PORT[$p.tls]}:127.0.0.1" "https://$HOST_HEADER:${PORT[$p.tls]}/" 2>&1 || true)
            grep -q 'SSL connection using TLSv1.3' <<<"$tls" || problem "$p: HTTPS is not TLS 1.3: $(grep 'SSL connection' <<<"$tls" || true)"
            grep -q 'ALPN.*server accepted.*h2' <<<"$tls" || problem "$p: HTTPS does not offer h2: $(grep 'ALPN' <<<"$tls" | tr '\n' ' ' || true)"
        fi
        if [[ -n $failed ]]; then
            SKIP[$p]=$failed
            problem "$p skipped: $failed"
            for inst in "${INSTANCES[@]}"; do stop_pid "${PID[$p.$inst]}"; done
        else
            ok+=("$p")
        fi
    done
    PEERS=("${ok[@]}")
    ((${#PEERS[@]})) || die "no peer started"
}

# ---------------------------------------------------- docker (case 7b) ---
# gangway's other way to change routes: containers' labels. A container of
# the bench backend (an image made with docker import: no registry) with a
# reverse-proxy.host label is disconnected from and connected to gangway's
# Docker network, each a route removed or added.
setup_docker_churn() {
    [[ $DOCKER_CHURN == 0 ]] && return 0
    [[ " ${PEERS[*]} " == *" gangway "* ]] || return 0
    if ! command -v docker >/dev/null || ! docker info >/dev/null 2>&1; then
        [[ $DOCKER_CHURN == 1 ]] && die "BENCH_DOCKER_CHURN=1 but Docker does not answer"
        problem "Docker does not answer: case 7 without gangway's Docker path"
        return 0
    fi
    local tag=gwbench-$$ rootfs=$WORK/rootfs lib
    mkdir -p "$rootfs"
    cp "$BACKEND_BIN" "$rootfs/backend"
    for lib in $(ldd "$BACKEND_BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
        cp -L --parents "$lib" "$rootfs/"
    done
    DOCKER_IMAGE=$tag-backend:latest
    tar -C "$rootfs" -c . | docker import --change 'ENTRYPOINT ["/backend", "--listen", "0.0.0.0:80"]' - "$DOCKER_IMAGE" >/dev/null
    DOCKER_NET=$tag
    docker network create "$DOCKER_NET" >/dev/null
    DOCKER_CONTAINER=$tag-churn
    docker run -d --name "$DOCKER_CONTAINER" --cpuset-cpus=1 --network "$DOCKER_NET" \
        -l reverse-proxy.host=churn-docker.test -l reverse-proxy.port=80 "$DOCKER_IMAGE" >/dev/null
    start_gangway docker
    PEER_DOCKER=1
    wait_http 300 -H "Host: $HOST_HEADER" "http://127.0.0.1:${PORT[gangway.docker]}/" ||
        die "gangway (docker churn instance) did not start: $(tail -3 "$WORK/gangway-docker/out.log")"
    wait_http 300 -H "Host: churn-docker.test" "http://127.0.0.1:${PORT[gangway.docker]}/" ||
        problem "gangway did not route the Docker container's host (churn-docker.test)"
}
PEER_DOCKER=0

# ----------------------------------------------------------- measurement ---
CLK_TCK=$(getconf CLK_TCK)

# CPU ticks (user + system) of a process, of its children it reaped (nginx
# workers that exited at a reload) and of its live descendants.
# CPU ticks used so far by dockerd, containerd and the containers' shims.
docker_daemon_ticks() {
    local pid total=0
    for pid in $(pgrep -x dockerd) $(pgrep -x containerd) $(pgrep -f containerd-shim); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

cpu_ticks() {
    local pid=$1 total kid
    total=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo 0)
    for kid in $(descendants "$pid"); do
        total=$((total + $(awk '{print $14 + $15}' "/proc/$kid/stat" 2>/dev/null || echo 0)))
    done
    echo "$total"
}

# Sum of a /proc/PID/status field (kB) over a process and its descendants.
mem_kb() {
    local pid=$1 field=$2 p
    for p in "$pid" $(descendants "$pid"); do
        awk -v f="$field:" '$1 == f {print $2}' "/proc/$p/status" 2>/dev/null
    done | awk '{s += $1} END {print s + 0}'
}

busy_ticks() { awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4}' /proc/stat; }

# Bounded wait until, for half a second, other processes use under 10 % of
# each CPU (ours are idle between runs).
wait_quiet() {
    ((QUIET_WAIT > 0)) || return 0
    local i a0 b0 a1 b1 half=$((CLK_TCK / 2))
    for i in $(seq $((QUIET_WAIT * 2))); do
        a0=$(busy_ticks 0) b0=$(busy_ticks 1)
        sleep 0.5
        a1=$(busy_ticks 0) b1=$(busy_ticks 1)
        if ((a1 - a0 < half / 10 && b1 - b0 < half / 10)); then return 0; fi
    done
    NOT_QUIET=$((NOT_QUIET + 1))
    # A machine that stays busy stays busy: stop waiting (and losing time).
    if ((NOT_QUIET >= 5)); then
        log "the CPUs are busy with other processes: measuring from now on without waiting"
        QUIET_WAIT=0
    fi
}
NOT_QUIET=0 NOISY_RUNS=0 ALL_RUNS=0

# wrk's latency ("812.00us", "1.23ms", "1.02s") in milliseconds.
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0
        else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000
        printf "%.3f", n }'
}

# The load tools, pinned to CPU 1. Each takes the duration first and prints
# "req/s p50_ms p99_ms errors requests" (and leaves its output in $TOOL_OUT).
wrk_load() {
    local dur=$1
    shift
    taskset -c 1 wrk -t1 "-c$CONNECTIONS" "-d${dur}s" --latency "$@" >"$TOOL_OUT" 2>&1 || true
    awk '
        /^Requests\/sec:/ {rps = $2}
        / requests in / {req = $1}
        /Latency Distribution/ {d = 1}
        d && $1 == "50%" {p50 = $2}
        d && $1 == "99%" {p99 = $2}
        /Socket errors:/ {gsub(",", ""); err += $4 + $6 + $8 + $10}
        /Non-2xx or 3xx responses:/ {err += $5}
        END {if (rps == "") exit 1; print rps, p50, p99, err + 0, req}' "$TOOL_OUT" |
        while read -r rps p50 p99 err req; do
            echo "$rps $(to_ms "$p50") $(to_ms "$p99") $err $req"
        done
}

# New TLS connections, each a full handshake and one request
# (bench/backend's gangway-bench-handshakes: wrk resumes sessions, and its
# OpenSSL client spends more CPU per handshake than the proxies do).
# Arguments after the duration: the TLS port.
hs_load() {
    local dur=$1 port=$2
    taskset -c 1 "$HANDSHAKES_BIN" --connect "127.0.0.1:$port" --cert "$WORK/cert.pem" \
        --server-name localhost --host "$HOST_HEADER" --connections "$CONNECTIONS" \
        --seconds "$dur" >"$TOOL_OUT" 2>&1 || true
    awk '
        $1 == "per_second" {rps = $2}
        $1 == "connections" {n = $2}
        $1 == "p50_ms" {p50 = $2}
        $1 == "p99_ms" {p99 = $2}
        $1 == "errors" {err = $2}
        END {if (rps == "") exit 1; print rps, p50, p99, err + 0, n}' "$TOOL_OUT"
}

# h2load -c10 -m100 for the duration; latency percentiles from its
# per-request log (start, status, microseconds).
h2_load() {
    local dur=$1 reqlog=$WORK/h2load.log
    shift
    taskset -c 1 h2load -t1 -c10 -m100 -D "$dur" --log-file="$reqlog" "$@" >"$TOOL_OUT" 2>&1 || true
    local lat
    lat=$(awk '{print $3}' "$reqlog" | sort -n | awk '{v[NR] = $1} END {
        if (NR == 0) {print "0 0"; exit}
        printf "%.3f %.3f", v[int(NR * 0.50) + 1] / 1000, v[int(NR * 0.99) + 1] / 1000}')
    rm -f "$reqlog"
    awk -v lat="$lat" '
        /^finished in/ {rps = $4}
        /^requests:/ {done = $6; failed = $10}
        /^status codes:/ {ok = $3}
        END {if (rps == "") exit 1; err = done - ok; if (failed > err) err = failed; print rps, lat, err, done}' "$TOOL_OUT"
}

# One measured run of case $1 against target $2 (whose processes are the
# tree of pid $3) with load function $4 and its arguments. Appends
# "value p50 p99 cpu_s_per_100k errors requests cpu_%" to
# $WORK/res/<case>.<target>.
# In round 1 a warmup run of the same load comes first (discarded).
measure() {
    local case=$1 target=$2 pid=$3 tool=$4
    shift 4
    TOOL_OUT=$WORK/out/$case.$target.$ROUND.txt
    wait_quiet
    if ((ROUND == 1 && WARMUP > 0)); then "$tool" "$WARMUP" "$@" >/dev/null || true; fi
    local c0 c1 a0 a1 t0 t1 line
    if [[ -n ${CHURN_CMD:-} ]]; then start_churn "$WORK/out/churn.$target.$ROUND.txt"; fi
    c0=$(cpu_ticks "$pid") a0=$(busy_ticks 0) t0=$(date +%s%N)
    if ! line=$("$tool" "$DURATION" "$@"); then
        problem "case $case, $target, round $ROUND: no result from the load tool: $(tail -3 "$TOOL_OUT" | tr '\n' ' ')"
        line=""
    fi
    c1=$(cpu_ticks "$pid") a1=$(busy_ticks 0) t1=$(date +%s%N)
    # Noise: CPU 0 time that the target did not use (nothing of ours runs
    # there but the proxy under load; the backend runs on CPU 1).
    local own=$((c1 - c0))
    [[ $target == backend ]] && own=0
    if awk -v o="$((a1 - a0 - own))" -v t="$((t1 - t0))" -v hz="$CLK_TCK" 'BEGIN {exit !(o / hz > 0.10 * t / 1e9)}'; then
        NOISY_RUNS=$((NOISY_RUNS + 1))
    fi
    ALL_RUNS=$((ALL_RUNS + 1))
    [[ -n $line ]] || return 0
    local rps p50 p99 err req cpu100k pct
    read -r rps p50 p99 err req <<<"$line"
    # The target's CPU use during the run, in % of one core: near 100 the
    # proxy's core is the limit, as it should be.
    pct=$(awk -v t="$((c1 - c0))" -v hz="$CLK_TCK" -v w="$((t1 - t0))" 'BEGIN {printf "%.0f", 100 * t / hz / (w / 1e9)}')
    cpu100k=$(awk -v t="$((c1 - c0))" -v hz="$CLK_TCK" -v n="$req" 'BEGIN {printf "%.3f", (n > 0 ? t / hz / n * 100000 : 0)}')
    echo "$rps $p50 $p99 $cpu100k $err $req $pct" >>"$WORK/res/$case.$target"
    log "  case $case $target: $rps/s, p50 $p50 ms, p99 $p99 ms, ${cpu100k} CPU s/100k, CPU ${pct} %, errors $err"
}

# Starts case 7's route changes (CHURN_CMD) on the load's CPU, output to
# $1, and returns once the driver says it is set up (at most 5 s): its
# interpreter's start, a tenth of a second of that CPU, is kept out of the
# measured window, where it would slow the load, not the proxy.
start_churn() {
    local out=$1 i
    taskset -c 1 python3 "${CHURN_CMD[@]}" >"$out" 2>&1 &
    CHURN_PID=$!
    STARTED+=("$CHURN_PID")
    for ((i = 0; i < 100; i++)); do
        grep -qx ready "$out" 2>/dev/null && return 0
        kill -0 "$CHURN_PID" 2>/dev/null || return 0
        sleep 0.05
    done
}

url() { echo "http://127.0.0.1:${PORT[$1.$2]}/${3:-}"; }

# One round: every case, every target in turn.
round() {
    local p
    log "round $ROUND/$ROUNDS"
    # 1. small responses, keep-alive HTTP/1.1; each peer's run followed at
    # once by 6. (the big routing table) and 7. (route changes during the
    # same load), whose figures are ratios to this run: pairs measured
    # back to back, so that the machine's drift over a round does not
    # enter them.
    measure 1 backend "$BACKEND_PID" wrk_load -H "Host: $HOST_HEADER" "http://127.0.0.1:$BACKEND_PORT/"
    for p in "${PEERS[@]}"; do
        measure 1 "$p" "${PID[$p.main]}" wrk_load -H "Host: $HOST_HEADER" "$(url "$p" main)"
        measure 6 "$p" "${PID[$p.hosts]}" wrk_load -H "Host: $HIT_HOST" "$(url "$p" hosts)"
        churn_run "$p" churn
    done
    if ((PEER_DOCKER)); then churn_run gangway docker; fi
    # 1 with access logs on
    for p in "${PEERS[@]}"; do measure 1L "$p" "${PID[$p.logs]}" wrk_load -H "Host: $HOST_HEADER" "$(url "$p" logs)"; done
    # 2. HTTPS keep-alive; new TLS connections (one request each)
    for p in "${PEERS[@]}"; do measure 2 "$p" "${PID[$p.main]}" wrk_load -H "Host: $HOST_HEADER" "https://localhost:${PORT[$p.tls]}/"; done
    for p in "${PEERS[@]}"; do measure 2H "$p" "${PID[$p.main]}" hs_load "${PORT[$p.tls]}"; done
    for p in "${PEERS[@]}"; do measure 2R "$p" "${PID[$p.main]}" wrk_load -H "Host: $HOST_HEADER" -H "Connection: close" "https://localhost:${PORT[$p.tls]}/"; done
    # 3. HTTP/2, 10 connections x 100 streams (the backend: h2c)
    measure 3 backend "$BACKEND_PID" h2_load "http://127.0.0.1:$BACKEND_PORT/"
    for p in "${PEERS[@]}"; do measure 3 "$p" "${PID[$p.main]}" h2_load --connect-to="127.0.0.1:${PORT[$p.tls]}" "https://$HOST_HEADER/"; done
    # 4. 1 MiB responses
    measure 4 backend "$BACKEND_PID" wrk_load -H "Host: $HOST_HEADER" "http://127.0.0.1:$BACKEND_PORT/1m"
    for p in "${PEERS[@]}"; do measure 4 "$p" "${PID[$p.main]}" wrk_load -H "Host: $HOST_HEADER" "$(url "$p" main 1m)"; done
}

churn_run() {
    local p=$1 inst=$2 dir=$WORK/$1-$2 target=$1
    local churn_seconds=$((DURATION + 1))
    case $p.$inst in
        gangway.churn) CHURN_CMD=("$ROOT/bench/churn.py" "$CHURN_RATE" "$churn_seconds" gangway-file "$dir/gangway.toml" "$dir/base.toml") ;;
        gangway.docker)
            target=gangway-docker
            CHURN_CMD=("$ROOT/bench/churn.py" "$CHURN_RATE" "$churn_seconds" docker /var/run/docker.sock "$DOCKER_NET" "$DOCKER_CONTAINER")
            ;;
        nginx.churn) CHURN_CMD=("$ROOT/bench/churn.py" "$CHURN_RATE" "$churn_seconds" nginx "$dir/nginx.conf" "$dir/base.conf" "$dir/nginx.pid" "127.0.0.1:${PORT[nginx.churn]}") ;;
        haproxy.churn) CHURN_CMD=("$ROOT/bench/churn.py" "$CHURN_RATE" "$churn_seconds" haproxy "$dir/admin.sock" "$dir/hosts.map") ;;
        caddy.churn) CHURN_CMD=("$ROOT/bench/churn.py" "$CHURN_RATE" "$churn_seconds" caddy "http://127.0.0.1:${ADMIN[caddy.churn]}") ;;
    esac
    local snap0="" snap1=""
    [[ $p == gangway ]] && snap0=$(gangway_snapshot "$inst")
    [[ $p == nginx ]] && snap0=$(nginx_reloads)
    CHURN_PID=""
    local docker0=0 started
    started=$(date +%s%N)
    [[ $target == gangway-docker ]] && docker0=$(docker_daemon_ticks)
    measure 7 "$target" "${PID[$p.$inst]}" wrk_load -H "Host: $HOST_HEADER" "$(url "$p" "$inst")"
    if [[ $target == gangway-docker ]]; then
        # The Docker daemons' CPU over the run, in % of one CPU: they are
        # not pinned, so they take from the proxy's CPU and the load's.
        awk -v t="$(($(docker_daemon_ticks) - docker0))" -v hz="$CLK_TCK" -v ns="$(($(date +%s%N) - started))" \
            'BEGIN {printf "%.0f\n", 100 * t / hz / (ns / 1e9)}' >>"$WORK/res/7docker_cpu"
    fi
    CHURN_CMD=()
    if [[ -n $CHURN_PID ]]; then wait "$CHURN_PID" 2>/dev/null || true; fi
    [[ $p == gangway ]] && snap1=$(gangway_snapshot "$inst")
    [[ $p == nginx ]] && snap1=$(nginx_reloads)
    local out=$WORK/out/churn.$target.$ROUND.txt
    # "changes n errors e seconds s rate r cpu c first_error ..." -> done,
    # errors, rate, the driver's own CPU in % of one CPU (+ gangway's
    # routing tables applied meanwhile).
    local line
    line=$(awk '$1 == "changes" {printf "%s %s %s %.1f\n", $2, $4, $8, ($6 > 0 ? 100 * $10 / $6 : 0)}' "$out")
    [[ -n $line ]] || { problem "case 7 $target: the churn driver failed: $(tail -2 "$out" | tr '\n' ' ')"; return 0; }
    local applied="-"
    [[ -n $snap0 && -n $snap1 ]] && applied=$((snap1 - snap0))
    echo "$line $applied" >>"$WORK/res/7churn.$target"
    local first
    first=$(awk '$1 == "changes" {sub(/.*first_error /, ""); print}' "$out")
    [[ $first == "-" ]] || problem "case 7 $target: route change failed: $first"
    log "  case 7 $target: route changes (done errors rate driver-CPU% applied) $line $applied"
}
CHURN_CMD=()

nginx_reloads() { grep -c 'reconfiguring' "$WORK/nginx-churn/error.log" || true; }

gangway_snapshot() {
    curl -fs --max-time 2 "http://127.0.0.1:${ADMIN[gangway.$1]}/metrics" | awk '$1 == "gangway_snapshot" {print $2}'
}

# 5. idle keep-alive connections: RSS before, N connections that each made
# one request, RSS after; (after - before) / N.
idle_case() {
    local p=$1 pid=${PID[$1.idle]} ready=$WORK/idle-$1.ready before after idle_pid line i
    rm -f "$ready"
    sleep 0.5
    before=$(mem_kb "$pid" VmRSS)
    taskset -c 1 python3 "$ROOT/bench/idle_conns.py" 127.0.0.1 "${PORT[$p.idle]}" "$IDLE_CONNS" "$HOST_HEADER" "$ready" 300 \
        >"$WORK/out/idle-$p.txt" 2>&1 &
    idle_pid=$!
    STARTED+=("$idle_pid")
    for i in $(seq 1200); do
        [[ -s $ready ]] && break
        kill -0 "$idle_pid" 2>/dev/null || break
        sleep 0.1
    done
    # Let the proxy finish with the last ones, and hold them idle long
    # enough that every connection has been idle for 2 s (gangway parks
    # connections idle for a second; the others keep what they hold).
    sleep 2
    after=$(mem_kb "$pid" VmRSS)
    line=$(cat "$ready" 2>/dev/null || echo "opened 0 failed 0 seconds 0")
    stop_pid "$idle_pid"
    read -r _ opened _ failed _ secs err <<<"$line"
    if ((opened == 0)); then
        problem "case 5 $p: no connection held: $(tail -3 "$WORK/out/idle-$p.txt" | tr '\n' ' ')"
        return 0
    fi
    ((failed == 0)) || problem "case 5 $p: $failed of $IDLE_CONNS connections failed (${err:-}), per-connection figure over the $opened held"
    echo "$(((after - before) * 1024 / opened)) $before $after $opened $failed $secs" >"$WORK/res/5.$p"
    log "  case 5 $p: RSS $before kB -> $after kB with $opened idle connections ($failed failed, ${secs} s to open)"
    sleep 1 # let the proxy notice the closes before the next one
}

# ---------------------------------------------------------------- report ---
# Median of column $2 of file $1, printed with format $3.
median() {
    [[ -s $1 ]] || { echo "n/a"; return; }
    awk -v col="$2" '{print $col}' "$1" | median_of_lines "${3:-%.2f}"
}
# The median of the numbers on standard input, one a line, printed with
# format $1; "n/a" without any.
median_of_lines() {
    sort -g | awk -v fmt="$1" '{v[NR] = $1} END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2
        printf fmt, m }'
}
sum_col() {
    if [[ -s $1 ]]; then awk -v col="$2" '{s += $col} END {print s + 0}' "$1"; else echo "n/a"; fi
}
# The median over the rounds of file $1's column 1 over file $2's, round by
# round (both have a line per round, in order); "n/a" without pairs.
paired_ratio() {
    [[ -s $1 && -s $2 ]] || { echo "n/a"; return; }
    paste -d ' ' <(awk '{print $1}' "$1") <(awk '{print $1}' "$2") |
        awk 'NF == 2 && $2 > 0 {print $1 / $2}' | median_of_lines %.2f
}
# Throughput lost: 1 - paired_ratio, in percent.
lost_pct() {
    awk -v r="$(paired_ratio "$1" "$2")" 'BEGIN {if (r == "n/a") print "n/a"; else printf "%.1f", 100 * (1 - r)}'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }

targets_of() {
    local t
    [[ ${2:-} == backend ]] && echo backend
    for t in "${PEERS[@]}"; do echo "$t"; done
    if [[ $1 == 7 ]] && ((PEER_DOCKER)); then echo gangway-docker; fi
}

# Peak RSS of an instance (VmHWM; nginx: master + workers), in MiB.
rss_of() {
    local t=$1 inst=$2
    [[ $t == backend ]] && { mib "${RSS[backend]}"; return; }
    [[ $t == gangway-docker ]] && t=gangway inst=docker
    mib "${RSS[$t.$inst]:-0}"
}

# A table for a load case: $1 case, $2 title, $3 unit of the figure,
# $4 instance, $5 "backend" if the backend row is there.
load_table() {
    local case=$1 title=$2 unit=$3 inst=$4 with_backend=${5:-} t f nginx_v
    nginx_v=$(median "$WORK/res/$case.nginx" 1)
    echo "### $title"
    echo
    echo "| target | $unit | p50 ms | p99 ms | CPU s / 100k req | CPU % | peak RSS MiB | ratio to nginx | errors |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for t in $(targets_of "$case" "$with_backend"); do
        f=$WORK/res/$case.$t
        [[ -s $f ]] || continue
        local name=$t
        [[ $t == backend ]] && name="backend direct (limit)"
        echo "| $name | $(median "$f" 1 %.0f) | $(median "$f" 2 %.3f) | $(median "$f" 3 %.3f) | $(median "$f" 4 %.2f) | $(median "$f" 7 %.0f) | $(rss_of "$t" "$inst") | $(ratio "$(median "$f" 1)" "$nginx_v") | $(sum_col "$f" 5) |"
    done
    echo
}

idle_table() {
    local t f nginx_v
    nginx_v=$(median "$WORK/res/5.nginx" 1)
    echo "### 5. $IDLE_CONNS idle keep-alive connections"
    echo
    echo "| target | bytes per connection | RSS before MiB | RSS after MiB | held | failed | ratio to nginx |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    for t in "${PEERS[@]}"; do
        f=$WORK/res/5.$t
        [[ -s $f ]] || continue
        read -r per before after opened failed _ <"$f"
        echo "| $t | $per | $(mib "$before") | $(mib "$after") | $opened | $failed | $(ratio "$per" "$nginx_v") |"
    done
    echo
}

hosts_table() {
    local t f ten nginx_v
    nginx_v=$(median "$WORK/res/6.nginx" 1)
    echo "### 6. $NHOSTS hosts vs 1 host (hit: $HIT_HOST)"
    echo
    echo "| target | req/s, $NHOSTS hosts | req/s, 1 host (case 1) | $NHOSTS / 1 | p99 ms | CPU s / 100k req | peak RSS MiB | ratio to nginx | errors |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for t in "${PEERS[@]}"; do
        f=$WORK/res/6.$t
        [[ -s $f ]] || continue
        ten=$(median "$f" 1)
        echo "| $t | $(median "$f" 1 %.0f) | $(median "$WORK/res/1.$t" 1 %.0f) | $(paired_ratio "$f" "$WORK/res/1.$t") | $(median "$f" 3 %.3f) | $(median "$f" 4 %.2f) | $(rss_of "$t" hosts) | $(ratio "$ten" "$nginx_v") | $(sum_col "$f" 5) |"
    done
    echo
}

churn_table() {
    local t f c lost nginx_v
    nginx_v=$(median "$WORK/res/7.nginx" 1)
    echo "### 7. route changes during case 1's load ($CHURN_RATE a second asked)"
    echo
    echo "| target | how | req/s | req/s, case 1 | lost | driver CPU % | p99 ms | CPU s / 100k req | changes/s done | change errors | applied | errors |"
    echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    for t in $(targets_of 7); do
        f=$WORK/res/7.$t c=$WORK/res/7churn.$t
        [[ -s $f ]] || continue
        local base=${t%-docker} how
        case $t in
            gangway) how="config file rewritten (polled once a second)" ;;
            gangway-docker) how="container disconnected/connected (Docker events)" ;;
            nginx) how="config rewritten + SIGHUP (nginx -s reload)" ;;
            haproxy) how="runtime API add/del map (no reload)" ;;
            caddy) how="admin API PATCH (config reload)" ;;
        esac
        lost="$(lost_pct "$f" "$WORK/res/1.$base") %"
        local applied="-"
        [[ $t == gangway* || $t == nginx ]] && applied=$(sum_col "$c" 5)
        echo "| $t | $how | $(median "$f" 1 %.0f) | $(median "$WORK/res/1.$base" 1 %.0f) | $lost | $(median "$c" 4 %.1f) | $(median "$f" 3 %.3f) | $(median "$f" 4 %.2f) | $(median "$c" 3 %.1f) | $(sum_col "$c" 2) | $applied | $(sum_col "$f" 5) |"
    done
    echo
}

# Cases 1 and 3: >= 1.2x nginx's req/s and p99 no worse.
summary_speed_row() {
    local c=$1 g n gp np verdict
    g=$(median "$WORK/res/$c.gangway" 1) n=$(median "$WORK/res/$c.nginx" 1)
    gp=$(median "$WORK/res/$c.gangway" 3) np=$(median "$WORK/res/$c.nginx" 3)
    verdict=$(awk -v g="$g" -v n="$n" -v gp="$gp" -v np="$np" 'BEGIN {print (g != "n/a" && n != "n/a" && g >= 1.2 * n && gp <= np) ? "yes" : "no"}')
    echo "| $c | >= 1.2x nginx req/s and p99 no worse | $(printf '%.0f' "$g") req/s, p99 $gp ms | $(printf '%.0f' "$n") req/s, p99 $np ms | $verdict |"
}

# One line per target of bench/README.md: gangway's figure, nginx's, and
# whether the target is met.
summary_table() {
    local g n
    echo "### Targets (gangway against nginx)"
    echo
    if [[ " ${PEERS[*]} " != *" gangway "* || " ${PEERS[*]} " != *" nginx "* ]]; then
        echo "(needs both gangway and nginx)"
        echo
        return 0
    fi
    echo "| case | target | gangway | nginx | met |"
    echo "| --- | --- | ---: | ---: | :---: |"
    summary_speed_row 1
    # Handshakes per CPU second beside the rate: when the load tool is the
    # ceiling (the proxy well under 100 % of its core), the rate says more
    # about the load side than about the proxy.
    g=$(median "$WORK/res/2H.gangway" 1) n=$(median "$WORK/res/2H.nginx" 1)
    local per_cpu_g per_cpu_n busy_g met
    per_cpu_g=$(awk -v c="$(median "$WORK/res/2H.gangway" 4)" 'BEGIN {if (c > 0) printf "%.0f", 100000 / c; else print "n/a"}')
    per_cpu_n=$(awk -v c="$(median "$WORK/res/2H.nginx" 4)" 'BEGIN {if (c > 0) printf "%.0f", 100000 / c; else print "n/a"}')
    busy_g=$(median "$WORK/res/2H.gangway" 7 %.0f)
    met=$(awk -v g="$g" -v n="$n" -v b="$busy_g" 'BEGIN {print (g >= n) ? "yes" : (b != "n/a" && b < 85) ? "no (gangway at " b " % of its core: the load side was the limit)" : "no"}')
    echo "| 2 | new TLS connections/s >= nginx | $(printf '%.0f' "$g") ($per_cpu_g per CPU second) | $(printf '%.0f' "$n") ($per_cpu_n per CPU second) | $met |"
    summary_speed_row 3
    g=$(median "$WORK/res/4.gangway" 1) n=$(median "$WORK/res/4.nginx" 1)
    echo "| 4 | 1 MiB responses >= 0.95x nginx | $(printf '%.0f' "$g") MiB/s | $(printf '%.0f' "$n") MiB/s | $(awk -v g="$g" -v n="$n" 'BEGIN {print (g >= 0.95 * n) ? "yes" : "no"}') |"
    g=$(median "$WORK/res/5.gangway" 1 %.0f) n=$(median "$WORK/res/5.nginx" 1 %.0f)
    echo "| 5 | bytes per idle connection <= nginx | $g | $n | $(awk -v g="$g" -v n="$n" 'BEGIN {print (g != "n/a" && g <= n) ? "yes" : "no"}') |"
    g=$(paired_ratio "$WORK/res/6.gangway" "$WORK/res/1.gangway")
    n=$(paired_ratio "$WORK/res/6.nginx" "$WORK/res/1.nginx")
    echo "| 6 | $NHOSTS hosts >= 0.95x of 1 host | $g | $n | $(awk -v g="$g" 'BEGIN {print (g != "n/a" && g >= 0.95) ? "yes" : "no"}') |"
    local ge gl ne nl
    ge=$(sum_col "$WORK/res/7.gangway" 5)
    gl=$(lost_pct "$WORK/res/7.gangway" "$WORK/res/1.gangway")
    ne=$(sum_col "$WORK/res/7.nginx" 5)
    nl=$(lost_pct "$WORK/res/7.nginx" "$WORK/res/1.nginx")
    echo "| 7 | route changes: 0 errors, < 5 % lost | $ge errors, $gl % lost | $ne errors, $nl % lost | $(awk -v e="$ge" -v l="$gl" 'BEGIN {print (e == 0 && l < 5) ? "yes" : "no"}') |"
    echo
}

versions() {
    local p
    echo "- machine: $(lscpu | awk -F: '/^Model name/ {gsub(/^ +/, "", $2); print $2; exit}'), $(nproc) CPUs ($(lscpu | awk -F: '/^Core\(s\) per socket/ {gsub(/ /, "", $2); c = $2} /^Thread\(s\) per core/ {gsub(/ /, "", $2); t = $2} END {print c " core(s) per socket, " t " thread(s) per core"}')), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    # shellcheck disable=SC1091
    echo "- kernel: $(uname -sr); $(. /etc/os-release && echo "$PRETTY_NAME")"
    local commit dirty=""
    commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
    [[ -n $(git -C "$ROOT" status --porcelain -- crates bench/backend Cargo.toml Cargo.lock 2>/dev/null) ]] && dirty=" + uncommitted changes"
    local build="cargo build --release"
    ((PGO)) && build="profile-guided build, scripts/build-pgo.sh"
    echo "- gangway: commit $commit$dirty ($("$GANGWAY" --version 2>&1 | head -1); $build), GANGWAY_WORKERS=1; $(rustc --version 2>/dev/null || echo rustc unknown)"
    for p in "${PEERS[@]}"; do
        case $p in
            nginx) echo "- nginx: $(nginx -v 2>&1 | sed 's/^nginx version: //'), 1 worker" ;;
            haproxy) echo "- HAProxy: $(haproxy -v 2>&1 | awk 'NR == 1 {print $3}'), nbthread 1" ;;
            caddy) echo "- Caddy: $(caddy version 2>&1 | awk '{print $1}'), GOMAXPROCS=1" ;;
        esac
    done
    for p in "${!SKIP[@]}"; do echo "- $p: skipped (${SKIP[$p]})"; done
    echo "- load: $(wrk -v 2>&1 | awk 'NR == 1 {print $1, $2}'), $(h2load --version 2>&1 | head -1), $(openssl version | awk '{print $1, $2}'), bench/backend's gangway-bench-handshakes (rustls, aws-lc-rs), $(python3 --version 2>&1)"
    echo "- backend: bench/backend (hyper), 1 thread on CPU 1"
    echo "- command: \`$COMMAND_LINE\` ($(date -u '+%Y-%m-%d %H:%M UTC'), $(((($(date +%s) - STARTED_AT) + 30) / 60)) min)"
    echo "- runs: ${DURATION} s each, $ROUNDS interleaved round(s), ${WARMUP} s warmup before each run of round 1; medians shown"
}

report() {
    local mode="Reference run (${ROUNDS} rounds of ${DURATION} s runs)." noisy=""
    ((NOISY_RUNS * 10 > ALL_RUNS)) && noisy=", noisy machine"
    [[ $QUICK == 1 ]] && mode="**Quick mode (BENCH_QUICK=1: ${DURATION} s runs, ${ROUNDS} round)$noisy, not the reference figures.**"
    [[ $QUICK != 1 && -n $noisy ]] && mode="**${mode} Noisy machine: see Problems seen.**"
    echo "# gangway vs nginx, HAProxy, Caddy"
    echo
    echo "$mode"
    echo
    versions
    echo
    echo "Proxies pinned to CPU 0 (taskset -c 0), backend and load tools to CPU 1."
    echo "wrk -t1 -c$CONNECTIONS; h2load -t1 -c10 -m100. Ratio to nginx: the figure over nginx's (for 5, bytes over nginx's: lower is better)."
    echo
    summary_table
    load_table 1 "1. small responses, keep-alive HTTP/1.1, access logs off" "req/s" main backend
    load_table 1L "1. the same, access logs on (to a file)" "req/s" logs
    load_table 2 "2. HTTPS (TLS 1.3), keep-alive" "req/s" main
    load_table 2H "2. new TLS connections, full handshakes (gangway-bench-handshakes: one request per connection)" "handshakes/s" main
    load_table 2R "2. new TLS connections, sessions resumed (wrk, Connection: close)" "handshakes/s" main
    load_table 3 "3. HTTP/2 over TLS, 10 connections x 100 streams (h2load; backend: h2c)" "req/s" main backend
    load_table 4 "4. 1 MiB responses" "MiB/s" main backend
    idle_table
    hosts_table
    churn_table
    echo "Notes:"
    echo
    echo "- gangway reads its configuration file once a second: of the ${CHURN_RATE} rewrites a second only the last of each second is applied ('applied': routing tables gangway published during the runs, from its gangway_snapshot metric; Docker: one per event)."
    echo "- nginx: a reload (SIGHUP, what \`nginx -s reload\` sends) starts a new worker and retires the old one, whose keep-alive connections close: wrk reconnects, and counts an error when a close races a request. 'applied': reloads nginx logged (signals that arrive during a reload are merged)."
    echo "- HAProxy and Caddy apply each change before answering it: 'changes/s done' is their applied rate."
    echo "- driver CPU %: what bench/churn.py itself used, in % of a CPU (median). It runs on CPU 1 with wrk and the backend; where they are the limit (case 1's backend alone not well above the proxies), its share is taken from every peer's req/s and shows in 'lost'."
    if [[ -s $WORK/res/7docker_cpu ]]; then
        echo "- gangway-docker: during its runs dockerd, containerd and the shims used $(median "$WORK/res/7docker_cpu" 1 %.0f) % of a CPU (median), on either CPU (they are not pinned): taken from the proxy's CPU or the load's, not spent by gangway (its own CPU per request is in the row)."
    fi
    echo "- peak RSS: VmHWM of the instance's processes (nginx: master + workers) at the end of the rounds, before case 5."
    local best ceil
    best=$(for p in "${PEERS[@]}"; do median "$WORK/res/1.$p" 1; echo; done | sort -g | tail -1)
    ceil=$(median "$WORK/res/1.backend" 1)
    if awk -v c="$ceil" -v b="$best" 'BEGIN {exit !(c < 1.3 * b)}'; then
        PROBLEMS+=("case 1: the backend alone ($ceil req/s) is less than 1.3x the fastest proxy ($best req/s): CPU 1 (wrk + backend) may be the limit, not the proxies")
    fi
    for c in 3 4; do
        best=$(for p in "${PEERS[@]}"; do median "$WORK/res/$c.$p" 1; echo; done | sort -g | tail -1)
        ceil=$(median "$WORK/res/$c.backend" 1)
        if awk -v c="$ceil" -v b="$best" 'BEGIN {exit !(c < 1.3 * b)}'; then
            PROBLEMS+=("case $c: the backend alone ($ceil) is less than 1.3x the fastest proxy ($best): the load side may be the limit")
        fi
    done
    # A proxy that does not use its whole core is held back by something
    # else: the load side (CPU 1), or other processes.
    local c p pct low
    for c in 1 1L 2 2H 2R 3 4 6 7; do
        low=""
        for p in "${PEERS[@]}"; do
            [[ -s $WORK/res/$c.$p ]] || continue
            pct=$(median "$WORK/res/$c.$p" 7 %.0f)
            ((pct >= 85)) || low+=" $p ${pct} %,"
        done
        [[ -z $low ]] || PROBLEMS+=("case $c: proxies that used less than 85 % of CPU 0 (not the limit themselves; the load side or other processes were):${low%,}")
    done
    ((NOT_QUIET == 0)) || PROBLEMS+=("$NOT_QUIET runs started while other processes were busy on the CPUs (after waiting up to ${BENCH_QUIET_WAIT:-5} s)")
    ((NOISY_RUNS == 0)) || PROBLEMS+=("in $NOISY_RUNS of $ALL_RUNS runs other processes used more than 10 % of CPU 0 (the proxies' core): noisy figures")
    if ((${#PROBLEMS[@]})); then
        echo
        echo "Problems seen:"
        echo
        local p
        for p in "${PROBLEMS[@]}"; do echo "- $p"; done
    fi
}

# ------------------------------------------------------------------ main ---
main() {
    ensure_tools
    build
    ((PGO)) && build_pgo
    WORK=$(mktemp -d /tmp/gwbench.XXXXXX)
    mkdir -p "$WORK/res" "$WORK/out"
    make_cert
    start_backend
    log "backend on :$BACKEND_PORT; starting ${PEERS[*]} (${#INSTANCES[@]} instances each, $NHOSTS-host tables)"
    start_peers
    setup_docker_churn
    for ROUND in $(seq "$ROUNDS"); do round; done
    # Peak memory of every instance, before case 5 adds its connections.
    RSS[backend]=$(mem_kb "$BACKEND_PID" VmHWM)
    local p inst
    for p in "${PEERS[@]}"; do
        for inst in "${INSTANCES[@]}" docker; do
            if [[ -n ${PID[$p.$inst]:-} ]]; then RSS[$p.$inst]=$(mem_kb "${PID[$p.$inst]}" VmHWM); fi
        done
    done
    log "case 5: $IDLE_CONNS idle connections"
    for p in "${PEERS[@]}"; do idle_case "$p"; done
    for p in "${PEERS[@]}"; do check_logs "$p"; done
    report >"$WORK/report.md"
    cat "$WORK/report.md"
    cp "$WORK/report.md" "$RESULTS"
    log "written to $RESULTS in $(($(date +%s) - STARTED_AT)) s"
}

# Warnings and errors the peers logged are findings, not noise, except for
# these: the Docker socket gangway is not given (and the container case 7
# detaches on purpose), notices of the peers' start-up about what this
# set-up leaves out on purpose (automatic HTTPS, OCSP for a self-signed
# certificate), and TLS handshakes and responses that wrk cuts when a run
# ends (client-visible failures are counted by the load tools instead).
LOG_LEVELS='"level":"(WARN|ERROR)"|\[(warn|error|crit|alert|emerg)\]|\[(WARNING|ALERT)\]|"level":"(warn|error)"'
LOG_IGNORED='docker unavailable|proxy network does not exist|container not on proxy network|automatic HTTPS is completely disabled|stapling OCSP|tls handshake failed|aborting with incomplete response'
check_logs() {
    local p=$1 inst f n
    for inst in "${INSTANCES[@]}" docker; do
        [[ -n ${PID[$p.$inst]:-} ]] || continue
        for f in "$WORK/$p-$inst/out.log" "$WORK/$p-$inst/error.log"; do
            [[ -s $f ]] || continue
            n=$(grep -E "$LOG_LEVELS" "$f" | grep -vcE "$LOG_IGNORED" || true)
            if ((n > 0)); then
                problem "$p ($inst instance) logged $n warning/error lines, e.g. \`$(grep -E "$LOG_LEVELS" "$f" | grep -vE "$LOG_IGNORED" | head -1 | cut -c1-250 || true)\`"
            fi
        done
    done
}

main "$@"
