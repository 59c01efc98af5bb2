//! The artifact writer: a copy of the running executable plus its `demo.toml`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::{DemoError, DemoOptions};

/// File name of the executable inside an artifact directory.
pub const ARTIFACT_EXE: &str = "baton-demo";
/// File name of the options file inside an artifact directory.
pub const ARTIFACT_CONFIG: &str = "demo.toml";

/// Writes OUT_DIR/baton-demo (a copy of `exe`, mode 0755) and OUT_DIR/demo.toml (the options).
///
/// Creates `out_dir` if missing. Both files are written to a temporary name and renamed into
/// place, so an instance still running from an older copy never sees a half-written file and
/// replacing a busy executable does not fail with "text file busy".
pub fn write_artifact(out_dir: &Path, exe: &Path, opts: &DemoOptions) -> Result<(), DemoError> {
    opts.validate()?;
    let config = opts.to_toml()?;
    fs::create_dir_all(out_dir).map_err(|e| DemoError::io("create directory", out_dir, e))?;

    let exe_dest = out_dir.join(ARTIFACT_EXE);
    let exe_tmp = out_dir.join(format!(".{ARTIFACT_EXE}.tmp"));
    fs::copy(exe, &exe_tmp).map_err(|e| DemoError::io("copy the executable from", exe, e))?;
    fs::set_permissions(&exe_tmp, fs::Permissions::from_mode(0o755))
        .map_err(|e| DemoError::io("make executable", &exe_tmp, e))?;
    fs::rename(&exe_tmp, &exe_dest).map_err(|e| DemoError::io("move into place", &exe_dest, e))?;

    let config_dest = out_dir.join(ARTIFACT_CONFIG);
    let config_tmp = out_dir.join(format!(".{ARTIFACT_CONFIG}.tmp"));
    fs::write(&config_tmp, config).map_err(|e| DemoError::io("write", &config_tmp, e))?;
    fs::rename(&config_tmp, &config_dest)
        .map_err(|e| DemoError::io("move into place", &config_dest, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_executable_copy_and_a_parseable_config() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("source-exe");
        fs::write(&exe, b"#!/bin/sh\necho hi\n").unwrap();
        let out = dir.path().join("nested/artifact");
        let mut opts = DemoOptions::new("3.1.4");
        opts.error_rate = 0.5;
        opts.startup_ms = 10;

        write_artifact(&out, &exe, &opts).unwrap();

        let copied = out.join(ARTIFACT_EXE);
        assert_eq!(fs::read(&copied).unwrap(), fs::read(&exe).unwrap());
        let mode = fs::metadata(&copied).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(DemoOptions::load(&out.join(ARTIFACT_CONFIG)).unwrap(), opts);
        // Overwriting an existing artifact works too.
        write_artifact(&out, &exe, &DemoOptions::new("3.1.5")).unwrap();
        assert_eq!(
            DemoOptions::load(&out.join(ARTIFACT_CONFIG))
                .unwrap()
                .version,
            "3.1.5"
        );
    }

    #[test]
    fn invalid_options_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("artifact");
        let mut opts = DemoOptions::new("1");
        opts.error_rate = -0.1;
        let err = write_artifact(&out, Path::new("/nonexistent"), &opts).unwrap_err();
        assert!(err.to_string().contains("error_rate"), "{err}");
        assert!(!out.exists());
    }

    #[test]
    fn missing_executable_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let err = write_artifact(
            dir.path(),
            Path::new("/nonexistent/exe"),
            &DemoOptions::new("1"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/exe"), "{err}");
    }
}
