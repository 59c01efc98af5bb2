//! Reading a tar stream (from a `.tar.gz` or an upload) into a [`Tree`], re-canonicalizing it.

use std::io::Read;

use crate::artifact_error::ArtifactError;
use crate::canonical::{Node, Tree};

/// Adds every entry of the tar stream to `tree`. Hard links to earlier files become copies;
/// devices and fifos are refused; paths are checked by [`Tree::insert`].
pub(crate) fn read(stream: impl Read, tree: &mut Tree) -> Result<(), ArtifactError> {
    let corrupt = |label: &str, e: std::io::Error| ArtifactError::Corrupt {
        artifact: label.to_owned(),
        detail: e.to_string(),
    };
    let mut archive = tar::Archive::new(stream);
    let entries = archive.entries().map_err(|e| corrupt(tree.label(), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| corrupt(tree.label(), e))?;
        // Raw bytes, not `entry.path()`: we do our own checks rather than trust a sanitizer.
        let raw = entry.path_bytes().into_owned();
        let Ok(name) = String::from_utf8(raw) else {
            return Err(tree.refuse(
                String::from_utf8_lossy(&entry.path_bytes()),
                "has a name that is not UTF-8",
            ));
        };
        let path = std::path::PathBuf::from(&name);
        let kind = entry.header().entry_type();
        let node = match kind {
            tar::EntryType::Directory => Node::Dir,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let exec = entry
                    .header()
                    .mode()
                    .map_err(|e| corrupt(tree.label(), e))?
                    & 0o111
                    != 0;
                let mut data = Vec::new();
                entry
                    .read_to_end(&mut data)
                    .map_err(|e| corrupt(tree.label(), e))?;
                Node::File { data, exec }
            }
            tar::EntryType::Symlink => Node::Symlink {
                target: link_name(&entry, tree, &name)?,
            },
            tar::EntryType::Link => {
                let target = link_name(&entry, tree, &name)?;
                match tree.file(std::path::Path::new(&target))? {
                    Some(file) => file.clone(),
                    None => {
                        return Err(tree.refuse(
                            name,
                            format!("is a hard link to {target:?}, which is not an earlier file"),
                        ));
                    }
                }
            }
            // Archive-wide metadata (pax global headers) says nothing about content.
            tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Char | tar::EntryType::Block => {
                return Err(tree.refuse(name, "is a device file"));
            }
            tar::EntryType::Fifo => return Err(tree.refuse(name, "is a fifo")),
            other => {
                return Err(tree.refuse(name, format!("has unsupported tar entry type {other:?}")));
            }
        };
        tree.insert(&path, node)?;
    }
    Ok(())
}

fn link_name<R: Read>(
    entry: &tar::Entry<'_, R>,
    tree: &Tree,
    name: &str,
) -> Result<String, ArtifactError> {
    match entry.link_name_bytes() {
        Some(bytes) => String::from_utf8(bytes.into_owned())
            .map_err(|_| tree.refuse(name, "is a link whose target is not UTF-8")),
        None => Err(tree.refuse(name, "is a link without a target")),
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    use crate::fixtures::{sample_dir, tar_gz_of, tar_gz_with_raw_name};
    use crate::{ArtifactError, digest, pack};

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
