//! [`ImportLimits`]: how much one artifact may unpack to (`[artifacts]` in baton.toml).

/// Bounds on one artifact, checked while it streams in, before anything is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportLimits {
    /// Largest uncompressed tar stream, in bytes (hard links counted as the copies they
    /// become): `[artifacts] max_unpacked_bytes`.
    pub max_unpacked_bytes: u64,
    /// Most entries (files, directories, links): `[artifacts] max_entries`.
    pub max_entries: u64,
}

impl ImportLimits {
    /// No bound: for packing the user's own artifact on their machine.
    pub const NONE: ImportLimits = ImportLimits {
        max_unpacked_bytes: u64::MAX,
        max_entries: u64::MAX,
    };
}
