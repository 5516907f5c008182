#!/usr/bin/python3
# A daemon written for systemd socket activation: check the LISTEN_*
# variables, accept one connection on fd 3, describe what it saw, exit.
import os
import socket


def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


fds = [str(fd) for fd in range(256) if is_open(fd)]
ok_pid = os.environ.get("LISTEN_PID") == str(os.getpid())
listener = socket.socket(fileno=3)
conn, _ = listener.accept()
conn.sendall(
    (
        "fds=%s LISTEN_FDS=%s LISTEN_PID_OK=%s LISTEN_FDNAMES=%s\n"
        % (",".join(fds), os.environ.get("LISTEN_FDS"), ok_pid, os.environ.get("LISTEN_FDNAMES"))
    ).encode()
)
conn.close()
