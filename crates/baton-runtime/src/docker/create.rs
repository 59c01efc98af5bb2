//! The engine's container configuration for a [`ContainerSpec`]: a pure translation, so every
//! choice is visible and tested in one place.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, RestartPolicy, RestartPolicyNameEnum};

use super::ContainerSpec;
use super::labels::{APP_LABEL, INSTANCE_LABEL, LOG_LABEL, OWNER_LABEL, RELEASE_LABEL};

/// The signal `stop` sends first, recorded in the container too so that a `docker stop` by an
/// operator asks for the same graceful exit.
pub(crate) const STOP_SIGNAL: &str = "SIGTERM";

/// The body of the create request for `spec`.
pub(crate) fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let labels = HashMap::from([
        (OWNER_LABEL.to_string(), spec.owner.clone()),
        (INSTANCE_LABEL.to_string(), spec.instance.clone()),
        (APP_LABEL.to_string(), spec.app.clone()),
        (RELEASE_LABEL.to_string(), spec.release.clone()),
        (LOG_LABEL.to_string(), spec.log_path.display().to_string()),
    ]);
    let env = spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let host_config = HostConfig {
        // Same address and port semantics as a process instance: no NAT, no published ports.
        network_mode: Some("host".into()),
        // Baton restarts crashed instances itself, and must see every exit.
        restart_policy: Some(RestartPolicy {
            name: Some(RestartPolicyNameEnum::NO),
            maximum_retry_count: None,
        }),
        readonly_rootfs: Some(spec.read_only),
        ..HostConfig::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.argv.clone(),
        env: Some(env),
        labels: Some(labels),
        stop_signal: Some(STOP_SIGNAL.into()),
        attach_stdin: Some(false),
        open_stdin: Some(false),
        tty: Some(false),
        host_config: Some(host_config),
        ..ContainerCreateBody::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> ContainerSpec {
        ContainerSpec {
            image: "sha256:abc".into(),
            owner: "o1".into(),
            instance: "web-7".into(),
            app: "web".into(),
            release: "1.2.0".into(),
            env: [("PORT", "8081"), ("HOST", "127.0.0.1")]
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            argv: None,
            read_only: false,
            log_path: "/data/log/web-7.log".into(),
        }
    }

    #[test]
    fn runs_the_image_id_on_the_host_network_without_restarts() {
        let body = create_body(&spec());
        assert_eq!(body.image.as_deref(), Some("sha256:abc"));
        assert_eq!(body.cmd, None, "None keeps the image's CMD");
        assert_eq!(
            body.env.unwrap(),
            vec!["HOST=127.0.0.1".to_string(), "PORT=8081".to_string()]
        );
        assert_eq!(body.stop_signal.as_deref(), Some("SIGTERM"));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("host"));
        assert_eq!(
            host.restart_policy.unwrap().name,
            Some(RestartPolicyNameEnum::NO)
        );
        assert_eq!(host.readonly_rootfs, Some(false));
        assert_eq!(
            host.auto_remove, None,
            "stop removes it, after reading its exit"
        );
    }

    #[test]
    fn labels_name_owner_instance_app_release_and_log() {
        let labels = create_body(&spec()).labels.unwrap();
        assert_eq!(labels["baton.owner"], "o1");
        assert_eq!(labels["baton.instance"], "web-7");
        assert_eq!(labels["baton.app"], "web");
        assert_eq!(labels["baton.release"], "1.2.0");
        assert_eq!(labels["baton.log"], "/data/log/web-7.log");
    }

    #[test]
    fn argv_replaces_the_command_and_read_only_reaches_the_engine() {
        let mut spec = spec();
        spec.argv = Some(vec!["/app".into(), "--serve".into()]);
        spec.read_only = true;
        let body = create_body(&spec);
        assert_eq!(body.cmd.unwrap(), vec!["/app", "--serve"]);
        assert_eq!(body.host_config.unwrap().readonly_rootfs, Some(true));
    }
}
