//! `baton flag set|reset|token|tokens|revoke` and `baton flags`: feature flags changed live
//! and shown, and the OFREP listener's read-only tokens.

use std::path::Path;

use baton_core::flags::parse_rule;
use baton_server::flags::api::{
    FlagSetRequest, FlagTokenCreated, FlagTokenRequest, FlagTokenRevokeRequest, FlagTokenRevoked,
    FlagTokenView, FlagView,
};

use crate::client::{Client, actor, encode, env_query};
use crate::exit::{Failure, Result};
use crate::output::{self, esc};

/// What `baton flag set` was asked.
pub struct Change {
    /// `--on`
    pub on: bool,
    /// `--off`
    pub off: bool,
    /// `--percent N`
    pub percent: Option<f64>,
    /// `--match RULE`
    pub matches: Vec<String>,
}

/// Sets a flag live and prints it.
pub async fn set(config: &Path, app: &str, flag: &str, env: Option<&str>, c: Change) -> Result<()> {
    let mut req = FlagSetRequest {
        env: env.map(String::from),
        actor: Some(actor()),
        ..FlagSetRequest::default()
    };
    match (c.on, c.off, c.percent) {
        (true, _, _) => (req.enabled, req.percent) = (Some(true), Some(100.0)),
        (_, true, _) => req.enabled = Some(false),
        (_, _, Some(p)) => (req.enabled, req.percent) = (Some(true), Some(p)),
        _ if c.matches.is_empty() => {
            return Err(Failure::usage(
                "say what to set: --on, --off, --percent N, or --match RULE (e.g. --match plan=pro)",
            ));
        }
        _ => {}
    }
    if !c.matches.is_empty() {
        let rules: std::result::Result<Vec<_>, _> =
            c.matches.iter().map(|m| parse_rule(m)).collect();
        req.rules = Some(rules.map_err(|e| Failure::usage(format!("--match {}", esc(&e))))?);
    }
    send(config, app, flag, &req).await
}

/// Hands a flag back to baton.toml.
pub async fn reset(config: &Path, app: &str, flag: &str, env: Option<&str>) -> Result<()> {
    let req = FlagSetRequest {
        env: env.map(String::from),
        reset: true,
        actor: Some(actor()),
        ..FlagSetRequest::default()
    };
    send(config, app, flag, &req).await
}

async fn send(config: &Path, app: &str, flag: &str, req: &FlagSetRequest) -> Result<()> {
    let client = Client::from_config(config)?;
    let path = format!("/v1/apps/{}/flags/{}", encode(app), encode(flag));
    let views: Vec<FlagView> = client.post_json(&path, req).await?;
    match views.iter().find(|v| v.name == flag) {
        Some(v) => println!("{} in {}: {}", esc(flag), esc(&v.env), describe(v)),
        None => println!(
            "{}: back to baton.toml, which does not define it",
            esc(flag)
        ),
    }
    Ok(())
}

/// Prints a new OFREP token on stdout (alone, for scripts), and how to use it on stderr.
pub async fn token(config: &Path, app: &str, env: Option<&str>) -> Result<()> {
    let client = Client::from_config(config)?;
    let req = FlagTokenRequest {
        env: env.map(String::from),
        actor: Some(actor()),
    };
    let path = format!("/v1/apps/{}/flag-tokens", encode(app));
    let created: FlagTokenCreated = client.post_json(&path, &req).await?;
    println!("{}", created.token);
    eprintln!(
        "read-only: evaluates the flags of {} in {} on the OFREP listener ([flags] listen) and nothing else; shown only now, keep it secret",
        esc(&created.app),
        esc(&created.env)
    );
    Ok(())
}

/// One line per OFREP token of the app (in `env` only, if given).
pub async fn tokens(config: &Path, app: &str, env: Option<&str>, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let path = format!("/v1/apps/{}/flag-tokens", encode(app));
    let mut tokens: Vec<FlagTokenView> = client.get(&path).await?;
    tokens.retain(|t| env.is_none_or(|e| t.env == e));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&tokens).expect("serializable")
        );
        return Ok(());
    }
    if tokens.is_empty() {
        println!(
            "{} has no OFREP tokens: `baton flag token {}` makes one",
            esc(app),
            esc(app)
        );
        return Ok(());
    }
    println!("{:<6} {:<12} {:<40} state", "id", "env", "created");
    for t in &tokens {
        let created = format!(
            "{} UTC by {}",
            output::date_time(t.created_at),
            esc(&t.actor)
        );
        println!(
            "{:<6} {:<12} {:<40} {}",
            t.id,
            esc(&t.env),
            created,
            token_state(t)
        );
    }
    Ok(())
}

fn token_state(t: &FlagTokenView) -> String {
    match (t.revoked_at, &t.revoked_by) {
        (Some(at), by) => format!(
            "revoked {} UTC by {}",
            output::date_time(at),
            esc(by.as_deref().unwrap_or("?"))
        ),
        (None, _) => "valid".into(),
    }
}

/// Revokes an OFREP token and says so (also when it was revoked before).
pub async fn revoke(config: &Path, app: &str, id: i64) -> Result<()> {
    let client = Client::from_config(config)?;
    let req = FlagTokenRevokeRequest {
        actor: Some(actor()),
    };
    let path = format!("/v1/apps/{}/flag-tokens/{id}/revoke", encode(app));
    let done: FlagTokenRevoked = client.post_json(&path, &req).await?;
    let t = &done.token;
    let what = if done.changed {
        "revoked: the OFREP listener refuses it from now on"
    } else {
        "was already revoked"
    };
    println!(
        "token {} of {} in {} {what} ({})",
        t.id,
        esc(app),
        esc(&t.env),
        token_state(t)
    );
    Ok(())
}

pub(super) fn describe(v: &FlagView) -> String {
    let mut s = esc(&v.summary).into_owned();
    if let Some(why) = &v.forced_off {
        s = format!("forced off ({}), else {s}", esc(why));
    }
    s
}

/// One line per flag per environment.
pub async fn list(config: &Path, app: &str, env: Option<&str>, json: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let path = format!("/v1/apps/{}/flags{}", encode(app), env_query(env));
    let flags: Vec<FlagView> = client.get(&path).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&flags).expect("serializable")
        );
        return Ok(());
    }
    if flags.is_empty() {
        println!(
            "{} has no flags: define [apps.{}.flags.NAME] in baton.toml or run `baton flag set {} NAME --on`",
            esc(app),
            esc(app),
            esc(app)
        );
        return Ok(());
    }
    println!("{:<24} {:<12} {:<32} changed", "flag", "env", "state");
    for v in &flags {
        let changed = match (&v.actor, v.changed_at) {
            (Some(a), Some(t)) => format!("{} UTC by {}", output::date_time(t), esc(a)),
            _ => "baton.toml".into(),
        };
        println!(
            "{:<24} {:<12} {:<32} {changed}",
            esc(&v.name),
            esc(&v.env),
            describe(v)
        );
    }
    Ok(())
}
