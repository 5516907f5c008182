"""How to configure, start, watch and stop each server the benchmark measures.

Every server gets its own temporary directory with its config and a log
file, and services on loopback ports chosen free for that launch. A service
is one of four kinds:

    tcp-exec   stream nowait, the handler echo1 exec'd per connection
    tcp-echo   the server's own (internal) TCP echo
    tcp-fwd    a TCP forward (xinetd's redirect, oxinetd's forward, HAProxy
               in TCP mode, socat) to the upstream echo at ctx.fwd_upstream
    udp-echo   the server's own UDP echo
    udp-wait   dgram wait, the handler udpecho1 exec'd with the bound socket

Servers that find internal services by name (openbsd-inetd,
inetutils-inetd) run in a private mount namespace in which /etc/services
maps "echo" to the launch's port; nothing on the machine changes.

Each process is started in its own session and recorded in PROCS; stop()
and kill_all() end them by PID (and their process group, by the same
number), never by name.
"""

import os
import pwd
import resource
import signal
import socket
import struct
import subprocess
import time
from collections import namedtuple

CLK_TCK = os.sysconf("SC_CLK_TCK")

Svc = namedtuple("Svc", "kind port")

TCP_KINDS = ("tcp-exec", "tcp-echo", "tcp-fwd", "tls-exec", "tls-cat", "tls-echo")
UDP_KINDS = ("udp-echo", "udp-wait")

# Every process this harness started and has not yet seen exit: pid -> Popen.
PROCS = {}


# When set, servers started get at least this many descriptors (the
# forward figure's 10,000 idle connections hold two each).
NOFILE_MIN = None


