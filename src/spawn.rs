//! Everything a handler needs, prepared before it is spawned.
//!
//! A [`Plan`] is built once per service when the config is loaded: the
//! program path, argv and the fixed part of the environment as C strings,
//! the ids to switch to. Per connection, [`Spawner`] writes the few
//! connection variables into a reused buffer, makes the stderr pipe if
//! logged, and hands one [`sys::ExecImage`] to [`sys::spawn()`]. The child
//! itself allocates nothing. A pipe or clone that fails is a
//! [`SpawnError`] (`unable to create pipe: …`, `unable to clone: …`),
//! logged as an `error` of the service; a step of the child that fails
//! is reported when it is reaped (`sys::spawn`).

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use libc::c_char;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::socket::UnixCredentials;

use crate::config::{Handler, Service, SocketKind, StderrMode, WaitMode};
use crate::confine::{Caps, Confine, Resource};
use crate::privilege::Identity;
use crate::render::Render;
use crate::sys::{self, ExecImage, Ids};

/// A service's handler, ready to exec.
pub struct Plan {
    path: CString,
    /// Owns the strings `argv_ptrs` points into.
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    /// `env`/`passenv`, as `NAME=value`.
    static_env: Vec<CString>,
    ids: Option<(u32, u32, Vec<libc::gid_t>)>,
    stderr: StderrMode,
    /// `LISTEN_FDNAMES=<service name>` for socket activation (`wait`
    /// services only: the others are given no listening socket).
    fdnames: Option<CString>,
    /// `server PATH, user NAME`: what a failure in the child is about,
    /// for its log line (shared with each running handler's record).
    pub program: std::rc::Rc<str>,
    /// Nice, umask, capabilities, no_new_privs.
    limits: sys::Limits,
    /// `rlimits`, as the child sets them.
    rlimits: Vec<(u32, u64)>,
    /// `rlimits` sets nofile: the fd limit oxinetd started with is not
    /// restored over it.
    sets_nofile: bool,
    /// Namespaces, private /tmp, chroot, when any is asked (boxed: most
    /// services have none, and a plan is kept per service).
    sandbox: Option<Box<SandboxPlan>>,
    /// `tls`: the sealed memfd holding the service's certificate, key and
    /// options, given to each connection's relay as fd 3 (`path` and
    /// `argv` are then `oxinetd-tls relay`'s, the handler's after).
    tls: Option<OwnedFd>,
}

/// The paths and flags behind a `sys::Sandbox`, owned by the plan.
#[derive(Default)]
struct SandboxPlan {
    unshare: libc::c_int,
    /// Where a fresh tmpfs goes: /tmp and /var/tmp (under the chroot),
    /// those that are directories when the plan is made.
    tmp: Vec<CString>,
    chroot: Option<CString>,
}

impl SandboxPlan {
    fn new(c: &Confine) -> Result<Option<Box<SandboxPlan>>, String> {
        if c.chroot.is_none() && !c.private_tmp && !c.private_network {
            return Ok(None);
        }
        let path = |p: &std::path::Path| {
            CString::new(p.as_os_str().as_encoded_bytes())
                .map_err(|_| format!("NUL byte in \"{}\"", p.display()))
        };
        let mut unshare = 0;
        if c.private_network {
            unshare |= libc::CLONE_NEWNET;
        }
        let mut tmp = Vec::new();
        if c.private_tmp {
            unshare |= libc::CLONE_NEWNS;
            // As the handler sees them: mounted after the chroot, so a
            // link in the root resolves inside it, never on the host.
            for dir in private_tmp_dirs(c) {
                tmp.push(path(dir)?);
            }
        }
        let chroot = c.chroot.as_deref().map(path).transpose()?;
        Ok(Some(Box::new(SandboxPlan {
            unshare,
            tmp,
            chroot,
        })))
    }

    fn image(&self) -> sys::Sandbox<'_> {
        sys::Sandbox {
            unshare: self.unshare,
            tmp: [
                self.tmp.first().map(|t| t.as_c_str()),
                self.tmp.get(1).map(|t| t.as_c_str()),
            ],
            chroot: self.chroot.as_deref(),
        }
    }
}

