//! The `baton` binary: CLI parsing and output over the library crates. When started under the
//! name `baton-demo` (the copy inside a demo artifact), it is the demo service instead.

mod cli;
mod client;
mod cmd;
mod exit;
mod output;
mod upload;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let mut args = std::env::args();
    let argv0 = args.next().unwrap_or_default();
    if std::path::Path::new(&argv0)
        .file_name()
        .is_some_and(|n| n == "baton-demo")
    {
        let code = baton_demo::service_main(args.collect());
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", output::esc_lines(&e.message));
            ExitCode::from(e.code)
        }
    }
}
