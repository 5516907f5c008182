//! Command-line interface: `oxinetd [run]` (the default), `oxinetd check`,
//! `oxinetd import`, and `status`, `reload` and `stop`, which talk to a
//! running oxinetd over its control socket.

// The doc comments below are `--help` text, where `[global]` is the
// config's section, not a link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;

use clap::builder::TypedValueParser as _;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Format, DEFAULT_PATH};

#[derive(Debug, Parser)]
#[command(
    name = "oxinetd",
    version,
    about = "An inetd-style super-server: binds the configured listeners and \
             runs a handler per connection with the socket on stdin/stdout.",
    after_help = "Runs in the foreground. Signals: HUP reloads the config, TERM or INT stop \
                  listening and wait shutdown_grace for handlers.\n\
                  Exit status: 0 stopped cleanly; 1 check found errors; 2 usage; \
                  71 nothing could be bound; 78 no usable config.\n\
                  See oxinetd(8) and oxinetd.toml(5)."
)]
pub struct Cli {
    /// Config file.
    #[arg(short = 'f', long = "config", value_name = "FILE", default_value = DEFAULT_PATH)]
    pub config: PathBuf,

    /// Syntax of the config: toml, inetd (inetd.conf) or xinetd. Without
    /// it, *.toml is TOML, a file named inetd.conf is inetd, xinetd.conf or
    /// a file under xinetd.d/ is xinetd; other names must be told.
    #[arg(long, value_enum, global = true, value_name = "FORMAT")]
    pub format: Option<FormatArg>,

    /// Where log lines go. Falls back to stderr when syslog is unreachable.
    #[arg(long, value_enum, default_value_t = LogTarget::Syslog)]
    pub log: LogTarget,

    /// The syslog daemon's socket (overrides [global] syslog_socket).
    #[arg(long, value_name = "PATH")]
    pub syslog_socket: Option<PathBuf>,

    /// Write the supervisor's pid to FILE (removed on exit).
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,

    /// The control socket: where status, reload and stop find a running
    /// oxinetd, and where it listens (over [global] control_socket).
    #[arg(long, global = true, value_name = "PATH")]
    pub control: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

impl Cli {
    /// The config file: the command's `-f`, else the one before it, else
    /// the default.
    pub fn config_file(&self) -> &std::path::Path {
        match &self.command {
            Some(
                Command::Run { file }
                | Command::Check { file, .. }
                | Command::Status { file, .. }
                | Command::Reload { file }
                | Command::Stop { file, .. },
            ) => file.config.as_deref().unwrap_or(&self.config),
            _ => &self.config,
        }
    }
}

/// `-f` after `run` or `check` (`oxinetd check -f FILE`). Not global, so
/// that `import`, whose files are its arguments, does not offer it.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigFile {
    /// Config file [default: /etc/oxinetd/oxinetd.toml].
    #[arg(short = 'f', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve (the default).
    Run {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Validate the config without binding: print every error as
    /// FILE:LINE:COL: message; exit 0 when valid, 1 otherwise.
    Check {
        /// Also print each service as it would run: a [[service]] block of
        /// TOML with every setting in force, defaults included.
        #[arg(long)]
        list: bool,
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Print inetd.conf or xinetd configs as equivalent TOML: each service
    /// with a comment naming its source line, every setting without an
    /// equivalent as a comment. Exit 1 if something could not be converted.
    Import {
        /// inetd.conf or xinetd files, or xinetd.d directories.
        #[arg(required = true, value_name = "FILE|DIR")]
        sources: Vec<PathBuf>,
        /// Syntax of the sources: inetd (inetd.conf) or xinetd. Without
        /// it, a file named inetd.conf is inetd, xinetd.conf or a file
        /// under xinetd.d/ is xinetd; other names must be told.
        // The global --format's id and type (clap carries a global's value
        // between a command and its subcommands), with only what applies.
        #[arg(long, value_name = "FORMAT", value_parser = import_format())]
        format: Option<FormatArg>,
    },
    /// Show what a running oxinetd is doing: each service's listeners
    /// (armed, busy, paused and why, failed to bind), handlers and
    /// counters, and global figures. Exit 1 if it cannot be asked or
    /// SERVICE is not one of its services.
    Status {
        /// Only this service.
        service: Option<String>,
        /// JSON, as documented in oxinetd(8).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Reload a running oxinetd and wait for the outcome: print
    /// "reloaded: kept N, bound N, closed N", or every config error as
    /// FILE:LINE:COL: message and exit 1 (the running config stays).
    Reload {
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Stop a running oxinetd: it closes its listeners, waits for its
    /// handlers up to the grace, and exits; this returns once it has.
    Stop {
        /// Seconds to wait for handlers before signalling them
        /// [default: shutdown_grace].
        #[arg(long, value_name = "SECONDS")]
        grace: Option<f64>,
        #[command(flatten)]
        file: ConfigFile,
    },
    /// Print the completion script for SHELL; packages install these.
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    Toml,
    Inetd,
    Xinetd,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Toml => Format::Toml,
            FormatArg::Inetd => Format::Inetd,
            FormatArg::Xinetd => Format::Xinetd,
        }
    }
}

/// What `import` converts from: the classic formats (TOML is already TOML).
fn import_format() -> impl clap::builder::TypedValueParser<Value = FormatArg> {
    clap::builder::PossibleValuesParser::new(["inetd", "xinetd"]).map(|s| match s.as_str() {
        "inetd" => FormatArg::Inetd,
        _ => FormatArg::Xinetd,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogTarget {
    Syslog,
    Stderr,
}
