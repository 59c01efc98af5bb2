//! [`ArtifactStore`]: release artifacts on disk by digest, unpacked read-only (docs/DESIGN.md I5).
//!
//! Layout: `<root>/<hex>/` is the unpacked tree and `<root>/<hex>.tar` the canonical archive.
//! The directory appears by one atomic rename once complete, so its presence means "stored".

use std::fs::{self, File, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::artifact_error::ArtifactError;
use crate::canonical::{Node, Tree, digest, digest_hex, write_tar};

/// The label of an archive that did not come from a path.
const UPLOADED: &str = "uploaded archive";

/// Content-addressed, immutable storage of release artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
}

impl ArtifactStore {
    /// A store under `root` (created on the first import).
    pub fn new(root: PathBuf) -> ArtifactStore {
        ArtifactStore { root }
    }

    /// The directory holding every artifact.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores an archive (normally from [`crate::pack`]; plain or gzipped tar) and returns its
    /// digest. The archive is checked and re-canonicalized, so the digest is always that of
    /// the canonical form. Storing an artifact already present is a no-op.
    pub fn import(&self, archive: &[u8]) -> Result<String, ArtifactError> {
        let mut tree = Tree::new(UPLOADED);
        if archive.starts_with(&[0x1f, 0x8b]) {
            crate::untar::read(flate2::read::GzDecoder::new(archive), &mut tree)?;
        } else {
            crate::untar::read(archive, &mut tree)?;
        }
        let entries = tree.finish()?;
        let canonical = write_tar(&entries);
        let digest = digest(&canonical);
        let hex = digest_hex(&digest)?;
        let dest = self.root.join(hex);
        if dest.is_dir() {
            return Ok(digest);
        }
        fs::create_dir_all(&self.root).map_err(ArtifactError::io("create", &self.root))?;
        self.write_archive(hex, &canonical)?;

        let tmp = tempfile::Builder::new()
            .prefix(".import-")
            .tempdir_in(&self.root)
            .map_err(ArtifactError::io(
                "create a temporary directory in",
                &self.root,
            ))?;
        unpack(&entries, tmp.path())?;
        match fs::rename(tmp.path(), &dest) {
            Ok(()) => {
                // Now at `dest`: the temporary handle must not delete it.
                let _ = tmp.keep();
            }
            Err(_) if dest.is_dir() => {
                // Another import of the same content won the race; theirs is identical.
                let _ = remove_tree(&tmp.keep());
                return Ok(digest);
            }
            Err(e) => {
                let _ = remove_tree(&tmp.keep());
                return Err(ArtifactError::io("move into place", &dest)(e));
            }
        }
        sync_dir(&self.root)?;
        Ok(digest)
    }

    /// Where the artifact with this digest is (or would be) unpacked. A malformed digest
    /// gives a path under the root that never exists, never one outside it.
    pub fn path(&self, digest: &str) -> PathBuf {
        match digest_hex(digest) {
            Ok(hex) => self.root.join(hex),
            Err(_) => self.root.join(".invalid-digest"),
        }
    }

    /// Where the canonical archive with this digest is kept, if the digest is well-formed.
    pub fn archive_path(&self, digest: &str) -> Result<PathBuf, ArtifactError> {
        Ok(self.root.join(format!("{}.tar", digest_hex(digest)?)))
    }

    /// Whether the artifact is stored and unpacked.
    pub fn contains(&self, digest: &str) -> bool {
        digest_hex(digest).is_ok() && self.path(digest).is_dir()
    }

    /// Reads back a stored canonical archive (e.g. to send it to another Baton).
    pub fn read_archive(&self, digest: &str) -> Result<Vec<u8>, ArtifactError> {
        let path = self.archive_path(digest)?;
        let mut data = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut data))
            .map_err(ArtifactError::io("read", &path))?;
        Ok(data)
    }

    /// Deletes temporary files and directories left by imports that a crash interrupted.
    /// Call it at startup, before any import runs; returns how many it removed.
    pub fn remove_stale_imports(&self) -> Result<usize, ArtifactError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(ArtifactError::io("read directory", &self.root)(e)),
        };
        let mut removed = 0;
        for entry in entries {
            let entry = entry.map_err(ArtifactError::io("read directory", &self.root))?;
            if !entry.file_name().to_string_lossy().starts_with(".import-") {
                continue;
            }
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            let done = if is_dir {
                remove_tree(&path)
            } else {
                fs::remove_file(&path)
            };
            done.map_err(ArtifactError::io("remove", &path))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Writes `<hex>.tar` through a temporary file so a crash never leaves half of it.
    fn write_archive(&self, hex: &str, canonical: &[u8]) -> Result<(), ArtifactError> {
        let dest = self.root.join(format!("{hex}.tar"));
        let mut tmp = tempfile::Builder::new()
            .prefix(".import-")
            .tempfile_in(&self.root)
            .map_err(ArtifactError::io("create a temporary file in", &self.root))?;
        tmp.write_all(canonical)
            .and_then(|()| tmp.as_file().sync_all())
            .and_then(|()| tmp.as_file().set_permissions(Permissions::from_mode(0o444)))
            .map_err(ArtifactError::io("write", tmp.path()))?;
        tmp.persist(&dest)
            .map_err(|e| ArtifactError::io("write", &dest)(e.error))?;
        Ok(())
    }
}

