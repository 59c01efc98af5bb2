//! [`ArtifactStore`]: release artifacts on disk by digest, unpacked read-only (docs/DESIGN.md I5).
//!
//! Layout: `<root>/<hex>/` is the unpacked tree and `<root>/<hex>.tar` the canonical archive.
//! The directory appears by one atomic rename once complete, so its presence means "stored".

use std::fs::{self, File, Permissions};
use std::io::{BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::ImportLimits;
use crate::artifact_error::ArtifactError;
use crate::canonical::{Hashing, Node, Tree, digest_hex, write_tar};
use crate::spool::Spool;

/// The label of an archive that did not come from a path.
const UPLOADED: &str = "uploaded archive";

/// Content-addressed, immutable storage of release artifacts.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    root: PathBuf,
    /// Held while an import publishes and while an artifact is removed (see [`Self::hold`]).
    publish: Arc<Mutex<()>>,
}

impl ArtifactStore {
    /// A store under `root` (created on the first import).
    pub fn new(root: PathBuf) -> ArtifactStore {
        ArtifactStore {
            root,
            publish: Arc::default(),
        }
    }

    /// Holds off imports' publishing and removals: while held, whether an artifact is
    /// stored and whether a release needs it can be decided together with recording it.
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        self.publish.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes a stored artifact, its tree and its archive; call it holding [`Self::hold`],
    /// once no release names it (e.g. its upload was refused as a version conflict).
    pub fn remove(&self, _held: &MutexGuard<'_, ()>, digest: &str) -> Result<(), ArtifactError> {
        let archive = self.archive_path(digest)?;
        let tree = self.path(digest);
        match remove_tree(&tree) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArtifactError::io("remove", &tree)(e)),
        }
        match fs::remove_file(&archive) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ArtifactError::io("remove", &archive)(e)),
        }
        sync_dir(&self.root)
    }

    /// The directory holding every artifact.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Stores an archive (normally from [`crate::pack`]; plain or gzipped tar) read from
    /// `archive` and returns its digest. The archive is checked and re-canonicalized, so the
    /// digest is always that of the canonical form. It streams: files are spooled to disk
    /// under the root, never held in memory, and `limits` are checked as it comes in. Storing
    /// an artifact already present is a no-op.
    pub fn import(
        &self,
        archive: impl Read,
        limits: &ImportLimits,
    ) -> Result<String, ArtifactError> {
        fs::create_dir_all(&self.root).map_err(ArtifactError::io("create", &self.root))?;
        let staging = Staging::new(&self.root)?;
        let spool_dir = staging.0.join("spool");
        fs::create_dir(&spool_dir).map_err(ArtifactError::io("create", &spool_dir))?;
        let mut tree = Tree::new(UPLOADED);
        crate::untar::read_archive(archive, &mut tree, &Spool::new(&spool_dir), limits)?;
        let entries = tree.finish()?;

        let tar = staging.0.join("canonical.tar");
        let file = File::create_new(&tar).map_err(ArtifactError::io("create", &tar))?;
        let mut capped = Capped {
            inner: Hashing::new(BufWriter::new(file)),
            left: limits.max_unpacked_bytes,
            over: false,
        };
        if let Err(e) = write_tar(&entries, &mut capped, UPLOADED) {
            return Err(if capped.over {
                canonical_too_large(limits)
            } else {
                e
            });
        }
        let (digest, out) = capped.inner.finish();
        out.into_inner()
            .map_err(|e| e.into_error())
            .and_then(|f| f.set_permissions(Permissions::from_mode(0o444)))
            .map_err(ArtifactError::io("write", &tar))?;
        let hex = digest_hex(&digest)?;
        let dest = self.root.join(hex);
        if dest.is_dir() {
            return Ok(digest);
        }
        // Unpacked in staging first: a tree that cannot be made leaves nothing in the store.
        let tree_dir = staging.0.join("tree");
        fs::create_dir(&tree_dir).map_err(ArtifactError::io("create", &tree_dir))?;
        unpack(&entries, &tree_dir)?;
        // One sync of the file system for the canonical tar, every file and directory:
        // durable before it is published (and before a release names it), in one flush
        // rather than one per file and directory (100,000 entries were 100,000 fsyncs).
        File::open(&staging.0)
            .and_then(|d| nix::unistd::syncfs(&d).map_err(std::io::Error::from))
            .map_err(ArtifactError::io("sync", &staging.0))?;
        let _held = self.hold();
        if dest.is_dir() {
            return Ok(digest);
        }
        let archive_dest = self.root.join(format!("{hex}.tar"));
        fs::rename(&tar, &archive_dest)
            .map_err(ArtifactError::io("move into place", &archive_dest))?;
        match fs::rename(&tree_dir, &dest) {
            Ok(()) => {}
            // Another import of the same content won the race; theirs is identical.
            Err(_) if dest.is_dir() => return Ok(digest),
            Err(e) => {
                let _ = fs::remove_file(&archive_dest);
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

    /// Opens a stored canonical archive to stream it (e.g. to another Baton).
    pub fn open_archive(&self, digest: &str) -> Result<File, ArtifactError> {
        let path = self.archive_path(digest)?;
        File::open(&path).map_err(ArtifactError::io("open", &path))
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
}

/// The canonical tar as it is written, within `[artifacts] max_unpacked_bytes`: it holds a
/// header (two for a long path) for every directory a path implies, bytes the upload itself
/// never contained, so the upload's own size does not bound it.
struct Capped<W> {
    inner: W,
    left: u64,
    over: bool,
}

impl<W: Write> Write for Capped<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.len() as u64 > self.left {
            self.over = true;
            return Err(std::io::Error::other("the unpacked-size limit is reached"));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn canonical_too_large(limits: &ImportLimits) -> ArtifactError {
    ArtifactError::TooLarge {
        artifact: UPLOADED.to_owned(),
        what: format!(
            "a canonical archive of more than {} bytes (every directory, even one only \
             implied by a path, takes a header)",
            limits.max_unpacked_bytes
        ),
        limit: format!("{} bytes", limits.max_unpacked_bytes),
        key: "max_unpacked_bytes",
    }
}

/// A private `.import-*` directory under the root for one import (spooled files, the
/// canonical tar, the tree), removed when dropped; one left by a crash is swept at startup
/// by [`ArtifactStore::remove_stale_imports`].
struct Staging(PathBuf);

impl Staging {
    fn new(root: &Path) -> Result<Staging, ArtifactError> {
        let dir = tempfile::Builder::new()
            .prefix(".import-")
            .tempdir_in(root)
            .map_err(ArtifactError::io("create a temporary directory in", root))?;
        Ok(Staging(dir.keep()))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = remove_tree(&self.0);
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
            Node::File { source, exec, .. } => {
                let mode = if *exec { 0o555 } else { 0o444 };
                // Each spooled file belongs to one entry: move it (the import syncs them all). The
                // tree is fresh and its paths unique, so nothing is replaced or linked through.
                fs::rename(source, &dest)
                    .and_then(|()| fs::set_permissions(&dest, Permissions::from_mode(mode)))
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
    }
    fs::set_permissions(dir, Permissions::from_mode(0o555))
        .map_err(ArtifactError::io("protect", dir))
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
    use crate::canonical::digest;
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

    fn read_archive(store: &ArtifactStore, digest: &str) -> Vec<u8> {
        let mut data = Vec::new();
        store
            .open_archive(digest)
            .unwrap()
            .read_to_end(&mut data)
            .unwrap();
        data
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

        let d = f
            .store
            .import(canonical.as_slice(), &ImportLimits::NONE)
            .unwrap();
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
        assert_eq!(read_archive(&f.store, &d), canonical);

        // Again, and from the tar.gz form: same digest, no error, nothing left behind.
        assert_eq!(
            f.store
                .import(canonical.as_slice(), &ImportLimits::NONE)
                .unwrap(),
            d
        );
        assert_eq!(
            f.store
                .import(tar_gz_of(&src).as_slice(), &ImportLimits::NONE)
                .unwrap(),
            d
        );
        let names: Vec<_> = fs::read_dir(f.store.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names.len(), 2, "only <hex>/ and <hex>.tar: {names:?}");
    }

    /// A release with a long (GNU long-name) path, an empty file and a 70 kB file.
    fn golden_dir(dir: &Path) {
        sample_dir(dir);
        let long = "x".repeat(150);
        fs::create_dir_all(dir.join("deep").join(&long)).unwrap();
        fs::write(dir.join("deep").join(&long).join(&long), vec![7u8; 70_000]).unwrap();
        fs::write(dir.join("empty"), b"").unwrap();
    }

    #[test]
    fn streaming_keeps_the_digests_of_stored_artifacts() {
        // Computed by the in-memory implementation this streaming one replaced: a digest
        // already recorded in a database must name the same content forever.
        const GOLDEN: &str =
            "sha256:6f93d9e897fb4fa3c129dcd851da527f1d5de6625160969c5aeb5073aec0858e";
        let f = Fixture::new();
        let src = f.tmp.path().join("src");
        golden_dir(&src);
        assert_eq!(digest(&pack(&src).unwrap()), GOLDEN, "packed in memory");
        let mut streamed = Vec::new();
        assert_eq!(crate::pack_to(&src, &mut streamed).unwrap(), GOLDEN);
        assert_eq!(digest(&streamed), GOLDEN, "packed as a stream");
        let d = f
            .store
            .import(tar_gz_of(&src).as_slice(), &ImportLimits::NONE)
            .unwrap();
        assert_eq!(d, GOLDEN, "imported from a tar.gz");
        assert_eq!(read_archive(&f.store, &d), streamed);
        let long = "x".repeat(150);
        let stored = f.store.path(&d).join("deep").join(&long).join(&long);
        assert_eq!(fs::read(stored).unwrap(), vec![7u8; 70_000]);
    }

    #[test]
    fn a_refused_upload_leaves_nothing_behind() {
        let f = Fixture::new();
        let limits = ImportLimits {
            max_entries: 1,
            ..ImportLimits::NONE
        };
        let src = f.tmp.path().join("src");
        sample_dir(&src);
        let e = f
            .store
            .import(pack(&src).unwrap().as_slice(), &limits)
            .unwrap_err();
        assert!(matches!(e, ArtifactError::TooLarge { .. }), "{e}");
        assert_eq!(fs::read_dir(f.store.root()).unwrap().count(), 0);
        let e = f.store.import(&b""[..], &ImportLimits::NONE).unwrap_err();
        assert!(matches!(e, ArtifactError::Truncated { .. }), "{e}");
        assert_eq!(fs::read_dir(f.store.root()).unwrap().count(), 0);
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
        let e = f
            .store
            .import(tar_gz_with_raw_name("../x").as_slice(), &ImportLimits::NONE)
            .unwrap_err();
        assert!(
            e.to_string().contains("uploaded archive") && e.to_string().contains("`..`"),
            "{e}"
        );
        assert!(!f.tmp.path().join("x").exists());
        assert_eq!(
            fs::read_dir(f.store.root()).unwrap().count(),
            0,
            "a refused import leaves nothing behind"
        );
    }

    #[test]
    fn stale_imports_are_swept_and_stored_artifacts_kept() {
        let f = Fixture::new();
        assert_eq!(f.store.remove_stale_imports().unwrap(), 0, "no root yet");
        let src = f.tmp.path().join("src");
        sample_dir(&src);
        let d = f
            .store
            .import(pack(&src).unwrap().as_slice(), &ImportLimits::NONE)
            .unwrap();
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
        let d = f
            .store
            .import(pack(&src).unwrap().as_slice(), &ImportLimits::NONE)
            .unwrap();
        remove_tree(&f.store.path(&d)).unwrap();
        assert!(!f.store.contains(&d));
    }
}
