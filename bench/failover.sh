#!/usr/bin/env bash
# bench/failover.sh: what clients see when a backend dies under load.
#
# Three gangway-test-backend processes on loopback behind one gangway pool
# (failover defaults: 3 failures eject for 90 s). wrk sends steady GET load
# for BENCH_SECONDS (default 10); a third of the way in, one backend is
# killed (SIGKILL). Printed: wrk's totals and errors (the client-visible
# failures, goal 0), and from gangway's /api/v1/stats the killed target's
# requests, failures and ejections, so that the requests it received after
# its ejection can be read off (goal 0 until its cooldown ends).
set -euo pipefail

SECONDS_TOTAL=${BENCH_SECONDS:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-32}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

command -v wrk >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk curl >/dev/null
}
(cd "$ROOT" && cargo build --release -q -p gangway -p gangway-testkit)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ports=()
for i in 1 2 3; do
    port=$(free_port)
    BACKEND_NAME=b$i "$ROOT/target/release/gangway-test-backend" --port "$port" >/dev/null 2>&1 &
    PIDS+=($!)
    ports+=("$port")
done
victim_pid=${PIDS[0]}
victim="127.0.0.1:${ports[0]}"

cat >"$WORK/gangway.toml" <<EOF
[[pools]]
name = "app"
targets = ["127.0.0.1:${ports[0]}", "127.0.0.1:${ports[1]}", "127.0.0.1:${ports[2]}"]

[[routes]]
name = "app"
pool = "app"
EOF
http=$(free_port)
admin=$(free_port)
GANGWAY_CONFIG=$WORK/gangway.toml HTTP_PORT=$http CONTROL_PLANE_ADDR=127.0.0.1:$admin \
    PROXY_DOCKER_NETWORK=gwbench-none RUST_LOG=warn GANGWAY_WORKERS=1 \
    "$ROOT/target/release/gangway" >"$WORK/gangway.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
    curl -fs -o /dev/null "http://127.0.0.1:$http/" && break
    sleep 0.1
done

wrk -t1 -c"$CONNECTIONS" -d"${SECONDS_TOTAL}s" "http://127.0.0.1:$http/" >"$WORK/wrk.txt" &
wrk_pid=$!
sleep $((SECONDS_TOTAL / 3))
kill -KILL "$victim_pid"
wait "$victim_pid" 2>/dev/null || true
echo "killed backend $victim after $((SECONDS_TOTAL / 3)) s"
victim_requests() {
    curl -s "http://127.0.0.1:$admin/api/v1/stats" | python3 -c '
import json, sys
print(sum(t["requests"] for p in json.load(sys.stdin)["pools"] for t in p["targets"] if t["addr"] == sys.argv[1]))
' "$victim"
}
sleep 1
after_ejection=$(victim_requests)
wait "$wrk_pid"
at_end=$(victim_requests)

cat "$WORK/wrk.txt"
errors=$(awk '/Socket errors:/ {gsub(",", ""); s += $4 + $6 + $8 + $10}
              /Non-2xx or 3xx responses:/ {s += $5} END {print s + 0}' "$WORK/wrk.txt")
echo
echo "client-visible errors (socket errors + non-2xx): $errors"
echo "requests sent to the killed backend from 1 s after its death to the end: $((at_end - after_ejection))"
curl -s "http://127.0.0.1:$admin/api/v1/stats" | python3 -c '
import json, sys
victim = sys.argv[1]
for pool in json.load(sys.stdin)["pools"]:
    for t in pool["targets"]:
        mark = "  <- killed" if t["addr"] == victim else ""
        print("%s: requests %d, failures %d, ejections %d, state %s%s" % (
            t["addr"], t["requests"], t["failures"], t["ejections"], t["state"], mark))
' "$victim"
echo "warnings logged by gangway:"
grep -c '"level":"WARN"' "$WORK/gangway.log" || true
