//! The demo's last three acts, on the stable release the canaries left: a dark launch that
//! finds a difference, a feature flag rolled out to a group and then to a share of users, and
//! a circuit breaker that opens and closes. Each drives its own users at the proxy and checks
//! what they got, so the demo fails when a control does not do what the README says.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use baton_core::breaker::State;
use baton_core::flags::parse_rule;
use baton_server::DarkView;
use baton_server::breakers::BreakersView;
use baton_server::flags::api::{FlagSetRequest, FlagView};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use super::demo::{Switch, step};
use crate::client::Client;
use crate::exit::{Failure, Result};

/// The flag the flag and breaker acts use (`[apps.web.flags.new-checkout]` in the demo config).
const FLAG: &str = "new-checkout";

/// One keep-alive HTTP/1.1 connection to the proxy, opened again after a failed exchange.
struct Http {
    addr: SocketAddr,
    conn: Option<SendRequest<Empty<Bytes>>>,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http { addr, conn: None }
    }

    /// `GET path` with `headers`: the status and the body; status 0 when no answer came.
    async fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> (u16, Bytes) {
        match tokio::time::timeout(Duration::from_secs(10), self.exchange(path, headers)).await {
            Ok(Ok(answer)) => answer,
            _ => {
                self.conn = None;
                (0, Bytes::new())
            }
        }
    }

    async fn exchange(
        &mut self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> std::result::Result<(u16, Bytes), String> {
        if self.conn.as_ref().is_none_or(|c| c.is_closed()) {
            let stream = tokio::net::TcpStream::connect(self.addr)
                .await
                .map_err(|e| e.to_string())?;
            let _ = stream.set_nodelay(true);
            let (sender, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            self.conn = Some(sender);
        }
        let conn = self.conn.as_mut().expect("connected above");
        conn.ready().await.map_err(|e| e.to_string())?;
        let mut req = hyper::Request::get(path).header(hyper::header::HOST, self.addr.to_string());
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Empty::new()).map_err(|e| e.to_string())?;
        let resp = conn.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, body))
    }
}

/// One answer a driven user got.
struct Answer {
    path: &'static str,
    status: u16,
    body: Bytes,
}

/// Users sending `paths` in turn at about `per_second`, until stopped (at most a minute).
struct Users {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Answer>>,
}

impl Users {
    fn start(proxy: SocketAddr, paths: &'static [&'static str], per_second: f64) -> Users {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut http = Http::new(proxy);
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let until = Instant::now() + Duration::from_secs(60);
            let mut answers = Vec::new();
            for path in paths.iter().cycle() {
                if flag.load(Ordering::Relaxed) || Instant::now() > until {
                    break;
                }
                tick.tick().await;
                let (status, body) = http.get(path, &[]).await;
                answers.push(Answer { path, status, body });
            }
            answers
        });
        Users { stop, task }
    }

    async fn stop(self) -> Vec<Answer> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap_or_default()
    }
}

fn failed(message: impl Into<String>) -> Failure {
    Failure::failed(message.into())
}

fn field(body: &[u8], name: &str) -> Option<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()?
        .get(name)
        .cloned()
}

