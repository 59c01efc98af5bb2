//! `service_main`: the demo's command line, config lookup, runtime, signals and exit codes.

use std::future::Future;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use crate::{ARTIFACT_CONFIG, DemoOptions, ServiceOptions, serve};

const USAGE: &str = "usage: baton-demo [--host ADDR] [--port N] [--config PATH]\n\
    \x20 --host ADDR    address to listen on (default: env HOST, else 127.0.0.1)\n\
    \x20 --port N       port to listen on (default: env PORT)\n\
    \x20 --config PATH  options file (default: demo.toml next to the executable)\n\
    \x20 env BATON_INSTANCE names the instance in responses (default: local)";

/// Runs the demo service as a program and returns its exit code.
///
/// `args` is the process's argv as from `std::env::args()`, program name first (a leading
/// element that is not a flag is taken as the program name and ignored). Returns 0 after a
/// graceful shutdown on SIGTERM or SIGINT, 2 for bad arguments or config, 1 when the
/// listener or runtime cannot be set up.
pub fn service_main(args: Vec<String>) -> i32 {
    // `baton-demo migrate [--contract]`: the demo's schema migrations.
    let words: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with('/') && !a.ends_with("baton-demo"))
        .collect();
    if words.first() == Some(&"migrate") {
        return crate::db::migrate(words.contains(&"--contract"));
    }
    let cli = match Cli::parse(args) {
        Ok(Some(cli)) => cli,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(msg) => {
            eprintln!("baton-demo: {msg}\n{USAGE}");
            return 2;
        }
    };
    let host = match cli.host.map(Ok).unwrap_or_else(host_from_env) {
        Ok(host) => host,
        Err(msg) => {
            eprintln!("baton-demo: {msg}\n{USAGE}");
            return 2;
        }
    };
    let Some(port) = cli.port.or_else(port_from_env) else {
        eprintln!("baton-demo: no port given; pass --port N or set PORT\n{USAGE}");
        return 2;
    };
    let config = match cli.config.map(Ok).unwrap_or_else(default_config_path) {
        Ok(path) => path,
        Err(msg) => {
            eprintln!("baton-demo: {msg}");
            return 2;
        }
    };
    let demo = match DemoOptions::load(&config) {
        Ok(demo) => demo,
        Err(e) => {
            eprintln!("baton-demo: {e}");
            return 2;
        }
    };
    let instance = std::env::var("BATON_INSTANCE")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".into());
    let opts = ServiceOptions { demo, instance };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build();
    match runtime {
        Ok(rt) => rt.block_on(run(SocketAddr::new(host, port), opts)),
        Err(e) => {
            eprintln!("baton-demo: cannot start the async runtime: {e}");
            1
        }
    }
}

async fn run(addr: SocketAddr, opts: ServiceOptions) -> i32 {
    let stop = match stop_signal() {
        Ok(stop) => stop,
        Err(e) => {
            eprintln!("baton-demo: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let mut stop = std::pin::pin!(stop);
    let startup = Duration::from_millis(opts.demo.startup_ms);
    tokio::select! {
        () = tokio::time::sleep(startup) => {}
        // Stopped before it ever listened: nothing in flight, a clean exit.
        () = &mut stop => return 0,
    }
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("baton-demo: cannot listen on {addr}: {e}");
            return 1;
        }
    };
    let bound = listener.local_addr().unwrap_or(addr);
    let mut stdout = std::io::stdout().lock();
    // Supervisors read this line from a pipe, so it must not sit in a buffer.
    let _ = writeln!(
        stdout,
        "baton-demo {} listening on {bound}",
        opts.demo.version
    );
    let _ = stdout.flush();
    drop(stdout);
    serve(listener, opts, stop).await;
    0
}

/// Resolves on the first SIGTERM or SIGINT.
fn stop_signal() -> std::io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// `HOST` as most web frameworks read it; unset or empty means 127.0.0.1.
fn host_from_env() -> Result<IpAddr, String> {
    match std::env::var("HOST") {
        Ok(v) if !v.trim().is_empty() => parse_host(v.trim()).map_err(|e| format!("HOST: {e}")),
        _ => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
    }
}

fn parse_host(v: &str) -> Result<IpAddr, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not an IP address, e.g. 127.0.0.1 or 10.0.0.11"))
}

fn port_from_env() -> Option<u16> {
    std::env::var("PORT").ok()?.trim().parse().ok()
}

fn default_config_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| {
        format!(
            "cannot locate my own executable to find {ARTIFACT_CONFIG}: {e}; pass --config PATH"
        )
    })?;
    let dir = exe.parent().ok_or_else(|| {
        format!(
            "executable {} has no directory; pass --config PATH",
            exe.display()
        )
    })?;
    Ok(dir.join(ARTIFACT_CONFIG))
}

/// The parsed command line.
#[derive(Debug, Default, PartialEq)]
struct Cli {
    host: Option<IpAddr>,
    port: Option<u16>,
    config: Option<PathBuf>,
}

impl Cli {
    /// `Ok(None)` means help was asked for.
    fn parse(args: Vec<String>) -> Result<Option<Cli>, String> {
        let mut args = args.into_iter().peekable();
        if args.peek().is_some_and(|a| !a.starts_with('-')) {
            args.next();
        }
        let mut cli = Cli::default();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("{name} needs a value"))
            };
            match flag.as_str() {
                "--port" => {
                    let v = value("--port")?;
                    let port = v
                        .parse()
                        .map_err(|_| format!("--port {v:?} is not a port number (0-65535)"))?;
                    cli.port = Some(port);
                }
                "--host" => cli.host = Some(parse_host(&value("--host")?)?),
                "--config" => cli.config = Some(PathBuf::from(value("--config")?)),
                "-h" | "--help" => return Ok(None),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(Some(cli))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Cli>, String> {
        Cli::parse(args.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn parses_the_host() {
        let got = parse(&["baton-demo", "--host", "127.0.0.3", "--port", "1"]);
        assert_eq!(got.unwrap().unwrap().host, Some([127, 0, 0, 3].into()));
    }

    #[test]
    fn parses_flags_with_and_without_program_name() {
        let want = Cli {
            host: None,
            port: Some(8080),
            config: Some("/a/demo.toml".into()),
        };
        let got = parse(&[
            "/x/baton-demo",
            "--port",
            "8080",
            "--config",
            "/a/demo.toml",
        ]);
        assert_eq!(got.unwrap().unwrap(), want);
        let got = parse(&["--port=8080", "--config=/a/demo.toml"]);
        assert_eq!(got.unwrap().unwrap(), want);
    }

    #[test]
    fn rejects_bad_arguments() {
        assert!(
            parse(&["baton-demo", "--port", "99999"])
                .unwrap_err()
                .contains("--port")
        );
        assert!(
            parse(&["baton-demo", "--port"])
                .unwrap_err()
                .contains("needs a value")
        );
        assert!(
            parse(&["baton-demo", "--bogus"])
                .unwrap_err()
                .contains("--bogus")
        );
        assert!(
            parse(&["baton-demo", "--host", "localhost"])
                .unwrap_err()
                .contains("not an IP address")
        );
        assert_eq!(parse(&["baton-demo", "--help"]).unwrap(), None);
    }

    #[test]
    fn missing_config_file_exits_2() {
        let code = service_main(vec![
            "baton-demo".into(),
            "--port".into(),
            "0".into(),
            "--config".into(),
            "/nonexistent/demo.toml".into(),
        ]);
        assert_eq!(code, 2);
    }
}