/// The directories `private_tmp` covers for `c`, as its handler sees
/// them: /tmp and /var/tmp, those that are directories now, looked up as
/// the handler will (inside its chroot, links followed there: a link the
/// host would follow elsewhere must not leave the handler's /tmp shared).
pub fn private_tmp_dirs(c: &Confine) -> Vec<&'static std::path::Path> {
    let root = c.chroot.as_deref().unwrap_or(std::path::Path::new("/"));
    ["/tmp", "/var/tmp"]
        .into_iter()
        .map(std::path::Path::new)
        .filter(|d| crate::config::lookup_in_root(root, d).is_ok_and(|p| p.is_dir()))
        .collect()
}

impl Plan {
    /// The plan of an exec'd service; `None` for internal ones.
    pub fn new(svc: &Service) -> Result<Option<Plan>, String> {
        let cstr = |s: &str| CString::new(s).map_err(|_| format!("NUL byte in \"{s}\""));
        let (server, argv) = match &svc.handler {
            Handler::Exec { server, argv } => (server, argv),
            handler => return Plan::pipe(svc, handler),
        };
        let mut path = CString::new(server.as_os_str().as_encoded_bytes())
            .map_err(|_| "NUL byte in server path".to_string())?;
        let mut argv = argv
            .iter()
            .map(|a| cstr(a))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = match &svc.tls {
            None => None,
            Some(settings) => {
                // The relay first: `oxinetd-tls relay SERVER ARGV...`,
                // found at load beside this binary (`tls::program`).
                let relay = crate::tls::program()?;
                argv.splice(0..0, [c"oxinetd-tls".to_owned(), c"relay".to_owned(), path]);
                path = CString::new(relay.into_os_string().into_encoded_bytes())
                    .map_err(|_| "NUL byte in oxinetd-tls' path".to_string())?;
                Some(
                    sealed_bundle(settings)
                        .map_err(|e| format!("unable to make the TLS key material's memfd: {e}"))?,
                )
            }
        };
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let static_env = svc
            .env
            .iter()
            .map(|(k, v)| cstr(&format!("{k}={v}")))
            .collect::<Result<Vec<_>, _>>()?;
        let ids = match &svc.identity {
            Identity::Inherit => None,
            Identity::Switch {
                uid, gid, groups, ..
            } => Some((*uid, *gid, groups.clone())),
        };
        let uid = ids
            .as_ref()
            .map_or_else(|| nix::unistd::geteuid().as_raw(), |(uid, _, _)| *uid);
        let limits = limits(&svc.confine, uid, crate::confine::caps());
        let program = match &svc.identity {
            Identity::Switch { user, .. } => format!("server {}, user {user}", server.display()),
            Identity::Inherit => format!(
                "server {}, uid {}",
                server.display(),
                nix::unistd::geteuid()
            ),
        };
        Ok(Some(Plan {
            path,
            _argv: argv,
            argv_ptrs,
            static_env,
            ids,
            stderr: svc.stderr,
            fdnames: match svc.wait {
                WaitMode::Wait => Some(cstr(&format!("LISTEN_FDNAMES={}", svc.name))?),
                WaitMode::Nowait => None,
            },
            program: std::rc::Rc::from(program),
            limits,
            rlimits: rlimits(&svc.confine),
            sets_nofile: svc.confine.rlimit(Resource::Nofile).is_some(),
            sandbox: SandboxPlan::new(&svc.confine)?,
            tls,
        }))
    }

