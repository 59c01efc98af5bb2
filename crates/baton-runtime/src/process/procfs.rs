//! Reading a process's identity and state from `/proc/<pid>/stat`.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The fields of `/proc/<pid>/stat` the driver needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    /// One-letter state; `Z` (zombie) and `X` (dead) mean the process has exited.
    pub state: char,
    /// The process group id (field 5).
    pub pgrp: i32,
    /// Start time in clock ticks since boot (field 22). With the pid it names one process for
    /// the life of the machine, which is what makes re-adoption safe against pid reuse.
    pub start_time: u64,
}

impl Stat {
    /// Whether the process has exited (it may still be waiting to be reaped).
    pub fn exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X')
    }
}

/// Reads `/proc/<pid>/stat`; `None` if there is no such process.
pub(crate) fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses the text of `/proc/<pid>/stat`.
fn parse_stat(text: &str) -> Option<Stat> {
    // The command name (field 2) is in parentheses and may itself contain spaces and
    // parentheses, so fields are counted from the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3 (state), so field n is `fields[n - 3]`.
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(5 - 3)?.parse().ok()?;
    let start_time = fields.get(22 - 3)?.parse().ok()?;
    Some(Stat {
        state,
        pgrp,
        start_time,
    })
}

/// The start time of a live process (`/proc/<pid>/stat` field 22, clock ticks since boot);
/// `None` if there is no such process or it has exited and is a zombie.
pub fn proc_start_time(pid: u32) -> Option<u64> {
    read_stat(pid)
        .filter(|stat| !stat.exited())
        .map(|stat| stat.start_time)
}

/// Whether `pid` is still the live process that started at `start_time`.
pub(crate) fn is_alive(pid: u32, start_time: u64) -> bool {
    proc_start_time(pid) == Some(start_time)
}

/// Sends `signal` to the instance `pid` started at `start_time`, and to its whole process group
/// when it leads one (so helpers it forked go too). Does nothing if that process is gone, so a
/// reused pid is never signalled. Returns whether a signal was sent.
pub(crate) fn signal_instance(pid: u32, start_time: u64, signal: Signal) -> bool {
    let Some(stat) = read_stat(pid).filter(|stat| stat.start_time == start_time) else {
        return false;
    };
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    let target = Pid::from_raw(raw);
    // A zombie leader still anchors its group, so the group is signalled even then: its
    // helpers may still be running.
    let result = if stat.pgrp == raw {
        killpg(target, signal)
    } else if stat.exited() {
        return false;
    } else {
        kill(target, signal)
    };
    if let Err(error) = result {
        tracing::debug!(pid, %signal, %error, "signal not delivered");
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_name() {
        let text = "1234 (a b) c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 100 18446744073709551615\n";
        let stat = parse_stat(text).unwrap();
        assert_eq!(
            stat,
            Stat {
                state: 'S',
                pgrp: 1234,
                start_time: 987654
            }
        );
        assert!(!stat.exited());
    }

    #[test]
    fn truncated_stat_is_rejected() {
        assert_eq!(parse_stat("1 (x) S 1 1"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_has_a_start_time() {
        let me = std::process::id();
        assert!(proc_start_time(me).is_some());
        assert!(is_alive(me, proc_start_time(me).unwrap()));
        assert!(!is_alive(me, proc_start_time(me).unwrap() + 1));
    }

    #[test]
    fn missing_pid_has_no_start_time() {
        // Above the kernel's maximum pid (2^22), so it can never exist.
        assert_eq!(proc_start_time(u32::MAX - 1), None);
    }

    #[test]
    fn zombie_has_no_start_time() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while read_stat(pid).is_some_and(|stat| !stat.exited()) {
            assert!(std::time::Instant::now() < deadline, "`true` never exited");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(proc_start_time(pid), None);
        child.wait().unwrap();
    }
}
