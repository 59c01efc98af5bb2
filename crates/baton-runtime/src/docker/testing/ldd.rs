//! The shared libraries (and the dynamic loader) an executable needs, as `ldd` lists them, so a
//! `FROM scratch` image can hold exactly what the binary runs with.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Every file `ldd` says `binary` loads: libraries by absolute path and the loader, in order.
/// Empty for a static executable.
///
/// # Errors
/// When `ldd` cannot be run or fails for another reason than a static binary.
pub fn shared_libraries(binary: &Path) -> io::Result<Vec<PathBuf>> {
    let output = Command::new("ldd").arg(binary).output().map_err(|error| {
        io::Error::new(
            error.kind(),
            format!("cannot run `ldd {}`: {error}", binary.display()),
        )
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stdout.contains("statically linked") || stderr.contains("not a dynamic executable") {
        return Ok(Vec::new());
    }
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "`ldd {}` failed: {}",
            binary.display(),
            stderr.trim()
        )));
    }
    Ok(parse_ldd(&stdout))
}

/// Lines look like `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)`, or
/// `/lib64/ld-linux-x86-64.so.2 (0x…)` for the loader; the vDSO has no file.
fn parse_ldd(output: &str) -> Vec<PathBuf> {
    output
        .lines()
        .filter_map(|line| {
            let path = match line.split_once("=>") {
                Some((_, target)) => target.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libraries_and_the_loader() {
        let output = "\tlinux-vdso.so.1 (0x00007ffd4b3f2000)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f)\n";
        assert_eq!(
            parse_ldd(output),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6",
                "/lib64/ld-linux-x86-64.so.2"
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn the_shell_needs_libc() {
        let libraries = shared_libraries(Path::new("/bin/sh")).unwrap();
        assert!(
            libraries
                .iter()
                .any(|l| l.to_string_lossy().contains("libc.so")),
            "{libraries:?}"
        );
    }
}