    /// The plan of an internal service's or a forward's TLS relay
    /// (`oxinetd-tls relay --pipe`, `tls::pipe`): `None` when it has
    /// neither `tls` nor `forward_tls` (it is served in the supervisor).
    fn pipe(svc: &Service, handler: &Handler) -> Result<Option<Plan>, String> {
        let forward = match handler {
            Handler::Forward(f) => Some(f),
            _ => None,
        };
        let client = forward.and_then(|f| f.tls.as_deref().cloned());
        if svc.tls.is_none() && client.is_none() {
            return Ok(None);
        }
        let bundle = crate::tls::pipe::Pipe {
            server: svc.tls.as_deref().cloned(),
            client,
            client_timeout: forward
                .map_or(crate::tls::DEFAULT_HANDSHAKE_TIMEOUT, |f| f.connect_timeout),
            // An internal service's idle_timeout is the supervisor's (its
            // side of the socketpair); a forward's bytes never pass
            // through the supervisor, so its relay keeps it.
            idle: forward
                .map(|_| svc.limits.idle_timeout)
                .filter(|d| !d.is_zero()),
        };
        // `oxinetd-tls relay --pipe`, found at load beside this binary
        // (`tls::program`).
        let relay = crate::tls::program()?;
        let path = CString::new(relay.into_os_string().into_encoded_bytes())
            .map_err(|_| "NUL byte in oxinetd-tls' path".to_string())?;
        let fd = sealed(&bundle.encode())
            .map_err(|e| format!("unable to make the TLS key material's memfd: {e}"))?;
        let argv = vec![
            c"oxinetd-tls".to_owned(),
            c"relay".to_owned(),
            c"--pipe".to_owned(),
        ];
        let mut argv_ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let (ids, program) = match &svc.identity {
            Identity::Switch {
                uid,
                gid,
                groups,
                user,
            } => (
                Some((*uid, *gid, groups.clone())),
                format!("tls relay, user {user}"),
            ),
            Identity::Inherit => (None, format!("tls relay, uid {}", nix::unistd::geteuid())),
        };
        let uid = ids
            .as_ref()
            .map_or_else(|| nix::unistd::geteuid().as_raw(), |(uid, _, _)| *uid);
        // Nothing to configure for a relay: it cannot gain privileges.
        let confine = Confine {
            no_new_privs: true,
            ..Confine::default()
        };
        Ok(Some(Plan {
            path,
            _argv: argv,
            argv_ptrs,
            static_env: Vec::new(),
            ids,
            // Its one line on a failed handshake goes to the log.
            stderr: StderrMode::Log,
            // It never gets `LISTEN_FDS`.
            fdnames: None,
            program: std::rc::Rc::from(program),
            limits: limits(&confine, uid, crate::confine::caps()),
            rlimits: Vec::new(),
            sets_nofile: false,
            sandbox: None,
            tls: Some(fd),
        }))
    }
}

/// A memfd holding `settings`' bundle (`tls::Settings::encode`), sealed
/// against any change: every relay of the service reads the same bytes.
fn sealed_bundle(settings: &crate::tls::Settings) -> std::io::Result<OwnedFd> {
    sealed(&settings.encode())
}

/// A memfd holding `bytes`, sealed against any change.
fn sealed(bytes: &[u8]) -> std::io::Result<OwnedFd> {
    use nix::fcntl::{fcntl, FcntlArg, SealFlag};
    use nix::sys::memfd::{memfd_create, MFdFlags};
    use std::io::Write as _;
    let fd = memfd_create(
        c"oxinetd-tls",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    let mut file = std::fs::File::from(fd);
    file.write_all(bytes)?;
    let fd = OwnedFd::from(file);
    fcntl(
        &fd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_WRITE
                | SealFlag::F_SEAL_SHRINK
                | SealFlag::F_SEAL_GROW
                | SealFlag::F_SEAL_SEAL,
        ),
    )?;
    Ok(fd)
}

/// `confine`'s resource limits as `(RLIMIT_*, value)`, in the order
/// written; `u64::MAX` is RLIM_INFINITY, as prlimit64 takes it on every
/// architecture.
pub fn rlimits(confine: &Confine) -> Vec<(u32, u64)> {
    confine
        .rlimits
        .iter()
        .map(|r| (r.resource.id(), r.limit.unwrap_or(u64::MAX)))
        .collect()
}

