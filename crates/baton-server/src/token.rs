//! The API's bearer tokens, each created once with mode 0600 in the data directory: the API
//! token (everything) and the dashboard's read-only token (`GET` only), which `baton
//! dashboard` puts in the URL it prints, so that a leaked dashboard URL cannot change anything.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The token's file name inside the data directory.
pub const TOKEN_FILE: &str = "token";
/// The read-only token's file name inside the data directory.
pub const READ_TOKEN_FILE: &str = "read-token";

/// Reads the API token, creating it (32 random bytes, hex) on first start.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    load_or_create_file(data_dir, TOKEN_FILE)
}

/// Reads the dashboard's read-only token, creating it on first start.
pub fn load_or_create_read(data_dir: &Path) -> anyhow::Result<String> {
    load_or_create_file(data_dir, READ_TOKEN_FILE)
}

fn load_or_create_file(data_dir: &Path, name: &str) -> anyhow::Result<String> {
    if let Some(t) = read_file(data_dir, name) {
        return Ok(t);
    }
    let token = random_hex()?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(data_dir.join(name))?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// Replaces the read-only token with a new one (written beside, then renamed over it, so a
/// crash leaves the old one or the new one) and returns it.
pub fn rotate_read(data_dir: &Path) -> anyhow::Result<String> {
    let token = random_hex()?;
    let temp = data_dir.join(format!("{READ_TOKEN_FILE}.new"));
    let _ = std::fs::remove_file(&temp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&temp, data_dir.join(READ_TOKEN_FILE))?;
    Ok(token)
}

/// 32 random bytes, hex.
fn random_hex() -> std::io::Result<String> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads the token of the daemon using `data_dir`, if it has started once.
pub fn read_token(data_dir: &Path) -> Option<String> {
    read_file(data_dir, TOKEN_FILE)
}

fn read_file(data_dir: &Path, name: &str) -> Option<String> {
    let t = std::fs::read_to_string(data_dir.join(name)).ok()?;
    let t = t.trim().to_string();
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_token_is_its_own_kept_and_rotated_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let admin = load_or_create(dir.path()).unwrap();
        let read = load_or_create_read(dir.path()).unwrap();
        assert_ne!(admin, read);
        assert_eq!(load_or_create_read(dir.path()).unwrap(), read, "kept");
        let rotated = rotate_read(dir.path()).unwrap();
        assert_ne!(rotated, read);
        assert_eq!(load_or_create_read(dir.path()).unwrap(), rotated);
        assert_eq!(
            read_token(dir.path()).unwrap(),
            admin,
            "the API token stays"
        );
        let mode = std::fs::metadata(dir.path().join(READ_TOKEN_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
