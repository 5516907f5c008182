//! `oxinetd`: parse the command line, run, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use oxinetd::cli::{Cli, Command, LogTarget};
use oxinetd::config::{self, Context, Format, Severity};
use oxinetd::supervisor::{self, Options};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check { list, .. }) => check(&cli, list),
        Some(Command::Import {
            ref sources,
            format,
        }) => import(sources, format.or(cli.format).map(Format::from)),
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
        })),
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
                println!();
            }
            print!("{}", svc.settings(&budget));
        }
        if !loaded.config.services.is_empty() {
            println!();
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
        println!(
            "{}: OK, {n} service{}",
            path.display(),
            if n == 1 { "" } else { "s" }
        );
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
            println!();
        }
        print!("{}", imported.text);
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