/// Unpacks checked entries under `dir`, files read-only, then makes directories read-only.
/// Entries are normalized, parents come first and none lies under a symlink (see
/// [`Tree::insert`]), so nothing is ever written outside `dir` or through a link.
fn unpack(entries: &[(String, Node)], dir: &Path) -> Result<(), ArtifactError> {
    for (path, node) in entries {
        let dest = dir.join(path);
        match node {
            Node::Dir => fs::create_dir(&dest).map_err(ArtifactError::io("create", &dest))?,
            Node::File { data, exec } => {
                let mode = if *exec { 0o555 } else { 0o444 };
                // create_new refuses an existing path, link or not.
                File::create_new(&dest)
                    .and_then(|mut f| {
                        f.write_all(data)?;
                        f.set_permissions(Permissions::from_mode(mode))?;
                        f.sync_all()
                    })
                    .map_err(ArtifactError::io("write", &dest))?;
            }
            Node::Symlink { target } => {
                std::os::unix::fs::symlink(target, &dest)
                    .map_err(ArtifactError::io("create link", &dest))?;
            }
        }
    }
    // Children first, so each directory is still writable while its entries are made.
    for (path, _) in entries.iter().rev().filter(|(_, n)| *n == Node::Dir) {
        let dest = dir.join(path);
        fs::set_permissions(&dest, Permissions::from_mode(0o555))
            .map_err(ArtifactError::io("protect", &dest))?;
        sync_dir(&dest)?;
    }
    fs::set_permissions(dir, Permissions::from_mode(0o555))
        .map_err(ArtifactError::io("protect", dir))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), ArtifactError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ArtifactError::io("sync", dir))
}

/// Deletes an unpacked tree, making its read-only directories writable first.
pub(crate) fn remove_tree(dir: &Path) -> std::io::Result<()> {
    make_writable(dir)?;
    fs::remove_dir_all(dir)
}

fn make_writable(dir: &Path) -> std::io::Result<()> {
    fs::set_permissions(dir, Permissions::from_mode(0o755))?;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            make_writable(&entry.path())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{sample_dir, tar_gz_of, tar_gz_with_raw_name};
    use crate::pack;

    /// An artifact store whose read-only trees are removed at the end of the test.
    struct Fixture {
        tmp: tempfile::TempDir,
        store: ArtifactStore,
    }

    impl Fixture {
        fn new() -> Fixture {
            let tmp = tempfile::tempdir().unwrap();
            let store = ArtifactStore::new(tmp.path().join("artifacts"));
            Fixture { tmp, store }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = remove_tree(self.tmp.path());
        }
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn import_unpacks_read_only_keeping_exec_bits_and_is_idempotent() {
        let f = Fixture::new();
        let src = f.tmp.path().join("src");
        sample_dir(&src);
        let canonical = pack(&src).unwrap();

        let d = f.store.import(&canonical).unwrap();
        assert_eq!(d, digest(&canonical));
        assert!(f.store.contains(&d));
        let root = f.store.path(&d);
        assert_eq!(
            fs::read(root.join("static/css/site.css")).unwrap(),
            b"body{}\n"
        );
        assert_eq!(
            mode(&root.join("server")),
            0o555,
            "exec bit kept, write bit dropped"
        );
        assert_eq!(mode(&root.join("config.toml")), 0o444);
        assert_eq!(mode(&root.join("static")), 0o555);
        assert_eq!(mode(&root), 0o555);
        assert_eq!(
            fs::read_link(root.join("site.css")).unwrap(),
            Path::new("static/css/site.css")
        );
        assert_eq!(f.store.read_archive(&d).unwrap(), canonical);

        // Again, and from the tar.gz form: same digest, no error, nothing left behind.
        assert_eq!(f.store.import(&canonical).unwrap(), d);
        assert_eq!(f.store.import(&tar_gz_of(&src)).unwrap(), d);
        let names: Vec<_> = fs::read_dir(f.store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "only <hex>/ and <hex>.tar: {names:?}");
    }

    #[test]
    fn a_digest_never_names_a_path_outside_the_root() {
        let f = Fixture::new();
        assert!(!f.store.contains("sha256:../../etc"));
        assert!(f.store.path("sha256:../../etc").starts_with(f.store.root()));
        assert!(f.store.path("../../etc").starts_with(f.store.root()));
        assert!(matches!(
            f.store.archive_path("nope"),
            Err(ArtifactError::InvalidDigest(_))
        ));
    }

    #[test]
    fn import_refuses_traversal_and_stores_nothing() {
        let f = Fixture::new();
        let e = f.store.import(&tar_gz_with_raw_name("../x")).unwrap_err();
        assert!(
            e.to_string().contains("uploaded archive") && e.to_string().contains("`..`"),
            "{e}"
        );
        assert!(!f.tmp.path().join("x").exists());
        assert!(!f.store.root().exists(), "a refused import creates nothing");
    }

    #[test]
    fn stale_imports_are_swept_and_stored_artifacts_kept() {
        let f = Fixture::new();
        assert_eq!(f.store.remove_stale_imports().unwrap(), 0, "no root yet");
        let src = f.tmp.path().join("src");
        sample_dir(&src);
        let d = f.store.import(&pack(&src).unwrap()).unwrap();
        let stale = f.store.root().join(".import-crashed");
        fs::create_dir_all(stale.join("sub")).unwrap();
        fs::set_permissions(stale.join("sub"), Permissions::from_mode(0o555)).unwrap();
        fs::write(f.store.root().join(".import-half.tar"), b"x").unwrap();
        assert_eq!(f.store.remove_stale_imports().unwrap(), 2);
        assert!(!stale.exists());
        assert!(f.store.contains(&d));
    }

    #[test]
    fn remove_tree_deletes_read_only_trees() {
        let f = Fixture::new();
        let src = f.tmp.path().join("src");
        sample_dir(&src);
        let d = f.store.import(&pack(&src).unwrap()).unwrap();
        remove_tree(&f.store.path(&d)).unwrap();
        assert!(!f.store.contains(&d));
    }
}
