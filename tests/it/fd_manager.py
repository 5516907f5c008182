#!/usr/bin/python3
"""systemd's side of the fd store, over the real protocol, for the tests.

    fd_manager.py NOTIFY_PATH PROGRAM ARGS...

Binds the NOTIFY_SOCKET datagram socket at NOTIFY_PATH and starts PROGRAM
with NOTIFY_SOCKET set, its stderr this one's. Keeps the fds it is sent
with FDSTORE=1 by FDNAME (FDSTOREREMOVE=1 closes a name's), as systemd
does with FileDescriptorStoreMax= set. On SIGUSR1 it restarts PROGRAM the
way `systemctl restart` does: SIGTERM, wait until it has exited, start it
again with the stored fds on 3.. announced by LISTEN_FDS, LISTEN_FDNAMES
and LISTEN_PID. On SIGTERM it stops PROGRAM and exits.

It reports on stderr, one line each: `manager: started pid=N`,
`manager: notified pid=N READY=1` (any message but the fd store's),
`manager: stored NAME fds=N` / `manager: removed NAME`,
`manager: exited pid=N status=S`.
"""
import ctypes
import fcntl
import os
import select
import signal
import socket
import sys

path, argv = sys.argv[1], sys.argv[2:]
store = {}  # name -> [fd]
restart = False
stop = False


def say(msg):
    print("manager: " + msg, file=sys.stderr, flush=True)


def on_usr1(*_):
    global restart
    restart = True


def on_term(*_):
    global stop
    stop = True


signal.signal(signal.SIGUSR1, on_usr1)
signal.signal(signal.SIGTERM, on_term)

sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(path)
libc = ctypes.CDLL(None, use_errno=True)


def start():
    names = [n for n in sorted(store) for _ in store[n]]
    fds = [fd for n in sorted(store) for fd in store[n]]
    pid = os.fork()
    if pid == 0:
        # Ended with us if the test kills us (PR_SET_PDEATHSIG).
        libc.prctl(1, signal.SIGTERM)
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 1000) for fd in fds]
        for i, fd in enumerate(high):
            os.dup2(fd, 3 + i)  # not close-on-exec
            os.close(fd)
        env = dict(os.environ, NOTIFY_SOCKET=path)
        if fds:
            env.update(
                LISTEN_PID=str(os.getpid()),
                LISTEN_FDS=str(len(fds)),
                LISTEN_FDNAMES=":".join(names),
            )
        os.execve(argv[0], argv, env)
    say("started pid=%d fds=%d" % (pid, len(fds)))
    return pid


def receive(pid):
    try:
        msg, anc, _, _ = sock.recvmsg(4096, socket.CMSG_SPACE(253 * 4))
    except BlockingIOError:
        return
    fds = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            n = len(data) // 4
            fds.extend(int.from_bytes(data[i * 4:i * 4 + 4], sys.byteorder) for i in range(n))
    fields = dict(
        line.split("=", 1) for line in msg.decode().split("\n") if "=" in line
    )
    name = fields.get("FDNAME", "stored")
    if fields.get("FDSTOREREMOVE") == "1":
        for fd in store.pop(name, []):
            os.close(fd)
        say("removed %s" % name)
    if fields.get("FDSTORE") == "1":
        have = store.setdefault(name, [])
        for fd in fds:
            os.set_inheritable(fd, False)
            have.append(fd)
        say("stored %s fds=%d" % (name, len(have)))
    else:
        for fd in fds:
            os.close(fd)
    if "FDSTORE" not in fields and "FDSTOREREMOVE" not in fields:
        say("notified pid=%d %s" % (pid, msg.decode().replace("\n", " ")))


sock.setblocking(False)
pid = start()
while True:
    try:
        ready, _, _ = select.select([sock], [], [], 0.05)
    except InterruptedError:
        ready = []
    if ready:
        receive(pid)
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        # Messages it sent before it exited are read first.
        while select.select([sock], [], [], 0)[0]:
            receive(pid)
        say("exited pid=%d status=%d" % (pid, os.waitstatus_to_exitcode(status)))
        if stop or not restart:
            sys.exit(0)
    if stop:
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        say("exited pid=%d" % pid)
        sys.exit(0)
    if restart:
        if not done:
            os.kill(pid, signal.SIGTERM)
            _, status = os.waitpid(pid, 0)
            while select.select([sock], [], [], 0)[0]:
                receive(pid)
            say("exited pid=%d status=%d" % (pid, os.waitstatus_to_exitcode(status)))
        restart = False
        pid = start()