/// Act 8: 1.5.0 answers `GET /item/{id}` with another price and `GET /greeting` as 1.3.0
/// does. Its dark launch copies every read, finds the difference on one route only, and
/// fails on `max_diff_rate`; users only ever got 1.3.0's answers.
pub(super) async fn dark(client: &Client, proxy: SocketAddr) -> Result<(Switch, String)> {
    println!(
        "\n== dark launch 1.3.0 -> 1.5.0: reads are copied to 1.5.0 and its answers compared; users see only 1.3.0's"
    );
    let users = Users::start(
        proxy,
        &["/greeting", "/item/7", "/greeting", "/item/42"],
        150.0,
    );
    let switch = step(
        client,
        "dark 1.3.0 -> 1.5.0 (differs)",
        "/v1/apps/web/deployments",
        "1.5.0",
        Some("dark"),
    )
    .await?;
    let answers = users.stop().await;
    let view: DarkView = client.get("/v1/apps/web/dark").await?;
    super::dark::print(&view);
    let not_ok = answers.iter().filter(|a| a.status != 200).count();
    let dark_price = answers
        .iter()
        .filter(|a| a.path.starts_with("/item/"))
        .filter(|a| field(&a.body, "price") != Some(10.into()))
        .count();
    let route = |name: &str| view.report.routes.get(name);
    let (Some(item), Some(greeting)) = (route("GET /item/:id"), route("GET /greeting")) else {
        return Err(failed(
            "the dark launch compared no copies of /item or /greeting",
        ));
    };
    let line = format!(
        "dark launch 1.5.0: GET /item/:id differed in {} of {} copies ({}), GET /greeting in {} of {}; users got only 1.3.0's answers ({} requests, {} failed)",
        item.differing,
        item.compared,
        item.fields.keys().cloned().collect::<Vec<_>>().join(", "),
        greeting.differing,
        greeting.compared,
        answers.len(),
        not_ok
    );
    if not_ok > 0 || dark_price > 0 {
        return Err(failed(format!(
            "users were not served by 1.3.0 alone during the dark launch: {not_ok} failed, {dark_price} got 1.5.0's price"
        )));
    }
    if item.differing == 0 || greeting.differing > 0 {
        return Err(failed(format!(
            "the dark launch did not find the difference where it is: {line}"
        )));
    }
    Ok((switch, line))
}

/// Changes the flag live, as `baton flag set` does, and prints it.
async fn set_flag(client: &Client, req: FlagSetRequest) -> Result<()> {
    let views: Vec<FlagView> = client
        .post_json(&format!("/v1/apps/web/flags/{FLAG}"), &req)
        .await?;
    if let Some(v) = views.iter().find(|v| v.name == FLAG) {
        println!("   flag {FLAG} in {}: {}", v.env, super::flags::describe(v));
    }
    Ok(())
}

/// Which of `users` get the new checkout now, with `extra` headers.
async fn new_checkout(
    http: &mut Http,
    users: impl Iterator<Item = usize>,
    extra: &[(&str, &str)],
) -> Result<BTreeSet<usize>> {
    let mut got = BTreeSet::new();
    for user in users {
        let key = format!("user-{user}");
        let mut headers = vec![("x-user-id", key.as_str())];
        headers.extend_from_slice(extra);
        let (status, body) = http.get("/checkout", &headers).await;
        if status != 200 {
            return Err(failed(format!("GET /checkout answered {status}")));
        }
        if field(&body, "checkout") == Some("new".into()) {
            got.insert(user);
        }
    }
    Ok(got)
}

/// Act 9: `new-checkout` (off in baton.toml) goes on for the beta group (`x-beta: 1`), then
/// for 20 % and 50 % of users by their `x-user-id`. The demo app reads the flag from the
/// `X-Baton-Flags` header the proxy adds.
pub(super) async fn flag(client: &Client, proxy: SocketAddr) -> Result<String> {
    println!(
        "\n== feature flag {FLAG}: on for the beta group (header x-beta: 1), then for 20 % and 50 % of users"
    );
    let actor = Some("demo".to_string());
    let rule = parse_rule("header:x-beta=1").map_err(failed)?;
    set_flag(
        client,
        FlagSetRequest {
            rules: Some(vec![rule]),
            actor: actor.clone(),
            ..FlagSetRequest::default()
        },
    )
    .await?;
    let mut http = Http::new(proxy);
    let beta = new_checkout(&mut http, 0..100, &[("x-beta", "1")]).await?;
    let others = new_checkout(&mut http, 100..200, &[]).await?;
    println!(
        "   beta group: {} of 100 users got the new checkout; everyone else: {} of 100",
        beta.len(),
        others.len()
    );
    let mut at = Vec::new();
    for percent in [20.0, 50.0] {
        set_flag(
            client,
            FlagSetRequest {
                enabled: Some(true),
                percent: Some(percent),
                actor: actor.clone(),
                ..FlagSetRequest::default()
            },
        )
        .await?;
        let users = new_checkout(&mut http, 1000..2000, &[]).await?;
        let again = new_checkout(&mut http, 1000..2000, &[]).await?;
        if users != again {
            return Err(failed(
                "the same user got different answers at the same percentage",
            ));
        }
        println!(
            "   {percent} %: {} of 1000 users got it (each the same answer twice)",
            users.len()
        );
        at.push(users);
    }
    let lost = at[0].difference(&at[1]).count();
    println!("   of the users who had it at 20 %, {lost} lost it at 50 %");
    let line = format!(
        "flag {FLAG}: beta group {} of 100, others {} of 100; 20 % -> {} of 1000 users, 50 % -> {}, {lost} lost it",
        beta.len(),
        others.len(),
        at[0].len(),
        at[1].len()
    );
    if beta.len() != 100 || !others.is_empty() || lost > 0 || at[0].is_empty() {
        return Err(failed(format!("the flag did not roll out as set: {line}")));
    }
    Ok(line)
}

