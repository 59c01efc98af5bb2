//! Tests of [`ProcessHandle`] against real child processes.

use std::time::Duration;

use super::super::test_support::{Guard, eventually, guard_sleep_in, sh, wait_for_line, within};
use super::super::{DriverError, ExitInfo, ProcessHandle, StopOutcome, kill_pid_files};

/// Long enough that a test never reaches it unless the behaviour under test is broken.
const PATIENT: Duration = Duration::from_secs(30);

/// Writes the pid of a background `sleep` to `gc.pid` atomically (so a reader never sees a
/// half-written number).
const GRANDCHILD: &str = "echo $! > gc.tmp && mv gc.tmp gc.pid";

fn spawn(spec: &super::super::ProcessSpec) -> Guard {
    Guard(ProcessHandle::spawn(spec).expect("spawn"))
}

#[tokio::test]
async fn log_is_appended_across_spawns() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sh(dir.path(), "echo out; echo err >&2");
    for _ in 0..2 {
        let child = spawn(&spec);
        within("exit", child.exited()).await;
    }
    let log = std::fs::read_to_string(&spec.log_path).unwrap();
    assert_eq!(log, "out\nerr\nout\nerr\n");
}

#[tokio::test]
async fn env_and_cwd_are_applied_on_top_of_batons_environment() {
    let dir = tempfile::tempdir().unwrap();
    let app = dir.path().join("app");
    std::fs::create_dir(&app).unwrap();
    let mut spec = sh(
        &app,
        r#"echo "$BATON_TEST_VAR $(pwd -P) ${PATH:+has-path}""#,
    );
    spec.env.insert("BATON_TEST_VAR".into(), "hello".into());
    let child = spawn(&spec);
    assert_eq!(within("exit", child.exited()).await.code, Some(0));
    let log = std::fs::read_to_string(&spec.log_path).unwrap();
    let cwd = app.canonicalize().unwrap();
    assert_eq!(log, format!("hello {} has-path\n", cwd.display()));
}

#[tokio::test]
async fn exited_reports_the_code_to_every_waiter() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&sh(dir.path(), "exit 3"));
    let other = child.0.clone();
    let (a, b) = within("exit", async {
        tokio::join!(child.exited(), other.exited())
    })
    .await;
    let expected = ExitInfo {
        code: Some(3),
        signal: None,
    };
    assert_eq!(a, expected);
    assert_eq!(b, expected);
    assert_eq!(child.exit(), Some(expected));
    assert_eq!(child.0.start_time(), other.start_time());
}

#[tokio::test]
async fn exit_is_none_while_running() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&sh(dir.path(), "echo ready; exec sleep 1000"));
    wait_for_line(&dir.path().join("log/out.log"), "ready").await;
    assert_eq!(child.exit(), None);
    assert!(child.start_time() > 0);
}

#[tokio::test]
async fn stop_of_a_child_that_obeys_term_reports_its_exit() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("trap 'echo bye; exit 0' TERM; sleep 1000 & {GRANDCHILD}; wait");
    let spec = sh(dir.path(), &script);
    let child = spawn(&spec);
    let _grandchild = guard_sleep_in(&dir.path().join("gc.pid")).await;
    let outcome = within("stop", child.stop(PATIENT)).await;
    assert_eq!(
        outcome,
        StopOutcome::Exited(ExitInfo {
            code: Some(0),
            signal: None
        })
    );
    wait_for_line(&spec.log_path, "bye").await;
}

#[tokio::test]
async fn stop_of_a_child_that_ignores_term_kills_it_after_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("trap '' TERM; sleep 1000 & {GRANDCHILD}; wait");
    let child = spawn(&sh(dir.path(), &script));
    let _grandchild = guard_sleep_in(&dir.path().join("gc.pid")).await;
    let outcome = within("stop", child.stop(Duration::from_millis(200))).await;
    assert_eq!(outcome, StopOutcome::Killed);
    assert_eq!(
        child.exit(),
        Some(ExitInfo {
            code: None,
            signal: Some(9)
        })
    );
}

