//! [`Spool`]: where an archive's files wait, one numbered file each, until the canonical tar
//! (sorted, unlike the archive) is written from them and they are renamed into the tree.

use std::cell::Cell;
use std::fs::File;
use std::path::{Path, PathBuf};

use crate::artifact_error::ArtifactError;

/// A directory receiving the content of an archive's files, one numbered file each.
pub(crate) struct Spool {
    dir: PathBuf,
    next: Cell<u64>,
}

impl Spool {
    /// Spools into `dir`, which must exist and be private to this import.
    pub(crate) fn new(dir: &Path) -> Spool {
        Spool {
            dir: dir.to_owned(),
            next: Cell::new(0),
        }
    }

    /// A new, empty spool file.
    pub(crate) fn create(&self) -> Result<(PathBuf, File), ArtifactError> {
        let n = self.next.get();
        self.next.set(n + 1);
        let path = self.dir.join(n.to_string());
        let file = File::create_new(&path).map_err(ArtifactError::io("create", &path))?;
        Ok((path, file))
    }
}
