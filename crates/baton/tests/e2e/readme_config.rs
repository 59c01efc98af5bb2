//! The README's configuration reference is complete: every key Baton's `baton.toml` parser
//! knows is documented there and shown in "A full example", and that example is valid.

use std::path::Path;

use baton_core::config::Config;

use crate::readme::{blocks, section};

/// A config that validates, to which each probe adds one table.
const BASE: &str = "environments = [\"staging\", \"production\"]\n\n[apps.web]\nlisten = \"127.0.0.1:1\"\ncommand = [\"x\"]\n";

/// Each table of the schema, as the TOML that opens it (with what it needs to be valid).
const TABLES: &[(&str, &str)] = &[
    ("(top level)", ""),
    ("api", "[api]"),
    ("promotion", "[promotion]"),
    ("notify", "[[notify]]\nwebhook = \"http://127.0.0.1:1/\""),
    ("cluster", "[cluster]\nlisten = \"127.0.0.1:4\""),
    (
        "hosts.<name>",
        "[cluster]\nlisten = \"127.0.0.1:4\"\n[hosts.web-1]\naddress = \"10.0.0.1\"",
    ),
    (
        "apps.<name>",
        "[apps.other]\nlisten = \"127.0.0.1:2\"\ncommand = [\"x\"]",
    ),
    ("apps.<name>.health", "[apps.web.health]"),
    ("apps.<name>.drain", "[apps.web.drain]"),
    ("apps.<name>.rolling", "[apps.web.rolling]"),
    ("apps.<name>.blue_green", "[apps.web.blue_green]"),
    ("apps.<name>.proxy", "[apps.web.proxy]"),
    ("apps.<name>.canary", "[apps.web.canary]"),
    (
        "apps.<name>.canary.steps",
        "[[apps.web.canary.steps]]\nweight = 100",
    ),
    (
        "apps.<name>.canary.sticky",
        "[apps.web.canary.sticky]\nheader = \"x\"",
    ),
    (
        "apps.<name>.canary.match",
        "[[apps.web.canary.match]]\nheader = \"x\"\nequals = \"y\"",
    ),
    ("apps.<name>.analysis", "[apps.web.analysis]"),
    ("flags", "[flags]\nlisten = \"127.0.0.1:5\""),
    ("apps.<name>.flags.<flag>", "[apps.web.flags.f]"),
    (
        "apps.<name>.flags.<flag>.match",
        "[[apps.web.flags.f.match]]\nattribute = \"a\"\nequals = \"b\"",
    ),
    (
        "apps.<name>.tls",
        "[apps.web.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"",
    ),
    (
        "apps.<name>.tls.certs",
        "[[apps.web.tls.certs]]\ncert = \"c.pem\"\nkey = \"k.pem\"",
    ),
    (
        "apps.<name>.analysis.metric",
        "[[apps.web.analysis.metric]]\nname = \"m\"",
    ),
    ("apps.<name>.outlier", "[apps.web.outlier]"),
    (
        "apps.<name>.breakers",
        "[[apps.web.breakers]]\nname = \"b\"\npath = \"/b\"\nmax_error_rate = 0.5",
    ),
    (
        "apps.<name>.breakers.fallback",
        "[[apps.web.breakers]]\nname = \"b\"\npath = \"/b\"\nmax_error_rate = 0.5\n[apps.web.breakers.fallback]",
    ),
    (
        "apps.<name>.migrate",
        "[apps.web.migrate]\ncommand = [\"x\"]",
    ),
    (
        "apps.<name>.environments.<env>",
        "[apps.web.environments.staging]\nlisten = \"127.0.0.1:3\"",
    ),
];

/// The keys the parser accepts in one table: read from its "unknown field" error.
fn keys_of(table: &str, opening: &str) -> Vec<String> {
    let text = if opening.is_empty() {
        format!("zz_probe = 1\n{BASE}")
    } else {
        format!("{BASE}\n{opening}\nzz_probe = 1\n")
    };
    let err = Config::parse(&text, Path::new("baton.toml"))
        .expect_err("a config with an unknown key validated")
        .to_string();
    let expected = err
        .split_once("expected")
        .unwrap_or_else(|| panic!("{table}: the error does not list the keys: {err}"))
        .1;
    let keys: Vec<String> = expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(!keys.is_empty(), "{table}: {err}");
    keys
}

/// The identifiers inside the code spans (`...`) of `text`.
fn code_words(text: &str) -> Vec<&str> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .flat_map(|span| span.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| !w.is_empty())
        .collect()
}

/// The keys a TOML text sets or opens: table headers' components and every `key =`, also
/// inside inline tables.
fn toml_keys(text: &str) -> Vec<&str> {
    let mut keys = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            keys.extend(line.trim_matches(['[', ']']).split('.'));
            continue;
        }
        let mut rest = line;
        while let Some(eq) = rest.find(" =") {
            let before = &rest[..eq];
            let start = before
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(0, |i| i + 1);
            keys.push(&before[start..]);
            rest = &rest[eq + 2..];
        }
    }
    keys
}

#[test]
fn every_config_key_is_documented_and_in_the_full_example() {
    let reference = section("Configuration reference");
    let documented = code_words(reference);
    let example = toml_keys(blocks(section("A full example"), "toml")[0]);
    let mut missing = Vec::new();
    for (table, opening) in TABLES {
        for key in keys_of(table, opening) {
            if !documented.contains(&key.as_str()) {
                missing.push(format!(
                    "{table}: `{key}` is not in the configuration reference"
                ));
            }
            if !example.contains(&key.as_str()) {
                missing.push(format!("{table}: `{key}` is not in \"A full example\""));
            }
        }
    }
    assert!(missing.is_empty(), "README:\n{}", missing.join("\n"));
}

#[test]
fn the_full_example_is_a_valid_config() {
    let example = blocks(section("A full example"), "toml")[0];
    if let Err(e) = Config::parse(example, Path::new("README.md")) {
        panic!("README's full example does not validate: {e}");
    }
}
