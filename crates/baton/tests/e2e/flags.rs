//! Feature flags over OFREP, evaluated by a real OpenFeature client (the Python SDK with its
//! OFREP provider, installed by .ci/run): ~N % of 1,000 keys on at `--percent N`, the same
//! answer for the same key, monotone growth 10 -> 20 -> 50, a targeting rule, bulk evaluation
//! with ETag / 304, and the read-only token's reach (401 without it, nothing on /v1).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use crate::harness::{Baton, free_port, text};

const CONFIG: &str = r#"
[api]
listen = "127.0.0.1:@API@"

[flags]
listen = "127.0.0.1:@FLAGS@"

[apps.web]
listen = "127.0.0.1:@WEB@"
command = ["{artifact}/baton-demo", "--port", "{port}"]

[apps.web.flags.new-checkout]
percent = 10

[apps.web.flags.beta-search]
match = [{ attribute = "plan", in = ["pro", "team"] }]
"#;

/// The Python with `openfeature-sdk` and `openfeature-provider-ofrep`: `$BATON_OFREP_PYTHON`,
/// or the venv .ci/run makes under target/.
fn python() -> PathBuf {
    let path = std::env::var_os("BATON_OFREP_PYTHON").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/ofrep-venv/bin/python"),
        PathBuf::from,
    );
    let ok = Command::new(&path)
        .args(["-c", "import openfeature.contrib.provider.ofrep"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "this test needs the OpenFeature Python SDK and its OFREP provider at {}: run \
         `python3 -m venv target/ofrep-venv && target/ofrep-venv/bin/pip install \
         openfeature-sdk openfeature-provider-ofrep` (as .ci/run does), or point \
         BATON_OFREP_PYTHON at a python that has them",
        path.display()
    );
    path
}

/// `[value, reason, variant, error]` per key, from the real SDK.
type Answers = Vec<(bool, String, Option<String>, Option<String>)>;

