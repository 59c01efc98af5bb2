//! Reading a tar stream (from a `.tar.gz` or an upload) into a [`Tree`], re-canonicalizing it.
//!
//! The stream is read once, in order, in constant memory: each file's content is spooled to
//! its own file (the canonical order is sorted, the archive's is not), the uncompressed bytes
//! and the entries are counted against [`ImportLimits`], and the archive must end with its
//! end-of-archive marker, so a cut-short upload is never stored as a release.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::ImportLimits;
use crate::artifact_error::ArtifactError;
use crate::canonical::{Node, Tree};
use crate::spool::Spool;
use crate::tar_ext::{Extensions, MAX_NAME_BYTES, MAX_PAX_BYTES, read_extension};

/// The tar block size; the end-of-archive marker is two zero blocks.
const BLOCK: usize = 512;

/// Reads a plain or gzipped tar stream into `tree`, spooling files into `spool`, within
/// `limits`. An empty stream, or one without the end-of-archive marker, is refused.
pub(crate) fn read_archive(
    mut stream: impl Read,
    tree: &mut Tree,
    spool: &Spool,
    limits: &ImportLimits,
) -> Result<(), ArtifactError> {
    let mut magic = [0u8; 2];
    let got = read_up_to(&mut stream, &mut magic).map_err(|e| corrupt(tree.label(), e))?;
    if got == 0 {
        return Err(truncated(tree.label(), "is empty"));
    }
    let stream = std::io::Cursor::new(magic[..got].to_vec()).chain(stream);
    let meter = Rc::new(Meter::default());
    if magic[..got] == [0x1f, 0x8b] {
        let gz = flate2::read::GzDecoder::new(stream);
        read_tar(
            Metered::new(gz, &meter, limits),
            tree,
            spool,
            limits,
            &meter,
        )
    } else {
        read_tar(
            Metered::new(stream, &meter, limits),
            tree,
            spool,
            limits,
            &meter,
        )
    }
}

/// What the [`Metered`] reader saw, shared with the code reading the tar through it.
#[derive(Default)]
struct Meter {
    bytes: Cell<u64>,
    over: Cell<bool>,
    eof: Cell<bool>,
}

impl Meter {
    /// Any failure once the meter tripped is the limit's doing, whatever the tar reader says.
    fn blame(&self, tree: &Tree, limits: &ImportLimits, e: ArtifactError) -> ArtifactError {
        if !self.over.get() {
            return e;
        }
        ArtifactError::TooLarge {
            artifact: tree.label().to_owned(),
            what: format!("more than {} bytes unpacked", limits.max_unpacked_bytes),
            limit: format!("{} bytes", limits.max_unpacked_bytes),
            key: "max_unpacked_bytes",
        }
    }
}

/// The uncompressed stream, counted against the unpacked-size limit.
struct Metered<R> {
    inner: R,
    meter: Rc<Meter>,
    max: u64,
}

impl<R> Metered<R> {
    fn new(inner: R, meter: &Rc<Meter>, limits: &ImportLimits) -> Metered<R> {
        Metered {
            inner,
            meter: meter.clone(),
            max: limits.max_unpacked_bytes,
        }
    }
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.meter.eof.set(true);
        }
        let total = self.meter.bytes.get().saturating_add(n as u64);
        self.meter.bytes.set(total);
        if total > self.max {
            self.meter.over.set(true);
            return Err(std::io::Error::other("the unpacked-size limit is reached"));
        }
        Ok(n)
    }
}

