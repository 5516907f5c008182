#!/usr/bin/env python3
"""Upstream servers for tests/it/forward.rs, on ephemeral loopback ports.

Prints "ready COUNT EARLY PROXY" (their ports) once listening, then serves
until killed:

- COUNT: reads until the client's EOF, then answers "COUNT SHA256\n"
  followed by REPLY bytes of a pattern, and closes.
- EARLY: sends "early\n" and shuts down its sending side at once, then
  reads until EOF and appends "COUNT\n" to the file given as argv[1].
- PROXY: reads a PROXY header (v1 line or v2 block, by its signature),
  answers "v1 SRC SPORT DST DPORT\n" or "v2 FAMILY SRC SPORT DST DPORT\n",
  then echoes what follows until EOF.
"""

import hashlib
import ipaddress
import socket
import struct
import sys
import threading

REPLY = 5 * 1024 * 1024
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def pattern(n):
    block = bytes(i % 251 for i in range(251 * 64))
    out = bytearray()
    while len(out) < n:
        out += block
    return bytes(out[:n])


def read_exact(c, n):
    buf = b""
    while len(buf) < n:
        d = c.recv(n - len(buf))
        if not d:
            raise EOFError
        buf += d
    return buf


def count(c):
    h, n = hashlib.sha256(), 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        h.update(d)
        n += len(d)
    c.sendall(b"%d %s\n" % (n, h.hexdigest().encode()))
    c.sendall(pattern(REPLY))


def early(c):
    c.sendall(b"early\n")
    c.shutdown(socket.SHUT_WR)
    n = 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        n += len(d)
    with open(sys.argv[1], "a") as f:
        f.write("%d\n" % n)


def proxy(c):
    first = read_exact(c, 12)
    if first == V2_SIG:
        ver_cmd, fam, length = struct.unpack("!BBH", read_exact(c, 4))
        body = read_exact(c, length)
        if fam == 0x11:
            src, dst = body[0:4], body[4:8]
            sport, dport = struct.unpack("!HH", body[8:12])
            family = "tcp4"
        elif fam == 0x21:
            src, dst = body[0:16], body[16:32]
            sport, dport = struct.unpack("!HH", body[32:36])
            family = "tcp6"
        else:
            c.sendall(b"v2 unspec cmd=%x\n" % ver_cmd)
            return echo(c)
        line = "v2 %s %s %d %s %d cmd=%x\n" % (
            family,
            ipaddress.ip_address(src),
            sport,
            ipaddress.ip_address(dst),
            dport,
            ver_cmd,
        )
        c.sendall(line.encode())
    else:
        line = first
        while not line.endswith(b"\r\n"):
            line += read_exact(c, 1)
            if len(line) > 107:
                c.sendall(b"bad header\n")
                return
        words = line.decode().split()
        if words[1:2] == ["UNKNOWN"]:
            c.sendall(b"v1 unknown\n")
            return echo(c)
        # PROXY TCP4 SRC DST SPORT DPORT
        c.sendall(("v1 %s %s %s %s\n" % (words[2], words[4], words[3], words[5])).encode())
    echo(c)


def echo(c):
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        c.sendall(d)


def serve(listener, handler):
    while True:
        c, _ = listener.accept()

        def run(c=c):
            try:
                handler(c)
            except (EOFError, OSError):
                pass
            finally:
                c.close()

        threading.Thread(target=run, daemon=True).start()


def main():
    ports = []
    for handler in (count, early, proxy):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        ports.append(s.getsockname()[1])
        threading.Thread(target=serve, args=(s, handler), daemon=True).start()
    print("ready %d %d %d" % tuple(ports), flush=True)
    threading.Event().wait()


main()