/// What the child applies for `confine`, a handler running as `uid`,
/// under a supervisor with `caps`: worked out once per service, so the
/// child only loops over plain values.
///
/// Capabilities: `capabilities` keeps the ones named and drops the rest
/// from the bounding set; unset, a root handler keeps everything (classic
/// behaviour) and any other drops everything, which needs `CAP_SETPCAP`:
/// a supervisor without it (not root) leaves the bounding set alone (its
/// handlers hold no capabilities, and `no_new_privs` keeps them from
/// gaining any through exec). A non-root handler that keeps some gets
/// them in its ambient set, so they survive exec; every other handler's
/// ambient set is emptied.
pub fn limits(confine: &Confine, uid: u32, caps: Caps) -> sys::Limits {
    let mut l = sys::Limits {
        nice: confine.nice,
        umask: confine.umask,
        no_new_privs: confine.no_new_privs,
        ..Default::default()
    };
    let root = uid == 0;
    let all = caps.all();
    let kept = match &confine.capabilities {
        Some(list) => list
            .iter()
            .filter(|c| u32::from(**c) <= u32::from(caps.last))
            .fold(0u64, |m, c| m | 1 << c),
        None if root => all,
        None => 0,
    };
    let explicit = confine.capabilities.is_some();
    if explicit || caps.can_drop() {
        l.drop_bounding = caps.bounding & all & !kept;
    }
    if !root {
        l.keep = kept;
    } else if explicit {
        l.inheritable = Some(kept);
    }
    l
}

/// The two ends of a connection or socket, as the handler is told them.
#[derive(Clone, Copy)]
pub enum Ends<'a> {
    Ip {
        kind: SocketKind,
        local: SocketAddr,
        /// The peer, when known (not for a stream `wait` socket).
        peer: Option<SocketAddr>,
    },
    /// A TCP connection through a load balancer (`proxy_protocol`): the
    /// client and the address it connected to, as the PROXY header tells
    /// them, the balancer itself (`PROXY_PEER`), and the header's
    /// authority (`PROXY_AUTHORITY`).
    Proxied {
        local: SocketAddr,
        peer: SocketAddr,
        via: SocketAddr,
        authority: Option<&'a [u8]>,
    },
    /// A UNIX-domain socket: its path, and the peer's credentials when
    /// the kernel has them (a connected stream).
    Unix {
        path: &'a Path,
        cred: Option<UnixCredentials>,
    },
}

/// What one spawn is about.
pub enum Invocation<'a> {
    /// A connection or a datagram: `input` on fd 0, `output` on fd 1.
    Peer {
        input: RawFd,
        output: RawFd,
        ends: Ends<'a>,
    },
    /// A `wait` service: the bound socket itself on fds 0 and 1.
    Socket {
        socket: RawFd,
        ends: Ends<'a>,
        /// Also on fd 3, announced with `LISTEN_FDS=1` (stream wait).
        activation: bool,
    },
}

/// Why a handler was not started; rendered as the log's `msg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SpawnError {
    #[error("unable to create pipe: {0}")]
    Pipe(Errno),
    #[error("unable to set up pipe: {0}")]
    PipeFlags(Errno),
    #[error(transparent)]
    Clone(#[from] sys::CloneError),
}

/// A started handler: its pid and the parent's end of its stderr pipe.
/// Whether it got to exec is known once it is reaped
/// ([`Spawner::failure`]).
pub struct Spawned {
    pub pid: i32,
    /// Read end of the handler's stderr, when `stderr = "log"`.
    pub stderr: Option<OwnedFd>,
}

/// Reused per-connection state of the spawn path.
pub struct Spawner {
    devnull: OwnedFd,
    /// Where spawn children run until they exec.
    launcher: sys::Launcher,
    /// The fd limit oxinetd was started with, given back to handlers.
    nofile: Option<libc::rlimit>,
    /// `NAME=value\0` entries for the current connection.
    env_buf: Vec<u8>,
    /// Offsets of the entries in `env_buf`.
    env_offsets: Vec<usize>,
    envp: Vec<*const c_char>,
    /// `PROTO=`, `…LOCALIP=` and `…LOCALPORT=` of the last connection, and
    /// the socket kind and local address they were rendered for: a
    /// listener's side is the same from one connection to the next, so
    /// these entries are copied rather than rendered again.
    local_env: LocalEnv,
}

