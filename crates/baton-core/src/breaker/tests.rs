//! Table tests of the breaker state machine.

use super::*;

fn thresholds() -> Thresholds {
    Thresholds {
        window_ms: 10_000,
        min_requests: 10,
        max_error_rate: Some(0.5),
        max_p99_ms: Some(500),
        cooldown_ms: 5_000,
        probes: 2,
        driven: false,
    }
}

/// Sends `n` requests at `now`, `errors` of them failing, each taking `ms`.
fn traffic(b: &mut Breaker, now: Millis, n: u32, errors: u32, ms: u64) -> Vec<Transition> {
    let mut out = Vec::new();
    for i in 0..n {
        let (admit, moved) = b.admit(now);
        out.extend(moved);
        if admit == Admit::Reject {
            continue;
        }
        out.extend(b.record(now, admit == Admit::Probe, i < errors, ms));
    }
    out
}

#[test]
fn the_window_opens_it_only_past_a_threshold_with_enough_requests() {
    // (requests, errors, latency ms, opens?)
    let table = [
        (9, 9, 1, false),    // below min_requests
        (10, 5, 1, false),   // 50 % is not above 50 %
        (10, 6, 1, true),    // 60 % errors
        (100, 0, 501, true), // every answer slower than max_p99
        (100, 0, 500, false),
    ];
    for (n, errors, ms, opens) in table {
        let mut b = Breaker::new(thresholds(), 0);
        let moved = traffic(&mut b, 1, n, errors, ms);
        assert_eq!(b.state() == State::Open, opens, "{n} {errors} {ms}");
        if opens {
            assert_eq!(moved.len(), 1);
            assert_eq!((moved[0].from, moved[0].to), (State::Closed, State::Open));
            assert!(moved[0].figures.requests >= 10, "{:?}", moved[0]);
        }
    }
}

#[test]
fn one_slow_answer_in_a_hundred_is_within_p99_two_are_not() {
    let mut b = Breaker::new(thresholds(), 0);
    traffic(&mut b, 1, 99, 0, 10);
    traffic(&mut b, 1, 1, 0, 900);
    assert_eq!(b.state(), State::Closed);
    let moved = traffic(&mut b, 1, 1, 0, 900);
    assert_eq!(b.state(), State::Open);
    assert!(
        moved[0].reason.starts_with("p99 > 500 ms"),
        "{}",
        moved[0].reason
    );
}

#[test]
fn errors_that_left_the_window_no_longer_count() {
    let mut b = Breaker::new(thresholds(), 0);
    traffic(&mut b, 0, 5, 5, 1);
    traffic(&mut b, 11_000, 10, 5, 1);
    assert_eq!(b.state(), State::Closed);
}

#[test]
fn open_refuses_until_the_cooldown_then_probes_close_it() {
    let mut b = Breaker::new(thresholds(), 0);
    traffic(&mut b, 1_000, 10, 10, 1);
    assert_eq!((b.state(), b.since()), (State::Open, 1_000));
    assert_eq!(b.admit(5_999).0, Admit::Reject);
    assert_eq!(b.poll(5_999), None);
    // Cooldown over: the first request moves it to half-open and is a probe.
    let (admit, moved) = b.admit(6_000);
    assert_eq!(admit, Admit::Probe);
    assert_eq!(moved.map(|t| t.to), Some(State::HalfOpen));
    assert_eq!(b.admit(6_000).0, Admit::Probe);
    assert_eq!(b.admit(6_000).0, Admit::Reject, "only `probes` probes");
    assert_eq!(b.record(6_010, true, false, 3), None);
    let closed = b.record(6_010, true, false, 3).expect("closes");
    assert_eq!((closed.from, closed.to), (State::HalfOpen, State::Closed));
    assert_eq!(b.admit(6_020).0, Admit::Pass);
    // The window restarted empty: the errors before it opened are forgotten.
    assert_eq!(b.figures(6_020).requests, 0);
}

#[test]
fn a_failing_or_slow_probe_opens_it_again() {
    for (error, ms) in [(true, 1), (false, 501)] {
        let mut b = Breaker::new(thresholds(), 0);
        traffic(&mut b, 0, 10, 10, 1);
        assert_eq!(b.admit(5_000).0, Admit::Probe);
        let t = b.record(5_001, true, error, ms).expect("opens");
        assert_eq!(
            (t.from, t.to, b.since()),
            (State::HalfOpen, State::Open, 5_001)
        );
        assert_eq!(b.admit(5_002).0, Admit::Reject);
    }
}

#[test]
fn late_answers_and_released_probes() {
    let mut b = Breaker::new(thresholds(), 0);
    traffic(&mut b, 0, 10, 10, 1);
    // An answer to a request admitted before it opened changes nothing.
    assert_eq!(b.record(1, false, false, 1), None);
    assert_eq!(b.admit(5_000).0, Admit::Probe);
    assert_eq!(b.admit(5_000).0, Admit::Probe);
    b.release(true);
    assert_eq!(
        b.admit(5_000).0,
        Admit::Probe,
        "a released probe frees its place"
    );
    // Probes that never report: a new round after another cooldown.
    assert_eq!(b.admit(9_999).0, Admit::Reject);
    assert_eq!(b.admit(10_000).0, Admit::Probe);
    assert_eq!(b.state(), State::HalfOpen);
}

#[test]
fn a_driven_breaker_moves_only_when_forced_and_closes_after_its_cooldown() {
    let mut b = Breaker::new(
        Thresholds {
            max_error_rate: None,
            max_p99_ms: None,
            driven: true,
            ..thresholds()
        },
        0,
    );
    // Its route's failures do not open it; its driver does.
    assert!(traffic(&mut b, 100, 50, 50, 1).is_empty());
    assert_eq!(b.state(), State::Closed);
    assert!(
        b.force(false, 200, "in range".into(), Figures::default())
            .is_none()
    );
    let t = b
        .force(true, 1_000, "metric over".into(), Figures::default())
        .unwrap();
    assert_eq!((t.from, t.to), (State::Closed, State::Open));
    assert!(
        b.force(true, 1_500, "still over".into(), Figures::default())
            .is_none()
    );
    // Open: requests get the fallback, and no cooldown makes it half-open by itself.
    assert_eq!(b.admit(20_000).0, Admit::Reject);
    assert!(b.poll(60_000).is_none());
    assert_eq!(b.state(), State::Open);
    // Back in range: closed, but not before its cooldown.
    let mut c = Breaker::new(
        Thresholds {
            driven: true,
            ..thresholds()
        },
        0,
    );
    c.force(true, 1_000, "over".into(), Figures::default());
    assert!(
        c.force(false, 3_000, "in range".into(), Figures::default())
            .is_none()
    );
    let t = c
        .force(false, 6_000, "in range".into(), Figures::default())
        .unwrap();
    assert_eq!((t.from, t.to), (State::Open, State::Closed));
    assert_eq!(c.admit(6_001).0, Admit::Pass);
}

#[test]
fn a_route_breaker_ignores_force_and_retire_closes_any_breaker() {
    let mut b = Breaker::new(thresholds(), 0);
    assert!(b.force(true, 10, "x".into(), Figures::default()).is_none());
    assert_eq!(b.state(), State::Closed);
    assert!(b.retire(20).is_none(), "closed: nothing to let go");
    traffic(&mut b, 100, 20, 20, 1);
    assert_eq!(b.state(), State::Open);
    let t = b.retire(200).unwrap();
    assert_eq!((t.from, t.to), (State::Open, State::Closed));
}
