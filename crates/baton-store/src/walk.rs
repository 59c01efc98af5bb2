//! Reading an artifact directory into a [`Tree`].

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use crate::artifact_error::ArtifactError;
use crate::canonical::{Node, Tree};

/// Adds everything under `root` to `tree`; refuses devices, fifos and sockets.
pub(crate) fn walk(root: &Path, tree: &mut Tree) -> Result<(), ArtifactError> {
    walk_dir(root, Path::new(""), tree)
}

fn walk_dir(root: &Path, rel: &Path, tree: &mut Tree) -> Result<(), ArtifactError> {
    let dir = root.join(rel);
    let entries = std::fs::read_dir(&dir).map_err(ArtifactError::io("read directory", &dir))?;
    for entry in entries {
        let entry = entry.map_err(ArtifactError::io("read directory", &dir))?;
        let rel = rel.join(entry.file_name());
        let full = root.join(&rel);
        let meta = std::fs::symlink_metadata(&full).map_err(ArtifactError::io("read", &full))?;
        let ft = meta.file_type();
        if ft.is_dir() {
            tree.insert(&rel, Node::Dir)?;
            walk_dir(root, &rel, tree)?;
        } else if ft.is_file() {
            // Read when the canonical tar is written, never held in memory.
            let exec = meta.permissions().mode() & 0o111 != 0;
            let (source, size) = (full, meta.len());
            tree.insert(&rel, Node::File { source, size, exec })?;
        } else if ft.is_symlink() {
            let target =
                std::fs::read_link(&full).map_err(ArtifactError::io("read link", &full))?;
            let Some(target) = target.to_str() else {
                return Err(tree.refuse(
                    rel.to_string_lossy(),
                    "is a symlink whose target is not UTF-8",
                ));
            };
            tree.insert(
                &rel,
                Node::Symlink {
                    target: target.to_owned(),
                },
            )?;
        } else {
            let kind = if ft.is_fifo() {
                "a fifo"
            } else if ft.is_socket() {
                "a socket"
            } else if ft.is_block_device() || ft.is_char_device() {
                "a device file"
            } else {
                "not a regular file, directory or symlink"
            };
            return Err(tree.refuse(rel.to_string_lossy(), format!("is {kind}")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs::{self, File, FileTimes};
    use std::time::{Duration, SystemTime};

    use crate::fixtures::sample_dir;
    use crate::{ArtifactError, digest, pack};

    #[test]
    fn same_content_with_other_mtimes_gives_the_same_digest() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        sample_dir(a.path());
        sample_dir(b.path());
        let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        File::options()
            .write(true)
            .open(b.path().join("config.toml"))
            .unwrap()
            .set_times(FileTimes::new().set_modified(old).set_accessed(old))
            .unwrap();
        assert_eq!(
            digest(&pack(a.path()).unwrap()),
            digest(&pack(b.path()).unwrap())
        );

        // And a change of content or of the exec bit changes it.
        fs::write(b.path().join("config.toml"), b"port = 2\n").unwrap();
        assert_ne!(
            digest(&pack(a.path()).unwrap()),
            digest(&pack(b.path()).unwrap())
        );
    }

    #[test]
    fn refuses_a_socket_and_an_escaping_link_naming_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        sample_dir(dir.path());
        let _sock = std::os::unix::net::UnixListener::bind(dir.path().join("ctl.sock")).unwrap();
        let e = pack(dir.path()).unwrap_err();
        assert!(
            matches!(e, ArtifactError::Refused { ref entry, .. } if entry == "ctl.sock"),
            "{e}"
        );
        assert!(e.to_string().contains("is a socket"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("pw")).unwrap();
        let e = pack(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains("\"pw\"") && e.to_string().contains("outside"),
            "{e}"
        );
    }

    #[test]
    fn missing_and_unsupported_paths_say_what_to_give() {
        let dir = tempfile::tempdir().unwrap();
        let e = pack(&dir.path().join("nope")).unwrap_err();
        assert!(
            matches!(e, ArtifactError::NotFound { .. }) && e.to_string().contains("nope"),
            "{e}"
        );
        fs::write(dir.path().join("app.zip"), b"PK").unwrap();
        let e = pack(&dir.path().join("app.zip")).unwrap_err();
        assert!(
            matches!(e, ArtifactError::Unsupported { .. }) && e.to_string().contains("tar czf"),
            "{e}"
        );
    }
}
