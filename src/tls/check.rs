//! Checking a service's `tls` at load, in the `oxinetd-tls` program: the
//! supervisor ([`validate`]) hands it the bundle on stdin and reads one
//! line back; the program ([`serve`]) builds the rustls configuration
//! from it, as each relay will, and says what is wrong, or how long the
//! leaf certificate has left.
//!
//! A process of its own so that the supervisor's image links no TLS
//! code; it runs as the supervisor (the files are root's) and parses only
//! those files, never network input. One run per `tls` service per load,
//! a few milliseconds each.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use super::{Problem, Settings, MAX_BUNDLE};

/// The program's file name.
pub const NAME: &str = "oxinetd-tls";

/// Where `oxinetd-tls` is: beside the running binary (a build tree, or an
/// install that puts both in one directory), else in `../libexec/oxinetd/`
/// from it (`/usr/sbin/oxinetd` -> `/usr/libexec/oxinetd/oxinetd-tls`).
pub fn program() -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("unable to find oxinetd's binary: {e}"))?;
    let dir = exe
        .parent()
        .ok_or_else(|| format!("{}: no directory", exe.display()))?;
    let beside = dir.join(NAME);
    if beside.is_file() {
        return Ok(beside);
    }
    let libexec = dir
        .parent()
        .unwrap_or(dir)
        .join("libexec/oxinetd")
        .join(NAME);
    if libexec.is_file() {
        return Ok(libexec);
    }
    Err(format!(
        "{NAME} not found (looked for {} and {})",
        beside.display(),
        libexec.display()
    ))
}

/// Check `settings` with `oxinetd-tls check`: `Ok` with the seconds the
/// leaf certificate has left (negative: expired) when it could be read.
pub fn validate(settings: &Settings) -> Result<Option<i64>, Problem> {
    let program = program().map_err(Problem::Program)?;
    let ran = |e: std::io::Error| Problem::Program(format!("{}: {e}", program.display()));
    let mut child = Command::new(&program)
        .arg("check")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ran)?;
    let wrote = match child.stdin.take() {
        // A program that stops reading early still answers below.
        Some(mut stdin) => stdin.write_all(&settings.encode()),
        None => Ok(()),
    };
    let out = child.wait_with_output().map_err(ran)?;
    let answer = String::from_utf8_lossy(&out.stdout);
    match parse(answer.trim_end()) {
        Some(result) => result,
        None => {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.trim();
            Err(Problem::Program(format!(
                "{} check gave no answer ({}{}{})",
                program.display(),
                out.status,
                wrote.err().map(|e| format!(", {e}")).unwrap_or_default(),
                if why.is_empty() {
                    String::new()
                } else {
                    format!(": {why}")
                }
            )))
        }
    }
}

/// The program's answer line as [`validate`]'s result.
fn parse(line: &str) -> Option<Result<Option<i64>, Problem>> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let indexed = |rest: &str| -> Option<(usize, String)> {
        let (i, m) = rest.split_once(' ')?;
        Some((i.parse().ok()?, m.to_owned()))
    };
    Some(match word {
        "ok" if rest.is_empty() => Ok(None),
        "ok" => Ok(Some(rest.parse().ok()?)),
        "cert" => Err(Problem::Cert(rest.to_owned())),
        "key" => Err(Problem::Key(rest.to_owned())),
        "client_ca" => Err(Problem::ClientCa(rest.to_owned())),
        "sni_cert" => indexed(rest).map(|(i, m)| Err(Problem::SniCert(i, m)))?,
        "sni_key" => indexed(rest).map(|(i, m)| Err(Problem::SniKey(i, m)))?,
        _ => return None,
    })
}

/// `oxinetd-tls check`: a bundle on stdin, one answer line on stdout.
pub fn serve() -> ExitCode {
    let mut bundle = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(MAX_BUNDLE as u64 + 1)
        .read_to_end(&mut bundle);
    let settings = match read {
        Ok(n) if n > MAX_BUNDLE => Err("bundle too large".to_owned()),
        Ok(_) => Settings::decode(&bundle),
        Err(e) => Err(e.to_string()),
    };
    let settings = match settings {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{NAME} check: {e}");
            return ExitCode::from(1);
        }
    };
    let line = match settings.server_config() {
        Err(p) => match p {
            Problem::Cert(m) => format!("cert {m}"),
            Problem::Key(m) => format!("key {m}"),
            Problem::ClientCa(m) => format!("client_ca {m}"),
            Problem::SniCert(i, m) => format!("sni_cert {i} {m}"),
            Problem::SniKey(i, m) => format!("sni_key {i} {m}"),
            Problem::Program(m) => format!("cert {m}"),
        },
        Ok(_) => {
            let left = super::certificates(&settings.chain)
                .ok()
                .and_then(|chain| chain.first().and_then(super::expires_in));
            match left {
                Some(s) => format!("ok {s}"),
                None => "ok".to_owned(),
            }
        }
    };
    // One line; newlines inside a message would end it early.
    let line = line.replace('\n', " ");
    match writeln!(std::io::stdout(), "{line}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse() {
        assert!(matches!(parse("ok"), Some(Ok(None))));
        assert!(matches!(parse("ok -5"), Some(Ok(Some(-5)))));
        assert!(
            matches!(parse("key does not match"), Some(Err(Problem::Key(m))) if m == "does not match")
        );
        assert!(matches!(parse("sni_key 2 bad"), Some(Err(Problem::SniKey(2, m))) if m == "bad"));
        assert!(parse("").is_none());
        assert!(parse("ok soon").is_none());
        assert!(parse("sni_cert x bad").is_none());
        assert!(parse("what").is_none());
    }
}
