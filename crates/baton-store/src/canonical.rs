//! The canonical archive: one byte-exact tar for a given content, whatever its source form.
//!
//! Entries sorted by path (bytewise), only directories, regular files and symlinks that stay
//! inside the tree; mtime 0, uid/gid 0, no user or group names; mode 0755 for directories and
//! executables, 0644 otherwise. Same content -> same bytes -> same [`digest`].

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::artifact_error::ArtifactError;

/// Symlink hops followed before a link is judged a loop (the same bound Linux uses).
const MAX_LINK_HOPS: u32 = 40;
/// The longest name of one path component (Linux's `NAME_MAX`): a longer one could never be
/// unpacked, so it is refused as the uploader's error, not failed on as the server's.
pub(crate) const MAX_COMPONENT_BYTES: usize = 255;
/// The most components in one path: every one is a directory of the tree, so this bounds
/// what one short entry can make (a 4096-byte `a/a/a/...` would be 2048 directories).
pub(crate) const MAX_DEPTH: usize = 256;

/// One entry of an artifact tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A directory.
    Dir,
    /// A regular file: where its content is on disk (the walked file, or a spooled copy of
    /// an archive's entry), its size, and whether any execute bit was set. Content is never
    /// held in memory, so an artifact of any size packs in constant memory.
    File {
        source: PathBuf,
        size: u64,
        exec: bool,
    },
    /// A symbolic link with its (relative) target, as written.
    Symlink { target: String },
}

/// An artifact's content: normalized relative paths (`a/b`, no `.`, `..` or trailing `/`)
/// mapped to nodes. A `BTreeMap<String, _>` iterates bytewise, parents before children.
#[derive(Debug)]
pub(crate) struct Tree {
    /// Names the artifact in errors.
    label: String,
    nodes: BTreeMap<String, Node>,
    /// Most nodes, implied parent directories included: `[artifacts] max_entries`.
    max_entries: u64,
}

impl Tree {
    /// An empty tree; `label` names the artifact in errors.
    pub(crate) fn new(label: impl Into<String>) -> Tree {
        Tree {
            label: label.into(),
            nodes: BTreeMap::new(),
            max_entries: u64::MAX,
        }
    }

    /// Bounds the nodes of the tree, counting the directories a deep path implies: a
    /// one-entry archive `a/b/c/f` makes four.
    pub(crate) fn set_max_entries(&mut self, max: u64) {
        self.max_entries = max;
    }

    /// The error for one entry too many.
    pub(crate) fn too_many_entries(&self) -> ArtifactError {
        ArtifactError::TooLarge {
            artifact: self.label.clone(),
            what: format!(
                "more than {} entries (directories implied by paths count)",
                self.max_entries
            ),
            limit: format!("{} entries", self.max_entries),
            key: "max_entries",
        }
    }

