//! `baton reload` and SIGHUP: apps added, changed and removed while another app serves under
//! load with no failed request; an invalid file (or one that changes a restart-only key, or
//! a listener that cannot bind) changes nothing; a running deployment keeps its rules.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use baton_server::views::AppStatus;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::deploys::{assert_no_failures, load};
use crate::harness::{Baton, THREE_WEB, free_port, text, wait_until, wait_until_async};

/// An app section running the demo with fast health checks.
fn app(name: &str, port: u16, instances: u32) -> String {
    format!(
        "\n[apps.{name}]\nlisten = \"127.0.0.1:{port}\"\ninstances = {instances}\ncommand = [\"{{artifact}}/baton-demo\", \"--port\", \"{{port}}\"]\n[apps.{name}.health]\ninterval = \"200ms\"\n[apps.{name}.drain]\ntimeout = \"5s\"\nstop_timeout = \"5s\"\n"
    )
}

/// Writes `template` (with the markers of the config Baton started with) as its config.
fn write(baton: &Baton, template: &str) {
    let text = template
        .replace("@API@", &baton.api.port().to_string())
        .replace("@WEB@", &baton.web().port().to_string());
    std::fs::write(&baton.config, text).unwrap();
}

/// The app's status from the API (the CLI would read the file, which may be invalid).
async fn status(baton: &Baton, app: &str) -> Option<AppStatus> {
    let (code, body) = baton.api_get(&format!("/v1/apps/{app}")).await;
    (code == 200).then(|| serde_json::from_value(body).unwrap())
}

/// Healthy instances in the split.
async fn serving(baton: &Baton, app: &str) -> usize {
    status(baton, app).await.map_or(0, |s| {
        s.instances
            .iter()
            .filter(|i| i.state == "healthy" && i.in_split)
            .count()
    })
}

