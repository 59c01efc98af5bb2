//! Whose containers are whose: each data directory (the controller's, or an agent's) has an
//! owner id in its `owner` file, made at first use; its containers carry it as a label. Two
//! Batons on one engine, or a controller and an agent on one machine, never adopt or remove
//! each other's containers.

use std::collections::HashSet;
use std::io;
use std::path::Path;

use super::{Docker, DockerError, list_owned};

/// The owner id of the data directory `dir` (`dir/owner`, 12 hex digits), made if absent.
pub fn owner_id(dir: &Path) -> io::Result<String> {
    let path = dir.join("owner");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id: String = (0..12)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).expect("a hex digit"))
        .collect();
    // Written whole or not at all: a torn id would orphan every container of the old one.
    let tmp = dir.join("owner.tmp");
    std::fs::write(&tmp, format!("{id}\n"))?;
    std::fs::rename(&tmp, &path)?;
    Ok(id)
}

/// Removes `owner`'s containers whose instance (their `baton.instance` label) is not in
/// `wanted`: what a crash between a container's start and its record, or a failed stop, left
/// behind. A container that cannot be removed is logged and left for the next sweep.
pub async fn remove_orphans(
    docker: &Docker,
    owner: &str,
    wanted: &HashSet<String>,
) -> Result<(), DockerError> {
    for c in list_owned(docker, owner).await? {
        if wanted.contains(&c.instance) {
            continue;
        }
        tracing::warn!(container = %c.id, instance = %c.instance, "removing an orphaned container");
        if let Err(e) = c.remove(docker).await {
            tracing::error!(container = %c.id, error = %e, "cannot remove an orphaned container");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let id = owner_id(dir.path()).unwrap();
        assert_eq!(id.len(), 12);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()), "{id}");
        assert_eq!(owner_id(dir.path()).unwrap(), id);
        assert!(!dir.path().join("owner.tmp").exists());
    }
}
