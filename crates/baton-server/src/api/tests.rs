//! The API over real sockets: a daemon in this process on a temporary data directory, and
//! raw HTTP/1.1 from the tests, so that what is on the wire is what is asserted.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use crate::daemon::{self, Daemon};

/// Generous bound for what must happen: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(30);

/// A daemon with one app (never deployed) and these `[api]` settings.
struct Api {
    daemon: Daemon,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Api {
    async fn start(api_settings: &str) -> Api {
        Api::start_in(tempfile::tempdir().unwrap(), api_settings).await
    }

    /// [`Api::start`] with the config in `dir` (data directory `dir/.baton`).
    async fn start_in(dir: tempfile::TempDir, api_settings: &str) -> Api {
        let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let web_port = web.local_addr().unwrap().port();
        drop(web);
        let text = format!(
            "[api]\nlisten = \"127.0.0.1:0\"\n{api_settings}\n\n[apps.web]\nlisten = \"127.0.0.1:{web_port}\"\ncommand = [\"/bin/false\"]\n"
        );
        let path = dir.path().join("baton.toml");
        std::fs::write(&path, &text).unwrap();
        let config = baton_core::config::Config::parse(&text, &path).unwrap();
        let (ready_tx, ready_rx) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            daemon::run(&path, config, shutdown, Some(ready_tx))
                .await
                .unwrap();
        });
        let daemon = ready_rx.await.expect("the daemon started");
        Api {
            daemon,
            stop: Some(stop),
            task: Some(task),
            _dir: dir,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.daemon.api
    }

    fn auth(&self) -> String {
        format!("Authorization: Bearer {}\r\n", self.daemon.token)
    }

    /// Sends `head` (with the token unless `auth` is false) and `body`; returns the status,
    /// the content type and the body.
    async fn call(&self, head: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
        let mut request = head.replace("\r\n\r\n", &format!("\r\n{}\r\n", self.auth()));
        if !body.is_empty() {
            request = request.replace(
                "\r\n\r\n",
                &format!("\r\nContent-Length: {}\r\n\r\n", body.len()),
            );
        }
        raw(self.addr(), request.as_bytes(), body).await
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.take().unwrap().await.unwrap();
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// One request on its own connection (`Connection: close`): status, content type, body.
async fn raw(addr: SocketAddr, head: &[u8], body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head).await.unwrap();
    // The server may answer (413) before it has read all of a large body.
    let _ = s.write_all(body).await;
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .ok();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().unwrap();
    let content_type = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_string)
        })
        .unwrap_or_default();
    (status, content_type, body.as_bytes().to_vec())
}

/// The error of a JSON error body: its code and message; panics for any other shape.
fn error_of(status: u16, content_type: &str, body: &[u8]) -> (String, String) {
    assert_eq!(content_type, "application/json", "status {status}");
    let v: serde_json::Value = serde_json::from_slice(body).expect("a JSON body");
    let code = v["error"]["code"].as_str().expect("error.code").to_string();
    let message = v["error"]["message"]
        .as_str()
        .expect("error.message")
        .to_string();
    (code, message)
}

/// Reads until the server closes the connection (or `DEADLINE` passes: false).
async fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match tokio::time::timeout(DEADLINE, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: baton\r\nConnection: close\r\n\r\n")
}

fn post_json(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: baton\r\nConnection: close\r\nContent-Type: application/json\r\n\r\n"
    )
}

#[tokio::test]
async fn axums_rejections_and_unknown_routes_answer_the_json_error_shape() {
    let api = Api::start("").await;
    for (head, status, code) in [
        (get("/v1/deployments/abc"), 400, "bad_request"),
        (get("/v1/apps/web/deployments?limit=-1"), 400, "bad_request"),
        (get("/v1/nothing/here"), 404, "not_found"),
        (
            "DELETE /v1/apps HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".to_string(),
            405,
            "method_not_allowed",
        ),
        (post_json("/v1/apps/web/deployments"), 400, "bad_request"),
    ] {
        let (s, ct, body) = api.call(&head, b"").await;
        assert_eq!(s, status, "{head}: {}", String::from_utf8_lossy(&body));
        let (c, message) = error_of(s, &ct, &body);
        assert_eq!(c, code, "{head}: {message}");
        assert!(!message.is_empty(), "{head}");
    }
    let (s, ct, body) = api.call(&get("/v1/deployments/abc"), b"").await;
    let (_, message) = error_of(s, &ct, &body);
    assert!(message.contains("\"abc\" is not a number"), "{message}");
    api.stop().await;
}

