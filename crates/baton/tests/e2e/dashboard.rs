//! The dashboard in a real headless browser: `baton dashboard`'s URL opened against a real
//! `baton up` with a deployed release shows the app, its release and its healthy instances,
//! and text users sent (release notes with markup) stays text.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::harness::{BATON, Baton, THREE_WEB, text, wait_until};

/// Markup a user may put in release notes: shown as text, it must never become an element.
const EVIL_NOTES: &str = "<img src=x onerror=alert(1)> fixed <b>checkout</b>";

/// The browsers tried, in order: Debian's packages `chromium-headless-shell` and `chromium`.
const BROWSERS: [&str; 2] = ["chromium-headless-shell", "chromium"];

/// How long a page may take to load, run its script and be dumped, on a loaded machine.
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);

/// The first of [`BROWSERS`] on `PATH`; panics (never skips) saying how to install one.
fn browser() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in BROWSERS {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!(
        "no headless browser on PATH (looked for {BROWSERS:?}): the dashboard test renders the \
         page in one; install it with `apt-get install -y chromium-headless-shell` (.ci/run does)"
    );
}

/// A browser process group, killed (every process of it) when dropped, even on panic.
struct BrowserRun {
    child: Child,
}

impl Drop for BrowserRun {
    fn drop(&mut self) {
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// Opens `url` in the headless browser, lets the page's fetches and a few refreshes run in
/// virtual time, and returns the DOM it ends with.
fn render(url: &str, scratch: &Path) -> String {
    let profile = tempfile::tempdir_in(scratch).unwrap();
    let dom_file = profile.path().join("dom.html");
    let log_file = profile.path().join("browser.log");
    let mut command = Command::new(browser());
    command
        .args([
            "--no-sandbox",
            "--headless",
            "--disable-gpu",
            "--no-first-run",
            "--virtual-time-budget=10000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&dom_file).unwrap())
        .stderr(std::fs::File::create(&log_file).unwrap());
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut run = BrowserRun {
        child: command.spawn().unwrap(),
    };
    let mut status = None;
    let exited = wait_until(BROWSER_DEADLINE, || {
        status = run.child.try_wait().unwrap();
        status.is_some()
    });
    let log = std::fs::read_to_string(&log_file).unwrap_or_default();
    assert!(
        exited,
        "the browser did not exit within {BROWSER_DEADLINE:?}:\n{log}"
    );
    assert!(
        status.unwrap().success(),
        "the browser failed: {status:?}\n{log}"
    );
    drop(run);
    std::fs::read_to_string(&dom_file).unwrap()
}

/// Creates release `version` of `web` with `notes`, from a demo artifact.
fn release_with_notes(baton: &Baton, version: &str, notes: &str) {
    let out = baton.dir.path().join("src").join(version);
    let o = baton.cli(&[
        "demo",
        "artifact",
        out.to_str().unwrap(),
        "--version",
        version,
    ]);
    assert!(o.status.success(), "demo artifact: {}", text(&o));
    let o = baton.cli(&[
        "release",
        "create",
        "web",
        version,
        "--artifact",
        out.to_str().unwrap(),
        "--notes",
        notes,
    ]);
    assert!(o.status.success(), "release create: {}", text(&o));
}

/// What `baton dashboard` prints on stdout.
fn dashboard_url(baton: &Baton) -> String {
    let o = baton.cli(&["dashboard"]);
    assert!(o.status.success(), "baton dashboard: {}", text(&o));
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_serving_release_and_healthy_instances_and_keeps_markup_as_text() {
    let browser_found = browser();
    let baton = Baton::start(THREE_WEB);
    release_with_notes(&baton, "1.0.0", EVIL_NOTES);
    baton.deploy_ok("web", "1.0.0", &[]).await;

    let url = dashboard_url(&baton);
    // The URL carries the read-only token, never the API token.
    let token = std::fs::read_to_string(baton.data_dir().join("read-token")).unwrap();
    let admin = std::fs::read_to_string(baton.data_dir().join("token")).unwrap();
    assert_ne!(token.trim(), admin.trim());
    assert_eq!(
        url,
        format!("http://{}/ui/#token={}", baton.api, token.trim()),
        "stdout is the URL alone"
    );

    let dom = render(&url, baton.dir.path());
    let context = || {
        format!(
            "{} rendered:\n{dom}\nbaton log:\n{}",
            browser_found.display(),
            baton.log()
        )
    };
    assert!(
        dom.contains("Updated "),
        "the page never read the API: {}",
        context()
    );
    assert!(
        dom.contains(r#"data-app="web""#) && dom.contains(r#"<span class="release">1.0.0</span>"#),
        "the app and its serving release are missing: {}",
        context()
    );
    let healthy = dom
        .matches(r#"<td class="state good">healthy</td>"#)
        .count();
    let in_split = dom.matches(r#"<td class="in-split">yes</td>"#).count();
    assert_eq!(
        (healthy, in_split),
        (3, 3),
        "3 healthy instances in the split: {}",
        context()
    );
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt; fixed &lt;b&gt;checkout&lt;/b&gt;"),
        "the notes are not shown as text: {}",
        context()
    );
    assert!(
        !dom.contains("<img") && !dom.contains("<b>"),
        "the notes' markup became elements: {}",
        context()
    );
    assert!(
        !dom.contains(token.trim()),
        "the token is in the page: {}",
        context()
    );

    // Without the token the page reads nothing and says how to get one.
    let bare = url.split_once('#').unwrap().0;
    let dom = render(bare, baton.dir.path());
    assert!(
        dom.contains("No API token.") && dom.contains("<code>baton dashboard</code>"),
        "without a token: {dom}"
    );
    assert!(
        !dom.contains(r#"data-app="web""#),
        "data without a token: {dom}"
    );

    // The read-only token reads and changes nothing; a rotation ends the old URLs at once.
    let read = token.trim();
    assert_eq!(api(&baton, "GET", "/v1/apps", read).0, 200);
    let (status, body) = api(&baton, "POST", "/v1/apps/web/pause", read);
    assert!(
        status == 403 && body.contains("read-only token"),
        "{status} {body}"
    );
    assert_eq!(api(&baton, "POST", "/v1/dashboard/token", read).0, 403);
    let o = baton.cli(&["dashboard", "--rotate"]);
    assert!(o.status.success(), "{}", text(&o));
    let rotated = String::from_utf8(o.stdout).unwrap();
    let new = rotated.trim().rsplit_once("#token=").unwrap().1;
    assert_ne!(new, read);
    assert_eq!(api(&baton, "GET", "/v1/apps", read).0, 401, "the old URL");
    assert_eq!(api(&baton, "GET", "/v1/apps", new).0, 200);
    assert_eq!(api(&baton, "GET", "/v1/apps", admin.trim()).0, 200);
}

/// One API call with `token` and no body: the status and the body.
fn api(baton: &Baton, method: &str, path: &str, token: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(baton.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: baton\r\nAuthorization: Bearer {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// A canary that holds at 10 % until promoted, a breaker and a flag.
const CANARY_BREAKER_FLAG: &str = r#"
[apps.web.canary]
steps = [ { weight = 10, pause = "forever" }, { weight = 100 } ]

[[apps.web.breakers]]
name = "checkout"
path = "/checkout"
max_error_rate = 0.5

[apps.web.flags.new-checkout]
percent = 20
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_a_paused_canary_with_its_weight_and_the_apps_breakers_and_flags() {
    let baton = Baton::start(&format!("{THREE_WEB}{CANARY_BREAKER_FLAG}"));
    baton.release("web", "1.0.0", &[]);
    baton.release("web", "1.1.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    // A live flag change records who made it: here, a user name with markup in it.
    let o = Command::new(BATON)
        .args(["flag", "set", "web", "new-checkout", "--percent", "50"])
        .arg("--config")
        .arg(&baton.config)
        .env("USER", EVIL_NOTES)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "flag set: {}", text(&o));
    let o = baton.cli(&["deploy", "web", "1.1.0", "--strategy", "canary"]);
    assert!(o.status.success(), "deploy: {}", text(&o));
    let at_ten = || {
        baton
            .status("web")
            .deployment
            .is_some_and(|d| d.step == 1 && d.weight == 10)
    };
    assert!(
        wait_until(Duration::from_secs(30), at_ten),
        "{:?}",
        baton.status("web")
    );
    assert!(baton.cli(&["pause", "web"]).status.success());
    assert!(
        wait_until(Duration::from_secs(10), || baton.status("web").phase
            == "paused"),
        "{:?}",
        baton.status("web")
    );

    let dom = render(&dashboard_url(&baton), baton.dir.path());
    let context = || format!("rendered:\n{dom}\nbaton log:\n{}", baton.log());
    for shown in [
        "Deployment #2 in progress",
        "<span class=\"label\">strategy </span>canary",
        "<span class=\"label\">canary weight </span>10 %",
        "<span class=\"warn\">paused</span>",
        "<td>checkout</td><td class=\"mono\">/checkout</td><td class=\"good\">closed</td>",
        "<td>new-checkout</td><td>50%</td>",
    ] {
        assert!(dom.contains(shown), "{shown:?} is not shown: {}", context());
    }
    assert!(
        dom.contains("live, by &lt;img src=x onerror=alert(1)&gt;"),
        "the flag's actor is not shown as text: {}",
        context()
    );
    assert!(
        !dom.contains("<img"),
        "markup became elements: {}",
        context()
    );
}
