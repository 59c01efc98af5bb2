//! Configs that parse as TOML but could never work (a wrapping duration, a NUL in the
//! environment, CR/LF in a request path, listeners that cannot be bound together): each is
//! refused at its key, with its line and column.

use std::path::Path;

use super::{Config, ConfigError};

const BASE: &str = r#"
[api]
listen = "127.0.0.1:7070"

[apps.web]
listen = "127.0.0.1:8080"
instances = 2
command = ["{artifact}/server", "--port", "{port}"]
env = { GREETING = "hello" }

[apps.web.health]
path = "/health"
interval = "1s"
healthy_threshold = 2
deadline = "60s"

[apps.web.blue_green]
keep_previous = "5m"

[apps.web.canary]
steps = [{ weight = 5, pause = "30s" }, { weight = 100 }]

[apps.web.analysis]
metrics_path = "/metrics"

[apps.web.proxy]
max_header_bytes = 65536

[promotion]
soak = "10m"
"#;

/// Parses `BASE` with `from` replaced by `to` (which must be there) and expects an error at
/// the line holding `to`'s last line, naming `key`.
fn refused(from: &str, to: &str, key: &str) -> ConfigError {
    refused_in(BASE, from, to, key)
}

fn refused_in(base: &str, from: &str, to: &str, key: &str) -> ConfigError {
    assert!(base.contains(from), "{from:?} is not in the config");
    let text = base.replacen(from, to, 1);
    let e = Config::parse(&text, Path::new("baton.toml"))
        .err()
        .unwrap_or_else(|| panic!("{to:?} was accepted"));
    let last = to.lines().last().unwrap();
    let line = text.lines().position(|l| l.contains(last)).unwrap() + 1;
    assert_eq!(e.line, line, "{e}");
    assert!(e.col >= 1, "{e}");
    assert!(
        e.to_string()
            .starts_with(&format!("baton.toml:{line}:{}: {key}: ", e.col)),
        "{e}"
    );
    e
}

#[test]
fn the_base_config_is_valid() {
    Config::parse(BASE, Path::new("baton.toml")).unwrap();
}

#[test]
fn a_duration_that_would_wrap_an_i64_is_refused_at_its_key() {
    let e = refused(
        "deadline = \"60s\"",
        "deadline = \"18446744073709551615ms\"",
        "apps.web.health.deadline",
    );
    assert!(e.message.contains("87600h"), "{e}");
    refused(
        "keep_previous = \"5m\"",
        "keep_previous = \"9223372036854775808ms\"",
        "apps.web.blue_green.keep_previous",
    );
    let e = refused(
        "pause = \"30s\"",
        "pause = \"5124095576030431h\"",
        "apps.web.canary.steps",
    );
    assert!(e.message.contains("too long"), "{e}");
    refused("soak = \"10m\"", "soak = \"87601h\"", "promotion.soak");
}

#[test]
fn ten_years_is_the_longest_duration_and_stays_a_valid_deadline() {
    let text = BASE.replace("deadline = \"60s\"", "deadline = \"87600h\"");
    let c = Config::parse(&text, Path::new("baton.toml")).unwrap();
    let deadline = c.apps["web"].health.deadline.as_millis_i64();
    assert_eq!(deadline, 87_600 * 3_600_000);
    // Far in the future, `now + deadline` still fits.
    assert!(i64::MAX.checked_sub(deadline).unwrap() > 4_102_444_800_000);
}

#[test]
fn nul_in_an_environment_value_is_refused_naming_the_variable() {
    let e = refused(
        "env = { GREETING = \"hello\" }",
        "env = { GREETING = \"hel\\u0000lo\" }",
        "apps.web.env.GREETING",
    );
    assert!(
        e.message.contains("NUL") && e.message.contains("\\0"),
        "{e}"
    );
    let with_env = format!(
        "environments = [\"staging\", \"production\"]\n{BASE}\n[apps.web.environments.staging]\nlisten = \"127.0.0.1:8081\"\nenv = {{ MODE = \"x\" }}\n"
    );
    refused_in(
        &with_env,
        "env = { MODE = \"x\" }",
        "env = { MODE = \"\\u0000\" }",
        "apps.web.environments.staging.env.MODE",
    );
    refused_in(
        &with_env,
        "env = { MODE = \"x\" }",
        "env = { \"A=B\" = \"x\" }",
        "apps.web.environments.staging.env",
    );
}

#[test]
fn nul_in_a_command_word_or_data_dir_is_refused() {
    refused(
        "command = [\"{artifact}/server\", \"--port\", \"{port}\"]",
        "command = [\"{artifact}/server\\u0000\", \"--port\", \"{port}\"]",
        "apps.web.command",
    );
    let text = format!("data_dir = \"x\"\n{BASE}");
    refused_in(
        &text,
        "data_dir = \"x\"",
        "data_dir = \"state\\n\"",
        "data_dir",
    );
    // Newlines are legal inside one argument (a shell script).
    let text = BASE.replace(
        "command = [\"{artifact}/server\", \"--port\", \"{port}\"]",
        "command = [\"sh\", \"-c\", \"echo a\\nexec {artifact}/server\"]",
    );
    Config::parse(&text, Path::new("baton.toml")).unwrap();
}

