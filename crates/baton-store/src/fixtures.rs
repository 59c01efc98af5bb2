//! Test fixtures for the artifact code: sample trees on disk and hand-made archives.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Writes a small release: an executable, a config file, a nested dir and an inner link.
pub(crate) fn sample_dir(dir: &Path) {
    fs::create_dir_all(dir.join("static/css")).unwrap();
    fs::write(dir.join("server"), b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(dir.join("server"), fs::Permissions::from_mode(0o750)).unwrap();
    fs::write(dir.join("config.toml"), b"port = 1\n").unwrap();
    fs::write(dir.join("static/css/site.css"), b"body{}\n").unwrap();
    std::os::unix::fs::symlink("static/css/site.css", dir.join("site.css")).unwrap();
}

/// A gzipped tar of `dir` as a normal tool makes it: real mtimes, uids and modes.
pub(crate) fn tar_gz_of(dir: &Path) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    b.follow_symlinks(false);
    b.append_dir_all(".", dir).unwrap();
    b.into_inner().unwrap().finish().unwrap()
}

/// A gzipped tar with one regular file whose raw header name is `name`, unchecked.
pub(crate) fn tar_gz_with_raw_name(name: &str) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(3);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &b"bad"[..]).unwrap();
    let tar = b.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&tar).unwrap();
    gz.finish().unwrap()
}