def _child_nofile():
    """The descriptor limit a server gets: the hard limit, or NOFILE_MIN
    when that is more and may be raised (same for every server)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if NOFILE_MIN and hard < NOFILE_MIN:
        return soft, hard, (NOFILE_MIN, NOFILE_MIN)
    return soft, hard, (hard, hard)


def spawn(argv, log_path, cwd=None):
    """Start argv with stdout and stderr to log_path, in its own session.

    The child inherits its descriptor limit from this process, set just
    around the start: no preexec_fn, so Python starts it with vfork rather
    than a fork of the whole harness (~2 ms, which the startup figures
    would count as the server's).
    """
    soft, hard, child = _child_nofile()
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, child)
    except (ValueError, OSError):
        # No CAP_SYS_RESOURCE (a container): the hard limit stays.
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    log = open(log_path, "ab")
    try:
        p = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=cwd,
            start_new_session=True,
        )
    finally:
        log.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    PROCS[p.pid] = p
    return p


def end(p, grace=3.0):
    """SIGTERM, then SIGKILL after grace seconds; by PID and process group."""
    if p.poll() is None:
        try:
            os.kill(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    # Anything left in its process group (a handler mid-connection). The
    # group id is the server's own pid (start_new_session), so this can only
    # reach processes it started.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    PROCS.pop(p.pid, None)


def kill_all():
    for p in list(PROCS.values()):
        end(p, grace=1.0)


# ---------------------------------------------------------------------------
# /proc readings


def cpu_ticks(pid):
    """(own CPU, cutime+cstime) in clock ticks, or None if gone.

    The process's own CPU is read from its CPU-time clock (the kernel's
    nanosecond sum over all its threads, dead ones included), expressed in
    ticks: utime+stime count whole 10-ms ticks, and a 3-s cell's ~200 ms of
    supervisor time read that way was ±5 % before any real noise. Children
    are in ticks (no such clock for the reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # fields[0] is state (field 3); utime is field 14.
    own = int(fields[11]) + int(fields[12])
    try:
        # clock_getcpuclockid(pid): MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED).
        own = time.clock_gettime_ns(((~pid) << 3) | 2) * CLK_TCK / 1e9
    except OSError:
        pass
    return own, int(fields[13]) + int(fields[14])


def status_kib(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def pss_kib(pid):
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def outside_ticks(root):
    """CPU ticks used so far by user processes outside root's process tree.

    Other people's work on the machine: every process that is not root or
    one of its descendants, and not a kernel thread, counted with the CPU
    of the children it has reaped (so short-lived compiler jobs show up in
    their parent once they exit). Compare two readings over a cell.
    """
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                head, rest = f.read().rsplit(")", 1)
        except OSError:
            continue
        v = rest.split()
        ppid, flags = int(v[1]), int(v[6])
        if flags & 0x00200000:  # PF_KTHREAD
            continue
        procs[int(d)] = (ppid, int(v[11]) + int(v[12]) + int(v[13]) + int(v[14]))
    total = 0
    for pid, (ppid, ticks) in procs.items():
        p = pid
        seen = 0
        while p in procs and p != root and seen < 64:
            p = procs[p][0]
            seen += 1
        if p != root:
            total += ticks
    return total


# ---------------------------------------------------------------------------
# Listening sockets


NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
TCP_LISTEN, TCP_CLOSE = 10, 7  # a bound, unconnected UDP socket is "CLOSE"


def diag_ports(proto):
    """Local ports of IPv4 sockets listening (TCP) or bound unconnected (UDP).

    One sock_diag netlink dump, filtered by state in the kernel: a fraction
    of a millisecond, where running ss costs ~4 ms.
    """
    ipproto, state = (socket.IPPROTO_TCP, TCP_LISTEN) if proto == "tcp" else (socket.IPPROTO_UDP, TCP_CLOSE)
    # struct inet_diag_req_v2: family, protocol, ext, pad, states, then a
    # zeroed inet_diag_sockid (48 bytes).
    req = struct.pack("=BBBBI", socket.AF_INET, ipproto, 0, 0, 1 << state) + bytes(48)
    msg = struct.pack("=IHHII", 16 + len(req), SOCK_DIAG_BY_FAMILY, NLM_F_REQUEST | NLM_F_DUMP, 1, 0) + req
    ports = set()
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as nl:
        nl.sendto(msg, (0, 0))
        while True:
            data = nl.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind == NLMSG_DONE:
                    return ports
                if kind == NLMSG_ERROR or length < 16:
                    raise OSError("sock_diag dump failed")
                # inet_diag_msg: family, state, timer, retrans, then the
                # sockid starting with the source port (network order).
                ports.add(struct.unpack_from("!H", data, off + 16 + 4)[0])
                off += (length + 3) & ~3


def ss_ports(proto, lo, hi):
    """Local ports in [lo, hi] with a listening (TCP) or bound (UDP) socket."""
    try:
        return {p for p in diag_ports(proto) if lo <= p <= hi}
    except OSError:
        pass
    flag = "-Hltn" if proto == "tcp" else "-Hlun"
    out = subprocess.run(
        ["ss", flag, f"sport >= :{lo} and sport <= :{hi}"],
        capture_output=True,
        text=True,
    ).stdout
    ports = set()
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 4:
            ports.add(int(cols[3].rsplit(":", 1)[1]))
    return ports


def ports_in_use(lo, hi):
    """Any socket at all (any state, TCP or UDP) on a port in [lo, hi]."""
    out = subprocess.run(
        ["ss", "-Htuan", f"sport >= :{lo} and sport <= :{hi}"],
        capture_output=True,
        text=True,
    ).stdout
    return bool(out.strip())


class Ports:
    """Hands out blocks of consecutive free ports below the ephemeral range."""

    LO, HI = 10000, 32000

    def __init__(self, rng):
        self.rng = rng

    def block(self, n):
        for _ in range(100):
            base = self.rng.randrange(self.LO, self.HI - n)
            if not ports_in_use(base, base + n - 1):
                return base
        raise RuntimeError(f"no {n} free consecutive ports in {self.LO}-{self.HI}")


# ---------------------------------------------------------------------------
# A running server


class Instance:
    """One launch of a server: its processes, services, log and timings."""

    def __init__(self, server, workdir, services, procs, log_path, launched, ready_word=None):
        self.server = server
        self.workdir = workdir
        self.services = services
        self.procs = procs
        self.log_path = log_path
        self.ready_word = ready_word
        # Just before the first process was spawned (configs already written).
        self.launched = launched
        self.bound_ms = None  # launch until every port listens (ss)
        self.ready_ms = None  # launch until the server's own ready line
        self.error = None

    @property
    def pid(self):
        return self.procs[0].pid

    def pids(self):
        return [p.pid for p in self.procs]

    def addr(self, kind):
        for s in self.services:
            if s.kind == kind:
                return f"127.0.0.1:{s.port}"
        raise KeyError(kind)

    def log_tail(self, n=15):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, 2)
                size = f.tell()
                f.seek(max(0, size - 4000))
                lines = f.read().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except OSError:
            return ""

    def _ready_line_seen(self, state):
        if not self.ready_word:
            return False
        try:
            with open(self.log_path, "rb") as f:
                f.seek(state["off"])
                data = f.read()
        except OSError:
            return False
        state["buf"] += data
        state["off"] += len(data)
        lines = state["buf"].split(b"\n")
        state["buf"] = lines.pop()
        return any(self.ready_word in line for line in lines)

    def wait_ready(self, timeout):
        """Wait until every port listens and (oxinetd) the ready line is logged.

        Polls the sockets (sock_diag) and the log about every 0.5 ms.
        Returns False, with self.error set, on timeout or if a process exits.
        """
        tcp = {s.port for s in self.services if s.kind in TCP_KINDS}
        udp = {s.port for s in self.services if s.kind in UDP_KINDS}
        ports = tcp | udp
        lo, hi = min(ports), max(ports)
        deadline = self.launched + timeout
        state = {"off": 0, "buf": b""}
        while time.monotonic() < deadline:
            if self.bound_ms is None:
                if (not tcp or tcp <= ss_ports("tcp", lo, hi)) and (not udp or udp <= ss_ports("udp", lo, hi)):
                    self.bound_ms = (time.monotonic() - self.launched) * 1000
            if self.ready_ms is None and self._ready_line_seen(state):
                self.ready_ms = (time.monotonic() - self.launched) * 1000
            if self.bound_ms is not None and (self.ready_ms is not None or not self.ready_word):
                return True
            dead = [p for p in self.procs if p.poll() is not None]
            if dead:
                self.error = f"exited with status {dead[0].returncode}: {self.log_tail(5)}"
                return False
            time.sleep(0.0005)
        self.error = f"not ready after {timeout:.0f} s: {self.log_tail(5)}"
        return False

    def alive(self):
        return all(p.poll() is None for p in self.procs)

    def cpu(self):
        """(supervisor ticks, reaped children ticks) summed over processes."""
        own = kids = 0
        for p in self.procs:
            t = cpu_ticks(p.pid)
            if t is None:
                return None
            own += t[0]
            kids += t[1]
        return own, kids

    def memory(self):
        rss = pss = 0
        for p in self.procs:
            r, s = status_kib(p.pid, "VmRSS"), pss_kib(p.pid)
            if r is None or s is None:
                return None
            rss += r
            pss += s
        return {"rss_kib": rss, "pss_kib": pss, "processes": len(self.procs)}

    def stop(self):
        for p in self.procs:
            end(p)


# ---------------------------------------------------------------------------
# The servers


class Server:
    """Base: name, which kinds it serves, and how to launch it."""

    name = "?"
    kinds = ()
    # Whether it can run 500 and 1,000 tcp-exec services (one process or many).
    many = True
    # Shown in the results: what the harness changed from the defaults.
    settings = ""

    def supports(self, kind):
        return kind in self.kinds

    def launch(self, ctx, services, workdir):
        raise NotImplementedError


class Oxinetd(Server):
    name = "oxinetd"
    kinds = ("tcp-exec", "tcp-echo", "udp-echo", "udp-wait", "tcp-fwd")
    settings = (
        '`--log stderr` to a file (default log fields: `start`/`exit` lines per handler, `done` per internal '
        'TCP connection); `user = "nobody"`, `stderr = "null"`; internal UDP `reply_rate` raised from '
        "50,000/s to 100,000,000/s and `peer_reply_rate` from 100/s to 100,000,000/s; `instances` left at "
        "its default for handlers (256); internal TCP echo `instances = 100000`, `per_source = 100000` (its "
        "defaults, a share of the fd limit, would refuse the one-source idle10k and c=64 clients)"
    )

    def __init__(self, binary, name="oxinetd", exec_lines=(), settings=None, server=None, metrics=False):
        self.binary = binary
        self.name = name
        # An internal:metrics service beside the others, on a port of its
        # own (Instance.metrics_addr): the metrics figure scrapes it.
        self.metrics = metrics
        # The exec'd handler's path, when not ctx.echo1 (the confine figure:
        # private_tmp hides the work directory under /tmp).
        self.server = server
        # Lines added to each exec'd TCP service (the confine figure's variants).
        self.exec_lines = list(exec_lines)
        if settings:
            self.settings = settings
        if exec_lines:
            self.kinds = ("tcp-exec",)

    def launch(self, ctx, services, workdir):
        lines = ["[defaults]", 'user = "nobody"', 'stderr = "null"', ""]
        for i, s in enumerate(services):
            lines += ["[[service]]", f'name = "s{i}-{s.kind}"', f'listen = "127.0.0.1:{s.port}"']
            if s.kind == "tcp-exec":
                lines.append(f'server = "{self.server or ctx.echo1}"')
                lines += self.exec_lines
            elif s.kind == "tcp-echo":
                lines += ['server = "internal:echo"', "instances = 100000", "per_source = 100000"]
            elif s.kind == "tcp-fwd":
                lines += [f'forward = "127.0.0.1:{ctx.fwd_upstream}"', "instances = 100000",
                          "per_source = 100000"]
            elif s.kind == "udp-echo":
                lines += ['socket = "dgram"', 'server = "internal:echo"', "reply_rate = 100000000",
                          "peer_reply_rate = 100000000"]
            elif s.kind == "udp-wait":
                lines += ['socket = "dgram"', "wait = true", f'server = "{ctx.udpecho1}"']
            elif s.kind in ("tls-exec", "tls-cat", "tls-echo"):
                # The tls figure: the key 0600 root's, as in production.
                if s.kind == "tls-echo":
                    lines += ['server = "internal:echo"', "instances = 100000", "per_source = 100000"]
                else:
                    lines.append(f'server = "{ctx.echo1 if s.kind == "tls-exec" else "/bin/cat"}"')
                lines.append(f'tls = {{ cert = "{ctx.tls_dir}/server.pem", key = "{ctx.tls_dir}/server.key" }}')
            lines.append("")
        metrics_port = None
        if self.metrics:
            taken = {s.port for s in services}
            metrics_port = next(p for p in iter(lambda: ctx.ports.block(1), None) if p not in taken)
            lines += ["[[service]]", 'name = "metrics"', f'listen = "127.0.0.1:{metrics_port}"',
                      'server = "internal:metrics"', ""]
        conf = os.path.join(workdir, "oxinetd.toml")
        with open(conf, "w") as f:
            f.write("\n".join(lines))
        log = os.path.join(workdir, "log")
        t0 = time.monotonic()
        p = spawn([self.binary, "-f", conf, "--log", "stderr"], log)
        inst = Instance(self, workdir, services, [p], log, t0, ready_word=b" ready listeners=")
        inst.metrics_addr = ("127.0.0.1", metrics_port) if metrics_port else None
        return inst


class Stunnel(Server):
    """Debian's stunnel4 (the tls figure): one daemon, `exec` of the same
    handler per connection over a socketpair, as oxinetd's relay does; for
    the internal echo (`tls-echo`), `connect` to a plain oxinetd internal
    echo on 127.0.0.2."""

    name = "stunnel4"
    kinds = ("tls-exec", "tls-cat", "tls-echo")
    settings = ("`foreground = yes`, `setuid/setgid = nobody/nogroup` (its TLS runs unprivileged too), "
                "one `[service]` per port with `exec` = the handler (for the internal echo: `connect` to "
                "oxinetd's plain internal echo on 127.0.0.2); the same certificate and key; "
                "otherwise Debian's defaults (session cache and tickets on)")

    def __init__(self, binary, oxinetd=None):
        self.binary = binary
        self.oxinetd = oxinetd

    def launch(self, ctx, services, workdir):
        lines = ["foreground = yes", "pid =", "setuid = nobody", "setgid = nogroup", ""]
        ox = []
        for i, s in enumerate(services):
            lines += [f"[s{i}]", f"accept = 127.0.0.1:{s.port}", f"cert = {ctx.tls_dir}/server.pem",
                      f"key = {ctx.tls_dir}/server.key"]
            if s.kind == "tls-echo":
                lines += [f"connect = 127.0.0.2:{s.port}", ""]
                ox += ["[[service]]", f'name = "s{i}"', f'listen = "127.0.0.2:{s.port}"',
                       'server = "internal:echo"', "instances = 100000", "per_source = 100000", ""]
                continue
            handler = ctx.echo1 if s.kind == "tls-exec" else "/bin/cat"
            lines += [f"exec = {handler}", f"execArgs = {os.path.basename(handler)}", ""]
        conf = os.path.join(workdir, "stunnel.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines))
        log = os.path.join(workdir, "log")
        t0 = time.monotonic()
        procs = []
        if ox and self.oxinetd:
            oconf = os.path.join(workdir, "oxinetd.toml")
            with open(oconf, "w") as f:
                f.write("\n".join(ox))
            procs.append(spawn([self.oxinetd, "-f", oconf, "--log", "stderr"],
                               os.path.join(workdir, "oxinetd.log")))
        procs.insert(0, spawn([self.binary, conf], log))
        # Readiness looks at port numbers, which the echo's 127.0.0.2
        # sockets share: wait for both (bounded, as HaproxyTls does).
        deadline = time.monotonic() + 10
        for s in (s for s in services if s.kind == "tls-echo"):
            for host in ("127.0.0.1", "127.0.0.2"):
                while time.monotonic() < deadline:
                    try:
                        socket.create_connection((host, s.port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.01)
        return Instance(self, workdir, services, procs, log, t0)


class HaproxyTls(Server):
    """HAProxy terminating TLS (one thread) in front of oxinetd's plain
    services (the tls figure): HAProxy on 127.0.0.1:PORT, oxinetd on
    127.0.0.2:PORT, the same handlers."""

    name = "haproxy+oxinetd"
    kinds = ("tls-exec", "tls-cat", "tls-echo")
    settings = ("HAProxy `nbthread 1`, `mode tcp`, `bind ... ssl crt` (the same certificate and key), "
                "`user/group nobody/nogroup`, in front of oxinetd's plain services on 127.0.0.2 "
                "(the same handlers, as oxinetd's own rows)")

    def __init__(self, haproxy, oxinetd):
        self.haproxy = haproxy
        self.oxinetd = oxinetd

    def launch(self, ctx, services, workdir):
        pem = os.path.join(workdir, "combined.pem")
        with open(pem, "w") as f:
            for part in ("server.pem", "server.key"):
                with open(os.path.join(ctx.tls_dir, part)) as g:
                    f.write(g.read())
        os.chmod(pem, 0o600)
        lines = ["global", "    nbthread 1", "    maxconn 4000", "    user nobody", "    group nogroup",
                 "defaults", "    mode tcp", "    timeout connect 5s", "    timeout client 60s",
                 "    timeout server 60s"]
        ox = ["[defaults]", 'user = "nobody"', 'stderr = "null"', ""]
        for i, s in enumerate(services):
            handler = {"tls-exec": ctx.echo1, "tls-cat": "/bin/cat"}.get(s.kind, "internal:echo")
            lines += [f"frontend f{i}", f"    bind 127.0.0.1:{s.port} ssl crt {pem}", f"    default_backend b{i}",
                      f"backend b{i}", f"    server s{i} 127.0.0.2:{s.port}"]
            ox += ["[[service]]", f'name = "s{i}"', f'listen = "127.0.0.2:{s.port}"', f'server = "{handler}"', ""]
        cfg = os.path.join(workdir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("\n".join(lines) + "\n")
        conf = os.path.join(workdir, "oxinetd.toml")
        with open(conf, "w") as f:
            f.write("\n".join(ox))
        log = os.path.join(workdir, "log")
        t0 = time.monotonic()
        o = spawn([self.oxinetd, "-f", conf, "--log", "stderr"], os.path.join(workdir, "oxinetd.log"))
        h = spawn([self.haproxy, "-db", "-f", cfg], log)
        # Readiness looks at the port numbers, which oxinetd's 127.0.0.2
        # sockets share: wait for HAProxy's own (bounded; a failure shows
        # as refused connections in the cell).
        deadline = time.monotonic() + 10
        for s in services:
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", s.port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.01)
        return Instance(self, workdir, services, [h, o], log, t0)


class Floor(Server):
    kinds = ("tcp-exec",)
    many = False

    def __init__(self, mode, binary):
        self.mode = mode
        self.binary = binary
        self.name = f"floor-{mode}"
        duties = (", with a session per handler, reaping with waitpid and a log line per start and exit"
                  if mode == "duty" else "")
        self.settings = f"bench/floor.c, {mode}{duties}; handler runs as root (no user switch), backlog 1024"

    def launch(self, ctx, services, workdir):
        (s,) = services
        log = os.path.join(workdir, "log")
        t0 = time.monotonic()
        p = spawn([self.binary, self.mode, "127.0.0.1", str(s.port), ctx.echo1], log)
        return Instance(self, workdir, services, [p], log, t0)


class Xinetd(Server):
    name = "xinetd"
    kinds = ("tcp-exec", "tcp-echo", "udp-echo", "udp-wait", "tcp-fwd")
    settings = (
        "`-dontfork`; `instances = UNLIMITED`, `per_source = UNLIMITED`, `cps = 1000000 1` "
        "(default `cps = 50 10`); `log_type = FILE` (nothing is logged per connection by default); "
        "libwrap left on; listen backlog 64 (fixed)"
    )

    def __init__(self, binary):
        self.binary = binary

    def launch(self, ctx, services, workdir):
        log = os.path.join(workdir, "log")
        out = [
            "defaults",
            "{",
            "\tinstances = UNLIMITED",
            "\tper_source = UNLIMITED",
            "\tcps = 1000000 1",
            f"\tlog_type = FILE {log}",
            "}",
        ]
        for i, s in enumerate(services):
            attrs = {"bind": "127.0.0.1", "port": str(s.port)}
            if s.kind == "tcp-exec":
                name = f"s{i}"
                attrs.update(type="UNLISTED", socket_type="stream", protocol="tcp", wait="no",
                             user="nobody", server=ctx.echo1)
            elif s.kind == "tcp-echo":
                name = "echo"
                attrs.update(type="INTERNAL UNLISTED", id=f"echo-stream-{i}", socket_type="stream",
                             protocol="tcp", wait="no")
            elif s.kind == "udp-echo":
                name = "echo"
                attrs.update(type="INTERNAL UNLISTED", id=f"echo-dgram-{i}", socket_type="dgram",
                             protocol="udp", wait="yes")
            elif s.kind == "tcp-fwd":
                name = f"s{i}"
                attrs.update(type="UNLISTED", socket_type="stream", protocol="tcp", wait="no",
                             user="nobody", redirect=f"127.0.0.1 {ctx.fwd_upstream}")
            else:
                name = f"s{i}"
                attrs.update(type="UNLISTED", socket_type="dgram", protocol="udp", wait="yes",
                             user="nobody", server=ctx.udpecho1)
            out += [f"service {name}", "{"] + [f"\t{k} = {v}" for k, v in attrs.items()] + ["}"]
        conf = os.path.join(workdir, "xinetd.conf")
        with open(conf, "w") as f:
            f.write("\n".join(out) + "\n")
        t0 = time.monotonic()
        p = spawn([self.binary, "-dontfork", "-f", conf, "-pidfile", os.path.join(workdir, "pid")],
                  os.path.join(workdir, "stderr"))
        return Instance(self, workdir, services, [p], os.path.join(workdir, "stderr"), t0)


class BsdInetd(Server):
    """openbsd-inetd and inetutils-inetd: the same inetd.conf format."""

    kinds = ("tcp-exec", "tcp-echo", "udp-echo", "udp-wait")
    # Spawns per minute written after nowait/wait; large = off.
    MAX = 100000000

    def __init__(self, name, binary, args, settings):
        self.name = name
        self.binary = binary
        self.args = args
        self.settings = settings

    def launch(self, ctx, services, workdir):
        lines = []
        echo_port = None
        for s in services:
            if s.kind == "tcp-exec":
                lines.append(f"127.0.0.1:{s.port}\tstream\ttcp\tnowait.{self.MAX}\tnobody\t{ctx.echo1}\techo1")
            elif s.kind == "tcp-echo":
                echo_port = s.port
                lines.append(f"127.0.0.1:echo\tstream\ttcp\tnowait.{self.MAX}\troot\tinternal")
            elif s.kind == "udp-echo":
                echo_port = s.port
                lines.append(f"127.0.0.1:echo\tdgram\tudp\twait.{self.MAX}\troot\tinternal")
            else:
                lines.append(f"127.0.0.1:{s.port}\tdgram\tudp\twait.{self.MAX}\tnobody\t{ctx.udpecho1}\tudpecho1")
        conf = os.path.join(workdir, "inetd.conf")
        with open(conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        argv = [self.binary] + [a.replace("{workdir}", workdir) for a in self.args] + [conf]
        if echo_port is not None:
            # Internal services are looked up by name: a private /etc/services.
            svcfile = os.path.join(workdir, "services")
            with open(svcfile, "w") as f:
                f.write(f"echo\t{echo_port}/tcp\necho\t{echo_port}/udp\n")
            argv = ["unshare", "--mount", "--", "sh", "-c",
                    'mount --bind "$0" /etc/services && exec "$@"', svcfile] + argv
        log = os.path.join(workdir, "log")
        t0 = time.monotonic()
        p = spawn(argv, log)
        return Instance(self, workdir, services, [p], log, t0)


class Tcpserver(Server):
    name = "tcpserver"
    kinds = ("tcp-exec",)
    settings = (
        "`-H -R -l0` (no DNS/ident), `-c 100000` (default 40 children), `-b 1024` (default backlog 20), "
        "`-u/-g nobody`; one process per port"
    )

    def __init__(self, binary):
        self.binary = binary

    def launch(self, ctx, services, workdir):
        log = os.path.join(workdir, "log")
        t0 = time.monotonic()
        procs = [
            spawn([self.binary, "-H", "-R", "-l0", "-c", "100000", "-b", "1024",
                   "-u", str(ctx.nobody_uid), "-g", str(ctx.nobody_gid),
                   "127.0.0.1", str(s.port), ctx.echo1], log)
            for s in services
        ]
        return Instance(self, workdir, services, procs, log, t0)


class SocketActivate(Server):
    name = "systemd-socket-activate"
    kinds = ("tcp-exec",)
    settings = "`--accept --inetd`, one `-l` per port; handler runs as root; logs 3 lines per connection (to a file)"

    def __init__(self, binary):
        self.binary = binary

    def launch(self, ctx, services, workdir):
        argv = [self.binary, "--accept", "--inetd"]
        for s in services:
            argv += ["-l", f"127.0.0.1:{s.port}"]
        log = os.path.join(workdir, "log")
        t0 = time.monotonic()
        p = spawn(argv + [ctx.echo1], log)
        return Instance(self, workdir, services, [p], log, t0)


class Haproxy(Server):
    """HAProxy in TCP mode, one thread: the forward figure's reference."""

    name = "haproxy"
    kinds = ("tcp-fwd",)
    many = False
    settings = ("`mode tcp`, `nbthread 1`, `maxconn 4096` (its fds follow from it), timeouts connect 5 s, "
                "client and server 300 s; no log; `-db` (foreground)")

    def __init__(self, binary):
        self.binary = binary

    def launch(self, ctx, services, workdir):
        (s,) = services
        conf = os.path.join(workdir, "haproxy.cfg")
        with open(conf, "w") as f:
            f.write("global\n\tnbthread 1\n\tmaxconn 4096\n"
                    "defaults\n\tmode tcp\n\tmaxconn 4096\n\ttimeout connect 5s\n"
                    "\ttimeout client 300s\n\ttimeout server 300s\n"
                    f"listen fwd\n\tbind 127.0.0.1:{s.port}\n\tserver up 127.0.0.1:{ctx.fwd_upstream}\n")
        log = os.path.join(workdir, "log")
        t0 = time.monotonic()
        p = spawn([self.binary, "-db", "-f", conf], log)
        return Instance(self, workdir, services, [p], log, t0)


class SocatFwd(Server):
    """socat, a process per connection (TCP-LISTEN with fork)."""

    name = "socat"
    kinds = ("tcp-fwd",)
    many = False
    settings = "`TCP-LISTEN:PORT,bind=127.0.0.1,fork,reuseaddr,backlog=1024 TCP:127.0.0.1:UPSTREAM`"

    def __init__(self, binary):
        self.binary = binary

    def launch(self, ctx, services, workdir):
        (s,) = services
        log = os.path.join(workdir, "log")
        t0 = time.monotonic()
        p = spawn([self.binary, f"TCP-LISTEN:{s.port},bind=127.0.0.1,fork,reuseaddr,backlog=1024",
                   f"TCP:127.0.0.1:{ctx.fwd_upstream}"], log)
        return Instance(self, workdir, services, [p], log, t0)


def nobody_ids():
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid
