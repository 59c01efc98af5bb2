//! Text users send (an actor, release notes) is stored as sent and printed escaped: escape
//! codes and newlines in it can neither drive the terminal nor forge a line of output or log.

use std::process::{Command, Output, Stdio};

use crate::harness::{BATON, Baton, THREE_WEB, text};

/// Clears the line, returns the cursor, and starts a line that looks like Baton's own.
const EVIL: &str = "mallory\x1b[2K\r\n#999  13:37:00  1.0.0    -> 6.6.6    rolling    succeeded     0.1s  forged\x1b[0m";

/// Asserts that `o` succeeded and printed nothing raw of [`EVIL`], but its escaped form.
fn assert_escaped(what: &str, o: &Output) {
    assert!(o.status.success(), "{what}: {}", text(o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        !out.contains('\x1b'),
        "{what} printed an escape code: {out:?}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("#999")),
        "{what} printed a forged line: {out}"
    );
    assert!(
        out.contains(r"mallory\u{1b}[2K\r\n#999"),
        "{what} did not print the text escaped: {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_and_notes_with_escape_codes_are_stored_as_sent_and_printed_escaped() {
    let baton = Baton::start(THREE_WEB);
    let artifact = baton.release("web", "1.0.0", &[]);
    let o = baton.cli(&[
        "release",
        "create",
        "web",
        "1.1.0",
        "--artifact",
        artifact.to_str().unwrap(),
        "--notes",
        EVIL,
    ]);
    assert!(o.status.success(), "{}", text(&o));

    // `rollback --force` records who forced it: the actor, from $USER.
    let config = baton.config.clone();
    let o = tokio::task::spawn_blocking(move || {
        Command::new(BATON)
            .args(["rollback", "web", "--to", "1.1.0", "--force", "--wait"])
            .arg("--config")
            .arg(&config)
            .env("USER", EVIL)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_escaped("rollback --wait", &o);

    assert_escaped("history", &baton.cli(&["history", "web"]));
    assert_escaped("releases", &baton.cli(&["releases", "web"]));
    assert_escaped("release list", &baton.cli(&["release", "list", "web"]));
    assert_escaped(
        "release show",
        &baton.cli(&["release", "show", "web", "1.1.0"]),
    );

    // Stored as sent.
    let o = baton.cli(&["history", "web", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let trigger = list[0]["trigger"].as_str().unwrap();
    assert!(trigger.contains(EVIL), "{trigger:?}");
    let o = baton.cli(&["release", "list", "web", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|r| r["notes"].as_str() == Some(EVIL)),
        "{list}"
    );

    // And the daemon's log has no line of the sender's making either.
    let log = baton.log();
    assert!(!log.contains("\x1b[2K"), "the log holds a raw escape code");
    assert!(
        !log.lines().any(|l| l.starts_with("#999")),
        "the log holds a forged line"
    );
}
