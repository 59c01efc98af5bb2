//! The tar extension headers Baton reads itself, so each is sized before it is read into
//! memory: GNU long names and long link targets, and pax records.

use std::io::Read;

use crate::artifact_error::ArtifactError;
use crate::canonical::Tree;
use crate::untar::corrupt;

/// The longest path or link target accepted (Linux's `PATH_MAX`).
pub(crate) const MAX_NAME_BYTES: u64 = 4096;
/// The largest pax header accepted: names and a few numbers need far less.
pub(crate) const MAX_PAX_BYTES: u64 = 1 << 20;

/// GNU long names and pax records read before the entry they describe.
#[derive(Default)]
pub(crate) struct Extensions {
    pub(crate) name: Option<Vec<u8>>,
    pub(crate) link: Option<Vec<u8>>,
    pub(crate) pax: Option<Vec<u8>>,
}

impl Extensions {
    /// The entry's path and link target: pax records first, then GNU long names, then the
    /// header. A pax `size` other than the header's is refused: in raw mode the reader
    /// frames the data by the header's size.
    pub(crate) fn resolve<R: Read>(
        self,
        entry: &tar::Entry<'_, R>,
        tree: &Tree,
    ) -> Result<(Vec<u8>, Option<Vec<u8>>), ArtifactError> {
        let strip = |mut v: Vec<u8>| {
            while v.last() == Some(&0) {
                v.pop();
            }
            v
        };
        let mut name = self
            .name
            .map(strip)
            .unwrap_or_else(|| entry.header().path_bytes().into_owned());
        let mut link = self
            .link
            .map(strip)
            .or_else(|| entry.header().link_name_bytes().map(|l| l.into_owned()));
        for record in tar::PaxExtensions::new(self.pax.as_deref().unwrap_or_default()) {
            let record = record.map_err(|e| corrupt(tree.label(), e))?;
            match record.key_bytes() {
                b"path" => name = record.value_bytes().to_vec(),
                b"linkpath" => link = Some(record.value_bytes().to_vec()),
                b"size" => {
                    let header = entry.header().size().ok();
                    let pax = std::str::from_utf8(record.value_bytes()).ok();
                    if pax.and_then(|v| v.parse::<u64>().ok()) != header {
                        return Err(tree.refuse(
                            String::from_utf8_lossy(&name),
                            "has a pax size unlike its header's (a file over 8 GiB): \
                             split it, or re-create the archive in GNU format (`tar --format=gnu`)",
                        ));
                    }
                }
                _ => {}
            }
        }
        if name.len() as u64 > MAX_NAME_BYTES {
            return Err(tree.refuse(
                String::from_utf8_lossy(&name[..64]) + "...",
                format!("has a path longer than {MAX_NAME_BYTES} bytes"),
            ));
        }
        if let Some(link) = link.as_ref().filter(|l| l.len() as u64 > MAX_NAME_BYTES) {
            return Err(tree.refuse(
                String::from_utf8_lossy(&name),
                format!(
                    "is a link whose target ({}...) is longer than {MAX_NAME_BYTES} bytes",
                    String::from_utf8_lossy(&link[..64])
                ),
            ));
        }
        Ok((name, link))
    }
}

/// Reads a GNU long name or a pax header, refusing one over `cap` bytes before reading it.
pub(crate) fn read_extension<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    cap: u64,
    tree: &Tree,
) -> Result<Vec<u8>, ArtifactError> {
    let size = entry.size();
    if size > cap {
        return Err(tree.refuse(
            String::from_utf8_lossy(&entry.header().path_bytes()),
            format!("is an extension header (long name or pax) of {size} bytes, more than {cap}"),
        ));
    }
    let mut data = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut data)
        .map_err(|e| corrupt(tree.label(), e))?;
    Ok(data)
}
