#!/usr/bin/env python3
"""Route changes at a fixed rate, each proxy its own way (bench/run.sh, case 7).

Every change replaces one extra route, `churn-<i>.test`, by the next one; the
route under load (`bench.test`) never changes. A change is started every
1/RATE seconds; one that takes longer delays the next (the rate reached is
printed). Prints `ready` once set up (the interpreter's start costs about a
tenth of a second of CPU, which bench/run.sh keeps out of its measured
window by starting the load only then), runs for SECONDS, then prints one
line:

    changes <n> errors <e> seconds <s> rate <r> cpu <c> first_error <text>

`cpu` is the CPU time (user + system, seconds) the driver itself spent
from `ready` on: bench/run.sh runs it on the load's CPU, so that time is
taken from the load tool and the backend.

Modes:
  gangway-file FILE BASE     write BASE + one [[routes]] to FILE, atomically
                             (temporary file + rename); gangway polls it
  nginx CONF BASE PID_FILE LISTEN
                             write BASE (its line "# CHURN" replaced by one
                             server block on LISTEN) to CONF, then send
                             SIGHUP to the master (what `nginx -s reload`
                             does); nginx logs a reload it cannot do
  haproxy SOCKET MAP         `add map` / `del map` on the runtime API socket
  caddy ADMIN_URL            PATCH the host matcher of the route @id "churn"
                             through the admin API (Caddy reloads its config)
  docker SOCKET NETWORK CONTAINER
                             disconnect / connect CONTAINER (labelled with
                             a host) from the proxy's Docker network, through
                             the Docker Engine API: gangway's Docker path

Usage: churn.py RATE SECONDS MODE ARGS...
"""

import http.client
import json
import os
import signal
import socket
import sys
import time


class UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket (the Docker Engine API)."""

    def __init__(self, path):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10)
        self.sock.connect(self.path)


def write_atomic(path, text):
    tmp = "%s.tmp%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def gangway_file(args):
    path, base_path = args
    with open(base_path) as f:
        base = f.read()

    def change(i):
        write_atomic(
            path,
            base + '\n[[routes]]\nname = "churn"\nhosts = ["churn-%d.test"]\npool = "backend"\n' % i,
        )

    return change, None


def nginx(args):
    conf, base_path, pid_file, listen = args
    with open(base_path) as f:
        base = f.read()
    if "# CHURN" not in base:
        raise SystemExit("churn.py: no '# CHURN' line in %s" % base_path)
    with open(pid_file) as f:
        master = int(f.read().strip())

    def change(i):
        block = "server { listen %s; server_name churn-%d.test; location / { proxy_pass http://backend; } }" % (listen, i)
        write_atomic(conf, base.replace("# CHURN", block))
        # What `nginx -s reload` does (read the pid file, send SIGHUP),
        # without starting an nginx process on the load generator's core
        # 50 times a second.
        os.kill(master, signal.SIGHUP)

    return change, None


def haproxy(args):
    sock_path, map_path = args

    def send(cmd):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(sock_path)
            s.sendall(cmd.encode() + b"\n")
            out = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                out += chunk
        if out.strip():
            raise RuntimeError("haproxy: %s" % out.decode(errors="replace").strip())

    def change(i):
        # The map holds churn-<i-1>.test (churn-0.test at the start).
        send("del map %s churn-%d.test;add map %s churn-%d.test be_app" % (map_path, i - 1, map_path, i))

    def finish(last):
        # Back to churn-0.test, so that the next run starts from there.
        if last > 0:
            send("del map %s churn-%d.test;add map %s churn-0.test be_app" % (map_path, last, map_path))

    return change, finish


def caddy(args):
    (admin,) = args
    host_port = admin.split("//", 1)[-1].rstrip("/")

    def change(i):
        conn = http.client.HTTPConnection(host_port, timeout=10)
        try:
            body = json.dumps(["churn-%d.test" % i])
            conn.request(
                "PATCH",
                "/id/churn/match/0/host",
                body=body,
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
            if resp.status != 200:
                raise RuntimeError("caddy admin: %d %s" % (resp.status, text.strip()))
        finally:
            conn.close()

    return change, None


def docker(args):
    sock_path, network, container = args

    def call(action):
        conn = UnixHTTPConnection(sock_path)
        try:
            body = json.dumps({"Container": container})
            conn.request(
                "POST",
                "/networks/%s/%s" % (network, action),
                body=body,
                headers={"Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            text = resp.read().decode(errors="replace")
            if resp.status >= 300:
                raise RuntimeError("docker %s: %d %s" % (action, resp.status, text.strip()))
        finally:
            conn.close()

    # Changes are numbered from 1: odd ones disconnect (the container is
    # attached at the start), even ones connect again.
    def change(i):
        call("disconnect" if i % 2 == 1 else "connect")

    def finish(last):
        # Leave the container attached, as it was at the start.
        if last % 2 == 1:
            call("connect")

    return change, finish


MODES = {"gangway-file": gangway_file, "nginx": nginx, "haproxy": haproxy, "caddy": caddy, "docker": docker}


def main():
    if len(sys.argv) < 4 or sys.argv[3] not in MODES:
        sys.stderr.write(__doc__)
        return 2
    rate, seconds, mode = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
    change, finish = MODES[mode](sys.argv[4:])
    print("ready", flush=True)
    cpu_at_ready = os.times()
    changes = errors = 0
    first_error = "-"
    start = time.monotonic()
    deadline = start + seconds
    i = 0
    while True:
        due = start + i / rate
        now = time.monotonic()
        if due >= deadline or now >= deadline:
            break
        if due > now:
            time.sleep(due - now)
        try:
            change(i + 1)
            changes += 1
        except Exception as error:  # every failure is counted and reported
            errors += 1
            if first_error == "-":
                first_error = str(error).replace("\n", " ")[:300]
        i += 1
    elapsed = time.monotonic() - start
    # Changes are numbered 1..i; the driver leaves the proxy's routes as it
    # found them when that takes a step of its own (the next run starts over).
    if finish is not None:
        try:
            finish(i)
        except Exception as error:  # reported, not counted: the run is over
            if first_error == "-":
                first_error = "restoring the initial state: %s" % error
    cpu_now = os.times()
    cpu = (cpu_now.user - cpu_at_ready.user) + (cpu_now.system - cpu_at_ready.system)
    print(
        "changes %d errors %d seconds %.2f rate %.1f cpu %.3f first_error %s"
        % (changes, errors, elapsed, (changes + errors) / elapsed if elapsed else 0, cpu, first_error)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
