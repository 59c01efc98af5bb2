//! The API bearer token: created once with mode 0600 in the data directory.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The token's file name inside the data directory.
pub const TOKEN_FILE: &str = "token";

/// Reads the token, creating it (32 random bytes, hex) on first start.
pub fn load_or_create(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join(TOKEN_FILE);
    if let Some(t) = read_token(data_dir) {
        return Ok(t);
    }
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token.as_bytes())?;
    f.sync_all()?;
    Ok(token)
}

/// Reads the token of the daemon using `data_dir`, if it has started once.
pub fn read_token(data_dir: &Path) -> Option<String> {
    let t = std::fs::read_to_string(data_dir.join(TOKEN_FILE)).ok()?;
    let t = t.trim().to_string();
    (!t.is_empty()).then_some(t)
}