/// Act 10: `/checkout` starts failing on every instance; its breaker opens within its
/// window, the proxy serves the fallback and holds `new-checkout` off, `/` is untouched; once
/// the route recovers, the breaker probes it and closes.
pub(super) async fn breaker(client: &Client, proxy: SocketAddr, fault: &Path) -> Result<String> {
    println!(
        "\n== circuit breaker on /checkout: the route starts failing, the breaker opens and serves its fallback, then closes after recovery"
    );
    let users = Users::start(proxy, &["/checkout", "/"], 200.0);
    // A window of healthy traffic first: the breaker judges a rate over its window.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let started = Instant::now();
    let at = || started.elapsed().as_secs_f64();
    std::fs::write(fault, "/checkout\n")
        .map_err(|e| failed(format!("cannot write {}: {e}", fault.display())))?;
    println!("   {:>5.2}s  /checkout answers 500 on every instance", at());
    let mut state = State::Closed;
    let mut opened_at = None;
    let mut recovered_at = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    let view = loop {
        let view: BreakersView = client.get("/v1/apps/web/breakers").await?;
        let b = view
            .breakers
            .iter()
            .find(|b| b.name == "checkout")
            .ok_or_else(|| failed("the demo config has no breaker `checkout`"))?;
        if b.state != state {
            state = b.state;
            let f = &b.last;
            println!(
                "   {:>5.2}s  breaker {}: {} errors of {} requests ({:.0} %)",
                at(),
                state.as_str(),
                f.errors,
                f.requests,
                f.error_rate * 100.0
            );
            if state == State::Open && opened_at.is_none() {
                opened_at = Some(at());
                let flags: Vec<FlagView> = client.get("/v1/apps/web/flags").await?;
                if let Some(v) = flags.iter().find(|v| v.name == FLAG) {
                    println!(
                        "   {:>5.2}s  flag {FLAG}: {}",
                        at(),
                        super::flags::describe(v)
                    );
                }
                std::fs::remove_file(fault)
                    .map_err(|e| failed(format!("cannot remove {}: {e}", fault.display())))?;
                recovered_at = Some(at());
                println!("   {:>5.2}s  /checkout recovers", at());
            }
            if state == State::Closed {
                break view;
            }
        }
        if Instant::now() > deadline {
            let _ = std::fs::remove_file(fault);
            users.stop().await;
            return Err(failed(format!(
                "the breaker did not open and close again within 30 s (it is {})",
                state.as_str()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let closed_at = at();
    // A little traffic on the closed breaker, then what users got.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answers = users.stop().await;
    super::breakers::print(&view, "web");
    let count = |path: &str, status: u16| {
        answers
            .iter()
            .filter(|a| a.path == path && a.status == status)
            .count()
    };
    let fallback = answers
        .iter()
        .filter(|a| a.path == "/checkout" && a.status == 503)
        .filter(|a| field(&a.body, "checkout").is_some())
        .count();
    let root = answers.iter().filter(|a| a.path == "/").count();
    let root_failed = root - count("/", 200);
    let opened = opened_at.unwrap_or_default();
    let line = format!(
        "breaker checkout: open {opened:.2}s after /checkout began failing ({} users got a 500 first, {fallback} the fallback, {} an answer from the app), closed {:.2}s after the route recovered; / untouched ({root_failed} of {root} failed)",
        count("/checkout", 500),
        answers
            .iter()
            .filter(|a| a.path == "/checkout" && a.status == 200)
            .count(),
        closed_at - recovered_at.unwrap_or(opened)
    );
    if root_failed > 0 || fallback == 0 {
        return Err(failed(format!(
            "the breaker did not keep to its route: {line}"
        )));
    }
    Ok(line)
}