#[test]
fn cr_lf_or_spaces_in_a_request_path_are_refused() {
    let e = refused(
        "path = \"/health\"",
        "path = \"/health\\r\\nX-Injected: 1\"",
        "apps.web.health.path",
    );
    assert!(e.message.contains("\\r\\n"), "{e}");
    refused(
        "path = \"/health\"",
        "path = \"/health check\"",
        "apps.web.health.path",
    );
    refused(
        "metrics_path = \"/metrics\"",
        "metrics_path = \"/metrics\\n\"",
        "apps.web.analysis.metrics_path",
    );
}

#[test]
fn header_and_cookie_names_and_match_values_must_fit_a_header() {
    let steps = "steps = [{ weight = 5, pause = \"30s\" }, { weight = 100 }]";
    refused(
        steps,
        &format!("{steps}\nsticky = {{ header = \"x user\" }}"),
        "apps.web.canary.sticky",
    );
    refused(
        steps,
        &format!("{steps}\nsticky = {{ cookie = \"a;b\" }}"),
        "apps.web.canary.sticky",
    );
    refused(
        steps,
        &format!("{steps}\nmatch = [{{ header = \"x-canary\", equals = \"yes\\r\\n\" }}]"),
        "apps.web.canary.match",
    );
}

#[test]
fn a_wildcard_and_a_specific_address_on_one_port_are_refused() {
    let second = "\n[apps.api]\nlisten = \"0.0.0.0:8080\"\ncommand = [\"x\"]\n";
    let text = format!("{BASE}{second}");
    let e = Config::parse(&text, Path::new("baton.toml")).unwrap_err();
    let line = text
        .lines()
        .position(|l| l.contains("0.0.0.0:8080"))
        .unwrap()
        + 1;
    // Apps are checked in name order: `api` at the wildcard comes first, `web` is reported.
    let web = text
        .lines()
        .position(|l| l.contains("127.0.0.1:8080"))
        .unwrap()
        + 1;
    assert_eq!(
        (e.line, e.key.as_deref()),
        (web, Some("apps.web.listen")),
        "{e}"
    );
    assert!(
        e.message.contains("0.0.0.0:8080") && e.message.contains("apps.api.listen"),
        "{e}"
    );
    assert!(line > web);

    refused(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"[::]:7070\"",
        "apps.web.listen",
    );
    let e = refused(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"0.0.0.0:7070\"",
        "apps.web.listen",
    );
    assert!(e.message.contains("api.listen"), "{e}");

    let with_env = format!(
        "environments = [\"staging\", \"production\"]\n{BASE}\n[apps.web.environments.staging]\nlisten = \"127.0.0.1:8081\"\n"
    );
    // Staging comes first in the promotion order: production's listener is the one reported.
    let text = with_env.replace("127.0.0.1:8081", "[::]:8080");
    let e = Config::parse(&text, Path::new("baton.toml")).unwrap_err();
    let web = text
        .lines()
        .position(|l| l.contains("127.0.0.1:8080"))
        .unwrap()
        + 1;
    assert_eq!(
        (e.line, e.key.as_deref()),
        (web, Some("apps.web.listen")),
        "{e}"
    );
    assert!(
        e.message
            .contains("[::]:8080 of web@staging (apps.web.environments.staging.listen)"),
        "{e}"
    );
    // Specific addresses of both families on one port are fine.
    let text = with_env.replace("127.0.0.1:8081", "[::1]:8080");
    Config::parse(&text, Path::new("baton.toml")).unwrap();
}

#[test]
fn numbers_that_could_never_work_are_refused() {
    refused(
        "max_header_bytes = 65536",
        "max_header_bytes = 18446744073709551615",
        "apps.web.proxy.max_header_bytes",
    );
    refused(
        "healthy_threshold = 2",
        "healthy_threshold = 4294967295",
        "apps.web.health.healthy_threshold",
    );
    refused(
        "metrics_path = \"/metrics\"",
        "min_latency_ratio = nan",
        "apps.web.analysis.min_latency_ratio",
    );
    refused(
        "metrics_path = \"/metrics\"",
        "min_error_diff = -1.0",
        "apps.web.analysis.min_error_diff",
    );
    refused(
        "metrics_path = \"/metrics\"",
        "metric = [{ name = \"x\", min = 2.0, max = 1.0 }]",
        "apps.web.analysis.metric",
    );
}

#[test]
fn a_metric_name_with_a_control_character_is_refused() {
    refused(
        "metrics_path = \"/metrics\"",
        "metric = [{ name = \"signups\\ntotal\", min = 1.0 }]",
        "apps.web.analysis.metric",
    );
}

#[test]
fn a_webhook_with_a_space_or_newline_is_refused() {
    let text = format!("{BASE}\n[[notify]]\nwebhook = \"http://x\"\n");
    refused_in(
        &text,
        "webhook = \"http://x\"",
        "webhook = \"http://hooks.local/a b\"",
        "notify[0].webhook",
    );
    refused_in(
        &text,
        "webhook = \"http://x\"",
        "webhook = \"http://hooks.local/\\r\\n\"",
        "notify[0].webhook",
    );
}