    /// Adds a node not yet in the tree, within `max_entries`.
    fn add(&mut self, path: String, node: Node) -> Result<(), ArtifactError> {
        if self.nodes.len() as u64 >= self.max_entries {
            return Err(self.too_many_entries());
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// The error for an entry that cannot be accepted.
    pub(crate) fn refuse(
        &self,
        entry: impl Into<String>,
        reason: impl Into<String>,
    ) -> ArtifactError {
        ArtifactError::Refused {
            artifact: self.label.clone(),
            entry: entry.into(),
            reason: reason.into(),
        }
    }

    /// The artifact's label, for errors raised by readers.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Normalizes a path from a walk or an archive; `None` is the root itself.
    pub(crate) fn normalize(&self, raw: &Path) -> Result<Option<String>, ArtifactError> {
        let shown = || raw.to_string_lossy().into_owned();
        let mut parts = Vec::new();
        for c in raw.components() {
            match c {
                Component::Normal(s) => match s.to_str() {
                    Some(s) if s.len() > MAX_COMPONENT_BYTES => {
                        return Err(self.refuse(
                            shown(),
                            format!("has a name longer than {MAX_COMPONENT_BYTES} bytes"),
                        ));
                    }
                    Some(s) => parts.push(s),
                    None => return Err(self.refuse(shown(), "has a name that is not UTF-8")),
                },
                Component::CurDir => {}
                Component::ParentDir => {
                    return Err(
                        self.refuse(shown(), "contains `..` and would land outside the artifact")
                    );
                }
                Component::RootDir | Component::Prefix(_) => {
                    return Err(self.refuse(shown(), "is an absolute path"));
                }
            }
        }
        if parts.len() > MAX_DEPTH {
            return Err(self.refuse(
                shown(),
                format!("is more than {MAX_DEPTH} directories deep"),
            ));
        }
        Ok((!parts.is_empty()).then(|| parts.join("/")))
    }

    /// Adds an entry at a raw path, creating missing parent directories (archives may omit
    /// them; a walked directory always has them, and both must give the same tree).
    pub(crate) fn insert(&mut self, raw: &Path, node: Node) -> Result<(), ArtifactError> {
        let Some(path) = self.normalize(raw)? else {
            return match node {
                Node::Dir => Ok(()),
                _ => Err(self.refuse(
                    raw.to_string_lossy(),
                    "is the artifact root but not a directory",
                )),
            };
        };
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let parent = &path[..at + i];
            match self.nodes.get(parent) {
                None => self.add(parent.to_owned(), Node::Dir)?,
                Some(Node::Dir) => {}
                // A child under a link would be written through the link when unpacked.
                Some(_) => {
                    return Err(self.refuse(
                        &path,
                        format!("lies under {parent:?}, which is not a directory"),
                    ));
                }
            }
            at += i + 1;
        }
        match (self.nodes.get(&path), &node) {
            (None, _) => self.add(path, node),
            (Some(Node::Dir), Node::Dir) => Ok(()),
            (Some(Node::Dir), _) => {
                Err(self.refuse(path, "is both a directory and a file or link"))
            }
            (Some(_), _) => Err(self.refuse(path, "appears twice")),
        }
    }

    /// The regular file at a raw path, for archives' hard links.
    pub(crate) fn file(&self, raw: &Path) -> Result<Option<&Node>, ArtifactError> {
        let path = self.normalize(raw)?;
        Ok(path
            .and_then(|p| self.nodes.get(&p))
            .filter(|n| matches!(n, Node::File { .. })))
    }

    /// Checks that every symlink resolves inside the tree and returns the entries in order.
    pub(crate) fn finish(self) -> Result<Vec<(String, Node)>, ArtifactError> {
        let Tree { label, nodes, .. } = self;
        let entries: Vec<(String, Node)> = nodes.into_iter().collect();
        let refuse = |entry: &str, reason: String| ArtifactError::Refused {
            artifact: label.clone(),
            entry: entry.to_owned(),
            reason,
        };
        let index = Index::new(&entries);
        let mut steps = 0u64;
        for (path, node) in &entries {
            let Node::Symlink { target } = node else {
                continue;
            };
            let mut dir = index.parent_of(path);
            let mut hops = 0;
            let inside =
                !target.is_empty() && index.resolve(&mut dir, target, &mut hops, &mut steps);
            if steps > MAX_LINK_STEPS {
                return Err(refuse(
                    path,
                    format!(
                        "is one of symlinks that take more than {MAX_LINK_STEPS} steps to \
                         resolve: make them shorter or fewer"
                    ),
                ));
            }
            if !inside {
                return Err(refuse(
                    path,
                    format!(
                        "is a symlink to {target:?}, which points outside the artifact (or loops)"
                    ),
                ));
            }
        }
        Ok(entries)
    }
}

/// Path components walked, across every symlink and hop of one tree, before the check
/// gives up: each target is at most 4096 bytes and followed at most [`MAX_LINK_HOPS`]
/// times, but an archive of many such links would still be slow to check.
const MAX_LINK_STEPS: u64 = 1 << 26;

/// The tree as numbered nodes with a (directory, name) -> child map, so a link target is
/// resolved in time linear in its length: one lookup of one name per component.
struct Index<'a> {
    entries: &'a [(String, Node)],
    children: std::collections::HashMap<(usize, &'a str), usize>,
}

/// The parent number of top-level entries.
const ROOT: usize = usize::MAX;

impl<'a> Index<'a> {
    fn new(entries: &'a [(String, Node)]) -> Index<'a> {
        // Sorted, parents first: a parent is numbered before its children are.
        let mut ids = std::collections::HashMap::with_capacity(entries.len());
        let mut children = std::collections::HashMap::with_capacity(entries.len());
        for (id, (path, _)) in entries.iter().enumerate() {
            let (parent, name) = match path.rfind('/') {
                Some(i) => (ids.get(&path[..i]).copied().unwrap_or(ROOT), &path[i + 1..]),
                None => (ROOT, path.as_str()),
            };
            ids.insert(path.as_str(), id);
            children.insert((parent, name), id);
        }
        Index { entries, children }
    }

    /// The directories from the root to `path`'s parent: each one's number, `None` for one
    /// that is not in the tree (a link target may name a path that does not exist).
    fn parent_of(&self, path: &str) -> Vec<Option<usize>> {
        let mut dir = Vec::new();
        let mut parts: Vec<&str> = path.split('/').collect();
        parts.pop();
        for part in parts {
            let child = self.child(&dir, part);
            dir.push(child);
        }
        dir
    }

    fn child(&self, dir: &[Option<usize>], name: &str) -> Option<usize> {
        let parent = match dir.last() {
            None => ROOT,
            Some(p) => (*p)?,
        };
        self.children.get(&(parent, name)).copied()
    }

    /// Resolves `target` from `dir` (updated in place), following the tree's symlinks;
    /// `false` if it leaves the root, is absolute or loops. Targets that do not exist are
    /// fine: they stay in. Counts components walked in `steps`, stopping past the budget.
    fn resolve(
        &self,
        dir: &mut Vec<Option<usize>>,
        target: &str,
        hops: &mut u32,
        steps: &mut u64,
    ) -> bool {
        if target.starts_with('/') {
            return false;
        }
        for part in target.split('/') {
            *steps += 1;
            if *steps > MAX_LINK_STEPS {
                return false;
            }
            match part {
                "" | "." => {}
                ".." => {
                    if dir.pop().is_none() {
                        return false;
                    }
                }
                name => {
                    let child = self.child(dir, name);
                    if let Some(Node::Symlink { target }) = child.map(|c| &self.entries[c].1) {
                        *hops += 1;
                        if *hops > MAX_LINK_HOPS || !self.resolve(dir, target, hops, steps) {
                            return false;
                        }
                    } else {
                        dir.push(child);
                    }
                }
            }
        }
        true
    }
}

/// Streams the canonical tar of checked entries (from [`Tree::finish`]) into `out`, reading
/// each file from its source; returns `out`. `label` names the artifact in errors.
pub(crate) fn write_tar<W: Write>(
    entries: &[(String, Node)],
    out: W,
    label: &str,
) -> Result<W, ArtifactError> {
    let write_err = |e: std::io::Error| ArtifactError::Write {
        artifact: label.to_owned(),
        source: e,
    };
    let mut b = tar::Builder::new(out);
    for (path, node) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        let written = match node {
            Node::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty())
            }
            Node::File { source, size, exec } => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(if *exec { 0o755 } else { 0o644 });
                h.set_size(*size);
                let file =
                    std::fs::File::open(source).map_err(ArtifactError::io("read", source))?;
                let mut exact = Exact {
                    inner: file.take(*size),
                    left: *size,
                    short: false,
                };
                let appended = b.append_data(&mut h, path, &mut exact);
                // The builder pads after what it read: a short read must never pass.
                if exact.short || exact.left > 0 {
                    return Err(ArtifactError::Changed {
                        path: source.clone(),
                    });
                }
                appended.map_err(write_err)?;
                continue;
            }
            Node::Symlink { target } => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target)
            }
        };
        written.map_err(write_err)?;
    }
    b.into_inner().map_err(write_err)
}

