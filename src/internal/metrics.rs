//! `internal:metrics`: one HTTP/1.x exchange per connection (RFC 9112),
//! answering `GET /metrics` (and `/`, and `HEAD`) with the Prometheus text
//! exposition format, then closing.
//!
//! The request head is read into a buffer of at most [`HEAD_MAX`] bytes;
//! a longer one is answered 431, one that is not HTTP/1.x 400 (or 505 for
//! another version), another path 404 and another method 405. The figures
//! are the supervisor's: when a request asks for them the connection
//! returns [`Interest::Render`], the loop renders the page
//! (`crate::metrics`) and hands it over ([`Exchange::respond`]). The
//! response is written as the socket takes it; then the sending side is
//! shut and what the client still sends is read and dropped (at most
//! [`LINGER_MAX`]) until it closes, so an unread request body does not
//! turn the close into a reset that loses the response.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

use super::Interest;

/// The most bytes of request line and headers read.
pub const HEAD_MAX: usize = 8 << 10;

/// The most bytes read and dropped after the response.
pub const LINGER_MAX: u64 = 64 << 10;

/// The largest page served (about 2 KiB per service: some eight thousand
/// services); beyond it the answer is 500.
pub const PAGE_MAX: usize = 16 << 20;

/// The most bytes of answers all metrics connections together hold
/// (written to none of their sockets yet: clients that do not read);
/// past it a request is answered 503 until they are sent or swept.
pub const HELD_MAX: usize = 64 << 20;

/// The exposition format's media type (version 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Where one connection's exchange stands.
#[derive(Debug, Default)]
pub struct Exchange {
    /// The request head as received so far (at most `HEAD_MAX + 1`).
    head: Vec<u8>,
    stage: Stage,
    /// The response, and how much of it is written.
    out: Vec<u8>,
    at: usize,
    /// `HEAD`: the page's length is told, the page is not sent.
    head_only: bool,
    /// Bytes dropped after the response.
    lingered: u64,
    /// The status answered (0 until there is an answer), for the log.
    status: u16,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    #[default]
    Reading,
    /// The request asks for the page: the supervisor renders it.
    Render,
    Writing,
    Linger,
}

/// What a complete request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// The metrics page; `true` for `HEAD`.
    Metrics { head_only: bool },
    /// An error status, the answer without the page.
    Status(u16),
}

/// The end of the head in `buf` (after its blank line), if it is there,
/// looking at line ends from `from` on: a head that arrives a byte at a
/// time is scanned once, not once per byte. Bare LF line ends are taken
/// too (RFC 9112, 2.2).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    (from..buf.len()).find_map(|i| match &buf[i..] {
        [b'\n', b'\n', ..] => Some(i + 2),
        [b'\n', b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parse a complete head (request line, header lines, blank line).
pub fn parse(head: &[u8]) -> Request {
    let line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let line = head[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&head[..line_end]);
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Request::Status(400);
    };
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Request::Status(400);
    }
    if target.is_empty() || !target.iter().all(|&b| b.is_ascii_graphic()) {
        return Request::Status(400);
    }
    match version {
        b"HTTP/1.0" | b"HTTP/1.1" => {}
        v if v.len() == 8 && v.starts_with(b"HTTP/") && v[6] == b'.' => {
            return Request::Status(505)
        }
        _ => return Request::Status(400),
    }
    // Header lines: each `name: value`, no control bytes but tab.
    for l in head[line_end..].split(|&b| b == b'\n').skip(1) {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        if l.is_empty() {
            break;
        }
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            return Request::Status(400);
        };
        if colon == 0 || !l[..colon].iter().all(|&b| is_tchar(b)) {
            return Request::Status(400);
        }
        if l[colon + 1..]
            .iter()
            .any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        {
            return Request::Status(400);
        }
    }
    // Origin form; the query, if any, is not looked at.
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    let head_only = match method {
        b"GET" => false,
        b"HEAD" => true,
        _ => return Request::Status(405),
    };
    match path {
        b"/metrics" | b"/" => Request::Metrics { head_only },
        _ => Request::Status(404),
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Internal Server Error",
    }
}

impl Exchange {
    /// Whether the request head is still awaited: it must arrive whole
    /// within `idle_timeout`, so reading it does not count as activity.
    pub fn awaiting_request(&self) -> bool {
        self.stage == Stage::Reading
    }

    /// The page, rendered by the supervisor after [`Interest::Render`];
    /// `None` when the answers held are over [`HELD_MAX`].
    pub fn respond(&mut self, page: Option<&[u8]>) {
        match page {
            None => self.error(503),
            Some(p) if p.len() > PAGE_MAX => self.error(500),
            Some(p) => self.answer(200, CONTENT_TYPE, p),
        }
    }

    /// Bytes of the answer not written yet.
    pub fn held(&self) -> usize {
        self.out.len() - self.at
    }

    /// An answer without the page.
    fn error(&mut self, status: u16) {
        let text = format!("{status} {}\n", reason(status));
        self.answer(status, "text/plain; charset=utf-8", text.as_bytes());
    }

    /// The status answered, once there is an answer.
    pub fn answered(&self) -> Option<u16> {
        (self.status != 0).then_some(self.status)
    }

    fn answer(&mut self, status: u16, ctype: &str, body: &[u8]) {
        use std::fmt::Write as _;
        self.status = status;
        let mut head = String::with_capacity(160);
        let _ = write!(
            head,
            "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n",
            reason(status),
            body.len()
        );
        if status == 405 {
            head.push_str("Allow: GET, HEAD\r\n");
        }
        head.push_str("Connection: close\r\n\r\n");
        let send_body = !self.head_only;
        self.out = Vec::with_capacity(head.len() + if send_body { body.len() } else { 0 });
        self.out.extend_from_slice(head.as_bytes());
        if send_body {
            self.out.extend_from_slice(body);
        }
        self.at = 0;
        self.head = Vec::new();
        self.stage = Stage::Writing;
    }