#[tokio::test]
async fn a_huge_string_sent_is_not_echoed_and_a_large_json_body_gets_a_json_413() {
    let api = Api::start("").await;
    let release = "9".repeat(900_000);
    let body = format!(r#"{{"release": "{release}"}}"#);
    let (s, ct, answer) = api
        .call(&post_json("/v1/apps/web/deployments"), body.as_bytes())
        .await;
    let (code, message) = error_of(s, &ct, &answer);
    assert_eq!((s, code.as_str()), (404, "not_found"), "{message}");
    assert!(answer.len() < 2048, "{} bytes answered", answer.len());
    assert!(message.contains("more bytes"), "{message}");

    let body = format!(r#"{{"release": "{}"}}"#, "9".repeat(3 << 20));
    let (s, ct, answer) = api
        .call(&post_json("/v1/apps/web/deployments"), body.as_bytes())
        .await;
    let (code, message) = error_of(s, &ct, &answer);
    assert_eq!((s, code.as_str()), (413, "payload_too_large"), "{message}");

    // The release upload keeps its own, large limit: 3 MiB is read and judged as an artifact.
    let (s, ct, answer) = api
        .call(
            "POST /v1/apps/web/releases?version=1.0.0 HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n",
            &vec![b'x'; 3 << 20],
        )
        .await;
    let (code, message) = error_of(s, &ct, &answer);
    assert_eq!((s, code.as_str()), (400, "bad_request"), "{message}");
    api.stop().await;
}

#[tokio::test]
async fn an_actor_longer_than_the_limit_is_refused_naming_the_field_and_limit() {
    let api = Api::start("").await;
    let body = format!(
        r#"{{"release": "1.0.0", "force": true, "actor": "{}"}}"#,
        "a".repeat(3_000)
    );
    for path in ["/v1/apps/web/deployments", "/v1/apps/web/rollback"] {
        let (s, ct, answer) = api.call(&post_json(path), body.as_bytes()).await;
        let (code, message) = error_of(s, &ct, &answer);
        assert_eq!(
            (s, code.as_str()),
            (400, "bad_request"),
            "{path}: {message}"
        );
        assert!(
            message.contains("\"actor\" is 3000 characters long; at most 256"),
            "{message}"
        );
        assert!(
            !message.contains("aaaa"),
            "the actor is not echoed: {message}"
        );
    }
    api.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let api = Api::start("").await;
    let token = api.daemon.token.clone();
    for (authorization, status) in [
        (format!("bearer {token}"), 200),
        (format!("BEARER  {token}"), 200),
        (format!("Bearer {token}"), 200),
        (format!("Bearer{token}"), 401),
        (format!("Basic {token}"), 401),
        ("Bearer wrong".to_string(), 401),
    ] {
        let head = format!(
            "GET /v1/apps HTTP/1.1\r\nHost: b\r\nConnection: close\r\nAuthorization: {authorization}\r\n\r\n"
        );
        let (s, ct, body) = raw(api.addr(), head.as_bytes(), b"").await;
        assert_eq!(s, status, "{authorization}");
        if s == 401 {
            assert_eq!(error_of(s, &ct, &body).0, "unauthorized");
        }
    }
    api.stop().await;
}

#[tokio::test]
async fn silent_connections_are_closed_after_the_header_timeout() {
    let api = Api::start("header_timeout = \"1s\"").await;
    let mut silent = Vec::new();
    for _ in 0..5 {
        silent.push(TcpStream::connect(api.addr()).await.unwrap());
    }
    for s in &mut silent {
        assert!(closed_by_server(s).await, "a silent connection stayed open");
    }
    api.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once_and_the_api_serves_again_after() {
    let api = Api::start("header_timeout = \"5m\"\nmax_connections = 2").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(TcpStream::connect(api.addr()).await.unwrap());
    }
    // Accepted in order: once a third is closed, the first two hold the permits.
    let mut over = TcpStream::connect(api.addr()).await.unwrap();
    assert!(closed_by_server(&mut over).await, "over the cap, yet open");
    drop(held);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let mut s = TcpStream::connect(api.addr()).await.unwrap();
        let head = get("/v1/apps").replace("\r\n\r\n", &format!("\r\n{}\r\n", api.auth()));
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await;
        if out.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the API did not serve again after the held connections closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.stop().await;
}

#[tokio::test]
async fn a_request_body_that_stalls_is_answered_and_closed_after_the_idle_timeout() {
    let api = Api::start("idle_timeout = \"1s\"").await;
    let head = post_json("/v1/apps/web/deployments").replace(
        "\r\n\r\n",
        &format!("\r\n{}Content-Length: 100\r\n\r\n", api.auth()),
    );
    let mut s = TcpStream::connect(api.addr()).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(b"{\"release\":").await.unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(DEADLINE, s.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "a stalled body held the connection");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("idle_timeout"), "{text}");
    api.stop().await;
}

#[test]
fn the_connection_cap_is_kept_to_a_quarter_of_the_fd_limit() {
    let api = baton_core::config::ApiConfig::default();
    assert_eq!(
        super::Limits::new(&api, 1 << 20).max_connections,
        baton_core::config::defaults::API_MAX_CONNECTIONS
    );
    assert_eq!(super::Limits::new(&api, 256).max_connections, 64);
    assert_eq!(super::Limits::new(&api, 2).max_connections, 1);
}

#[tokio::test]
async fn the_data_dir_is_0700_and_the_database_files_0600() {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let api = Api::start_in(dir, "").await;
    let data = api.daemon.data_dir.clone();
    assert_eq!(mode(&data), 0o700, "{}", data.display());
    for file in [
        "baton.db",
        "baton.db-wal",
        "baton.db-shm",
        "token",
        "read-token",
    ] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    api.stop().await;

    // A database an older Baton left readable by everyone is narrowed at the next start.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join(".baton");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("baton.db"), b"").unwrap();
    std::fs::set_permissions(
        data.join("baton.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let api = Api::start_in(dir, "").await;
    for file in ["baton.db", "baton.db-wal", "baton.db-shm"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    api.stop().await;
}

// === The dashboard's page beside the API ===

/// One GET without the token: the status, the head's lines and the body.
async fn get_without_token(addr: SocketAddr, path: &str) -> (u16, Vec<String>, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(get(path).as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(DEADLINE, s.read_to_end(&mut out))
        .await
        .expect("an answer")
        .ok();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let status = head[9..12].parse().unwrap();
    let lines = head.lines().skip(1).map(str::to_ascii_lowercase).collect();
    (status, lines, body.to_string())
}

/// The value of header `name` (lower case) in `lines`, if sent once; panics if sent twice.
fn header_of<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    let prefix = format!("{name}: ");
    let mut values = lines.iter().filter_map(|l| l.strip_prefix(&prefix));
    let first = values.next();
    assert!(values.next().is_none(), "{name} sent twice: {lines:?}");
    first
}

#[tokio::test]
async fn the_dashboard_assets_are_served_without_the_token_with_strict_headers() {
    let api = Api::start("").await;
    for (path, content_type, marker) in [
        ("/ui/", "text/html; charset=utf-8", "<title>Baton</title>"),
        (
            "/ui/dashboard.js",
            "text/javascript; charset=utf-8",
            "sessionStorage",
        ),
        (
            "/ui/dashboard.css",
            "text/css; charset=utf-8",
            "font-family",
        ),
    ] {
        let (status, head, body) = get_without_token(api.addr(), path).await;
        assert_eq!(status, 200, "{path}: {body}");
        assert_eq!(
            header_of(&head, "content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(
            header_of(&head, "content-security-policy"),
            Some(crate::dashboard::CONTENT_SECURITY_POLICY),
            "{path}"
        );
        assert_eq!(header_of(&head, "x-content-type-options"), Some("nosniff"));
        assert_eq!(header_of(&head, "referrer-policy"), Some("no-referrer"));
        assert_eq!(header_of(&head, "cache-control"), Some("no-store"));
        assert!(body.contains(marker), "{path} is not the asset: {body}");
    }
    for path in ["/", "/ui"] {
        let (status, head, _) = get_without_token(api.addr(), path).await;
        assert_eq!(status, 303, "{path}");
        assert_eq!(header_of(&head, "location"), Some("/ui/"), "{path}");
    }
    api.stop().await;
}

#[test]
fn the_dashboard_page_has_no_inline_code_and_the_script_never_parses_markup() {
    let page = include_str!("../dashboard/assets/index.html");
    let script = include_str!("../dashboard/assets/dashboard.js");
    // Every <script> loads the file (the policy would block an inline one: a silent break).
    assert_eq!(
        page.matches("<script").count(),
        page.matches("<script src=\"/ui/dashboard.js\" defer></script>")
            .count()
    );
    for inline in ["<style", " style=", " onload=", " onclick=", "javascript:"] {
        assert!(!page.contains(inline), "the page has inline code: {inline}");
    }
    for sink in [
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "eval(",
    ] {
        assert!(!script.contains(sink), "the script uses {sink}");
    }
    for external in ["http://", "https://", "//cdn"] {
        assert!(!page.contains(external) && !script.contains(external));
    }
}

#[tokio::test]
async fn beside_the_dashboard_every_other_path_still_needs_the_token() {
    let api = Api::start("").await;
    for path in [
        "/v1/apps",
        "/v1/apps/web",
        "/v1/hosts",
        "/ui/../v1/apps",
        "/ui/%2e%2e/v1/apps",
        "/ui/dashboard.js/../../v1/apps",
        "/ui//v1/apps",
        "/ui/index.html",
        "/v1/nothing/here",
    ] {
        let (status, _, body) = get_without_token(api.addr(), path).await;
        assert_eq!(status, 401, "{path} answered without the token: {body}");
        assert!(body.contains("\"unauthorized\""), "{path}: {body}");
        assert!(!body.contains("instances"), "{path} leaked data: {body}");
    }
    // With the token, a path that climbs out of /ui/ is no route, not the data it names.
    let (status, content_type, body) = api.call(&get("/ui/../v1/apps"), b"").await;
    assert_eq!(error_of(status, &content_type, &body).0, "not_found");
    let (status, _, _) = api.call(&get("/v1/apps"), b"").await;
    assert_eq!(status, 200);
    api.stop().await;
}
