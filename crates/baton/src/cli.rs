//! The command line, as clap derives it.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};

/// Zero-downtime deploys for web services, in one binary.
#[derive(Debug, Parser)]
#[command(name = "baton", version, about)]
pub struct Cli {
    /// The config file; client commands find the API address and token through it.
    #[arg(
        long,
        global = true,
        default_value = "baton.toml",
        env = "BATON_CONFIG"
    )]
    pub config: PathBuf,
    /// The environment (default: the last one the app runs in, usually production).
    #[arg(long, global = true, env = "BATON_ENV")]
    pub env: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run Baton in the foreground: proxies, controller, API. SIGHUP reloads the config.
    Up,
    /// Read the config file again in the running `baton up`: apps, environments, listeners,
    /// hosts and their settings change without a restart; an invalid file changes nothing.
    Reload {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Hand over to the baton binary on disk (an upgrade) with no request lost: instances
    /// are re-adopted, never restarted. If the new one cannot start, the old one keeps serving.
    Restart,
    /// Stop `baton up`: its proxies finish their requests, then its instances stop (or keep
    /// running with --keep-instances, for the next `baton up` to re-adopt).
    Stop {
        /// Leave the instances running.
        #[arg(long)]
        keep_instances: bool,
    },
    /// Manage releases.
    #[command(subcommand)]
    Release(ReleaseCmd),
    /// Deploy a release of an app.
    Deploy {
        /// The app.
        app: String,
        /// The release version (or --from ENV).
        version: Option<String>,
        /// Deploy exactly the release serving in this environment.
        #[arg(long = "from", value_name = "ENV")]
        from_env: Option<String>,
        /// Go past the promotion gate; who forced it is recorded.
        #[arg(long)]
        force: bool,
        /// rolling, blue-green, canary or dark (default: the app's `strategy`).
        #[arg(long)]
        strategy: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// What each environment of an app runs, since when, and whether it is healthy.
    Env {
        /// The app.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The release ledger: every release, where it ran and how each deployment ended.
    Releases {
        /// The app.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what each app serves: phase, release, instances, split.
    Status {
        /// One app (default: all).
        app: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Deploy the previous successful release again (or --to VERSION).
    Rollback {
        /// The app.
        app: String,
        /// The release to go back to.
        #[arg(long)]
        to: Option<String>,
        /// Go past the promotion gate (a release that never served here) or below a
        /// contracted release anyway; who forced it is recorded.
        #[arg(long)]
        force: bool,
        /// rolling or blue-green (default: the app's `strategy`).
        #[arg(long)]
        strategy: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Canary: go to the next step now, or with --full straight to 100 % (skipping analysis);
    /// dark: go on from the dark step to the canary's steps.
    Promote {
        /// The app.
        app: String,
        /// Skip every remaining step and analysis.
        #[arg(long)]
        full: bool,
    },
    /// Hold the app's deployment at its current step.
    Pause {
        /// The app.
        app: String,
    },
    /// Let a paused deployment go on.
    Resume {
        /// The app.
        app: String,
    },
    /// Go back to the stable release now: 100 % of new requests at once, the new release drained.
    Abort {
        /// The app.
        app: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// The analysis verdicts of the current (or last) deployment, step by step.
    Analysis {
        /// The app.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// An app's circuit breakers: state, since when, the figures of their window.
    Breakers {
        /// The app.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A dark launch: what was copied to the dark release, dropped, and how its answers differ
    /// from production's, route by route.
    Dark {
        /// The app.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List an app's deployments: outcome, duration, trigger.
    History {
        /// The app.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// How many, newest first.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Run the demo, or write a demo artifact.
    Demo(DemoArgs),
    /// Manage the hosts that may join this controller.
    #[command(subcommand)]
    Host(HostCmd),
    /// Every configured host: address, state, agent version, instances, last seen.
    Hosts {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the dashboard's URL, with its read-only token after the `#` (the browser never
    /// sends that part): open it in a browser that reaches the API, e.g. through `ssh -L`.
    Dashboard {
        /// Replace the read-only token first: URLs printed before stop working.
        #[arg(long)]
        rotate: bool,
    },
    /// Run this host's agent: join the controller once with a token, then keep a session
    /// with it. Opens no control port (only its apps' `host_port` listeners).
    Agent(AgentArgs),
    /// Change a feature flag live, or make a read-only token for OpenFeature clients (OFREP).
    #[command(subcommand)]
    Flag(FlagCmd),
    /// Every feature flag of an app: its state, where it comes from, who changed it, and a
    /// breaker holding it off.
    Flags {
        /// The app.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FlagCmd {
    /// Turn a flag on or off, roll it out to a percentage of users, or target contexts;
    /// recorded with who did it. Overrides baton.toml until `baton flag reset`.
    #[command(group(ArgGroup::new("state").args(["on", "off", "percent"])))]
    Set {
        /// The app.
        app: String,
        /// The flag.
        flag: String,
        /// On for everyone.
        #[arg(long)]
        on: bool,
        /// Off for everyone (rules too).
        #[arg(long)]
        off: bool,
        /// On for this percentage of targeting keys (sticky: raising it only adds users).
        #[arg(long, value_name = "N")]
        percent: Option<f64>,
        /// On where a context attribute matches: ATTR=VALUE, ATTR=A,B (one of), ATTR^=PREFIX;
        /// the proxy header offers request headers as header:NAME. Repeat for more rules;
        /// given, they replace the flag's rules.
        #[arg(long = "match", value_name = "RULE")]
        matches: Vec<String>,
    },
    /// Drop the live definition: baton.toml's is in force again.
    Reset {
        /// The app.
        app: String,
        /// The flag.
        flag: String,
    },
    /// Print a new read-only token for the OFREP listener, scoped to one app and environment
    /// (it can evaluate that app's flags and do nothing else).
    Token {
        /// The app.
        app: String,
    },
    /// List the app's OFREP tokens (never their secrets): who made each, when, and whether
    /// it was revoked.
    Tokens {
        /// The app.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke an OFREP token: the OFREP listener refuses it from now on. Recorded with who
    /// did it.
    Revoke {
        /// The app.
        app: String,
        /// The token's id (`baton flag tokens APP`).
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub enum HostCmd {
    /// Print a single-use join token for one new host.
    Token {
        /// How long the token is valid (at most 168h).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Move every instance off a host (new ones start elsewhere first), for maintenance.
    Drain {
        /// The host (`[hosts.NAME]`).
        host: String,
    },
    /// Let a drained host take instances again; the spread evens out one instance at a time.
    Undrain {
        /// The host (`[hosts.NAME]`).
        host: String,
    },
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The controller's cluster address (`[cluster] listen`), HOST:PORT.
    #[arg(long = "join", value_name = "CONTROLLER:PORT")]
    pub join: String,
    /// A join token from `baton host token`; needed only until the host has joined.
    #[arg(long, env = "BATON_JOIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// This host's name, as in `[hosts.NAME]` of the controller's baton.toml.
    #[arg(long)]
    pub name: String,
    /// This host's address, as in `[hosts.NAME] address`: where its `host_port` listeners and
    /// its tunnel listen (its instances listen on 127.0.0.1).
    #[arg(long)]
    pub address: std::net::IpAddr,
    /// The port of the host's tunnel, through which the controller's proxy reaches its
    /// instances (mutual TLS); 0 picks a free one (kept across agent restarts).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    pub tunnel_port: u16,
    /// Where the host's certificate and key are kept (default: ~/.baton-agent).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct WaitArgs {
    /// Block until the deployment ends, printing progress; exit 1 unless it succeeded.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ReleaseCmd {
    /// Store an artifact (directory or .tar.gz) or a Docker image as an immutable release.
    #[command(group(ArgGroup::new("source").required(true).args(["artifact", "image"])))]
    Create {
        /// The app.
        app: String,
        /// The version (e.g. 1.4.0); or use --version.
        #[arg(value_name = "VERSION")]
        version_arg: Option<String>,
        /// The version, or `auto`: the next semantic version from the conventional commits since
        /// the previous release (needs --git).
        #[arg(long = "version", value_name = "VERSION|auto")]
        version: Option<String>,
        /// Record the commit of this git work tree and the changelog since the previous release.
        #[arg(long, value_name = "PATH")]
        git: Option<PathBuf>,
        /// The artifact: a directory, or a .tar.gz / .tgz / .tar archive.
        #[arg(long)]
        artifact: Option<PathBuf>,
        /// An image of the local Docker engine (a tag, digest or ID) for a `driver = "docker"`
        /// app: Baton stores the image itself, so no registry is needed.
        #[arg(long, value_name = "REF")]
        image: Option<String>,
        /// Release notes.
        #[arg(long)]
        notes: Option<String>,
        /// Print JSON: the release, whether it was created, and the image.
        #[arg(long)]
        json: bool,
    },
    /// One release: digest, commit, notes, changelog, where it ran.
    Show {
        /// The app.
        app: String,
        /// The version.
        version: String,
        /// Print only the full changelog.
        #[arg(long, conflicts_with = "notes")]
        changelog: bool,
        /// Print only the release notes.
        #[arg(long)]
        notes: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List an app's releases.
    List {
        /// The app.
        app: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DemoArgs {
    #[command(subcommand)]
    pub command: Option<DemoCmd>,
    /// Leave Baton running after the story and print how to use the CLI against it.
    #[arg(long)]
    pub keep_running: bool,
    /// Run the many-hosts story instead: N agents on 127.0.0.2 ... (2 to 8), one host killed
    /// under load.
    #[arg(long, default_value_t = 0, conflicts_with = "keep_running")]
    pub hosts: u8,
}

#[derive(Debug, Subcommand)]
pub enum DemoCmd {
    /// Write a demo artifact directory (the `baton-demo` service and its demo.toml).
    Artifact {
        /// Where to write it.
        out_dir: PathBuf,
        /// The version the service reports.
        #[arg(long)]
        version: String,
        /// Fraction of `GET /` answered 500.
        #[arg(long, default_value_t = 0.0)]
        error_rate: f64,
        /// Extra latency per `GET /`, in ms.
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
        /// Answer 503 on /health.
        #[arg(long)]
        unhealthy: bool,
        /// Delay before listening, in ms.
        #[arg(long, default_value_t = 0)]
        startup_ms: u64,
        /// The price `GET /item/{id}` answers.
        #[arg(long, default_value_t = 10)]
        item_price: u64,
        /// Hang every request but /health and /metrics.
        #[arg(long)]
        hang: bool,
    },
}
