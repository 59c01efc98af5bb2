//! One module per command; each returns a [`Failure`](crate::exit::Failure) with its exit code.

mod agent;
mod breakers;
mod dark;
mod dashboard;
mod demo;
mod demo_acts;
mod demo_hosts;
mod deploy;
mod flags;
mod hosts;
mod image;
mod intents;
mod lifecycle;
mod release;
mod reload;
mod status;
mod up;

use crate::cli::{Cli, Command, DemoCmd, FlagCmd, HostCmd, ReleaseCmd};
use crate::exit::{Failure, Result};

/// Runs the parsed command.
pub fn run(cli: Cli) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    let config = cli.config;
    let env = cli.env;
    let env = env.as_deref();
    rt.block_on(async move {
        match cli.command {
            Command::Up => up::run(&config).await,
            Command::Reload { json } => reload::reload(&config, json).await,
            Command::Restart => lifecycle::restart(&config).await,
            Command::Stop { keep_instances } => lifecycle::stop(&config, keep_instances).await,
            Command::Release(ReleaseCmd::Create {
                app,
                version_arg,
                version,
                git,
                artifact,
                image,
                notes,
                json,
            }) => {
                let version = match (version_arg, version) {
                    (Some(v), None) | (None, Some(v)) => v,
                    (Some(_), Some(_)) => {
                        return Err(crate::exit::Failure::usage(
                            "give the version once: as an argument or with --version",
                        ));
                    }
                    (None, None) => {
                        return Err(crate::exit::Failure::usage(
                            "give a version (1.4.0), or --version auto with --git PATH",
                        ));
                    }
                };
                let source = match (artifact, image) {
                    (Some(path), None) => release::Source::Artifact(path),
                    (None, Some(reference)) => release::Source::Image(reference),
                    _ => unreachable!("clap requires exactly one of --artifact and --image"),
                };
                release::create(
                    &config,
                    &app,
                    &version,
                    git.as_deref(),
                    &source,
                    notes.as_deref(),
                    json,
                )
                .await
            }
            Command::Release(ReleaseCmd::Show {
                app,
                version,
                changelog,
                notes,
                json,
            }) => release::show(&config, &app, &version, changelog, notes, json).await,
            Command::Release(ReleaseCmd::List { app, json }) => {
                release::list(&config, &app, json).await
            }
            Command::Deploy {
                app,
                version,
                from_env,
                force,
                strategy,
                wait,
            } => {
                let target = deploy::Target {
                    env: env.map(String::from),
                    from_env,
                    force,
                };
                deploy::deploy(
                    &config,
                    &app,
                    version.as_deref(),
                    target,
                    strategy.as_deref(),
                    wait.wait,
                )
                .await
            }
            Command::Rollback {
                app,
                to,
                force,
                strategy,
                wait,
            } => {
                deploy::rollback(
                    &config,
                    &app,
                    env,
                    to.as_deref(),
                    force,
                    strategy.as_deref(),
                    wait.wait,
                )
                .await
            }
            Command::Promote { app, full } => intents::promote(&config, &app, env, full).await,
            Command::Pause { app } => intents::simple(&config, &app, env, "pause").await,
            Command::Resume { app } => intents::simple(&config, &app, env, "resume").await,
            Command::Abort { app, wait } => intents::abort(&config, &app, env, wait.wait).await,
            Command::Analysis { app, json } => intents::analysis(&config, &app, env, json).await,
            Command::Breakers { app, json } => breakers::breakers(&config, &app, env, json).await,
            Command::Dark { app, json } => dark::dark(&config, &app, env, json).await,
            Command::Status { app, json } => {
                status::status(&config, app.as_deref(), env, json).await
            }
            Command::History { app, json, limit } => {
                status::history(&config, &app, env, json, limit).await
            }
            Command::Env { app, json } => status::environments(&config, &app, json).await,
            Command::Releases { app, json } => release::ledger(&config, &app, json).await,
            Command::Host(HostCmd::Token { ttl }) => hosts::token(&config, &ttl).await,
            Command::Host(HostCmd::Drain { host }) => hosts::drain(&config, &host, true).await,
            Command::Host(HostCmd::Undrain { host }) => hosts::drain(&config, &host, false).await,
            Command::Hosts { json } => hosts::list(&config, json).await,
            Command::Dashboard { rotate } => dashboard::print_url(&config, rotate).await,
            Command::Flags { app, json } => flags::list(&config, &app, env, json).await,
            Command::Flag(FlagCmd::Set {
                app,
                flag,
                on,
                off,
                percent,
                matches,
            }) => {
                let change = flags::Change {
                    on,
                    off,
                    percent,
                    matches,
                };
                flags::set(&config, &app, &flag, env, change).await
            }
            Command::Flag(FlagCmd::Reset { app, flag }) => {
                flags::reset(&config, &app, &flag, env).await
            }
            Command::Flag(FlagCmd::Token { app }) => flags::token(&config, &app, env).await,
            Command::Flag(FlagCmd::Tokens { app, json }) => {
                flags::tokens(&config, &app, env, json).await
            }
            Command::Flag(FlagCmd::Revoke { app, id }) => flags::revoke(&config, &app, id).await,
            Command::Agent(args) => agent::run(args).await,
            Command::Demo(args) => match args.command {
                Some(DemoCmd::Artifact {
                    out_dir,
                    version,
                    error_rate,
                    latency_ms,
                    unhealthy,
                    startup_ms,
                    item_price,
                    hang,
                }) => demo::artifact(
                    &out_dir,
                    baton_demo::DemoOptions {
                        version,
                        error_rate,
                        latency_ms,
                        unhealthy,
                        startup_ms,
                        item_price,
                        hang,
                    },
                ),
                None if args.hosts > 0 => demo_hosts::run(args.hosts).await,
                None => demo::run(args.keep_running).await,
            },
        }
    })
}

/// Installs the log subscriber for the long-running commands.
pub fn init_logs(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BATON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

/// Resolves when the user asks the demo to stop: Ctrl-C (SIGINT) or SIGTERM (`timeout`,
/// `kill`), so that it stops Baton, its agents and every instance either way.
pub(crate) async fn interrupted() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
