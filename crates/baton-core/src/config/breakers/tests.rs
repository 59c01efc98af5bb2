//! `[[apps.<name>.breakers]]`: defaults, path matching, and each bad key refused where it is
//! written.

use std::path::Path;

use super::path_matches;
use crate::config::{Config, ConfigError};

const APP: &str = r#"
[apps.web]
listen = "127.0.0.1:8080"
command = ["{artifact}/server", "--port", "{port}"]
"#;

fn parse(breakers: &str) -> Result<Config, ConfigError> {
    Config::parse(
        &format!("{APP}{breakers}"),
        Path::new("/etc/baton/baton.toml"),
    )
}

#[test]
fn defaults_fill_what_is_left_out() {
    let c = parse(
        "[[apps.web.breakers]]\nname = \"orders\"\npath = \"/orders\"\nmax_error_rate = 0.5\n\n[apps.web.breakers.fallback]\nbody = \"later\"\n",
    )
    .unwrap();
    let b = &c.apps["web"].breakers[0];
    assert_eq!((b.min_requests, b.probes), (20, 5));
    assert_eq!(b.window.as_millis(), 10_000);
    assert_eq!(b.cooldown.as_millis(), 30_000);
    let f = b.fallback.as_ref().unwrap();
    assert_eq!(
        (f.status, f.body.as_str(), f.retry_after),
        (503, "later", None)
    );
}

#[test]
fn a_prefix_matches_whole_segments() {
    let table = [
        ("/api", "/api", true),
        ("/api", "/api/x", true),
        ("/api", "/api?q=1", true),
        ("/api", "/apis", false),
        ("/api/", "/api/x", true),
        ("/api/", "/api", false),
        ("/", "/anything", true),
        ("/api", "/", false),
        // '*' is one whole, non-empty segment.
        ("/api/orders/*/items", "/api/orders/7/items", true),
        ("/api/orders/*/items", "/api/orders/7/items/3", true),
        ("/api/orders/*/items", "/api/orders/7/items?x=1", true),
        ("/api/orders/*/items", "/api/orders/7/itemsx", false),
        ("/api/orders/*/items", "/api/orders/items", false),
        ("/api/orders/*/items", "/api/orders//items", false),
        ("/api/orders/*/items", "/api/orders/7", false),
        ("/*/health", "/eu/health", true),
        ("/api/*/", "/api/x/", true),
        ("/api/*/", "/api/x/y", true),
        ("/api/*/", "/api/x", false),
        ("/api/*", "/api/x?q", true),
        ("/api/*", "/api?x", false),
    ];
    for (prefix, path, matches) in table {
        assert_eq!(
            path_matches(prefix.as_bytes(), path.as_bytes()),
            matches,
            "{prefix} {path}"
        );
    }
}

#[test]
fn bad_breakers_are_refused_at_their_key() {
    let ok = "name = \"orders\"\npath = \"/orders\"\nmax_error_rate = 0.5\n";
    // (extra lines of the second breaker, key, words of the message, line of the error)
    let table = [
        (
            "name = \"Orders\"\npath = \"/x\"\nmax_error_rate = 0.5\n",
            "[1].name",
            "a-z",
            11,
        ),
        (
            "name = \"orders\"\npath = \"/x\"\nmax_error_rate = 0.5\n",
            "[1].name",
            "twice",
            11,
        ),
        (
            "name = \"b\"\npath = \"x\"\nmax_error_rate = 0.5\n",
            "[1].path",
            "starting with '/'",
            12,
        ),
        (
            "name = \"b\"\npath = \"/api/ord*\"\nmax_error_rate = 0.5\n",
            "[1].path",
            "one whole segment",
            12,
        ),
        (
            "name = \"b\"\nmax_error_rate = 0.5\n",
            "[1].path",
            "or an app metric",
            10,
        ),
        (
            "name = \"b\"\nmetric = { name = \"q\", max = 1 }\nmax_error_rate = 0.5\n",
            "[1].max_error_rate",
            "on its metric alone",
            13,
        ),
        (
            "name = \"b\"\nmetric = { name = \"q\" }\n",
            "[1].metric",
            "give min, max or both",
            12,
        ),
        (
            "name = \"b\"\nmetric = { name = \"q\", min = 2, max = 1 }\n",
            "[1].metric",
            "is above max",
            12,
        ),
        (
            "name = \"b\"\npath = \"/x\"\n",
            "[1].max_error_rate",
            "needs max_error_rate",
            10,
        ),
        (
            "name = \"b\"\npath = \"/x\"\nmax_error_rate = 1.5\n",
            "[1].max_error_rate",
            "out of range",
            13,
        ),
        (
            "name = \"b\"\npath = \"/x\"\nmax_p99 = \"0s\"\n",
            "[1].max_p99",
            "more than 0",
            13,
        ),
        (
            "name = \"b\"\npath = \"/x\"\nmax_p99 = \"1s\"\nprobes = 0\n",
            "[1].probes",
            "1 to 1000",
            14,
        ),
        (
            "name = \"b\"\npath = \"/x\"\nmax_p99 = \"1s\"\nwindow = \"10ms\"\n",
            "[1].window",
            "100ms",
            14,
        ),
        (
            "name = \"b\"\npath = \"/x\"\nmax_p99 = \"1s\"\n[apps.web.breakers.fallback]\nstatus = 99\n",
            "[1].status",
            "200 to 599",
            15,
        ),
    ];
    for (second, key, words, line) in table {
        let text = format!("[[apps.web.breakers]]\n{ok}\n[[apps.web.breakers]]\n{second}");
        let e = parse(&text).unwrap_err();
        assert_eq!(
            e.key.as_deref(),
            Some(format!("apps.web.breakers{key}").as_str()),
            "{second}"
        );
        assert!(e.message.contains(words), "{second}: {}", e.message);
        assert_eq!(e.line, line, "{second}: {e}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let e = parse(
        "[[apps.web.breakers]]\nname = \"b\"\npath = \"/x\"\nmax_error_rate = 0.5\nthreshold = 3\n",
    )
    .unwrap_err();
    assert!(e.message.contains("threshold"), "{e}");
}
