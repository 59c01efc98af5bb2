//! Hostile uploads that the import once accepted or mishandled (review of issue 9): each test
//! failed before its fix and pins the behaviour an operator relies on.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use baton_store::{ArtifactError, ArtifactStore, ImportLimits};

/// A plain tar, built from raw headers (GNU format).
fn tar_of(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data, link) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        match link {
            Some(l) => b.append_link(&mut h, name, l).unwrap(),
            None => b.append_data(&mut h, name, *data).unwrap(),
        }
    }
    b.into_inner().unwrap()
}

/// A plain tar with one symlink whose target is given by a pax `linkpath` record.
fn tar_with_pax_linkpath(target: &str) -> Vec<u8> {
    let body = format!(" linkpath={target}\n");
    let mut len = body.len() + 1;
    len = body.len() + len.to_string().len();
    let record = format!("{len}{body}");
    let mut b = tar::Builder::new(Vec::new());
    let mut x = tar::Header::new_ustar();
    x.set_entry_type(tar::EntryType::XHeader);
    x.set_size(record.len() as u64);
    b.append_data(&mut x, "PaxHeaders/l", record.as_bytes())
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "l", "x").unwrap();
    b.into_inner().unwrap()
}

fn chmod_all_writable(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o755));
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                chmod_all_writable(&e.path());
            }
        }
    }
}

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
    fn left_in_root(&self) -> Vec<String> {
        fs::read_dir(self.store.root())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        chmod_all_writable(self.tmp.path());
    }
}

/// Defect: directories implied by a deep path are not counted against `max_entries` (nor
/// the bytes their canonical headers take against `max_unpacked_bytes`): one tar entry
/// `a/b/c/d/f` stores five entries.
#[test]
fn implied_parent_directories_count_against_max_entries() {
    let f = Fixture::new();
    let limits = ImportLimits {
        max_entries: 2,
        ..ImportLimits::NONE
    };
    let tar = tar_of(&[("a/b/c/d/f", tar::EntryType::Regular, b"x", None)]);
    let got = f.store.import(tar.as_slice(), &limits);
    assert!(
        matches!(
            got,
            Err(ArtifactError::TooLarge {
                key: "max_entries",
                ..
            })
        ),
        "a one-entry tar stored 5 entries under max_entries = 2: {got:?}"
    );
}

/// Defect: the canonical archive holds one header (two for a long path) per implied
/// directory, bytes the upload never contained: a 10 KB tar of one deep file stored a
/// canonical tar of hundreds of KB under a 64 KiB `max_unpacked_bytes`.
#[test]
fn the_canonical_archive_counts_against_max_unpacked_bytes() {
    let f = Fixture::new();
    let limits = ImportLimits {
        max_unpacked_bytes: 64 << 10,
        ..ImportLimits::NONE
    };
    let deep = "d/".repeat(200) + "f";
    let tar = tar_of(&[(&deep, tar::EntryType::Regular, b"x", None)]);
    assert!(
        tar.len() < 16 << 10,
        "the upload itself is small: {}",
        tar.len()
    );
    let got = f.store.import(tar.as_slice(), &limits);
    assert!(
        matches!(
            got,
            Err(ArtifactError::TooLarge {
                key: "max_unpacked_bytes",
                ..
            })
        ),
        "a {}-byte tar stored over 64 KiB: {got:?}",
        tar.len()
    );
    assert_eq!(f.left_in_root(), Vec::<String>::new());
    // Under a roomier limit the same archive is accepted: the limit is what refused it.
    let roomy = ImportLimits {
        max_unpacked_bytes: 1 << 20,
        ..ImportLimits::NONE
    };
    assert!(f.store.import(tar.as_slice(), &roomy).is_ok());
}

/// Defect: a name the tree accepts but the file system cannot create (a component over
/// NAME_MAX, 255 bytes) fails at unpack as an internal I/O error, after the canonical
/// `<hex>.tar` was already moved into the store: it stays there with no tree, forever.
#[test]
fn a_name_the_file_system_refuses_is_a_refusal_and_leaves_nothing() {
    let f = Fixture::new();
    let long = "x".repeat(300);
    let tar = tar_of(&[(&long, tar::EntryType::Regular, b"hello", None)]);
    let e = f
        .store
        .import(tar.as_slice(), &ImportLimits::NONE)
        .unwrap_err();
    assert_eq!(
        f.left_in_root(),
        Vec::<String>::new(),
        "a failed import left files in the store ({e})"
    );
    assert!(
        matches!(e, ArtifactError::Refused { .. }),
        "a bad name is the uploader's error (400), not an internal one (500): {e}"
    );
}
/// Defect: the 4096-byte bound on names is not applied to link targets: a pax `linkpath`
/// of up to 1 MiB is accepted into the tree (and its resolution in `Tree::finish` is
/// quadratic in its length: 40 KB took 31 s in the daemon, 160 KB 459 s).
#[test]
fn a_link_target_longer_than_path_max_is_refused() {
    let f = Fixture::new();
    let target = "a/".repeat(2100) + "x";
    let e = f
        .store
        .import(
            tar_with_pax_linkpath(&target).as_slice(),
            &ImportLimits::NONE,
        )
        .unwrap_err();
    assert!(
        matches!(e, ArtifactError::Refused { .. }),
        "a 4201-byte link target should be refused like a 4201-byte path: {e}"
    );
}
