//! `[cluster]` (where agents connect, how soon a silent host is lost) and `[hosts.<name>]`
//! (the hosts that may join, and their addresses), with their named defaults and checks.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::duration::Duration;

/// How long the controller waits for a host's heartbeat before it marks the host lost.
pub const DEFAULT_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(5);
/// The shortest `heartbeat_timeout`: agents send a heartbeat every second, so anything
/// shorter than two of them would mark a host lost for one late heartbeat.
pub const MIN_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest host name (a DNS label).
pub const MAX_HOST_NAME: usize = 63;
/// The name of the controller's own host, which `[hosts]` may not use.
pub const LOCAL_HOST: &str = "local";
/// The name in the controller's certificate (agents verify it, the tunnels admit only it): no
/// host may be called that, or its own certificate would pass for the controller's.
pub const CONTROLLER_CERT_NAME: &str = "baton-controller";

/// `[cluster]`: present when other hosts' agents may connect to this controller.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Where agents connect (TLS only). Never an app listener or the API.
    pub listen: SocketAddr,
    /// A connected host that sends no heartbeat for this long is marked lost.
    #[serde(default = "default_heartbeat_timeout")]
    pub heartbeat_timeout: Duration,
}

fn default_heartbeat_timeout() -> Duration {
    DEFAULT_HEARTBEAT_TIMEOUT
}

/// `[hosts.<name>]`: one host that may join.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// The host's address: where its instances listen and are reached.
    pub address: IpAddr,
}

/// The dotted key of a problem and what to do about it.
type Problem = (Vec<String>, String);

/// Whether `name` may name a host: `a-z`, `0-9` and `-`, not starting with `-`, not only
/// digits (it is the DNS name in the host's certificate), at most [`MAX_HOST_NAME`]
/// characters.
pub fn valid_host_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_HOST_NAME
        && !name.chars().all(|c| c.is_ascii_digit())
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks `[cluster]` and `[hosts]` together.
pub(super) fn validate(
    cluster: Option<&ClusterConfig>,
    hosts: &BTreeMap<String, HostConfig>,
) -> Result<(), Problem> {
    let key = |parts: &[&str]| parts.iter().map(|p| p.to_string()).collect::<Vec<_>>();
    if let Some(c) = cluster
        && c.heartbeat_timeout < MIN_HEARTBEAT_TIMEOUT
    {
        return Err((
            key(&["cluster", "heartbeat_timeout"]),
            format!(
                "{} is too short: agents send a heartbeat every second; use at least {MIN_HEARTBEAT_TIMEOUT}",
                c.heartbeat_timeout
            ),
        ));
    }
    if cluster.is_none()
        && let Some(name) = hosts.keys().next()
    {
        return Err((
            key(&["hosts", name]),
            "hosts join through [cluster]: add `[cluster]` with `listen = \"0.0.0.0:7443\"` (where their agents connect)".into(),
        ));
    }
    let mut seen: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for (name, host) in hosts {
        if !valid_host_name(name) {
            return Err((
                key(&["hosts", name]),
                format!(
                    "{name:?}: host names use a-z, 0-9 and '-', start with a letter or digit, are not only digits, and are at most {MAX_HOST_NAME} characters"
                ),
            ));
        }
        if name == LOCAL_HOST {
            return Err((
                key(&["hosts", name]),
                "\"local\" is the controller's own host; give this host another name".into(),
            ));
        }
        if name == CONTROLLER_CERT_NAME {
            return Err((
                key(&["hosts", name]),
                format!(
                    "{CONTROLLER_CERT_NAME:?} is the name in the controller's certificate; give this host another name"
                ),
            ));
        }
        if host.address.is_unspecified() || host.address.is_multicast() {
            return Err((
                key(&["hosts", name, "address"]),
                format!(
                    "{} is not one host's address: give the address its instances are reached at, e.g. \"10.0.0.11\"",
                    host.address
                ),
            ));
        }
        if let Some(other) = seen.insert(host.address, name) {
            return Err((
                key(&["hosts", name, "address"]),
                format!(
                    "{} is already the address of host {other}: each host has its own address",
                    host.address
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError};

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("baton.toml"))
    }

    const GOOD: &str = "[cluster]\nlisten = \"0.0.0.0:7443\"\n\n[hosts.web-1]\naddress = \"10.0.0.11\"\n\n[hosts.web-2]\naddress = \"10.0.0.12\"\n";

    #[test]
    fn cluster_and_hosts_parse_with_their_defaults() {
        let c = parse(GOOD).unwrap();
        let cluster = c.cluster.unwrap();
        assert_eq!(cluster.listen.port(), 7443);
        assert_eq!(cluster.heartbeat_timeout, super::DEFAULT_HEARTBEAT_TIMEOUT);
        assert_eq!(c.hosts["web-2"].address.to_string(), "10.0.0.12");
        assert!(parse("").unwrap().cluster.is_none());
    }

    #[test]
    fn bad_hosts_name_file_line_col_and_key() {
        let cases = [
            (GOOD.replace("web-2", "Web_2"), 7, "hosts.Web_2", "a-z"),
            (
                GOOD.replace("web-2", "local"),
                7,
                "hosts.local",
                "controller's own",
            ),
            (
                GOOD.replace("web-2", "baton-controller"),
                7,
                "hosts.baton-controller",
                "controller's certificate",
            ),
            (
                GOOD.replace("web-2", "42"),
                7,
                "hosts.42",
                "not only digits",
            ),
            (
                GOOD.replace("10.0.0.12", "10.0.0.11"),
                8,
                "hosts.web-2.address",
                "already the address of host web-1",
            ),
            (
                GOOD.replace("10.0.0.12", "0.0.0.0"),
                8,
                "hosts.web-2.address",
                "not one host's",
            ),
            (
                GOOD.replace("10.0.0.12", "web2.internal"),
                8,
                "hosts.web-2.address",
                "invalid IP address",
            ),
            (
                GOOD.replace("[hosts.web-2]", &format!("[hosts.{}]", "a".repeat(64))),
                7,
                "",
                "at most 63",
            ),
            (
                GOOD.replace("[cluster]\nlisten = \"0.0.0.0:7443\"\n", ""),
                2,
                "hosts.web-1",
                "add `[cluster]`",
            ),
            (
                GOOD.replace("7443\"", "7443\"\nheartbeat_timeout = \"1s\""),
                3,
                "cluster.heartbeat_timeout",
                "at least 2s",
            ),
            (
                GOOD.replace("listen", "lisen"),
                2,
                "cluster.lisen",
                "unknown field",
            ),
        ];
        for (text, line, key, says) in cases {
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{e}");
            if !key.is_empty() {
                assert_eq!(e.key.as_deref(), Some(key), "{e}");
            }
            assert!(e.message.contains(says), "{e}");
            assert!(e.to_string().starts_with("baton.toml:"), "{e}");
        }
    }

    #[test]
    fn the_cluster_listener_never_shares_the_apis_or_an_apps_port() {
        let api = "[api]\nlisten = \"127.0.0.1:7070\"\n[cluster]\nlisten = \"0.0.0.0:7070\"\n";
        let e = parse(api).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("cluster.listen"), "{e}");
        assert!(e.message.contains("api"), "{e}");
        let app = "[cluster]\nlisten = \"127.0.0.1:8080\"\n[apps.web]\nlisten = \"127.0.0.1:8080\"\ncommand = [\"x\"]\n";
        let e = parse(app).unwrap_err();
        assert!(e.message.contains("already used by cluster"), "{e}");
    }
}