fn read_tar<R: Read>(
    stream: Metered<R>,
    tree: &mut Tree,
    spool: &Spool,
    limits: &ImportLimits,
    meter: &Meter,
) -> Result<(), ArtifactError> {
    let fail = |tree: &Tree, e| meter.blame(tree, limits, e);
    tree.set_max_entries(limits.max_entries);
    let mut archive = tar::Archive::new(stream);
    // Raw: GNU long names and pax headers come to us, so their size is checked before they
    // are read into memory (the tar crate would read any size).
    let entries = archive
        .entries()
        .map_err(|e| fail(tree, corrupt(tree.label(), e)))?
        .raw(true);
    let mut ext = Extensions::default();
    let mut count = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(|e| fail(tree, corrupt(tree.label(), e)))?;
        let kind = entry.header().entry_type();
        let slot = match kind {
            tar::EntryType::GNULongName => Some((&mut ext.name, MAX_NAME_BYTES)),
            tar::EntryType::GNULongLink => Some((&mut ext.link, MAX_NAME_BYTES)),
            tar::EntryType::XHeader => Some((&mut ext.pax, MAX_PAX_BYTES)),
            // Archive-wide metadata says nothing about content; its data is skipped.
            tar::EntryType::XGlobalHeader => continue,
            _ => None,
        };
        if let Some((slot, cap)) = slot {
            *slot = Some(read_extension(&mut entry, cap, tree).map_err(|e| fail(tree, e))?);
            continue;
        }
        // The tree counts its nodes; this counts headers too (a directory repeated adds none).
        count += 1;
        if count > limits.max_entries {
            return Err(tree.too_many_entries());
        }
        let names = std::mem::take(&mut ext).resolve(&entry, tree)?;
        if let Err(e) = read_entry(entry, names, tree, spool, limits, meter) {
            return Err(fail(tree, e));
        }
    }
    end_of_archive(archive.into_inner(), tree, limits, meter)
}

/// Checks the end-of-archive marker after the last entry and reads the stream to its end.
fn end_of_archive<R: Read>(
    mut rest: Metered<R>,
    tree: &Tree,
    limits: &ImportLimits,
    meter: &Meter,
) -> Result<(), ArtifactError> {
    let fail = |tree: &Tree, e| meter.blame(tree, limits, e);
    // The reader stops at the first zero block, or quietly at the end of the stream: only
    // the first is a complete archive.
    if meter.eof.get() {
        return Err(truncated(
            tree.label(),
            "ends without the end-of-archive marker (two zero blocks)",
        ));
    }
    let mut second = [0u8; BLOCK];
    let got =
        read_up_to(&mut rest, &mut second).map_err(|e| fail(tree, corrupt(tree.label(), e)))?;
    if got < BLOCK {
        return Err(truncated(
            tree.label(),
            "ends after the first of the two end-of-archive zero blocks",
        ));
    }
    if second.iter().any(|b| *b != 0) {
        return Err(corrupt(
            tree.label(),
            std::io::Error::other("a lone zero block is followed by more data"),
        ));
    }
    // Record padding, and the gzip trailer whose checksum is only verified at the end.
    std::io::copy(&mut rest, &mut std::io::sink())
        .map_err(|e| fail(tree, corrupt(tree.label(), e)))?;
    Ok(())
}

