//! How Baton marks its containers: their name and labels, and the filters that find them again.

use std::collections::HashMap;

use super::DockerError;

/// Label holding the owner (an id of the Baton data directory that started the container).
pub const OWNER_LABEL: &str = "baton.owner";
/// Label holding the instance id.
pub const INSTANCE_LABEL: &str = "baton.instance";
/// Label holding the app name.
pub const APP_LABEL: &str = "baton.app";
/// Label holding the release.
pub const RELEASE_LABEL: &str = "baton.release";
/// Label holding the log file the container's output is appended to, so that adoption
/// continues the same file.
pub const LOG_LABEL: &str = "baton.log";

/// An instance id as its container's name and `baton.instance` label write it: those allow
/// `[A-Za-z0-9_.-]`, and instances of an environment's unit hold an `@` (`web@staging-3`), written
/// `.` (`web.staging-3`).
pub fn container_instance(instance: &str) -> String {
    instance.replace('@', ".")
}

/// The longest owner or instance id accepted in a container name.
const MAX_PART: usize = 100;

/// `baton-<owner>-<instance>`: unique per owner and instance on one engine, so a second start of
/// the same instance finds the first one instead of running twice.
pub(crate) fn container_name(owner: &str, instance: &str) -> Result<String, DockerError> {
    check_part("owner", owner)?;
    check_part("instance", instance)?;
    Ok(format!("baton-{owner}-{instance}"))
}

/// Container names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; the prefix `baton-` supplies the first
/// character.
fn check_part(what: &'static str, value: &str) -> Result<(), DockerError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if value.is_empty() || value.len() > MAX_PART || !value.chars().all(allowed) {
        return Err(DockerError::InvalidName {
            what,
            value: value.into(),
        });
    }
    Ok(())
}

/// A `docker ps` filter for containers carrying every `key=value` label in `labels`.
pub(crate) fn label_filter(labels: &[(&str, &str)]) -> HashMap<String, Vec<String>> {
    let values = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    HashMap::from([("label".to_string(), values)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_owner_and_instance() {
        assert_eq!(
            container_name("d41d8cd9", "web-3").unwrap(),
            "baton-d41d8cd9-web-3"
        );
        for (owner, instance) in [("", "web-1"), ("o", ""), ("o/x", "w"), ("o", "web 1")] {
            let error = container_name(owner, instance).unwrap_err().to_string();
            assert!(
                error.contains("cannot be part of a container name"),
                "{error}"
            );
        }
        assert!(container_name("o", &"x".repeat(MAX_PART + 1)).is_err());
    }

    #[test]
    fn filter_requires_every_label() {
        let filter = label_filter(&[(OWNER_LABEL, "o"), (INSTANCE_LABEL, "web-1")]);
        assert_eq!(
            filter["label"],
            vec![
                "baton.owner=o".to_string(),
                "baton.instance=web-1".to_string()
            ]
        );
    }
}
