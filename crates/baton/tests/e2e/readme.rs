//! The README tells the truth: its walk-through runs as written and prints what it shows, and
//! every command and flag its CLI reference names exists. (Config keys: `readme_config.rs`.)

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::harness::{BATON, Baton, serial, text};

pub const README: &str = include_str!("../../../../README.md");

/// The text under the heading `title` (any level), up to the next heading of the same level.
pub fn section(title: &str) -> &'static str {
    let lines: Vec<&str> = README.lines().collect();
    let (start, level) = lines
        .iter()
        .enumerate()
        .find_map(|(i, l)| {
            let hashes = l.len() - l.trim_start_matches('#').len();
            (hashes > 0 && l[hashes..].trim() == title).then_some((i, hashes))
        })
        .unwrap_or_else(|| panic!("README has no heading {title:?}"));
    let from = README.find(lines[start]).unwrap() + lines[start].len();
    let rest = &README[from..];
    let mut end = rest.len();
    let mut offset = 0;
    let mut fenced = false;
    for l in rest.split_inclusive('\n') {
        fenced ^= l.starts_with("```");
        let hashes = l.len() - l.trim_start_matches('#').len();
        if !fenced && hashes > 0 && hashes <= level && l[hashes..].starts_with(' ') {
            end = offset;
            break;
        }
        offset += l.len();
    }
    &rest[..end]
}

/// The fenced code blocks of `text` whose info string is `lang`.
pub fn blocks<'a>(text: &'a str, lang: &str) -> Vec<&'a str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        let info_end = after.find('\n').unwrap();
        let body = &after[info_end + 1..];
        let close = body.find("```").expect("unclosed code block");
        if after[..info_end].trim() == lang {
            out.push(&body[..close]);
        }
        rest = &body[close + 3..];
    }
    out
}

/// Splits a shell command line on spaces, honouring double quotes (all the README uses).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            c => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The words of an output line that do not change from run to run: times, durations, digests
/// and ports are left out.
fn stable_words(line: &str) -> Vec<String> {
    line.split_whitespace()
        .map(|w| w.trim_end_matches([':', ',', ';']))
        .filter(|w| {
            let digits = w.chars().filter(char::is_ascii_digit).count();
            let clock = w.len() == 8 && w.matches(':').count() == 2 && digits == 6;
            let duration = w.ends_with('s')
                && digits > 0
                && w.trim_end_matches("ms")
                    .trim_end_matches('s')
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '.');
            let address = w.starts_with("127.0.0.1:");
            !(clock || duration || address || w.starts_with("sha256:"))
        })
        .map(str::to_string)
        .collect()
}

/// One `$ command` of a console block and the output the README shows for it.
struct Step {
    command: String,
    shown: Vec<String>,
    exit: i32,
}

fn steps(console: &[&str]) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    let mut exit_code_next = false;
    for block in console {
        for line in block.lines() {
            if let Some(cmd) = line.strip_prefix("$ ") {
                // `echo $?` prints the exit code of the command before it.
                exit_code_next = cmd == "echo $?";
                if !exit_code_next {
                    out.push(Step {
                        command: cmd.to_string(),
                        shown: Vec::new(),
                        exit: 0,
                    });
                }
            } else if let Some(last) = out.last_mut() {
                if exit_code_next {
                    last.exit = line.trim().parse().expect("`echo $?` shows a number");
                    exit_code_next = false;
                } else {
                    last.shown.push(line.to_string());
                }
            }
        }
    }
    out
}

/// Output lines that must appear as shown: event lines (whose order between instances varies)
/// and elisions are left out.
fn checked(line: &str) -> bool {
    let t = line.trim_start();
    let event = t.len() > 8 && t.as_bytes()[2] == b':' && t.as_bytes()[5] == b':';
    !(t.is_empty() || event || t.starts_with(".."))
}

