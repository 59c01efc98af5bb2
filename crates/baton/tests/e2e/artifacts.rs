//! Artifact uploads at scale: a gzip bomb streams through the real daemon in bounded memory
//! while the apps keep serving; the default limits refuse it, naming the config key; an
//! empty or cut-short upload is refused.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use crate::harness::{Baton, THREE_WEB};

/// The bomb's one file: 256 MiB of zeros (about 255 kB gzipped).
const BOMB_BYTES: u64 = 256 << 20;

/// How much the daemon's peak RSS may grow while it imports the bomb.
const MAX_GROWTH_KB: u64 = 64 * 1024;

/// Writes the bomb to `path`, compressing as it is generated (never held in memory).
fn write_bomb(path: &Path) {
    let file = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(BOMB_BYTES);
    b.append_data(&mut h, "zeros", std::io::repeat(0).take(BOMB_BYTES))
        .unwrap();
    b.into_inner().unwrap().finish().unwrap().flush().unwrap();
}

/// A `/proc/<pid>/status` field in kB, e.g. `VmHWM` (peak RSS).
fn proc_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// POSTs the file at `path` to the release route, streaming it, and returns the status code
/// and the body of the answer.
fn upload(baton: &Baton, version: &str, path: &Path) -> (u16, String) {
    let token = std::fs::read_to_string(baton.data_dir().join("token")).unwrap();
    let len = std::fs::metadata(path).unwrap().len();
    let mut s = TcpStream::connect(baton.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    write!(
        s,
        "POST /v1/apps/web/releases?version={version} HTTP/1.1\r\nHost: baton\r\n\
         Authorization: Bearer {}\r\nContent-Type: application/gzip\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n",
        token.trim()
    )
    .unwrap();
    let mut file = std::fs::File::open(path).unwrap();
    std::io::copy(&mut file, &mut s).unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let code = answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (code, body)
}

/// One GET through the app's listener; true on a 200.
fn app_answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    if s.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer.starts_with(b"HTTP/1.1 200")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_streams_in_bounded_memory_and_the_default_limit_refuses_it() {
    // One bomb for both cases: generating it is the slow part.
    let files = tempfile::tempdir().unwrap();
    let bomb = files.path().join("bomb.tar.gz");
    write_bomb(&bomb);
    streams_in_bounded_memory_while_the_app_serves(&bomb).await;
    default_limits_refuse_bombs_and_cut_archives(&bomb, files.path());
}

async fn streams_in_bounded_memory_while_the_app_serves(bomb: &Path) {
    // Limits raised above the bomb: the streaming path itself is exercised.
    let raised = format!(
        "{THREE_WEB}\n[artifacts]\nmax_unpacked_bytes = {}\n",
        300 << 20
    );
    let baton = Baton::start(&raised);
    baton.release("web", "1.0.0", &[]);
    baton.deploy_ok("web", "1.0.0", &[]).await;
    let web = baton.web();
    assert!(app_answers(web), "the app serves before the import");

    let pid = baton.pid();
    let before = proc_kb(pid, "VmHWM");
    let importing = Arc::new(AtomicBool::new(true));
    let (answered, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let prober = {
        let (importing, answered, failed) = (importing.clone(), answered.clone(), failed.clone());
        std::thread::spawn(move || {
            while importing.load(Ordering::SeqCst) {
                let counter = if app_answers(web) { &answered } else { &failed };
                counter.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let (code, body) = upload(&baton, "2.0.0", bomb);
    importing.store(false, Ordering::SeqCst);
    prober.join().unwrap();
    let after = proc_kb(pid, "VmHWM");
    eprintln!(
        "peak RSS {before} kB -> {after} kB (VmRSS now {} kB); {} answers during the import",
        proc_kb(pid, "VmRSS"),
        answered.load(Ordering::SeqCst)
    );
    assert_eq!(code, 201, "{body}\nlog:\n{}", baton.log());
    assert!(
        after.saturating_sub(before) < MAX_GROWTH_KB,
        "peak RSS grew by {} kB importing a {BOMB_BYTES}-byte bomb (from {before} kB to {after} kB)",
        after - before
    );
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "the app failed requests during the import"
    );
    assert!(
        answered.load(Ordering::SeqCst) > 0,
        "the app answered during the import"
    );
    let o = baton.cli(&["release", "list", "web", "--json"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("2.0.0"),
        "stored as a release"
    );
}

fn default_limits_refuse_bombs_and_cut_archives(bomb: &Path, dir: &Path) {
    // The same bomb, refused with the limit and where to raise it.
    let baton = Baton::start(THREE_WEB);
    let (code, body) = upload(&baton, "2.0.0", bomb);
    assert_eq!(code, 413, "{body}");
    assert!(
        body.contains("[artifacts] max_unpacked_bytes") && body.contains("262144000"),
        "{body}"
    );
    assert!(
        !baton.data_dir().join("artifacts").exists()
            || std::fs::read_dir(baton.data_dir().join("artifacts"))
                .unwrap()
                .count()
                == 0,
        "a refused upload leaves nothing behind"
    );
    assert!(
        baton.cli(&["status"]).status.success(),
        "baton keeps serving"
    );
    // An empty body and a tar cut between two entries are not releases.
    let empty = dir.join("empty.tar");
    std::fs::write(&empty, b"").unwrap();
    let (code, body) = upload(&baton, "3.0.0", &empty);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is empty"), "{body}");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(3);
    b.append_data(&mut h, "a", &b"abc"[..]).unwrap();
    let whole = b.into_inner().unwrap();
    let cut = dir.join("cut.tar");
    std::fs::write(&cut, &whole[..whole.len() - 1024]).unwrap();
    let (code, body) = upload(&baton, "3.0.0", &cut);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("end-of-archive"), "{body}");
    let o = baton.cli(&["release", "list", "web", "--json"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("3.0.0"),
        "no release was recorded"
    );
}

/// The largest address space `baton release create` gets in the test below: well under the
/// artifact's size, so packing or sending it from memory fails.
const CLI_ADDRESS_SPACE_KB: u64 = 450 * 1024;

#[test]
fn release_create_packs_and_sends_an_artifact_larger_than_its_memory() {
    let raised = format!(
        "{THREE_WEB}\n[artifacts]\nmax_unpacked_bytes = {}\n",
        300 << 20
    );
    let baton = Baton::start(&raised);
    let src = baton.dir.path().join("big");
    std::fs::create_dir_all(&src).unwrap();
    // Sparse on disk, 256 MiB when read: bigger than the CLI's address space allows twice.
    std::fs::File::create(src.join("zeros"))
        .unwrap()
        .set_len(BOMB_BYTES)
        .unwrap();
    std::fs::write(src.join("README"), b"big\n").unwrap();
    let tmp = baton.dir.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {CLI_ADDRESS_SPACE_KB} && exec \"$0\" release create web 9.0.0 --artifact \"$1\" --config \"$2\""
        ))
        .arg(crate::harness::BATON)
        .arg(&src)
        .arg(&baton.config)
        .env("TMPDIR", &tmp)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "release create: {}",
        crate::harness::text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("created web 9.0.0"),
        "{}",
        crate::harness::text(&o)
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the packed archive is a temporary file, gone once sent"
    );
}

/// A tar of one file `f` holding `content`.
fn one_file_tar(path: &Path, content: &[u8]) {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    b.append_data(&mut h, "f", content).unwrap();
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

/// The artifact store's entries (`<hex>/` and `<hex>.tar` per stored artifact).
fn stored(baton: &Baton) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(baton.data_dir().join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_version_conflict_keeps_no_artifact_that_no_release_names() {
    let baton = Baton::start(THREE_WEB);
    let dir = baton.dir.path();
    let (a, b) = (dir.join("a.tar"), dir.join("b.tar"));
    one_file_tar(&a, b"first");
    one_file_tar(&b, b"second");
    let (code, body) = upload(&baton, "5.0.0", &a);
    assert_eq!(code, 201, "{body}");
    let before = stored(&baton);
    assert_eq!(before.len(), 2, "{before:?}");
    // The same version with other content is refused, and that content is not kept.
    let (code, body) = upload(&baton, "5.0.0", &b);
    assert_eq!(code, 409, "{body}");
    assert_eq!(stored(&baton), before, "the refused artifact was kept");
    // Content another release names is kept through a conflict.
    let (code, body) = upload(&baton, "6.0.0", &b);
    assert_eq!(code, 201, "{body}");
    let both = stored(&baton);
    assert_eq!(both.len(), 4, "{both:?}");
    let (code, body) = upload(&baton, "5.0.0", &b);
    assert_eq!(code, 409, "{body}");
    assert_eq!(stored(&baton), both, "6.0.0's artifact was removed");
}
