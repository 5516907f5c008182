//! `oxinetd`: parse the command line, run, turn the outcome into an exit code.

use std::process::ExitCode;

use clap::Parser;
use oxinetd::cli::{Cli, Command, LogTarget};
use oxinetd::config::{self, Context};
use oxinetd::supervisor::{self, Options};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Check) => check(&cli),
        Some(Command::Run) | None => ExitCode::from(supervisor::run(Options {
            config: cli.config,
            log_stderr: cli.log == LogTarget::Stderr,
            syslog_socket: cli.syslog_socket,
            pidfile: cli.pidfile,
        })),
    }
}

/// `oxinetd check`: every error, one per line, then a verdict.
fn check(cli: &Cli) -> ExitCode {
    let errors = match config::load(&cli.config, &Context::current()) {
        Ok(loaded) if loaded.errors.is_empty() => {
            let n = loaded.config.services.len();
            println!(
                "{}: OK, {n} service{}",
                cli.config.display(),
                if n == 1 { "" } else { "s" }
            );
            return ExitCode::SUCCESS;
        }
        Ok(loaded) => loaded.errors,
        Err(errors) => errors,
    };
    for e in &errors {
        eprintln!("{e}");
    }
    eprintln!(
        "{}: {} error{}",
        cli.config.display(),
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    ExitCode::from(1)
}