    /// Make progress on `sock` (non-blocking); `scratch` is the loop's
    /// shared buffer. Bytes moved are added to `bytes_in`/`bytes_out`.
    pub fn step(
        &mut self,
        sock: &mut TcpStream,
        scratch: &mut [u8],
        bytes_in: &mut u64,
        bytes_out: &mut u64,
    ) -> io::Result<Interest> {
        loop {
            match self.stage {
                Stage::Reading => {
                    // One byte beyond the bound tells a head too long.
                    let room = (HEAD_MAX + 1 - self.head.len()).min(scratch.len());
                    let n = match sock.read(&mut scratch[..room]) {
                        Ok(0) if self.head.is_empty() => return Ok(Interest::Close),
                        Ok(0) => {
                            self.error(400);
                            continue;
                        }
                        Ok(n) => n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Interest::Read)
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(e),
                    };
                    *bytes_in += n as u64;
                    // A blank line ending in what was read begins at most
                    // two bytes before it.
                    let from = self.head.len().saturating_sub(2);
                    self.head.extend_from_slice(&scratch[..n]);
                    // An answer to HEAD, even an error, has no body.
                    self.head_only = self.head.starts_with(b"HEAD ");
                    match head_end(&self.head, from) {
                        Some(end) if end <= HEAD_MAX => match parse(&self.head[..end]) {
                            Request::Metrics { .. } => {
                                self.stage = Stage::Render;
                                return Ok(Interest::Render);
                            }
                            Request::Status(s) => self.error(s),
                        },
                        _ if self.head.len() > HEAD_MAX => self.error(431),
                        _ => {}
                    }
                }
                // Not rendered yet: nothing to do until it is.
                Stage::Render => return Ok(Interest::Render),
                Stage::Writing => {
                    if self.at == self.out.len() {
                        self.out = Vec::new();
                        self.at = 0;
                        // The client sees the end; a failure here (it is
                        // gone already) ends the connection.
                        sock.shutdown(Shutdown::Write)?;
                        self.stage = Stage::Linger;
                        continue;
                    }
                    match sock.write(&self.out[self.at..]) {
                        Ok(n) => {
                            self.at += n;
                            *bytes_out += n as u64;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            return Ok(Interest::Write)
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
                Stage::Linger => match sock.read(scratch) {
                    Ok(0) => return Ok(Interest::Close),
                    Ok(n) => {
                        *bytes_in += n as u64;
                        self.lingered += n as u64;
                        if self.lingered > LINGER_MAX {
                            return Ok(Interest::Close);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Interest::Read),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let m = Request::Metrics { head_only: false };
        assert_eq!(parse(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), m);
        assert_eq!(parse(b"GET / HTTP/1.0\r\n\r\n"), m);
        assert_eq!(parse(b"GET /metrics?x=1 HTTP/1.1\n\n"), m);
        assert_eq!(
            parse(b"HEAD /metrics HTTP/1.1\r\n\r\n"),
            Request::Metrics { head_only: true }
        );
        assert_eq!(parse(b"GET /other HTTP/1.1\r\n\r\n"), Request::Status(404));
        assert_eq!(
            parse(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::Status(405)
        );
        assert_eq!(
            parse(b"GET /metrics HTTP/2.0\r\n\r\n"),
            Request::Status(505)
        );
        assert_eq!(parse(b"GET /metrics\r\n\r\n"), Request::Status(400));
        assert_eq!(parse(b"hello\r\n\r\n"), Request::Status(400));
        assert_eq!(parse(b"G\x01T / HTTP/1.1\r\n\r\n"), Request::Status(400));
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
            Request::Status(400)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nA: b\x00\r\n\r\n"),
            Request::Status(400)
        );
        assert_eq!(parse(b"GET  / HTTP/1.1\r\n\r\n"), Request::Status(400));
    }

    #[test]
    fn head_ends_at_the_blank_line() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nA: b\r\n", 0), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nxyz", 0), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\nA: b\n\nxyz", 0), Some(21));
        assert_eq!(head_end(b"\r\n\r\n", 0), Some(4));
        // Read a byte at a time: found where it ends, whatever came before.
        let head = b"GET / HTTP/1.1\r\nA: b\r\n\r\n";
        let mut seen = None;
        for len in 1..=head.len() {
            seen = seen.or(head_end(&head[..len], (len - 1).saturating_sub(2)));
        }
        assert_eq!(seen, Some(head.len()));
    }

    #[test]
    fn over_the_bound_the_answer_is_503_and_what_is_unwritten_is_held() {
        let mut x = Exchange::default();
        x.respond(None);
        assert_eq!(x.answered(), Some(503));
        let mut x = Exchange::default();
        x.respond(Some(&vec![b'#'; PAGE_MAX + 1]));
        assert_eq!(x.answered(), Some(500));
        let mut x = Exchange::default();
        x.respond(Some(b"abc\n"));
        assert_eq!(x.answered(), Some(200));
        assert_eq!(x.held(), x.out.len());
        x.at = x.out.len();
        assert_eq!(x.held(), 0);
    }

    #[test]
    fn head_answer_has_the_length_but_no_body() {
        let mut x = Exchange {
            head_only: true,
            ..Exchange::default()
        };
        x.respond(Some(b"abc\n"));
        let out = String::from_utf8(x.out).unwrap();
        assert!(out.contains("Content-Length: 4\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\n"), "{out}");
    }
}
