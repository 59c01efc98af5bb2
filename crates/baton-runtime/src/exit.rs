//! How an instance ended: its exit status, and what `stop` had to do to end it. Shared by the
//! `process` and `docker` drivers.

use std::fmt;
use std::process::ExitStatus;

/// How an instance exited. Both fields are `None` when the exit status is unknown, which is the
/// case for adopted processes (they are not Baton's children, so Baton cannot reap them).
///
/// The docker driver only ever fills `code`: the engine reports a container killed by signal N
/// as exit code 128 + N, and cannot tell it from a program that called `exit(128 + N)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExitInfo {
    /// The exit code, if the process called `exit`.
    pub code: Option<i32>,
    /// The signal that killed the process, if one did.
    pub signal: Option<i32>,
}

impl ExitInfo {
    /// An exit whose status Baton cannot know.
    pub const UNKNOWN: ExitInfo = ExitInfo {
        code: None,
        signal: None,
    };

    /// Reads back what [`Display`](fmt::Display) wrote, as an agent reports an exit to the
    /// controller: `exited with code N`, `killed by signal N` or `exited`. None for any other
    /// text.
    pub fn parse(text: &str) -> Option<ExitInfo> {
        if text == "exited" {
            return Some(ExitInfo::UNKNOWN);
        }
        if let Some(code) = text.strip_prefix("exited with code ") {
            return Some(ExitInfo {
                code: Some(code.parse().ok()?),
                signal: None,
            });
        }
        let signal = text.strip_prefix("killed by signal ")?;
        Some(ExitInfo {
            code: None,
            signal: Some(signal.parse().ok()?),
        })
    }
}

impl From<ExitStatus> for ExitInfo {
    fn from(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        ExitInfo {
            code: status.code(),
            signal: status.signal(),
        }
    }
}

impl fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exited with code {code}"),
            (None, Some(signal)) => write!(f, "killed by signal {signal}"),
            (None, None) => f.write_str("exited"),
        }
    }
}

/// What [`ProcessHandle::stop`](crate::ProcessHandle::stop) or
/// [`ContainerHandle::stop`](crate::docker::ContainerHandle::stop) observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopOutcome {
    /// The instance exited within the stop timeout after SIGTERM.
    Exited(ExitInfo),
    /// The instance ignored SIGTERM for the whole stop timeout and was sent SIGKILL.
    Killed,
    /// The instance had already exited before `stop` was called.
    AlreadyGone,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_says_how_it_ended() {
        let code = ExitInfo {
            code: Some(1),
            signal: None,
        };
        let signal = ExitInfo {
            code: None,
            signal: Some(9),
        };
        assert_eq!(code.to_string(), "exited with code 1");
        assert_eq!(signal.to_string(), "killed by signal 9");
        assert_eq!(ExitInfo::UNKNOWN.to_string(), "exited");
    }

    #[test]
    fn parse_reads_back_what_display_wrote_and_nothing_else() {
        for info in [
            ExitInfo {
                code: Some(-3),
                signal: None,
            },
            ExitInfo {
                code: None,
                signal: Some(15),
            },
            ExitInfo::UNKNOWN,
        ] {
            assert_eq!(ExitInfo::parse(&info.to_string()), Some(info));
        }
        for text in [
            "",
            "exited with code",
            "killed by signal x",
            "exited with code 1 ",
        ] {
            assert_eq!(ExitInfo::parse(text), None, "{text:?}");
        }
    }
}