/// The listener-side entries of the environment, rendered once per local
/// address.
struct LocalEnv {
    of: Option<(SocketKind, SocketAddr)>,
    /// Three `NAME=value\0` entries.
    bytes: Vec<u8>,
    /// Where the second and third start in `bytes`.
    starts: [usize; 2],
}

impl Spawner {
    pub fn new(nofile: Option<libc::rlimit>) -> std::io::Result<Spawner> {
        let devnull = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")?;
        Ok(Spawner {
            devnull: devnull.into(),
            launcher: sys::Launcher::new()?,
            nofile,
            env_buf: Vec::with_capacity(512),
            env_offsets: Vec::with_capacity(16),
            envp: Vec::with_capacity(32),
            local_env: LocalEnv {
                of: None,
                bytes: Vec::with_capacity(80),
                starts: [0; 2],
            },
        })
    }

    /// The fd limit oxinetd was started with.
    pub fn nofile(&self) -> Option<libc::rlimit> {
        self.nofile
    }

    pub fn spawn(&mut self, plan: &Plan, inv: &Invocation<'_>) -> Result<Spawned, SpawnError> {
        let stderr_pipe = match plan.stderr {
            StderrMode::Log => Some(reader_pipe()?),
            _ => None,
        };
        self.env_buf.clear();
        self.env_offsets.clear();
        let (stdin, stdout, listen) = match inv {
            Invocation::Peer {
                input,
                output,
                ends,
            } => {
                self.connection_env(ends);
                // A TLS relay's key material on fd 3 (no LISTEN_PID).
                (*input, *output, plan.tls.as_ref().map(|t| t.as_raw_fd()))
            }
            Invocation::Socket {
                socket,
                ends,
                activation,
            } => {
                self.connection_env(ends);
                if *activation {
                    // LISTEN_PID is added by sys::spawn: only the child
                    // knows it.
                    self.push_env(&[b"LISTEN_FDS=1"]);
                    (*socket, *socket, Some(*socket))
                } else {
                    (*socket, *socket, None)
                }
            }
        };
        // Pointers are taken only now: env_buf no longer moves.
        self.envp.clear();
        let base = self.env_buf.as_ptr();
        for off in &self.env_offsets {
            self.envp.push(base.wrapping_add(*off) as *const c_char);
        }
        let activation = listen.is_some() && plan.tls.is_none();
        if let (true, Some(names)) = (activation, &plan.fdnames) {
            self.envp.push(names.as_ptr());
        }
        self.envp.extend(plan.static_env.iter().map(|e| e.as_ptr()));
        self.envp.push(std::ptr::null());

        let stderr_src = match (&stderr_pipe, plan.stderr) {
            (Some((_, w)), _) => w.as_raw_fd(),
            (None, StderrMode::Socket) => stdout,
            _ => self.devnull.as_raw_fd(),
        };
        let img = ExecImage {
            path: &plan.path,
            argv: &plan.argv_ptrs,
            envp: &self.envp,
            ids: plan.ids.as_ref().map(|(uid, gid, groups)| Ids {
                uid: *uid,
                gid: *gid,
                groups,
            }),
            stdio: [stdin, stdout, stderr_src],
            listen,
            listen_pid: activation,
            nofile: if plan.sets_nofile { None } else { self.nofile },
            limits: &plan.limits,
            rlimits: &plan.rlimits,
            sandbox: plan
                .sandbox
                .as_ref()
                .map_or_else(sys::Sandbox::default, |s| s.image()),
        };
        let pid = sys::spawn(&img, &mut self.launcher)?;
        Ok(Spawned {
            pid,
            stderr: stderr_pipe.map(|(r, _w)| r),
        })
    }

    /// Why handler `pid`, now reaped, did not get to exec, if it did not.
    pub fn failure(&mut self, pid: i32) -> Option<sys::Failure> {
        self.launcher.failure(pid)
    }

