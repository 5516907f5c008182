"""Installing the peers from Debian, and their versions.

xinetd, openbsd-inetd and inetutils-inetd conflict with each other as
packages (each Provides/Conflicts inet-superserver), and installing any of
them starts a system inetd on the well-known ports. So their .debs are
fetched with `apt-get download` and unpacked with `dpkg-deb -x` into
bench/.cache/peers/root: nothing is installed as a package, no maintainer
script runs, no service starts. Only the shared libraries they link
against (libwrap0, libevent, ...) are installed with apt-get, and only if
missing. ucspi-tcp (tcpserver) has no service and is installed normally;
systemd-socket-activate comes with systemd.
"""

import os
import re
import shutil
import subprocess

import servers as S

UNPACKED = {
    # package: binary inside the package
    "xinetd": "usr/sbin/xinetd",
    "openbsd-inetd": "usr/sbin/inetd",
    "inetutils-inetd": "usr/sbin/inetutils-inetd",
}

# Debian defaults of the limits the harness raises, as the results report them.
DEFAULTS = {
    "oxinetd": "instances 256 handlers per service (internal: unlimited); max_processes 4096; cps and "
    "per_source off; internal UDP reply_rate 50,000/s; listen backlog 1024",
    "floor-fork": "none",
    "floor-vfork": "none",
    "floor-spawn": "none",
    "xinetd": "cps 50/s then 10 s off; instances unlimited; listen backlog 64",
    "openbsd-inetd": "256 spawns/min per service (-R, nowait.N), then 10 min off; backlog 128 (-q)",
    "inetutils-inetd": "1000 spawns/min per service (-R, nowait.N; its man page says 40); backlog 10 (fixed)",
    "tcpserver": "40 children (-c); backlog 20 (-b); reverse DNS + ident per connection unless -H -R -l0",
    "systemd-socket-activate": "no limits; backlog 4096 (SOMAXCONN)",
}


def apt_install(pkgs, log):
    """apt-get install, with services kept from starting (policy-rc.d = 101)."""
    policy = "/usr/sbin/policy-rc.d"
    made = False
    if not os.path.exists(policy):
        with open(policy, "w") as f:
            f.write("#!/bin/sh\n# temporary, from oxinetd bench/run: start no services\nexit 101\n")
        os.chmod(policy, 0o755)
        made = True
    try:
        log("$ apt-get install -y " + " ".join(pkgs))
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends"] + pkgs, check=True,
                       stdout=subprocess.DEVNULL, env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    finally:
        if made:
            os.unlink(policy)


def missing_libs(binary):
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    return [line.split()[0] for line in r.stdout.splitlines() if "not found" in line]


def deb_field(deb, field):
    return subprocess.run(["dpkg-deb", "-f", deb, field], capture_output=True, text=True).stdout.strip()


def ensure(cache, log):
    """Make every peer runnable; returns {name: version or 'missing: why'} and paths."""
    info = {"_paths": {}}
    debs = os.path.join(cache, "debs")
    root = os.path.join(cache, "root")
    os.makedirs(debs, exist_ok=True)
    for pkg, rel in UNPACKED.items():
        binary = os.path.join(root, rel)
        try:
            deb = [f for f in os.listdir(debs) if f.startswith(pkg + "_") and f.endswith(".deb")]
            if not deb:
                log(f"$ apt-get download {pkg}")
                subprocess.run(["apt-get", "download", pkg], cwd=debs, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                deb = [f for f in os.listdir(debs) if f.startswith(pkg + "_") and f.endswith(".deb")]
            deb = os.path.join(debs, sorted(deb)[-1])
            if not os.path.exists(binary):
                subprocess.run(["dpkg-deb", "-x", deb, root], check=True)
            if missing_libs(binary):
                libs = [d.split()[0] for d in re.split(r",\s*", deb_field(deb, "Depends"))
                        if d.startswith("lib") and d.split()[0] != "libc6"]
                apt_install(libs, log)
            if missing_libs(binary):
                raise RuntimeError("libraries still missing: " + " ".join(missing_libs(binary)))
            info[pkg] = deb_field(deb, "Version")
            info["_paths"][pkg] = binary
        except (subprocess.CalledProcessError, RuntimeError, OSError) as e:
            info[pkg] = f"missing: {e}"
            log(f"peer {pkg} unavailable: {e}")

    tcpserver = shutil.which("tcpserver")
    if not tcpserver:
        try:
            apt_install(["ucspi-tcp"], log)
        except subprocess.CalledProcessError as e:
            log(f"ucspi-tcp unavailable: {e}")
        tcpserver = shutil.which("tcpserver")
    info["tcpserver"] = dpkg_version("ucspi-tcp") if tcpserver else "missing"
    if tcpserver:
        info["_paths"]["tcpserver"] = tcpserver

    # The tls figure's peer (its init script kept from starting).
    stunnel = shutil.which("stunnel4")
    if not stunnel:
        try:
            apt_install(["stunnel4"], log)
        except subprocess.CalledProcessError as e:
            log(f"stunnel4 unavailable: {e}")
        stunnel = shutil.which("stunnel4")
    info["stunnel4"] = dpkg_version("stunnel4") if stunnel else "missing"

    sd = shutil.which("systemd-socket-activate")
    for alt in ("/usr/lib/systemd/systemd-socket-activate", "/lib/systemd/systemd-socket-activate"):
        if not sd and os.access(alt, os.X_OK):
            sd = alt
    info["systemd-socket-activate"] = dpkg_version("systemd") if sd else "missing"
    if sd:
        info["_paths"]["systemd-socket-activate"] = sd
    return info


def dpkg_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() or "unknown"


def servers(info):
    """Server objects for every peer that is available, in table order."""
    paths = info["_paths"]
    out = []
    if "xinetd" in paths:
        out.append(S.Xinetd(paths["xinetd"]))
    if "openbsd-inetd" in paths:
        out.append(S.BsdInetd(
            "openbsd-inetd", paths["openbsd-inetd"], ["-i", "-q", "1024", "-R", str(S.BsdInetd.MAX)],
            f"`-i` (foreground, no debug output), `-q 1024`, `-R {S.BsdInetd.MAX}` and "
            f"`nowait.{S.BsdInetd.MAX}`; no libwrap (`-l` off, the default); syslog unreachable (no /dev/log)"))
    if "inetutils-inetd" in paths:
        out.append(S.BsdInetd(
            "inetutils-inetd", paths["inetutils-inetd"],
            ["-d", "-R", str(S.BsdInetd.MAX), "-p", "{workdir}/pid"],
            f"`-d` (its only foreground mode; debug lines to a file), `-R {S.BsdInetd.MAX}` and "
            f"`nowait.{S.BsdInetd.MAX}`"))
    if "tcpserver" in paths:
        out.append(S.Tcpserver(paths["tcpserver"]))
    if "systemd-socket-activate" in paths:
        out.append(S.SocketActivate(paths["systemd-socket-activate"]))
    return out