#[tokio::test]
async fn stop_after_exit_is_already_gone() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&sh(dir.path(), "exit 0"));
    within("exit", child.exited()).await;
    assert_eq!(child.stop(PATIENT).await, StopOutcome::AlreadyGone);
}

#[tokio::test]
async fn stop_terminates_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&sh(dir.path(), &format!("sleep 1000 & {GRANDCHILD}; wait")));
    let grandchild = guard_sleep_in(&dir.path().join("gc.pid")).await;
    let outcome = within("stop", child.stop(PATIENT)).await;
    assert_eq!(
        outcome,
        StopOutcome::Exited(ExitInfo {
            code: None,
            signal: Some(15)
        })
    );
    eventually("the grandchild to die", || {
        (!grandchild.alive()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn stop_kills_helpers_that_outlive_the_instance() {
    let dir = tempfile::tempdir().unwrap();
    let script = format!("(trap '' TERM; exec sleep 1000) & {GRANDCHILD}; wait");
    let child = spawn(&sh(dir.path(), &script));
    let grandchild = guard_sleep_in(&dir.path().join("gc.pid")).await;
    let outcome = within("stop", child.stop(Duration::from_millis(200))).await;
    assert!(matches!(outcome, StopOutcome::Exited(_)), "{outcome:?}");
    eventually("the TERM-ignoring helper to die", || {
        (!grandchild.alive()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn adopt_requires_the_right_start_time() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&sh(dir.path(), "exec sleep 1000"));
    let wrong = ProcessHandle::adopt(child.pid(), child.start_time() + 1);
    assert!(wrong.is_none());
    let adopted = ProcessHandle::adopt(child.pid(), child.start_time()).expect("adopt");
    let _adopted = Guard(adopted.clone());
    assert_eq!(
        (adopted.pid(), adopted.start_time()),
        (child.pid(), child.start_time())
    );
    assert_eq!(adopted.exit(), None);
}

#[tokio::test]
async fn adopt_of_an_exited_process_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&sh(dir.path(), "exit 0"));
    within("exit", child.exited()).await;
    assert!(ProcessHandle::adopt(child.pid(), child.start_time()).is_none());
}

#[tokio::test]
async fn adopted_exit_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&sh(dir.path(), "exec sleep 1000"));
    let adopted = Guard(ProcessHandle::adopt(child.pid(), child.start_time()).expect("adopt"));
    child.kill();
    assert_eq!(
        within("adopted exit", adopted.exited()).await,
        ExitInfo::UNKNOWN
    );
    assert_eq!(adopted.exit(), Some(ExitInfo::UNKNOWN));
}

#[tokio::test]
async fn stop_of_an_adopted_process_terminates_it() {
    let dir = tempfile::tempdir().unwrap();
    let child = spawn(&sh(dir.path(), "exec sleep 1000"));
    let adopted = Guard(ProcessHandle::adopt(child.pid(), child.start_time()).expect("adopt"));
    let outcome = within("stop", adopted.stop(PATIENT)).await;
    assert_eq!(outcome, StopOutcome::Exited(ExitInfo::UNKNOWN));
    let exit = within("exit", child.exited()).await;
    assert_eq!(exit.signal, Some(15));
}

#[tokio::test]
async fn pid_file_is_written_after_spawn_and_removed_on_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(dir.path(), "exec sleep 1000");
    let pid_file = dir.path().join("run/web.pid");
    spec.pid_file = Some(pid_file.clone());
    let child = spawn(&spec);
    let text = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(text, format!("{} {}\n", child.pid(), child.start_time()));

    let adopted = Guard(ProcessHandle::adopt_pid_file(&pid_file).expect("adopt pid file"));
    assert_eq!(adopted.pid(), child.pid());

    assert!(matches!(
        within("stop", child.stop(PATIENT)).await,
        StopOutcome::Exited(_)
    ));
    assert!(!pid_file.exists());
}