/// A file's first `size` bytes; reading fewer (the file shrank while packed) fails.
struct Exact<R> {
    inner: std::io::Take<R>,
    left: u64,
    short: bool,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            self.short = true;
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A writer that hashes what passes through it, for the digest of a streamed archive.
pub(crate) struct Hashing<W> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Hashing<W> {
    pub(crate) fn new(inner: W) -> Hashing<W> {
        Hashing {
            inner,
            hash: Sha256::new(),
        }
    }

    /// The digest of everything written, and the writer.
    pub(crate) fn finish(self) -> (String, W) {
        (format_digest(&self.hash.finalize()), self.inner)
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// `sha256:<64 hex>` of a canonical archive.
pub fn digest(canonical: &[u8]) -> String {
    format_digest(&Sha256::digest(canonical))
}

fn format_digest(hash: &[u8]) -> String {
    let mut s = String::with_capacity(7 + 64);
    s.push_str("sha256:");
    for byte in hash {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

/// The hex part of a well-formed digest.
pub(crate) fn digest_hex(digest: &str) -> Result<&str, ArtifactError> {
    digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        .ok_or_else(|| ArtifactError::InvalidDigest(digest.to_owned()))
}

/// Builds the canonical archive of a directory or a `.tar.gz`/`.tgz`/`.tar` file in memory.
/// For artifacts of any size, use [`pack_to`].
pub fn pack(path: &Path) -> Result<Vec<u8>, ArtifactError> {
    let mut out = Vec::new();
    pack_to(path, &mut out)?;
    Ok(out)
}

/// Streams the canonical archive of a directory or a `.tar.gz`/`.tgz`/`.tar` file into `out`
/// and returns its digest. Memory stays bounded whatever the size: files are read as they
/// are written, and a tarball's files are spooled to a temporary directory first (the
/// canonical order is sorted, the tarball's is not).
pub fn pack_to(path: &Path, out: impl Write) -> Result<String, ArtifactError> {
    // Follow a link given as the artifact itself (e.g. `current`); links inside are kept.
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ArtifactError::NotFound {
                path: path.to_owned(),
            });
        }
        Err(e) => return Err(ArtifactError::io("read", path)(e)),
    };
    let mut tree = Tree::new(path.display().to_string());
    // Holds a tarball's spooled files until the canonical tar is written from them.
    let spool_dir: tempfile::TempDir;
    if meta.is_dir() {
        crate::walk::walk(path, &mut tree)?;
    } else {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !(name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar")) {
            return Err(ArtifactError::Unsupported {
                path: path.to_owned(),
            });
        }
        let file = std::fs::File::open(path).map_err(ArtifactError::io("open", path))?;
        spool_dir = tempfile::tempdir().map_err(ArtifactError::io(
            "create a temporary directory in",
            std::env::temp_dir(),
        ))?;
        let spool = crate::spool::Spool::new(spool_dir.path());
        crate::untar::read_archive(
            std::io::BufReader::new(file),
            &mut tree,
            &spool,
            &crate::ImportLimits::NONE,
        )?;
    }
    let label = tree.label().to_owned();
    let mut hashing = Hashing::new(out);
    write_tar(&tree.finish()?, &mut hashing, &label)?;
    hashing.flush().map_err(|e| ArtifactError::Write {
        artifact: label,
        source: e,
    })?;
    Ok(hashing.finish().0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file node whose content is not read (the tree's checks never read it).
    fn file(name: &str) -> Node {
        Node::File {
            source: PathBuf::from(name),
            size: 0,
            exec: false,
        }
    }

    fn link(target: &str) -> Node {
        Node::Symlink {
            target: target.into(),
        }
    }

    #[test]
    fn normalize_drops_dots_and_refuses_escapes() {
        let t = Tree::new("t");
        assert_eq!(
            t.normalize(Path::new("./a//b/./c/")).unwrap().as_deref(),
            Some("a/b/c")
        );
        assert_eq!(t.normalize(Path::new("./")).unwrap(), None);
        assert!(
            t.normalize(Path::new("a/../b"))
                .unwrap_err()
                .to_string()
                .contains("`..`")
        );
        assert!(
            t.normalize(Path::new("/etc/passwd"))
                .unwrap_err()
                .to_string()
                .contains("absolute")
        );
        let e = t.normalize(Path::new(&"x".repeat(256))).unwrap_err();
        assert!(e.to_string().contains("longer than 255 bytes"), "{e}");
        assert!(t.normalize(Path::new(&"x".repeat(255))).is_ok());
        let e = t.normalize(Path::new(&"a/".repeat(257))).unwrap_err();
        assert!(
            e.to_string().contains("more than 256 directories deep"),
            "{e}"
        );
        assert!(t.normalize(Path::new(&"a/".repeat(256))).is_ok());
    }

    #[test]
    fn insert_adds_parents_and_refuses_conflicts() {
        let mut t = Tree::new("t");
        t.insert(Path::new("a/b/c"), file("x")).unwrap();
        t.insert(Path::new("a/"), Node::Dir).unwrap();
        assert!(
            t.insert(Path::new("a/b/c"), file("y"))
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        assert!(t.insert(Path::new("a/b"), file("y")).is_err());
        t.insert(Path::new("l"), link("a")).unwrap();
        let e = t.insert(Path::new("l/evil"), file("y")).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        let paths: Vec<_> = t.finish().unwrap().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, ["a", "a/b", "a/b/c", "l"]);
    }

    #[test]
    fn symlinks_must_stay_inside() {
        let check = |entries: &[(&str, Node)]| {
            let mut t = Tree::new("t");
            for (p, n) in entries {
                t.insert(Path::new(p), n.clone()).unwrap();
            }
            t.finish().map(|_| ())
        };
        assert!(check(&[("bin/run", link("../lib/run")), ("lib/run", file("x"))]).is_ok());
        assert!(check(&[("dangling", link("not/there"))]).is_ok());
        assert!(check(&[("up", link(".."))]).is_err());
        assert!(check(&[("abs", link("/etc/passwd"))]).is_err());
        assert!(check(&[("d/e", link("../../x"))]).is_err());
        // Lexically inside, but `sub/r` is the root, so `sub/r/../..` leaves it.
        assert!(check(&[("sub/r", link("..")), ("t", link("sub/r/../.."))]).is_err());
        assert!(
            check(&[("a", link("b")), ("b", link("a"))]).is_err(),
            "loop"
        );
    }

    #[test]
    fn write_tar_is_sorted_and_normalized() {
        let tmp = tempfile::tempdir().unwrap();
        let source = |name: &str, data: &[u8]| {
            let p = tmp.path().join(name);
            std::fs::write(&p, data).unwrap();
            (p, data.len() as u64)
        };
        let mut t = Tree::new("t");
        let (s, size) = source("z", b"#!");
        t.insert(
            Path::new("z"),
            Node::File {
                source: s,
                size,
                exec: true,
            },
        )
        .unwrap();
        for (path, data) in [("a-b", "1"), ("a/b", "2")] {
            let (source, size) = source(&path.replace('/', "_"), data.as_bytes());
            let node = Node::File {
                source,
                size,
                exec: false,
            };
            t.insert(Path::new(path), node).unwrap();
        }
        let bytes = write_tar(&t.finish().unwrap(), Vec::new(), "t").unwrap();
        let mut ar = tar::Archive::new(bytes.as_slice());
        let seen: Vec<(String, u32, u64, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                (
                    path,
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("a".into(), 0o755, 0, 0),
                ("a-b".into(), 0o644, 0, 0),
                ("a/b".into(), 0o644, 0, 0),
                ("z".into(), 0o755, 0, 0),
            ]
        );
    }

    #[test]
    fn digest_format_and_parse() {
        let d = digest(b"");
        assert_eq!(
            d,
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(digest_hex(&d).unwrap().len(), 64);
        assert!(digest_hex("sha256:../../etc").is_err());
        assert!(digest_hex(&d.to_uppercase()).is_err());
    }
}