    /// Whether a handler is still between clone and exec, holding copies
    /// of the supervisor's descriptors.
    pub fn busy(&self) -> bool {
        self.launcher.busy()
    }

    /// The ucspi and CGI-style variables for one peer.
    fn connection_env(&mut self, ends: &Ends<'_>) {
        let (kind, peer, local) = match *ends {
            Ends::Ip { kind, local, peer } => (kind, peer, local),
            Ends::Proxied {
                local,
                peer,
                via,
                authority,
            } => {
                let via = unmap(via);
                self.push_env(&[b"PROXY_PEER=", via.ip().render().as_bytes()]);
                self.push_env(&[b"PROXY_PEER_PORT=", via.port().render().as_bytes()]);
                if let Some(a) = authority {
                    self.push_env(&[b"PROXY_AUTHORITY=", a]);
                }
                (SocketKind::Stream, Some(peer), local)
            }
            Ends::Unix { path, cred } => {
                // As ucspi-unix names them.
                self.push_env(&[b"PROTO=UNIX"]);
                self.push_env(&[b"UNIXLOCALPATH=", path.as_os_str().as_bytes()]);
                if let Some(c) = cred {
                    self.push_env(&[b"UNIXREMOTEEUID=", c.uid().render().as_bytes()]);
                    self.push_env(&[b"UNIXREMOTEEGID=", c.gid().render().as_bytes()]);
                    self.push_env(&[b"UNIXREMOTEPID=", c.pid().render().as_bytes()]);
                }
                return;
            }
        };
        let p = kind.ucspi().as_bytes();
        let local = unmap(local);
        let cached = &mut self.local_env;
        if cached.of != Some((kind, local)) {
            let bytes = &mut cached.bytes;
            bytes.clear();
            crate::render::append_all(bytes, &[b"PROTO=", p, b"\0"]);
            cached.starts[0] = bytes.len();
            let ip = local.ip().render();
            crate::render::append_all(bytes, &[p, b"LOCALIP=", ip.as_bytes(), b"\0"]);
            cached.starts[1] = bytes.len();
            let port = local.port().render();
            crate::render::append_all(bytes, &[p, b"LOCALPORT=", port.as_bytes(), b"\0"]);
            cached.of = Some((kind, local));
        }
        let at = self.env_buf.len();
        crate::render::append(&mut self.env_buf, &cached.bytes);
        self.env_offsets
            .extend([at, at + cached.starts[0], at + cached.starts[1]]);
        if let Some(peer) = peer.map(unmap) {
            let ip = peer.ip().render();
            let port = peer.port().render();
            self.push_env(&[p, b"REMOTEIP=", ip.as_bytes()]);
            self.push_env(&[p, b"REMOTEPORT=", port.as_bytes()]);
            self.push_env(&[b"REMOTE_ADDR=", ip.as_bytes()]);
            self.push_env(&[b"REMOTE_PORT=", port.as_bytes()]);
        }
    }

    /// One `NAME=value` entry from its pieces (rendered, not formatted:
    /// `render`), and its NUL.
    fn push_env(&mut self, parts: &[&[u8]]) {
        self.env_offsets.push(self.env_buf.len());
        crate::render::append_all(&mut self.env_buf, parts);
        self.env_buf.push(0);
    }
}