fn answers(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// A GET on `addr` answered 200.
async fn ok(addr: SocketAddr) -> bool {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri: hyper::Uri = format!("http://{addr}/").parse().unwrap();
    matches!(
        tokio::time::timeout(Duration::from_secs(5), client.get(uri)).await,
        Ok(Ok(r)) if r.status() == 200
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_adds_changes_and_removes_apps_while_another_serves_without_a_failed_request() {
    let (other_port, old_port, fresh_port) = (free_port(), free_port(), free_port());
    let before = format!(
        "{THREE_WEB}{}{}",
        app("other", other_port, 1),
        app("old", old_port, 1)
    );
    let baton = Baton::start(&before);
    for a in ["web", "other", "old"] {
        baton.release(a, "1.0.0", &[]);
        baton.deploy_ok(a, "1.0.0", &[]).await;
    }
    let old_addr = SocketAddr::from(([127, 0, 0, 1], old_port));
    let old_instances: Vec<SocketAddr> = status(&baton, "old")
        .await
        .unwrap()
        .instances
        .iter()
        .map(|i| i.address.parse().unwrap())
        .collect();
    assert_eq!(old_instances.len(), 1);
    assert!(ok(old_addr).await);

    let l = load(&baton);
    // other: 1 -> 2 instances; old: removed; fresh: added. web is untouched.
    let after = format!(
        "{THREE_WEB}{}{}",
        app("other", other_port, 2),
        app("fresh", fresh_port, 1)
    );
    write(&baton, &after);
    let o = baton.cli_async(&["reload"]).await;
    assert!(o.status.success(), "{}\nlog:\n{}", text(&o), baton.log());
    let out = String::from_utf8_lossy(&o.stdout);
    for line in [
        "added    fresh@production",
        "removed  old@production",
        "changed  other@production: instances",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    assert!(!out.contains("web@"), "web did not change:\n{out}");

    // other converges like a deploy: a second healthy instance joins the split.
    let converged = wait_until_async(Duration::from_secs(30), || async {
        serving(&baton, "other").await == 2
            && status(&baton, "other").await.unwrap().instances_wanted == 2
    })
    .await;
    assert!(converged, "{:?}", status(&baton, "other").await);
    // old: its listener is closed, its instance stopped.
    assert!(
        wait_until_async(Duration::from_secs(30), || async {
            !answers(old_addr) && !old_instances.iter().any(|a| answers(*a))
        })
        .await,
        "old still answers; log:\n{}",
        baton.log()
    );
    let o = baton.cli_async(&["status", "old"]).await;
    assert_eq!(o.status.code(), Some(2), "old is unknown now: {}", text(&o));
    // fresh: its listener answers once it has a release.
    let fresh_addr = SocketAddr::from(([127, 0, 0, 1], fresh_port));
    assert!(answers(fresh_addr));
    let o = baton
        .cli_async(&[
            "release",
            "create",
            "fresh",
            "1.0.0",
            "--artifact",
            baton.dir.path().join("src/web-1.0.0").to_str().unwrap(),
        ])
        .await;
    assert!(o.status.success(), "{}", text(&o));
    baton.deploy_ok("fresh", "1.0.0", &[]).await;
    assert!(ok(fresh_addr).await);
    let report = l.stop().await;
    assert_no_failures(&report, "web during the reload");
    assert!(
        baton.log().contains("config_reloaded"),
        "the reload is an event"
    );

    // A typo changes nothing, even where the file also removes fresh: exit 2, file:line:col.
    let typo = format!("{THREE_WEB}{}", app("other", other_port, 1))
        .replace("instances = 3", "instancs = 3");
    write(&baton, &typo);
    let o = baton.cli_async(&["reload"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    let at = format!("{}:", baton.config.display());
    assert!(
        err.contains(&at) && err.contains("instancs"),
        "file:line:col: {err}"
    );
    // The daemon refuses it the same way when asked directly.
    let (code, body) = baton.api_post("/v1/reload", "{}").await;
    assert_eq!(code, 400, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains(&at));
    assert!(ok(fresh_addr).await, "fresh still serves");
    assert_eq!(serving(&baton, "other").await, 2);

    // A key only a restart applies is refused by name; a listener that cannot bind too.
    let webhook = format!("{after}\n[[notify]]\nwebhook = \"http://127.0.0.1:9/\"\n");
    write(&baton, &webhook);
    let o = baton.cli_async(&["reload"]).await;
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("`notify` changed"));
    // `aaa` binds before `busy` fails: its socket is closed again, not left listening.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let aaa_port = free_port();
    let busy = format!(
        "{after}{}{}",
        app("aaa", aaa_port, 1),
        app("busy", taken.local_addr().unwrap().port(), 1)
    );
    write(&baton, &busy);
    let o = baton.cli_async(&["reload"]).await;
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot listen on"));
    assert_eq!(status(&baton, "busy").await.map(|s| s.app), None);
    assert!(
        !answers(format!("127.0.0.1:{aaa_port}").parse().unwrap()),
        "a refused reload left a socket listening"
    );

    // SIGHUP reloads too: other goes back to 1 instance, fresh moves to another port.
    let moved_port = free_port();
    write(
        &baton,
        &after
            .replace("instances = 2", "instances = 1")
            .replace(&format!(":{fresh_port}\""), &format!(":{moved_port}\"")),
    );
    kill(Pid::from_raw(baton.pid() as i32), Signal::SIGHUP).unwrap();
    let scaled = wait_until_async(Duration::from_secs(30), || async {
        status(&baton, "other").await.is_some_and(|s| {
            s.instances_wanted == 1 && s.instances.len() == 1 && s.instances[0].state == "healthy"
        })
    })
    .await;
    assert!(
        scaled,
        "{:?}\nlog:\n{}",
        status(&baton, "other").await,
        baton.log()
    );
    let moved = SocketAddr::from(([127, 0, 0, 1], moved_port));
    assert!(ok(moved).await, "fresh answers on its new port");
    assert!(
        wait_until(Duration::from_secs(10), || !answers(fresh_addr)),
        "and no longer on the old one"
    );
    assert!(wait_until(Duration::from_secs(5), || baton.log().contains(
        "changed fresh@production (listen); changed other@production (instances)"
    )));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_in_progress_keeps_its_rules_across_a_reload() {
    let steps = |s: &str| format!("{THREE_WEB}\n[apps.web.canary]\nsteps = {s}\n");
    let two = r#"[ { weight = 10, pause = "forever" }, { weight = 100 } ]"#;
    let three = r#"[ { weight = 20, pause = "forever" }, { weight = 60, pause = "forever" }, { weight = 100 } ]"#;
    let baton = Baton::start(&steps(two));
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        baton.release("web", v, &[]);
    }
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let o = baton.cli(&["deploy", "web", "1.1.0", "--strategy", "canary"]);
    assert!(o.status.success(), "{}", text(&o));
    let at = |step: u32, weight: u32| {
        move |b: &Baton| {
            b.status("web")
                .deployment
                .is_some_and(|d| d.step == step && d.weight == weight)
        }
    };
    assert!(wait_until(Duration::from_secs(30), || at(1, 10)(&baton)));

    // New steps while the canary holds at 10 %: it keeps the two steps it started with, so a
    // promote takes it to 100 % and it ends.
    write(&baton, &steps(three));
    let o = baton.cli(&["reload"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("web@production: canary.steps"),
        "{}",
        text(&o)
    );
    assert!(baton.cli(&["promote", "web"]).status.success());
    assert!(
        wait_until(Duration::from_secs(30), || {
            let s = baton.status("web");
            s.phase == "idle" && s.release.as_deref() == Some("1.1.0")
        }),
        "{:?}",
        baton.status("web")
    );

    // The next deployment runs with the new rules.
    let o = baton.cli(&["deploy", "web", "1.2.0", "--strategy", "canary"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        wait_until(Duration::from_secs(30), || at(1, 20)(&baton)),
        "{:?}",
        baton.status("web")
    );
    assert!(baton.cli(&["promote", "web"]).status.success());
    assert!(
        wait_until(Duration::from_secs(30), || at(2, 60)(&baton)),
        "{:?}",
        baton.status("web")
    );
}
