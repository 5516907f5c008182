//! `oxinetd`: parse the command line, run, turn the outcome into an exit code.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use oxinetd::cli::{Cli, Command, LogTarget};
use oxinetd::config::{self, Context, Format, Severity};
use oxinetd::control::{self as ctl, Request};
use oxinetd::supervisor::{self, Options};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { list, .. }) => check(&cli, list),
        Some(Command::Import {
            ref sources,
            format,
        }) => import(sources, format.or(cli.format).map(Format::from)),
        Some(Command::Status {
            ref service, json, ..
        }) => control(
            &cli,
            Request::Status {
                json,
                service: service.clone(),
            },
        ),
        Some(Command::Reload { .. }) => control(&cli, Request::Reload),
        Some(Command::Stop { grace, .. }) => {
            let grace = match grace.map(Duration::try_from_secs_f64) {
                None => None,
                Some(Ok(g)) => Some(g),
                Some(Err(_)) => {
                    eprintln!("oxinetd: --grace: expected seconds, such as 5 or 0.5");
                    return ExitCode::from(2);
                }
            };
            control(&cli, Request::Stop { grace })
        }
        Some(Command::Completions { shell }) => {
            // Into memory first: clap_complete panics on a write error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "oxinetd", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::FAILURE,
            }
        }
        Some(Command::Run { .. }) | None => ExitCode::from(supervisor::run(Options {
            format: cli.format.map(Format::from),
            config: cli.config_file().to_path_buf(),
            log_stderr: cli.log == LogTarget::Stderr,
            syslog_socket: cli.syslog_socket,
            pidfile: cli.pidfile,
            control: cli.control,
        })),
    }
}

/// Where the running oxinetd's control socket is: `--control`, else the
/// config's `control_socket` (its default when the config cannot be read).
fn control_path(cli: &Cli) -> Option<PathBuf> {
    if let Some(p) = &cli.control {
        return Some(p.clone());
    }
    let format = cli.format.map(Format::from);
    match config::load_with(cli.config_file(), format, &Context::current()) {
        Ok(loaded) => loaded.config.global.control_socket,
        Err(_) => ctl::default_path(),
    }
}

/// `status`, `reload`, `stop`: ask the running oxinetd; the body of its
/// answer on stdout (stderr for an error), exit 0 or 1.
fn control(cli: &Cli, req: Request) -> ExitCode {
    let Some(path) = control_path(cli) else {
        eprintln!(
            "oxinetd: no control socket: [global] control_socket is \"\" (or, not as root, \
             XDG_RUNTIME_DIR is unset); pass --control PATH"
        );
        return ExitCode::from(1);
    };
    // A reload runs in the supervisor's loop and a stop waits for the
    // handlers: their answers may take a while.
    let patience = match req {
        Request::Status { .. } => Duration::from_secs(10),
        Request::Reload => Duration::from_secs(300),
        Request::Stop { .. } => Duration::from_secs(3600),
    };
    match ctl::ask(&path, &req, patience) {
        Ok(answer) if answer.ok => {
            out(&answer.body);
            if let Request::Stop { .. } = req {
                out("stopped\n");
            }
            ExitCode::SUCCESS
        }
        Ok(answer) => {
            eprint!("{}", answer.body);
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("oxinetd: {}: {e}", path.display());
            ExitCode::from(1)
        }
    }
}

/// `oxinetd check`: every error, one per line, then a verdict. Warnings
/// (settings of another format that are ignored) do not fail the check;
/// services that cannot run do.
fn check(cli: &Cli, list: bool) -> ExitCode {
    // A name that does not tell the format is one message, not a verdict.
    let path = cli.config_file();
    let Some(format) = cli
        .format
        .map(Format::from)
        .or_else(|| Format::detect(path))
    else {
        eprintln!("{}: {}", path.display(), config::UNDETECTED);
        return ExitCode::from(1);
    };
    let loaded = match config::load_as(path, format, &Context::current()) {
        Ok(loaded) => loaded,
        Err(errors) => return verdict(path, &errors, 0),
    };
    for w in loaded.problems(Severity::Warning) {
        eprintln!("{}: warning: {}", w.at, w.message);
    }
    if list {
        // As the supervisor computes it: after raising the soft fd limit.
        let _ = oxinetd::sys::raise_nofile();
        let budget = oxinetd::fds::FdBudget::current();
        for (i, svc) in loaded.config.services.iter().enumerate() {
            if i > 0 {
                out("\n");
            }
            out(&svc.settings(&budget));
        }
        if !loaded.config.services.is_empty() {
            out("\n");
        }
    }
    let mut errors: Vec<config::ConfigError> = loaded.problems(Severity::Error).cloned().collect();
    errors.extend(
        loaded
            .problems(Severity::Skipped)
            .map(|e| config::ConfigError::new(e.at.clone(), format!("not run: {}", e.message))),
    );
    if errors.is_empty() {
        let n = loaded.config.services.len();
        out(&format!(
            "{}: OK, {n} service{}\n",
            path.display(),
            if n == 1 { "" } else { "s" }
        ));
        return ExitCode::SUCCESS;
    }
    verdict(path, &errors, loaded.config.services.len())
}

fn verdict(path: &std::path::Path, errors: &[config::ConfigError], good: usize) -> ExitCode {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!(
        "{}: {} error{}{}",
        path.display(),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" },
        if good > 0 {
            format!(
                " ({good} valid service{} would run)",
                if good == 1 { "" } else { "s" }
            )
        } else {
            String::new()
        }
    );
    ExitCode::from(1)
}

/// `oxinetd import`: the TOML on stdout, problems on stderr.
fn import(sources: &[std::path::PathBuf], format: Option<Format>) -> ExitCode {
    let mut failed = false;
    for (i, src) in sources.iter().enumerate() {
        let format = match format.or_else(|| Format::detect(src)) {
            Some(Format::Toml) => {
                eprintln!("{}: already TOML, nothing to import", src.display());
                failed = true;
                continue;
            }
            Some(f) => f,
            None => {
                eprintln!(
                    "{}: cannot tell the format from the file name (inetd.conf, \
                     xinetd.conf, xinetd.d/); pass --format inetd|xinetd",
                    src.display()
                );
                failed = true;
                continue;
            }
        };
        let imported = config::import(src, format);
        if i > 0 {
            out("\n");
        }
        out(&imported.text);
        let (warnings, errors): (Vec<_>, Vec<_>) = imported
            .diagnostics
            .iter()
            .partition(|d| d.severity == Severity::Warning);
        for w in &warnings {
            eprintln!("{}: warning: {}", w.problem.at, w.problem.message);
        }
        for e in &errors {
            eprintln!("{}", e.problem);
        }
        failed |= !errors.is_empty();
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Write to stdout, and stop quietly when it is gone (`check --list |
/// head`): `print!` panics on a closed pipe, as Rust ignores SIGPIPE.
fn out(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
