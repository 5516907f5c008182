//! Checking a service's `tls` at load, in the `oxinetd-tls` program: the
//! supervisor ([`validate`]) hands it the bundle on stdin and reads one
//! line back; the program ([`serve`]) builds the rustls configuration
//! from it, as each relay will, and says what is wrong, or how long the
//! leaf certificate has left.
//!
//! A forward's `forward_tls` is checked the same way ([`validate_out`]):
//! a `--pipe` bundle holding only it, answered by building the rustls
//! client configuration.
//!
//! A process of its own so that the supervisor's image links no TLS
//! code; it runs as the supervisor (the files are root's) and parses only
//! those files, never network input. One run per `tls` service per load,
//! a few milliseconds each.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use super::pipe::{OutProblem, Outbound, Pipe};
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
    let answer = ask(&settings.encode()).map_err(Problem::Program)?;
    parse(&answer).unwrap_or_else(|| Err(Problem::Program(no_answer(&answer))))
}

/// Check a forward's `forward_tls` with `oxinetd-tls check`.
pub fn validate_out(out: &Outbound) -> Result<(), OutProblem> {
    let bundle = Pipe {
        server: None,
        client: Some(out.clone()),
        client_timeout: super::DEFAULT_HANDSHAKE_TIMEOUT,
        idle: None,
    };
    let answer = ask(&bundle.encode()).map_err(OutProblem::Program)?;
    parse_out(&answer).unwrap_or_else(|| Err(OutProblem::Program(no_answer(&answer))))
}

/// A line that is no answer, for the message.
fn no_answer(line: &str) -> String {
    format!("{NAME} check gave an answer it does not know: \"{line}\"")
}

/// Run `oxinetd-tls check` with `bundle` on its stdin: its answer line,
/// or why there was none.
fn ask(bundle: &[u8]) -> Result<String, String> {
    let program = program()?;
    let ran = |e: std::io::Error| format!("{}: {e}", program.display());
    let mut child = Command::new(&program)
        .arg("check")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ran)?;
    let wrote = match child.stdin.take() {
        // A program that stops reading early still answers below.
        Some(mut stdin) => stdin.write_all(bundle),
        None => Ok(()),
    };
    let out = child.wait_with_output().map_err(ran)?;
    let answer = String::from_utf8_lossy(&out.stdout);
    let answer = answer.trim_end();
    if out.status.success() && !answer.is_empty() {
        return Ok(answer.to_owned());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    let why = why.trim();
    Err(format!(
        "{} check gave no answer ({}{}{})",
        program.display(),
        out.status,
        wrote.err().map(|e| format!(", {e}")).unwrap_or_default(),
        if why.is_empty() {
            String::new()
        } else {
            format!(": {why}")
        }
    ))
}

/// The program's answer about a `forward_tls`, as [`validate_out`]'s
/// result.
fn parse_out(line: &str) -> Option<Result<(), OutProblem>> {
    let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
    let m = rest.to_owned();
    Some(match word {
        "ok" if rest.is_empty() => Ok(()),
        "out_ca" => Err(OutProblem::Ca(m)),
        "out_name" => Err(OutProblem::ServerName(m)),
        "out_cert" => Err(OutProblem::Cert(m)),
        "out_key" => Err(OutProblem::Key(m)),
        _ => return None,
    })
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

/// `oxinetd-tls check`: a bundle on stdin (a service's `tls`, or a
/// `--pipe` one holding a `forward_tls`), one answer line on stdout.
pub fn serve() -> ExitCode {
    let mut bundle = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(MAX_BUNDLE as u64 + 1)
        .read_to_end(&mut bundle);
    let line = match read {
        Ok(n) if n > MAX_BUNDLE => Err("bundle too large".to_owned()),
        Ok(_) if bundle.starts_with(super::pipe::MAGIC) => Pipe::decode(&bundle).and_then(|p| {
            p.client
                .ok_or("no forward_tls in it".into())
                .map(out_answer)
        }),
        Ok(_) => Settings::decode(&bundle).map(|s| answer(&s)),
        Err(e) => Err(e.to_string()),
    };
    let line = match line {
        Ok(line) => line,
        Err(e) => {
            eprintln!("{NAME} check: {e}");
            return ExitCode::from(1);
        }
    };
    // One line; newlines inside a message would end it early.
    let line = line.replace('\n', " ");
    match writeln!(std::io::stdout(), "{line}") {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::from(1),
    }
}

/// The answer about a `forward_tls`.
fn out_answer(out: Outbound) -> String {
    match out.client_config() {
        Ok(_) => "ok".to_owned(),
        Err(OutProblem::Ca(m)) => format!("out_ca {m}"),
        Err(OutProblem::ServerName(m)) => format!("out_name {m}"),
        Err(OutProblem::Cert(m)) => format!("out_cert {m}"),
        Err(OutProblem::Key(m) | OutProblem::Program(m)) => format!("out_key {m}"),
    }
}

/// The answer about a service's `tls`.
fn answer(settings: &Settings) -> String {
    match settings.server_config() {
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
        assert!(matches!(parse_out("ok"), Some(Ok(()))));
        assert!(
            matches!(parse_out("out_name bad name"), Some(Err(OutProblem::ServerName(m))) if m == "bad name")
        );
        assert!(parse_out("ok 5").is_none());
        assert!(parse_out("key x").is_none());
    }
}
