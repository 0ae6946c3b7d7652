#!/usr/bin/env python3
"""Open N keep-alive connections to a proxy and hold them idle.

Used by bench/run.sh (case 5: memory per idle connection). Each connection
sends one `GET /` with the given Host header and reads the whole response,
so that the proxy has really served it and now keeps it as an idle
keep-alive connection. Then the script writes one line to READY_FILE:

    opened <n> failed <m> seconds <s>

and holds every connection open until it gets SIGTERM (or SIGINT), or
HOLD_SECONDS have passed (a bound, so that it always stops by itself).

Usage: idle_conns.py HOST PORT COUNT HOST_HEADER READY_FILE [HOLD_SECONDS]
"""

import os
import signal
import socket
import sys
import time


def read_response(sock):
    """Reads one HTTP/1.1 response (Content-Length or chunked); True if 2xx."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return False
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status_ok = lines[0].split(b" ")[1:2] and lines[0].split(b" ")[1].startswith(b"2")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if b"content-length" in headers:
        missing = int(headers[b"content-length"]) - len(rest)
        while missing > 0:
            chunk = sock.recv(min(missing, 65536))
            if not chunk:
                return False
            missing -= len(chunk)
    elif headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        while not rest.endswith(b"0\r\n\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                return False
            rest += chunk
    return bool(status_ok)


def main():
    if len(sys.argv) not in (6, 7):
        sys.stderr.write(__doc__)
        return 2
    host, port, count, host_header, ready_file = sys.argv[1:6]
    hold = float(sys.argv[6]) if len(sys.argv) == 7 else 120.0
    port, count = int(port), int(count)
    request = ("GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: idle_conns\r\n\r\n" % host_header).encode()

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    socks, failed, first_error = [], 0, ""
    start = time.monotonic()
    for _ in range(count):
        if stop:
            break
        try:
            sock = socket.create_connection((host, port), timeout=10)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(request)
            if not read_response(sock):
                raise OSError("no 2xx response")
            socks.append(sock)
        except OSError as error:
            failed += 1
            if not first_error:
                first_error = str(error)
            try:
                sock.close()
            except (OSError, UnboundLocalError):
                pass
    elapsed = time.monotonic() - start
    with open(ready_file + ".tmp", "w") as f:
        f.write("opened %d failed %d seconds %.2f %s\n" % (len(socks), failed, elapsed, first_error.replace(" ", "_")))
    # Renamed into place: the reader never sees half a line.
    os.replace(ready_file + ".tmp", ready_file)
    deadline = time.monotonic() + hold
    while not stop and time.monotonic() < deadline:
        time.sleep(0.1)
    for sock in socks:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