/// A close-on-exec pipe whose read end (the supervisor's) is non-blocking
/// and whose write end (the handler's) stays blocking, as programs expect.
pub fn reader_pipe() -> Result<(OwnedFd, OwnedFd), SpawnError> {
    let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(SpawnError::Pipe)?;
    nix::fcntl::fcntl(&r, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
        .map_err(SpawnError::PipeFlags)?;
    Ok((r, w))
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
pub fn unmap(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confine::Rlimit;

    /// A root supervisor on a kernel with 41 capabilities.
    const ROOT: Caps = Caps {
        last: 40,
        bounding: (1 << 41) - 1,
        effective: (1 << 41) - 1,
    };

    #[test]
    fn capabilities_by_user_and_config() {
        let all = ROOT.all();
        let nobody = limits(&Confine::default(), 65534, ROOT);
        assert_eq!((nobody.drop_bounding, nobody.keep), (all, 0));
        let root = limits(&Confine::default(), 0, ROOT);
        assert_eq!(
            (root.drop_bounding, root.keep, root.inheritable),
            (0, 0, None)
        );
        let bind = Confine {
            capabilities: Some(vec![10]),
            ..Default::default()
        };
        let root = limits(&bind, 0, ROOT);
        assert_eq!(root.drop_bounding, all & !(1 << 10));
        assert_eq!((root.keep, root.inheritable), (0, Some(1 << 10)));
        let user = limits(&bind, 1000, ROOT);
        assert_eq!((user.drop_bounding, user.keep), (all & !(1 << 10), 1 << 10));
        // A supervisor without CAP_SETPCAP leaves the bounding set alone
        // unless told to change it.
        let plain = Caps {
            effective: 0,
            ..ROOT
        };
        assert_eq!(limits(&Confine::default(), 1000, plain).drop_bounding, 0);
        assert_eq!(limits(&bind, 1000, plain).drop_bounding, all & !(1 << 10));
    }

    #[test]
    fn rlimits_in_order_infinity_as_the_kernel_writes_it() {
        let c = Confine {
            rlimits: vec![
                Rlimit {
                    resource: Resource::Cpu,
                    limit: Some(20),
                },
                Rlimit {
                    resource: Resource::Core,
                    limit: None,
                },
            ],
            nice: Some(-3),
            umask: Some(0o027),
            no_new_privs: true,
            ..Default::default()
        };
        let l = limits(&c, 0, ROOT);
        assert_eq!(
            rlimits(&c),
            [(Resource::Cpu.id(), 20), (Resource::Core.id(), u64::MAX)]
        );
        assert_eq!(
            (l.nice, l.umask, l.no_new_privs),
            (Some(-3), Some(0o027), true)
        );
    }

    /// The entries of the environment `connection_env` wrote, in order.
    fn entries(sp: &Spawner) -> Vec<String> {
        let buf = &sp.env_buf;
        sp.env_offsets
            .iter()
            .map(|&at| {
                let end = buf[at..]
                    .iter()
                    .position(|&b| b == 0)
                    .map_or(buf.len(), |n| at + n);
                String::from_utf8_lossy(&buf[at..end]).into_owned()
            })
            .collect()
    }

    #[test]
    fn the_listener_side_is_rendered_again_when_it_changes() {
        let mut sp = Spawner::new(None).expect("spawner");
        let peer: SocketAddr = "192.0.2.7:4000".parse().expect("address");
        let cases = [
            (SocketKind::Stream, "127.0.0.1:79", "TCP", "127.0.0.1", "79"),
            (SocketKind::Stream, "127.0.0.1:79", "TCP", "127.0.0.1", "79"),
            (
                SocketKind::Stream,
                "[::ffff:127.0.0.2]:80",
                "TCP",
                "127.0.0.2",
                "80",
            ),
            (SocketKind::Dgram, "127.0.0.2:80", "UDP", "127.0.0.2", "80"),
            (SocketKind::Stream, "[::1]:7", "TCP", "::1", "7"),
        ];
        for (kind, local, p, ip, port) in cases {
            let local: SocketAddr = local.parse().expect("address");
            sp.env_buf.clear();
            sp.env_offsets.clear();
            sp.connection_env(&Ends::Ip {
                kind,
                local,
                peer: Some(peer),
            });
            let want = [
                format!("PROTO={p}"),
                format!("{p}LOCALIP={ip}"),
                format!("{p}LOCALPORT={port}"),
                format!("{p}REMOTEIP=192.0.2.7"),
                format!("{p}REMOTEPORT=4000"),
                "REMOTE_ADDR=192.0.2.7".to_string(),
                "REMOTE_PORT=4000".to_string(),
            ];
            assert_eq!(entries(&sp), want, "{local}");
        }
    }
}
