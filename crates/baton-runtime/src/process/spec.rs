//! What to run for one instance.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Everything the process driver needs to start one instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Program and arguments, with placeholders already rendered. A program without `/` is looked
    /// up on `PATH`; one with `/` but relative is taken relative to `cwd`.
    pub argv: Vec<String>,
    /// Variables added on top of Baton's own environment.
    pub env: BTreeMap<String, String>,
    /// The working directory, inside the stored artifact.
    pub cwd: PathBuf,
    /// stdout and stderr are appended here by the child itself, so logging does not depend on
    /// Baton being alive. Parent directories are created.
    pub log_path: PathBuf,
    /// If set, `"<pid> <start_time>\n"` is written here after spawn and removed by `stop`.
    pub pid_file: Option<PathBuf>,
}
