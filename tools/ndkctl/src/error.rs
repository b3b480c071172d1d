//! The tool's errors and their exit codes (documented in `--help` and the README).

use std::process::ExitCode;

use ndkdisc_client::{ErrorKind, NtStatus};

/// Exit codes, one per class of outcome.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// `demo` or a scenario deviated from what it expects.
    pub const DEVIATION: u8 = 1;
    /// Usage: bad arguments, unreadable or malformed scenario file.
    pub const USAGE: u8 = 2;
    /// The driver is not installed / the device is missing (always, for the device backend
    /// off Windows).
    pub const DEVICE_MISSING: u8 = 3;
    /// Access denied: not an administrator, or a read-only handle asked for a change.
    pub const ACCESS_DENIED: u8 = 4;
    /// A bad address (malformed, or not usable on the interface).
    pub const BAD_ADDRESS: u8 = 5;
    /// An unknown id: `STATUS_NOT_FOUND`.
    pub const UNKNOWN_ID: u8 = 6;
    /// A timeout: the request was cancelled after the limit.
    pub const TIMEOUT: u8 = 7;
    /// Cancelled: the driver cancelled the request (ABORT, close); Ctrl-C is
    /// [`INTERRUPTED`].
    pub const CANCELLED: u8 = 8;
    /// The driver failed the operation with another status (including a failed connect).
    pub const DRIVER: u8 = 9;
    /// Internal: a malformed reply or a system failure.
    pub const INTERNAL: u8 = 10;
    /// Interrupted by Ctrl-C (the shell convention: 128 + SIGINT), whatever was running; a
    /// blocked request was cancelled first.
    pub const INTERRUPTED: u8 = 130;
    /// The output pipe was closed (`| head`): ended quietly, as 128 + SIGPIPE says.
    pub const BROKEN_PIPE: u8 = 141;
}

/// The exit-code table as `--help` prints it.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
   0  success
   1  deviation: demo or a scenario saw something it did not expect
   2  usage: bad arguments, unreadable or malformed scenario file
   3  driver not installed / device missing (the device backend exists only on Windows)
   4  access denied: not an administrator, or a read-only handle asked for a change
   5  bad address
   6  unknown id (STATUS_NOT_FOUND)
   7  timeout (the request was cancelled after the limit)
   8  cancelled (the driver cancelled it: ABORT, handle close)
   9  the driver failed the operation with another NTSTATUS (e.g. connect refused)
  10  internal error (malformed reply, system failure)
 130  interrupted (Ctrl-C); a blocked request was cancelled first
 141  the output pipe was closed (e.g. `| head`): ended quietly";

/// An error of the tool.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// An operation failed.
    #[error(transparent)]
    Client(#[from] ndkdisc_client::Error),
    /// Something happened that the demo or a scenario did not expect.
    #[error("deviation: {0}")]
    Deviation(String),
    /// A scenario line is malformed or cannot run.
    #[error("{file}:{line}: {msg}")]
    Script {
        /// The file.
        file: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        msg: String,
    },
    /// A scenario step failed; the cause says how.
    #[error("{file}:{line}: `{text}`: {source}")]
    Step {
        /// The file.
        file: String,
        /// The 1-based line.
        line: usize,
        /// The step as written.
        text: String,
        /// What went wrong.
        source: Box<CliError>,
    },
    /// A usage error found after argument parsing.
    #[error("{0}")]
    Usage(String),
    /// Writing the output failed.
    #[error("writing output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The error as a JSON record (`--json` errors on stderr, a session's failed replies):
    /// `kind`, `exit_code` (`code`: the code the process, or the command, ends with; an
    /// interruption's 130 names the kind `interrupted`), `status`, `status_name`, `message`.
    pub fn record(&self, code: u8) -> serde_json::Value {
        let status = self.status();
        serde_json::json!({
            "type": "error",
            "kind": if code == exit::INTERRUPTED { "interrupted" } else { self.kind_name() },
            "exit_code": code,
            "status": status.map(|s| format!("{:#010X}", s.code())),
            "status_name": status.and_then(NtStatus::name),
            "message": self.to_string(),
        })
    }

    /// The exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Client(ndkdisc_client::Error::Interrupted { .. }) => exit::INTERRUPTED,
            Self::Client(e) => match e.kind() {
                ErrorKind::DeviceMissing => exit::DEVICE_MISSING,
                ErrorKind::AccessDenied => exit::ACCESS_DENIED,
                ErrorKind::BadAddress => exit::BAD_ADDRESS,
                ErrorKind::UnknownId => exit::UNKNOWN_ID,
                ErrorKind::Timeout => exit::TIMEOUT,
                ErrorKind::Cancelled => exit::CANCELLED,
                ErrorKind::ConnectFailed | ErrorKind::Driver => exit::DRIVER,
                // A kind added to the client later counts as internal until named here.
                _ => exit::INTERNAL,
            },
            Self::Deviation(_) => exit::DEVIATION,
            Self::Script { .. } | Self::Usage(_) => exit::USAGE,
            Self::Step { source, .. } => source.exit_code(),
            Self::Output(_) => exit::INTERNAL,
        }
    }

    /// The kind as a short name (for `--json`).
    pub fn kind_name(&self) -> &'static str {
        match self.exit_code() {
            exit::DEVIATION => "deviation",
            exit::USAGE => "usage",
            exit::DEVICE_MISSING => "device-missing",
            exit::ACCESS_DENIED => "access-denied",
            exit::BAD_ADDRESS => "bad-address",
            exit::UNKNOWN_ID => "unknown-id",
            exit::TIMEOUT => "timeout",
            exit::CANCELLED => "cancelled",
            exit::DRIVER => "driver",
            exit::INTERRUPTED => "interrupted",
            _ => "internal",
        }
    }

    /// The NTSTATUS behind the error, if any.
    pub fn status(&self) -> Option<NtStatus> {
        match self {
            Self::Client(e) => e.status(),
            Self::Step { source, .. } => source.status(),
            _ => None,
        }
    }

    /// Whether it is a write to a closed pipe (the reader went away, e.g. `| head`): the
    /// command ends quietly then.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Self::Output(e) => e.kind() == std::io::ErrorKind::BrokenPipe,
            Self::Step { source, .. } => source.is_broken_pipe(),
            _ => false,
        }
    }

    /// The process exit code.
    pub fn exit(&self) -> ExitCode {
        ExitCode::from(self.exit_code())
    }
}