fn get(addr: SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

fn run(dir: &std::path::Path, args: &[String]) -> Output {
    Command::new(BATON)
        .args(args)
        .current_dir(dir)
        .env_remove("BATON_CONFIG")
        .env_remove("BATON_API")
        .env_remove("BATON_TOKEN")
        .env_remove("BATON_ENV")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Quick start: `baton demo` runs every act the README lists, ends each the way its summary
/// shows, and fails no user request.
#[test]
fn the_demo_ends_as_the_quick_start_shows() {
    let _serial = serial();
    let quick = section("Quick start");
    let shown = blocks(quick, "")
        .into_iter()
        .find(|b| b.starts_with("== summary"))
        .expect("the Quick start shows the demo's summary");
    let o = Command::new(BATON)
        .arg("demo")
        .env_remove("BATON_LOG")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let got = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let got_lines: Vec<Vec<String>> = got.lines().map(stable_words).collect();
    // The switches table and the failed count; request counts and latencies vary.
    let table = shown.split("\n\n").next().unwrap();
    let wanted = table
        .lines()
        .chain(shown.lines().filter(|l| l.starts_with("failed requests:")));
    for line in wanted {
        assert!(
            got_lines.contains(&stable_words(line)),
            "the demo did not print a line like the README's\n  {line}\ngot:\n{got}"
        );
    }
    // The acts' one-line results (their counts vary): the same subject before the colon.
    let acts: Vec<&str> = shown
        .lines()
        .filter(|l| {
            ["dark launch ", "flag ", "breaker "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    assert_eq!(acts.len(), 3, "the README shows one line per act:\n{shown}");
    for line in acts {
        let subject = line.split(':').next().unwrap();
        assert!(
            got.lines().any(|l| l.split(':').next() == Some(subject)),
            "the demo did not print a line for `{subject}`\ngot:\n{got}"
        );
    }
}

/// Walk-through steps 1 to 7, exactly as written: the same `app.py`, the same `baton.toml`
/// (on free ports), every `$` command run from the config's directory without `--config`, with
/// the exit code and the lines the README shows.
#[test]
fn the_walk_through_runs_as_written() {
    let walk = section("Walk-through: your own app in 5 minutes");
    let app_py = blocks(walk, "python")[0];
    let config = blocks(walk, "toml")[0];
    assert!(config.contains("127.0.0.1:8080"), "{config}");
    let template = format!(
        "[api]\nlisten = \"127.0.0.1:@API@\"\n\n{}",
        config.replace("127.0.0.1:8080", "127.0.0.1:@WEB@")
    );
    let b = Baton::start(&template);
    let dir = b.dir.path();
    let write = |sub: &str, text: &str| {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        std::fs::write(dir.join(sub).join("app.py"), text).unwrap();
    };
    write("myapp", app_py);
    // Step 7: "Make `/health` answer 500 to get a broken one".
    let broken = app_py.replace(
        "self.send_response(200)",
        "self.send_response(500 if self.path == \"/health\" else 200)",
    );
    assert_ne!(
        broken, app_py,
        "the README's app.py changed: update this test"
    );
    write("broken", &broken);

    let steps = steps(&blocks(walk, "console"));
    assert!(
        steps.len() >= 10,
        "too few commands found in the walk-through"
    );
    for step in steps {
        let args = words(&step.command);
        if args[0] == "curl" {
            let body = get(b.web(), "/");
            assert_eq!(
                body.trim_end(),
                step.shown.join("\n").trim_end(),
                "`{}`",
                step.command
            );
            continue;
        }
        assert_eq!(args[0], "baton", "unexpected command {:?}", step.command);
        if step.command.contains("--notes \"friendlier greeting\"") {
            // Step 5: 'Edit app.py (say "hi" instead of "hello")'.
            write("myapp", &app_py.replace("hello from", "hi from"));
        }
        let o = run(dir, &args[1..]);
        let got = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(
            o.status.code(),
            Some(step.exit),
            "`{}`: {}\nlog:\n{}",
            step.command,
            text(&o),
            b.log()
        );
        let got_lines: Vec<Vec<String>> = got.lines().map(stable_words).collect();
        for shown in step.shown.iter().filter(|l| checked(l)) {
            let want = stable_words(shown);
            assert!(
                got_lines.contains(&want),
                "`{}` did not print a line like the README's\n  {shown}\ngot:\n{got}",
                step.command
            );
        }
    }
    // Step 5's edit reached users.
    assert!(get(b.web(), "/").starts_with("hi from 1.1.0"));
    api_fields_are_documented(&b);
}

/// Every field of `GET /v1/apps/{app}` (and of each instance in it) is named in the README's
/// row for that route.
fn api_fields_are_documented(b: &Baton) {
    let api = section("HTTP API");
    let row = api
        .lines()
        .find(|l| l.starts_with("| `GET /v1/apps/{app}` |"))
        .expect("README has no row for GET /v1/apps/{app}");
    let status = b.cli(&["status", "web", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let json: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let mut fields: Vec<&String> = json.as_object().unwrap().keys().collect();
    fields.extend(json["instances"][0].as_object().unwrap().keys());
    for field in fields {
        assert!(
            row.contains(&format!("`{field}`")) || row.contains(&format!("`{field}[]`")),
            "README's GET /v1/apps/{{app}} row does not name `{field}`:\n{row}"
        );
    }
}

/// Every row of the CLI reference names a command that exists, with flags it accepts.
#[test]
fn every_command_and_flag_in_the_cli_reference_exists() {
    let reference = section("CLI reference");
    let mut rows = 0;
    for row in reference.lines().filter(|l| l.starts_with("| `baton ")) {
        let row = row.replace("\\|", "/");
        let cell = row.split('|').nth(1).unwrap();
        // A row may name several commands: `baton pause APP` / `baton resume APP`.
        for usage in cell.split('`').filter(|s| s.starts_with("baton ")) {
            rows += 1;
            let sub: Vec<&str> = usage
                .split_whitespace()
                .skip(1)
                .take_while(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '-'))
                .filter(|w| !w.starts_with("--"))
                .collect();
            let mut args: Vec<&str> = sub.clone();
            if sub != ["help"] {
                args.push("--help");
            }
            let o = Command::new(BATON).args(&args).output().unwrap();
            assert!(o.status.success(), "`{usage}`: {}", text(&o));
            let help = String::from_utf8_lossy(&o.stdout);
            for flag in usage
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
                .filter(|w| w.starts_with("--") && w.len() > 2)
            {
                assert!(
                    help.contains(flag),
                    "`{usage}` names {flag}, which `baton {}` does not take:\n{help}",
                    sub.join(" ")
                );
            }
        }
    }
    assert!(
        rows >= 15,
        "only {rows} commands found in the CLI reference"
    );
}
