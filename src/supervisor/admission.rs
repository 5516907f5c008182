//! Admission: a new peer checked against the service's access rules and
//! limits, and a refused one turned away and logged.

use std::cell::RefCell;
use std::cmp::Reverse;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Instant;

use socket2::Socket;

use crate::limits::Load;
use crate::log::Event;
use crate::refusal::Refusal;
use crate::spawn;

use super::{Resume, Running, Supervisor};

impl Supervisor {
    /// Check a new peer of `running` against its access rules and limits.
    /// `Ok` gives what the connection is counted under; `Err` the reason.
    pub(super) fn admit(
        &mut self,
        running: &Running,
        peer: SocketAddr,
    ) -> Result<Option<IpAddr>, Refusal> {
        let ip = peer.ip();
        let svc = &running.svc;
        if !svc.access.is_common() {
            svc.access.check(ip, crate::sys::local_minute_of_day)?;
        }
        self.admit_load(running, Some(Load::source(&svc.limits, ip)))
    }

    /// Check a new connection against the service's rate limits, and its
    /// `per_source` when it has a `source` (an IP peer).
    pub(super) fn admit_load(
        &mut self,
        running: &Running,
        source: Option<IpAddr>,
    ) -> Result<Option<IpAddr>, Refusal> {
        let svc = &running.svc;
        let now = Instant::now();
        let verdict = {
            let mut load = running.load.borrow_mut();
            let verdict = load.admit(&svc.limits, source, now);
            if verdict.is_ok() {
                load.stats.total.accepted += 1;
            }
            verdict
        };
        if let Err(Refusal::Rate(rate)) = &verdict {
            let pause = rate.pause;
            self.touch(&running.name);
            let resume = Resume::Service(Rc::clone(&running.name));
            self.timers.push(Reverse((now + pause, resume)));
            self.log.event(Event::RatePause {
                service: &running.name,
                rate,
                paused: pause,
            });
        }
        // Counted by source only while `per_source` asks: the handler or
        // connection keeps what was counted, and gives back the same.
        verdict.map(|()| source.filter(|_| svc.limits.per_source.is_some()))
    }

    /// Refuse an accepted TCP connection: `banner_fail`, if any, then close.
    pub(super) fn refuse_stream(
        &mut self,
        running: &Running,
        conn: Socket,
        peer: Option<SocketAddr>,
        why: &Refusal,
    ) {
        self.refuse_stream_via(running, conn, peer, None, why);
    }

    /// `refuse_stream` of a client that came through balancer `via`
    /// (`proxy_protocol`).
    pub(super) fn refuse_stream_via(
        &mut self,
        running: &Running,
        conn: Socket,
        peer: Option<SocketAddr>,
        via: Option<SocketAddr>,
        why: &Refusal,
    ) {
        if let Some(banner) = &running.svc.banner_fail {
            // Best effort, never blocking: the client is being turned away.
            let _ = conn.send_with_flags(banner, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
            // FIN right after the banner, and discard what the client already
            // sent: closing with unread data would send a RST instead.
            let _ = conn.shutdown(std::net::Shutdown::Write);
            let mut scratch = [std::mem::MaybeUninit::<u8>::uninit(); 512];
            let _ = conn.recv_with_flags(&mut scratch, libc::MSG_DONTWAIT | libc::MSG_TRUNC);
        }
        drop(conn);
        self.refused_via(running, peer.map(spawn::unmap), via.map(spawn::unmap), why);
    }

    /// Whether a refusal or spawn error line of a service may be logged now
    /// (`Some(lines held back before it)`); when the first line of a window
    /// is held back, a timer reports them at its end (`Event::Suppressed`).
    pub(super) fn throttled(&mut self, name: &Rc<str>, load: &RefCell<Load>) -> Option<u64> {
        let mut load = load.borrow_mut();
        let admitted = load.refusals.admit(Instant::now());
        if let Some(at) = load.refusals.first_held() {
            self.timers
                .push(Reverse((at, Resume::Suppressed(Rc::clone(name)))));
        }
        admitted
    }

    /// Log a refusal, at most a few lines a second per service, as
    /// `log_on_failure` asks.
    pub(super) fn refused(&mut self, running: &Running, peer: Option<SocketAddr>, why: &Refusal) {
        self.refused_via(running, peer, None, why);
    }

    /// `refused`, of a client that came through balancer `via`.
    pub(super) fn refused_via(
        &mut self,
        running: &Running,
        peer: Option<SocketAddr>,
        via: Option<SocketAddr>,
        why: &Refusal,
    ) {
        running.load.borrow_mut().stats.refused(why);
        let log = running.svc.log;
        if !log.attempt {
            return;
        }
        let Some(suppressed) = self.throttled(&running.name, &running.load) else {
            return;
        };
        self.log.event(Event::Refuse {
            service: &running.name,
            peer: peer.filter(|_| log.fail_host),
            via: via.filter(|_| log.fail_host),
            reason: why,
            suppressed,
        });
    }
}