fn sdk(ofrep: SocketAddr, token: &str, flag: &str, count: usize, attrs: &[&str]) -> Answers {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/flags_client/evaluate.py");
    let o = Command::new(python())
        .arg(script)
        .args([
            &format!("http://{ofrep}"),
            token,
            flag,
            "user-",
            &count.to_string(),
        ])
        .args(attrs)
        .output()
        .unwrap();
    assert!(o.status.success(), "the SDK client failed: {}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// One call: the status, the ETag and the JSON answer (Null when empty). `auth` is sent as
/// `Authorization` when it starts with "Bearer ", else as `X-API-Key`.
async fn call(
    ofrep: SocketAddr,
    auth: Option<&str>,
    path: &str,
    body: &str,
    if_none_match: Option<&str>,
) -> (u16, Option<String>, serde_json::Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = hyper::Request::post(format!("http://{ofrep}{path}"))
        .header("content-type", "application/json");
    match auth {
        Some(a) if a.starts_with("Bearer ") => req = req.header("authorization", a),
        Some(a) => req = req.header("x-api-key", a),
        None => {}
    }
    if let Some(t) = if_none_match {
        req = req.header("if-none-match", t);
    }
    let req = req
        .body(http_body_util::Full::new(bytes::Bytes::from(
            body.to_string(),
        )))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    (status, etag, json)
}

fn on(answers: &Answers) -> Vec<bool> {
    answers.iter().map(|a| a.0).collect()
}

fn set(baton: &Baton, args: &[&str]) {
    let mut all = vec!["flag", "set", "web"];
    all.extend_from_slice(args);
    let o = baton.cli(&all);
    assert!(o.status.success(), "baton flag set: {}", text(&o));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_openfeature_client_gets_a_sticky_monotone_percentage_over_ofrep() {
    let flags_port = free_port();
    let baton = Baton::start(&CONFIG.replace("@FLAGS@", &flags_port.to_string()));
    let ofrep = SocketAddr::from(([127, 0, 0, 1], flags_port));
    let o = baton.cli(&["flag", "token", "web"]);
    assert!(o.status.success(), "baton flag token: {}", text(&o));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();

    // 10 % from baton.toml: about 100 of 1,000 keys, SPLIT, the same answer twice.
    let at10 = sdk(ofrep, &token, "new-checkout", 1000, &[]);
    assert_eq!(
        on(&at10),
        on(&sdk(ofrep, &token, "new-checkout", 1000, &[]))
    );
    let mut before = on(&at10);
    let count = |v: &[bool]| v.iter().filter(|x| **x).count();
    assert!(
        (60..=140).contains(&count(&before)),
        "{} of 1000 at 10%",
        count(&before)
    );
    assert!(
        at10.iter().all(|a| a.1 == "SPLIT" && a.3.is_none()),
        "{:?}",
        &at10[..3]
    );
    assert!(
        at10.iter()
            .all(|a| a.2.as_deref() == Some(if a.0 { "on" } else { "off" }))
    );

    // Raised live: everyone who had it keeps it, and the share follows.
    for (percent, low, high) in [("20", 150, 250), ("50", 440, 560)] {
        set(&baton, &["new-checkout", "--percent", percent]);
        let now = on(&sdk(ofrep, &token, "new-checkout", 1000, &[]));
        assert!(
            (low..=high).contains(&count(&now)),
            "{} of 1000 at {percent}%",
            count(&now)
        );
        let lost = before.iter().zip(&now).filter(|(b, n)| **b && !**n).count();
        assert_eq!(lost, 0, "{lost} keys lost the flag going up to {percent}%");
        before = now;
    }

    // Off: DISABLED for everyone; a missing targeting key is the SDK's TARGETING_KEY_MISSING.
    set(&baton, &["new-checkout", "--off"]);
    let off = sdk(ofrep, &token, "new-checkout", 20, &[]);
    assert!(off.iter().all(|a| !a.0 && a.1 == "DISABLED"), "{off:?}");
    set(&baton, &["new-checkout", "--percent", "50"]);
    let no_key = sdk(ofrep, &token, "new-checkout", 0, &[]);
    assert_eq!(
        no_key[0].3.as_deref(),
        Some("TARGETING_KEY_MISSING"),
        "{no_key:?}"
    );

    // A targeting rule on a context attribute, and an unknown flag.
    let pro = sdk(ofrep, &token, "beta-search", 5, &["plan=team"]);
    assert!(
        pro.iter().all(|a| a.0 && a.1 == "TARGETING_MATCH"),
        "{pro:?}"
    );
    let free = sdk(ofrep, &token, "beta-search", 5, &["plan=free"]);
    assert!(free.iter().all(|a| !a.0 && a.1 == "DEFAULT"), "{free:?}");
    let missing = sdk(ofrep, &token, "no-such-flag", 1, &[]);
    assert_eq!(
        missing[0].3.as_deref(),
        Some("FLAG_NOT_FOUND"),
        "{missing:?}"
    );

    // `baton flags` shows the live change and who made it.
    let o = baton.cli(&["flags", "web", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let views: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let nc = views
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "new-checkout")
        .unwrap();
    assert_eq!(
        (nc["source"].as_str(), nc["summary"].as_str()),
        (Some("live"), Some("50%"))
    );
    assert!(nc["actor"].as_str().is_some_and(|a| !a.is_empty()), "{nc}");
    let o = baton.cli(&["flags", "web"]);
    assert!(
        text(&o).contains("beta-search") && text(&o).contains("baton.toml"),
        "{}",
        text(&o)
    );

    // The ledger has every live change beside the releases, newest first, with its actor.
    let o = baton.cli(&["releases", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let changes: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("flag changes"))
        .skip(1)
        .collect();
    let summaries: Vec<&str> = changes
        .iter()
        .filter(|l| l.contains("new-checkout"))
        .map(|l| l.split_whitespace().nth(4).unwrap_or(""))
        .collect();
    assert_eq!(summaries, ["50%", "off", "50%", "20%"], "{out}");
    let actor = nc["actor"].as_str().unwrap();
    assert!(
        changes.iter().all(|l| l.ends_with(&format!("by {actor}"))),
        "{out}"
    );
    let (status, history) = baton.api_get("/v1/apps/web/flag-history?limit=2").await;
    assert_eq!(status, 200, "{history}");
    assert_eq!(history.as_array().map(Vec::len), Some(2), "{history}");
    assert_eq!(history[0]["summary"], "50%", "{history}");
}

#[tokio::test(flavor = "multi_thread")]
async fn bulk_evaluation_has_an_etag_and_the_token_only_evaluates() {
    let flags_port = free_port();
    let baton = Baton::start(&CONFIG.replace("@FLAGS@", &flags_port.to_string()));
    let ofrep = SocketAddr::from(([127, 0, 0, 1], flags_port));
    let o = baton.cli(&["flag", "token", "web"]);
    assert!(o.status.success(), "{}", text(&o));
    let token = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let bearer = format!("Bearer {token}");
    let bulk = "/ofrep/v1/evaluate/flags";
    let ctx = r#"{"context": {"targetingKey": "user-7", "plan": "pro"}}"#;

    let (status, etag, body) = call(ofrep, Some(&bearer), bulk, ctx, None).await;
    assert_eq!(status, 200, "{body}");
    let flags = body["flags"].as_array().unwrap();
    assert_eq!(flags.len(), 2, "{body}");
    let search = flags.iter().find(|f| f["key"] == "beta-search").unwrap();
    assert_eq!(
        (&search["value"], &search["reason"], &search["variant"]),
        (
            &serde_json::json!(true),
            &serde_json::json!("TARGETING_MATCH"),
            &serde_json::json!("on")
        )
    );
    let etag = etag.expect("the bulk answer has an ETag");
    let (status, again, body) = call(ofrep, Some(&bearer), bulk, ctx, Some(&etag)).await;
    assert_eq!(
        (status, again.as_deref(), &body),
        (304, Some(etag.as_str()), &serde_json::Value::Null)
    );
    // Another context or a changed flag is another answer.
    let (status, other, _) = call(
        ofrep,
        Some(&bearer),
        bulk,
        r#"{"context": {"targetingKey": "u"}}"#,
        Some(&etag),
    )
    .await;
    assert!(status == 200 && other.as_deref() != Some(etag.as_str()));
    set(&baton, &["beta-search", "--off"]);
    let (status, changed, body) = call(ofrep, Some(&bearer), bulk, ctx, Some(&etag)).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(changed.as_deref(), Some(etag.as_str()));

    // Single evaluation errors in the spec's shape.
    let one = "/ofrep/v1/evaluate/flags/new-checkout";
    let (status, _, body) = call(ofrep, Some(&bearer), one, "{}", None).await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (400, Some("TARGETING_KEY_MISSING")),
        "{body}"
    );
    let (status, _, body) = call(ofrep, Some(&bearer), one, "{nope", None).await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (400, Some("PARSE_ERROR")),
        "{body}"
    );
    let (status, _, body) = call(
        ofrep,
        Some(&bearer),
        "/ofrep/v1/evaluate/flags/nope",
        "{}",
        None,
    )
    .await;
    assert_eq!(
        (status, body["errorCode"].as_str()),
        (404, Some("FLAG_NOT_FOUND")),
        "{body}"
    );
    let (status, _, body) = call(ofrep, Some(&token), one, ctx, None).await;
    assert_eq!(
        (status, body["reason"].as_str()),
        (200, Some("SPLIT")),
        "X-API-Key: {body}"
    );

    // No token, a wrong one, the admin token: 401. The flag token opens nothing on /v1.
    let admin = std::fs::read_to_string(baton.data_dir().join("token")).unwrap();
    for auth in [
        None,
        Some("Bearer bft_wrong".to_string()),
        Some(format!("Bearer {}", admin.trim())),
    ] {
        let (status, _, body) = call(ofrep, auth.as_deref(), one, ctx, None).await;
        assert_eq!(status, 401, "{auth:?}: {body}");
        assert!(
            body["errorDetails"]
                .as_str()
                .unwrap()
                .contains("baton flag token"),
            "{body}"
        );
    }
    let (status, _, _) = call(
        baton.api,
        Some(&bearer),
        "/v1/apps/web/flags/new-checkout",
        r#"{"enabled": true}"#,
        None,
    )
    .await;
    assert_eq!(status, 401, "the flag token must not change flags");
    let (status, _, _) = call(
        baton.api,
        Some(&bearer),
        "/v1/apps/web/flag-tokens",
        "{}",
        None,
    )
    .await;
    assert_eq!(status, 401, "the flag token must not make tokens");
    // No admin route on the OFREP listener either.
    let (status, _, _) = call(
        ofrep,
        Some(&bearer),
        "/v1/apps/web/flags/new-checkout",
        "{}",
        None,
    )
    .await;
    assert_eq!(status, 404);

    // baton.toml's definitions follow a reload; `[flags] listen` is restart-only.
    let config = std::fs::read_to_string(&baton.config).unwrap();
    let moved = config.replace(&flags_port.to_string(), &free_port().to_string());
    std::fs::write(&baton.config, &moved).unwrap();
    let o = baton.cli(&["reload"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("`flags` changed"), "{}", text(&o));
    std::fs::write(
        &baton.config,
        config.replace("percent = 10", "percent = 100"),
    )
    .unwrap();
    let o = baton.cli(&["reload"]);
    assert!(o.status.success(), "{}", text(&o));
    let (status, _, body) = call(ofrep, Some(&bearer), one, "{}", None).await;
    let got = (status, body["value"].as_bool(), body["reason"].as_str());
    assert_eq!(got, (200, Some(true), Some("STATIC")), "{body}");

    // A leaked token is revoked: refused at once, kept on record with who did it.
    let o = baton.cli(&["flag", "token", "web"]);
    let other = format!("Bearer {}", String::from_utf8(o.stdout).unwrap().trim());
    let o = baton.cli(&["flag", "tokens", "web", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let listed: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids.len(), 2, "{listed}");
    assert!(!text(&o).contains("bft_"), "a listing never shows a secret");
    let first = ids[0].to_string();
    let o = baton.cli(&["flag", "revoke", "web", &first]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("revoked: the OFREP listener refuses it"),
        "{}",
        text(&o)
    );
    let (status, _, body) = call(ofrep, Some(&bearer), one, "{}", None).await;
    assert_eq!(status, 401, "a revoked token: {body}");
    let (status, _, body) = call(ofrep, Some(&other), one, "{}", None).await;
    assert_eq!(status, 200, "the other token still works: {body}");
    let o = baton.cli(&["flag", "revoke", "web", &first]);
    assert!(text(&o).contains("was already revoked"), "{}", text(&o));
    let o = baton.cli(&["flag", "tokens", "web"]);
    let shown = text(&o);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with(&first) && l.contains("revoked"))
            && shown.lines().filter(|l| l.ends_with("valid")).count() == 1,
        "{shown}"
    );
    let o = baton.cli(&["flag", "revoke", "web", "999"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no OFREP token 999"), "{}", text(&o));
    let tokens: Vec<String> = crate::hosts::stored_events(
        &baton.data_dir().join("baton.db"),
        "app = 'web@production' AND kind = 'flag_token'",
    )
    .into_iter()
    .map(|(_, message)| message)
    .collect();
    assert_eq!(tokens.len(), 3, "two made, one revoked: {tokens:?}");
    assert!(
        tokens[2].starts_with(&format!("OFREP token {first} revoked by ")),
        "{tokens:?}"
    );
}

/// GETs the demo's `/headers` through the app's listener: the `X-Baton-Flags` it got.
async fn flags_header(web: SocketAddr, headers: &[(&str, &str)]) -> String {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut req = hyper::Request::get(format!("http://{web}/headers"));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(http_body_util::Empty::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8(body.to_vec()).unwrap();
    let lines: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("x-baton-flags: "))
        .collect();
    assert_eq!(lines.len(), 1, "one X-Baton-Flags header: {body}");
    lines[0].to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_adds_x_baton_flags_with_the_same_answers_as_ofrep() {
    let flags_port = free_port();
    let (hook_port, hooks) = crate::webhooks::receiver().await;
    let config = format!("[[notify]]\nwebhook = \"http://127.0.0.1:{hook_port}/hooks\"\n")
        + &CONFIG.replace("@FLAGS@", &flags_port.to_string())
        + "\n[apps.web.canary]\nsticky = { header = \"x-user\", cookie = \"uid\" }\n";
    let baton = Baton::start(&config);
    let ofrep = SocketAddr::from(([127, 0, 0, 1], flags_port));
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let o = baton.cli(&["flag", "token", "web"]);
    let bearer = format!("Bearer {}", String::from_utf8(o.stdout).unwrap().trim());

    // Per request, sticky on the user's key: the same answer as OFREP for the same key; a
    // client's own X-Baton-Flags never reaches the app.
    set(&baton, &["new-checkout", "--percent", "30"]);
    let mut on = 0;
    for i in 0..200 {
        let user = format!("user-{i}");
        let forged = [
            ("x-user", user.as_str()),
            ("x-baton-flags", "new-checkout=on; admin=on"),
        ];
        let header = flags_header(baton.web(), &forged).await;
        let body = format!(r#"{{"context": {{"targetingKey": "{user}"}}}}"#);
        let (_, _, want) = call(
            ofrep,
            Some(&bearer),
            "/ofrep/v1/evaluate/flags/new-checkout",
            &body,
            None,
        )
        .await;
        let want = if want["value"] == true { "on" } else { "off" };
        assert_eq!(
            header,
            format!("beta-search=off; new-checkout={want}"),
            "{user}"
        );
        on += usize::from(want == "on");
        let cookie = format!("uid={user}");
        assert_eq!(
            flags_header(baton.web(), &[("cookie", &cookie)]).await,
            header
        );
    }
    assert!((30..=90).contains(&on), "{on} of 200 at 30%");

    // A rule on a request header, set live.
    set(&baton, &["beta-search", "--match", "header:x-beta=1"]);
    let h = flags_header(baton.web(), &[("x-beta", "1")]).await;
    assert!(h.starts_with("beta-search=on; "), "{h}");
    let h = flags_header(baton.web(), &[("x-beta", "2")]).await;
    assert!(h.starts_with("beta-search=off; "), "{h}");

    // Each live change went to the webhooks too, with the flag, what it became and who.
    let changes = || -> Vec<String> {
        hooks
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "flag_changed")
            .map(|e| format!("{} {} {}", e["app"], e["env"], e["message"]))
            .collect()
    };
    let delivered =
        crate::harness::wait_until(std::time::Duration::from_secs(10), || changes().len() == 2);
    let got = changes();
    assert!(delivered, "{got:?}");
    assert!(
        got[0].starts_with("\"web\" \"production\" \"flag new-checkout set to 30% by ")
            && got[1].contains("flag beta-search set to 1 rule by "),
        "{got:?}"
    );
}