/// Adds one entry; hard links to earlier files become copies; devices and fifos are
/// refused; paths are checked by [`Tree::insert`].
fn read_entry<R: Read>(
    mut entry: tar::Entry<'_, R>,
    (raw, link): (Vec<u8>, Option<Vec<u8>>),
    tree: &mut Tree,
    spool: &Spool,
    limits: &ImportLimits,
    meter: &Meter,
) -> Result<(), ArtifactError> {
    // Raw bytes, not `entry.path()`: we do our own checks rather than trust a sanitizer.
    let name = match String::from_utf8(raw) {
        Ok(name) => name,
        Err(e) => {
            let shown = String::from_utf8_lossy(e.as_bytes()).into_owned();
            return Err(tree.refuse(shown, "has a name that is not UTF-8"));
        }
    };
    let path = PathBuf::from(&name);
    let node = match entry.header().entry_type() {
        tar::EntryType::Directory => Node::Dir,
        tar::EntryType::Regular | tar::EntryType::Continuous => {
            let mode = entry
                .header()
                .mode()
                .map_err(|e| corrupt(tree.label(), e))?;
            let expected = entry.size();
            let (source, file) = spool.create()?;
            let mut out = BufWriter::new(file);
            let size = std::io::copy(&mut entry, &mut out).map_err(|e| corrupt(tree.label(), e))?;
            if size != expected {
                return Err(truncated(
                    tree.label(),
                    &format!("ends inside {name:?} ({size} of its {expected} bytes)"),
                ));
            }
            finish_spooled(out, &source)?;
            Node::File {
                source,
                size,
                exec: mode & 0o111 != 0,
            }
        }
        tar::EntryType::Symlink => Node::Symlink {
            target: link_name(link, tree, &name)?,
        },
        tar::EntryType::Link => {
            let target = link_name(link, tree, &name)?;
            let Some(Node::File { source, size, exec }) =
                tree.file(std::path::Path::new(&target))?.cloned()
            else {
                return Err(tree.refuse(
                    name,
                    format!("is a hard link to {target:?}, which is not an earlier file"),
                ));
            };
            // A copy unpacks to as many bytes again: count them.
            let total = meter.bytes.get().saturating_add(size);
            meter.bytes.set(total);
            if total > limits.max_unpacked_bytes {
                meter.over.set(true);
                return Err(corrupt(tree.label(), std::io::Error::other("limit")));
            }
            let (copy, file) = spool.create()?;
            let mut out = BufWriter::new(file);
            File::open(&source)
                .and_then(|mut f| std::io::copy(&mut f, &mut out))
                .map_err(ArtifactError::io("copy", &source))?;
            finish_spooled(out, &copy)?;
            Node::File {
                source: copy,
                size,
                exec,
            }
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            return Err(tree.refuse(name, "is a device file"));
        }
        tar::EntryType::Fifo => return Err(tree.refuse(name, "is a fifo")),
        other => {
            return Err(tree.refuse(name, format!("has unsupported tar entry type {other:?}")));
        }
    };
    tree.insert(&path, node)
}

/// Flushes a spooled file: it is renamed into the stored tree as it is. Not synced one by
/// one: the import syncs the whole file system once, before the tree is published.
fn finish_spooled(out: BufWriter<File>, path: &Path) -> Result<(), ArtifactError> {
    out.into_inner()
        .map(drop)
        .map_err(|e| ArtifactError::io("write", path)(e.into_error()))
}

/// Reads until `buf` is full or the stream ends; returns how many bytes were read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub(crate) fn corrupt(label: &str, e: std::io::Error) -> ArtifactError {
    ArtifactError::Corrupt {
        artifact: label.to_owned(),
        detail: e.to_string(),
    }
}

fn truncated(label: &str, detail: &str) -> ArtifactError {
    ArtifactError::Truncated {
        artifact: label.to_owned(),
        detail: detail.to_owned(),
    }
}