#[tokio::test]
async fn kill_pid_files_kills_every_recorded_group() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut children = Vec::new();
    for name in ["a", "b"] {
        let work = dir.path().join(name);
        std::fs::create_dir(&work).unwrap();
        let mut spec = sh(
            &work,
            &format!("trap '' TERM; sleep 1000 & {GRANDCHILD}; wait"),
        );
        spec.pid_file = Some(run.join(format!("{name}.pid")));
        let child = spawn(&spec);
        let grandchild = guard_sleep_in(&work.join("gc.pid")).await;
        children.push((child, grandchild));
    }
    let cleanup = run.clone();
    within(
        "cleanup",
        tokio::task::spawn_blocking(move || kill_pid_files(&cleanup)),
    )
    .await
    .unwrap();
    for (child, grandchild) in &children {
        let exit = within("exit", child.exited()).await;
        assert_eq!(exit.signal, Some(9));
        eventually("the grandchild to die", || {
            (!grandchild.alive()).then_some(())
        })
        .await;
    }
    assert_eq!(std::fs::read_dir(&run).unwrap().count(), 0);
}

#[tokio::test]
async fn missing_program_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    for program in [
        "/nonexistent/baton-app",
        "baton-no-such-program",
        "./bin/app",
    ] {
        let mut spec = sh(dir.path(), "");
        spec.argv = vec![program.into(), "--port".into(), "1".into()];
        let error = ProcessHandle::spawn(&spec).expect_err(program);
        assert!(
            matches!(error, DriverError::ProgramNotFound { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains(program), "{message}");
        assert!(message.contains("`command` in baton.toml"), "{message}");
    }
}

#[tokio::test]
async fn relative_program_runs_from_cwd() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("bin/app");
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    std::fs::write(&script, "#!/bin/sh\necho from-app\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut spec = sh(dir.path(), "");
    spec.argv = vec!["./bin/app".into()];
    let child = spawn(&spec);
    assert_eq!(within("exit", child.exited()).await.code, Some(0));
    assert_eq!(
        std::fs::read_to_string(&spec.log_path).unwrap(),
        "from-app\n"
    );
}

#[tokio::test]
async fn non_executable_program_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app"), "#!/bin/sh\n").unwrap();
    let mut spec = sh(dir.path(), "");
    spec.argv = vec!["./app".into()];
    let error = ProcessHandle::spawn(&spec).expect_err("not executable");
    assert!(
        matches!(error, DriverError::NotExecutable { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("`command` in baton.toml"));
}

#[tokio::test]
async fn missing_cwd_and_empty_command_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let spec = sh(&dir.path().join("missing"), "true");
    let error = ProcessHandle::spawn(&spec).expect_err("missing cwd");
    assert!(matches!(error, DriverError::Cwd { .. }), "{error:?}");
    assert!(error.to_string().contains("missing"));

    let mut spec = sh(dir.path(), "");
    spec.argv.clear();
    let error = ProcessHandle::spawn(&spec).expect_err("empty command");
    assert!(matches!(error, DriverError::EmptyCommand), "{error:?}");
}

#[tokio::test]
async fn instance_leads_its_own_group_and_outlives_its_handles() {
    let dir = tempfile::tempdir().unwrap();
    let child = ProcessHandle::spawn(&sh(dir.path(), "exec sleep 1000")).expect("spawn");
    let (pid, start_time) = (child.pid(), child.start_time());
    let stat = super::read_stat(pid).expect("stat");
    assert_eq!(stat.pgrp, i32::try_from(pid).unwrap());
    assert_ne!(nix::unistd::getpgrp().as_raw(), stat.pgrp);
    drop(child);
    let adopted = Guard(ProcessHandle::adopt(pid, start_time).expect("still running"));
    assert_eq!(adopted.exit(), None);
}

#[test]
fn exit_is_still_seen_after_the_spawning_runtime_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let child = runtime.block_on(async { spawn(&sh(dir.path(), "exec sleep 1000")) });
    drop(runtime);
    assert_eq!(child.exit(), None);
    child.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.exit().is_none() {
        assert!(std::time::Instant::now() < deadline, "exit never seen");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(child.exit(), Some(ExitInfo::UNKNOWN));
}