fn link_name(link: Option<Vec<u8>>, tree: &Tree, name: &str) -> Result<String, ArtifactError> {
    match link {
        Some(bytes) => String::from_utf8(bytes)
            .map_err(|_| tree.refuse(name, "is a link whose target is not UTF-8")),
        None => Err(tree.refuse(name, "is a link without a target")),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use std::io::{Read, Write};

    use super::{Spool, read_archive};
    use crate::canonical::Tree;
    use crate::fixtures::{sample_dir, tar_gz_of, tar_gz_with_raw_name};
    use crate::{ArtifactError, ImportLimits, digest, pack};

    /// Reads `archive` as an upload within `limits`, spooling into a temporary directory.
    fn read(archive: &[u8], limits: ImportLimits) -> Result<Tree, ArtifactError> {
        let spool = tempfile::tempdir().unwrap();
        let mut tree = Tree::new("uploaded archive");
        read_archive(archive, &mut tree, &Spool::new(spool.path()), &limits)?;
        Ok(tree)
    }

    /// A plain tar of `n` small files, with its end-of-archive marker.
    fn tar_of_files(n: usize) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for i in 0..n {
            let mut h = tar::Header::new_gnu();
            h.set_mode(0o644);
            h.set_size(1);
            b.append_data(&mut h, format!("f{i}"), &b"x"[..]).unwrap();
        }
        b.into_inner().unwrap()
    }

    /// A gzip bomb: `mib` MiB of zeros in one file, compressed as it is generated.
    fn gzip_bomb(mib: u64) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(mib << 20);
        b.append_data(&mut h, "zeros", std::io::repeat(0).take(mib << 20))
            .unwrap();
        b.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn the_entry_limit_refuses_one_more_entry_naming_the_key() {
        let limits = ImportLimits {
            max_entries: 3,
            ..ImportLimits::NONE
        };
        assert!(read(&tar_of_files(3), limits).is_ok(), "at the limit");
        let e = read(&tar_of_files(4), limits).unwrap_err();
        assert!(
            matches!(
                e,
                ArtifactError::TooLarge {
                    key: "max_entries",
                    ..
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("more than 3 entries") && msg.contains("[artifacts] max_entries"),
            "{msg}"
        );
    }

    #[test]
    fn the_unpacked_size_limit_stops_a_gzip_bomb_naming_the_key() {
        let bomb = gzip_bomb(16);
        assert!(bomb.len() < 1 << 20, "a bomb: {} bytes", bomb.len());
        let limits = ImportLimits {
            max_unpacked_bytes: 4 << 20,
            ..ImportLimits::NONE
        };
        let e = read(&bomb, limits).unwrap_err();
        assert!(
            matches!(
                e,
                ArtifactError::TooLarge {
                    key: "max_unpacked_bytes",
                    ..
                }
            ),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("more than 4194304 bytes unpacked")
                && msg.contains("[artifacts] max_unpacked_bytes"),
            "{msg}"
        );
        // Under a roomier limit the same archive is accepted: the limit is what refused it.
        let roomy = ImportLimits {
            max_unpacked_bytes: 17 << 20,
            ..ImportLimits::NONE
        };
        assert!(read(&bomb, roomy).is_ok());
    }

    #[test]
    fn a_tar_cut_at_an_entry_boundary_is_refused() {
        let whole = tar_of_files(2);
        assert!(read(&whole, ImportLimits::NONE).is_ok());
        // Without the two zero blocks, as if the upload stopped between two entries.
        let cut = &whole[..whole.len() - 1024];
        let e = read(cut, ImportLimits::NONE).unwrap_err();
        assert!(matches!(e, ArtifactError::Truncated { .. }), "{e}");
        assert!(
            e.to_string().contains("end-of-archive")
                && e.to_string().contains("baton release create"),
            "{e}"
        );
        // One zero block only.
        let e = read(&whole[..whole.len() - 512], ImportLimits::NONE).unwrap_err();
        assert!(matches!(e, ArtifactError::Truncated { .. }), "{e}");
        // The same cut, gzipped.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(cut).unwrap();
        let e = read(&gz.finish().unwrap(), ImportLimits::NONE).unwrap_err();
        assert!(matches!(e, ArtifactError::Truncated { .. }), "{e}");
        // And inside an entry's content.
        let e = read(&whole[..512 + 1], ImportLimits::NONE).unwrap_err();
        assert!(
            matches!(
                e,
                ArtifactError::Truncated { .. } | ArtifactError::Corrupt { .. }
            ),
            "{e}"
        );
    }

    /// A tar whose one file is named by a pax `path` record (as Go and Python write them).
    fn tar_with_pax_path(path: &str) -> Vec<u8> {
        let body = format!(" path={path}\n");
        let mut len = body.len();
        len += len.to_string().len();
        let record = format!("{len}{body}");
        let mut b = tar::Builder::new(Vec::new());
        let mut x = tar::Header::new_ustar();
        x.set_entry_type(tar::EntryType::XHeader);
        x.set_size(record.len() as u64);
        b.append_data(&mut x, "PaxHeaders/f", record.as_bytes())
            .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_mode(0o644);
        h.set_size(2);
        b.append_data(&mut h, "short", &b"hi"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[test]
    fn pax_and_gnu_long_names_are_read_and_bounded() {
        let d = "d".repeat(200);
        let long = format!("{d}/{d}/f");
        let tree = read(&tar_with_pax_path(&long), ImportLimits::NONE).unwrap();
        let paths: Vec<_> = tree.finish().unwrap().into_iter().map(|(p, _)| p).collect();
        assert_eq!(paths, [d.clone(), format!("{d}/{d}"), long]);

        // A 2 MiB long-name header is refused before it is read into memory.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(2 << 20);
        b.append_data(&mut h, "././@LongLink", std::io::repeat(b'a').take(2 << 20))
            .unwrap();
        let e = read(&b.into_inner().unwrap(), ImportLimits::NONE).unwrap_err();
        assert!(
            matches!(e, ArtifactError::Refused { .. })
                && e.to_string().contains("extension header")
                && e.to_string().contains("more than 4096"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_upload_is_refused() {
        let e = read(b"", ImportLimits::NONE).unwrap_err();
        assert!(matches!(e, ArtifactError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("is empty"), "{e}");
    }

    #[test]
    fn a_dir_and_its_tar_gz_give_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("release");
        sample_dir(&dir);
        for name in ["app.tar.gz", "app.tgz"] {
            let file = tmp.path().join(name);
            fs::write(&file, tar_gz_of(&dir)).unwrap();
            assert_eq!(pack(&file).unwrap(), pack(&dir).unwrap(), "{name}");
        }
    }

    #[test]
    fn canonical_archive_is_a_fixed_point() {
        let tmp = tempfile::tempdir().unwrap();
        sample_dir(&tmp.path().join("d"));
        let canonical = pack(&tmp.path().join("d")).unwrap();
        fs::write(tmp.path().join("c.tar"), &canonical).unwrap();
        assert_eq!(
            digest(&pack(&tmp.path().join("c.tar")).unwrap()),
            digest(&canonical)
        );
    }

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for (name, why) in [
            ("../x", "`..`"),
            ("a/../../x", "`..`"),
            ("/etc/x", "absolute"),
        ] {
            let file = tmp.path().join("evil.tar.gz");
            fs::write(&file, tar_gz_with_raw_name(name)).unwrap();
            let e = pack(&file).unwrap_err();
            let msg = e.to_string();
            assert!(matches!(e, ArtifactError::Refused { .. }), "{name}: {msg}");
            assert!(
                msg.contains("evil.tar.gz") && msg.contains(why),
                "{name}: {msg}"
            );
        }
    }

    #[test]
    fn corrupt_gzip_names_the_file_and_the_fix() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("broken.tgz");
        fs::write(&file, b"\x1f\x8bthis is not gzip at all").unwrap();
        let e = pack(&file).unwrap_err();
        assert!(matches!(e, ArtifactError::Corrupt { .. }), "{e}");
        assert!(
            e.to_string().contains("broken.tgz") && e.to_string().contains("tar czf"),
            "{e}"
        );
    }

    #[test]
    fn hard_links_become_copies() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o755);
        h.set_size(2);
        b.append_data(&mut h, "bin/a", &b"#!"[..]).unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Link);
        l.set_size(0);
        b.append_link(&mut l, "bin/b", "bin/a").unwrap();
        let linked = b.into_inner().unwrap();

        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("d/bin")).unwrap();
        fs::write(tmp.path().join("d/bin/a"), b"#!").unwrap();
        fs::write(tmp.path().join("d/bin/b"), b"#!").unwrap();
        for f in ["a", "b"] {
            fs::set_permissions(
                tmp.path().join("d/bin").join(f),
                fs::Permissions::from_mode(0o755),
            )
            .unwrap();
        }
        fs::write(tmp.path().join("l.tar"), linked).unwrap();
        assert_eq!(
            pack(&tmp.path().join("l.tar")).unwrap(),
            pack(&tmp.path().join("d")).unwrap()
        );
    }
}
