//! The handshake with an external load balancer (`[apps.<name>.external_lb]`,
//! docs/design-notes.md "Many hosts and containers"): rolling host by host, and moving off a
//! drained host, so that the load balancer never sends a request to a host while anything on
//! it stops serving.
//!
//! Per host, in the app's `hosts` order (hosts that keep instances first): fail the host's
//! health endpoint; wait until the host's listener sees no new request for `quiet`, or
//! `settle` passed (the load balancer's time to notice); replace the host's instances with a
//! rolling move confined to that host; pass the endpoint once its new instances serve; wait
//! until a request arrives on the host again, or the load balancer's time to notice passed
//! (`rise_time`); then the next host. At most one host is out of the load balancer at a time.
//! All of it is read from the hosts' endpoint states and instances: level-triggered like the
//! rest of the planner, so a restarted controller takes it up where it was.

use crate::config::ExternalLbConfig;
use crate::model::{Deployment, Instance, InstanceState, Millis};

use super::{Action, Converge, Plan, PlanHost, PlanInput, converge, wake};

/// How often the planner looks again while it waits on the load balancer: hosts report their
/// traffic every second.
const POLL_MS: Millis = 500;

/// One decision of a host-by-host rolling deployment, with its progress for the caller.
pub(super) fn rolling(
    input: PlanInput<'_>,
    lb: &ExternalLbConfig,
    live: &[&Instance],
    d: &mut Deployment,
    out: &mut Plan,
) -> Converge {
    let n = input.app.instances;
    let now = input.now;
    let shares = shares(input.hosts, n);
    let mut c = Converge {
        healthy: count(live, |i| {
            i.release == d.to && i.state == InstanceState::Healthy
        })
        .min(n),
        step: count(live, |i| i.release == d.to && i.in_split),
        ..Converge::default()
    };
    let on = |h: &PlanHost| -> Vec<&Instance> {
        live.iter().copied().filter(|i| i.host == h.name).collect()
    };
    let work = |h: &PlanHost, share: u32| -> bool {
        let mine = on(h);
        mine.iter().any(|i| i.release != d.to || !i.in_split) || mine.len() != share as usize
    };
    // A host out of the load balancer: finish it.
    // A host with no endpoint state yet (none recorded) counts as out and settled.
    for (h, share) in &shares {
        if h.lb.is_some_and(|l| l.passing) {
            continue;
        }
        let busy = work(h, *share);
        if !busy && (h.drained || h.lb.is_none()) {
            continue;
        }
        if busy {
            if let Some(state) = h.lb.filter(|l| !settled(lb, *l, now)) {
                wake(
                    out,
                    (now + POLL_MS).min(state.since.saturating_add(settle(lb))),
                );
                return c;
            }
            let r = &input.app.rolling;
            let mut here = converge::rolling(&d.to, *share, r.max_surge, r.max_unavailable, &on(h));
            for a in &mut here.actions {
                if let Action::Start { host, .. } = a {
                    host.clone_from(&h.name);
                }
            }
            c.exposes |= here.exposes;
            c.step += count_admits(&here.actions);
            c.actions.append(&mut here.actions);
            if !here.done {
                return c;
            }
        }
        if !h.drained {
            c.actions.push(Action::Lb {
                host: h.name.clone(),
                passing: true,
            });
            d.deadline = Some(deadline(input, now, lb.rise_time().as_millis_i64()));
            wake(out, now + POLL_MS);
            return c;
        }
    }
    // A host just back in the load balancer: wait until its traffic returns.
    for (h, _) in &shares {
        let Some(state) = h.lb.filter(|l| l.passing && l.since >= d.created_at) else {
            continue;
        };
        let back = state.last_request.is_some_and(|t| t > state.since);
        let until = state.since.saturating_add(lb.rise_time().as_millis_i64());
        if !back && now < until && !h.drained {
            wake(out, (now + POLL_MS).min(until));
            return c;
        }
    }
    // The next host with work: take it out.
    for (h, share) in &shares {
        if !work(h, *share) {
            continue;
        }
        if h.lb.is_some_and(|l| l.passing) {
            c.actions.push(Action::Lb {
                host: h.name.clone(),
                passing: false,
            });
            d.deadline = Some(deadline(input, now, settle(lb)));
            wake(out, now + POLL_MS);
        }
        return c;
    }
    c.done = true;
    c
}

/// An idle app: endpoints pass on the hosts that keep instances; a drained host's endpoint
/// fails, and its instances leave only once the load balancer stopped sending to it.
pub(super) fn idle(
    input: PlanInput<'_>,
    lb: &ExternalLbConfig,
    live: &[&Instance],
    out: &mut Plan,
) {
    let now = input.now;
    for h in input.hosts {
        let Some(state) = h.lb else { continue };
        let has = live.iter().any(|i| i.host == h.name);
        if h.drained && state.passing && has {
            out.actions.push(Action::Lb {
                host: h.name.clone(),
                passing: false,
            });
        } else if !h.drained && !state.passing {
            out.actions.push(Action::Lb {
                host: h.name.clone(),
                passing: true,
            });
        }
        let waits = h.drained && (state.passing || !settled(lb, state, now));
        if !waits || !has {
            continue;
        }
        let before = out.actions.len();
        out.actions.retain(|a| match a {
            Action::Drain { instance } => !live
                .iter()
                .any(|i| &i.id == instance && i.host == h.name && i.in_split),
            _ => true,
        });
        if out.actions.len() != before || state.passing {
            let since = if state.passing { now } else { state.since };
            wake(out, (now + POLL_MS).min(since.saturating_add(settle(lb))));
        }
    }
}

/// The load balancer stopped sending to a host whose endpoint fails: no new request for
/// `quiet` since it failed, or `settle` passed.
fn settled(lb: &ExternalLbConfig, state: super::LbHost, now: Millis) -> bool {
    let quiet_from = state
        .last_request
        .map_or(state.since, |t| t.max(state.since));
    now >= state.since.saturating_add(settle(lb))
        || now >= quiet_from.saturating_add(lb.quiet.as_millis_i64())
}

fn settle(lb: &ExternalLbConfig) -> Millis {
    lb.settle().as_millis_i64()
}

/// The progress deadline after a change of endpoint: the load balancer's time to notice,
/// then the usual time to become healthy.
fn deadline(input: PlanInput<'_>, now: Millis, wait: Millis) -> Millis {
    now.saturating_add(wait)
        .saturating_add(input.app.health.deadline.as_millis_i64())
}

/// Each host's share of `n` instances, hosts that keep instances first, in `hosts` order:
/// spread evenly over the hosts that take new instances (connected, not drained), the first
/// ones taking the remainder. The others' instances leave, in their turn, last.
fn shares(hosts: &[PlanHost], n: u32) -> Vec<(&PlanHost, u32)> {
    let keep: Vec<&PlanHost> = hosts.iter().filter(|h| h.schedulable).collect();
    let count = u32::try_from(keep.len()).unwrap_or(u32::MAX).max(1);
    let mut out: Vec<(&PlanHost, u32)> = keep
        .iter()
        .enumerate()
        .map(|(k, h)| {
            let extra = u32::from(u32::try_from(k).unwrap_or(u32::MAX) < n % count);
            (*h, n / count + extra)
        })
        .collect();
    out.extend(hosts.iter().filter(|h| !h.schedulable).map(|h| (h, 0)));
    out
}

fn count(live: &[&Instance], f: impl Fn(&Instance) -> bool) -> u32 {
    u32::try_from(live.iter().filter(|i| f(i)).count()).unwrap_or(u32::MAX)
}

fn count_admits(actions: &[Action]) -> u32 {
    u32::try_from(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Admit { .. }))
            .count(),
    )
    .unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::placement::tests::hosts_of_starts;
    use super::super::tests::{NOW, app, deployment, drains, inst, starts};
    use super::super::{LbHost, plan};
    use super::*;
    use crate::model::InstanceState::*;
    use crate::model::{Phase, Strategy};

    const SETTLE: Millis = 17_000;

    fn lb_app() -> crate::config::AppConfig {
        let mut app = app("rolling");
        app.instances = 2;
        app.external_lb = Some(toml::from_str("health_port = 9901").unwrap());
        app
    }

    fn on(host: &str, n: u32, release: &str, state: InstanceState, in_split: bool) -> Instance {
        let mut i = inst(n, release, state, in_split);
        i.host = host.to_string();
        i
    }

    fn host(name: &str, passing: bool, since: Millis, last: Option<Millis>) -> PlanHost {
        let mut h = PlanHost::up(name);
        h.lb = Some(LbHost {
            passing,
            since,
            last_request: last,
        });
        h
    }

    fn lb_actions(p: &Plan) -> Vec<(&str, bool)> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Lb { host, passing } => Some((host.as_str(), *passing)),
                _ => None,
            })
            .collect()
    }

    fn deploy(set: &[Instance], hosts: &[PlanHost], now: Millis) -> Plan {
        let app = lb_app();
        let d = deployment(
            Some("1.0.0"),
            "1.1.0",
            Strategy::Rolling,
            Phase::Progressing,
        );
        plan(PlanInput {
            app: &app,
            current: Some("1.0.0"),
            deployment: Some(&d),
            instances: set,
            now,
            verdict: None,
            hosts,
        })
    }

    fn old() -> Vec<Instance> {
        vec![
            on("a", 1, "1.0.0", Healthy, true),
            on("b", 2, "1.0.0", Healthy, true),
        ]
    }

    #[test]
    fn the_first_host_leaves_the_load_balancer_before_anything_starts_or_stops() {
        let hosts = [host("a", true, 0, Some(NOW)), host("b", true, 0, Some(NOW))];
        let p = deploy(&old(), &hosts, NOW);
        assert_eq!(lb_actions(&p), [("a", false)]);
        assert_eq!(starts(&p), 0);
        assert_eq!(drains(&p).len(), 0);
    }

    #[test]
    fn a_failed_host_is_replaced_only_once_quiet_or_settled() {
        // Traffic still arrives: wait.
        let hosts = [
            host("a", false, NOW - 3000, Some(NOW - 500)),
            host("b", true, 0, None),
        ];
        let p = deploy(&old(), &hosts, NOW);
        assert_eq!((starts(&p), lb_actions(&p).len()), (0, 0));
        assert!(p.wake_at.is_some_and(|w| w <= NOW + POLL_MS));
        // Quiet for 2 s: replace a's instance on a.
        let hosts = [
            host("a", false, NOW - 3000, Some(NOW - 2000)),
            host("b", true, 0, None),
        ];
        let p = deploy(&old(), &hosts, NOW);
        assert_eq!(hosts_of_starts(&p), ["a"]);
        // Never quiet, but settle passed: the load balancer had all its time; go on.
        let hosts = [
            host("a", false, NOW - SETTLE, Some(NOW - 100)),
            host("b", true, 0, None),
        ];
        let p = deploy(&old(), &hosts, NOW);
        assert_eq!(hosts_of_starts(&p), ["a"]);
    }

    #[test]
    fn the_host_passes_again_once_its_new_instances_serve_then_waits_for_traffic() {
        let mut set = old();
        set[0] = on("a", 3, "1.1.0", Healthy, true);
        let hosts = [
            host("a", false, NOW - SETTLE, None),
            host("b", true, 0, None),
        ];
        let p = deploy(&set, &hosts, NOW);
        assert_eq!(lb_actions(&p), [("a", true)]);
        assert_eq!(starts(&p), 0);
        // Back in, no request yet: b waits.
        let hosts = [host("a", true, NOW - 1000, None), host("b", true, 0, None)];
        assert_eq!(lb_actions(&deploy(&set, &hosts, NOW)).len(), 0);
        // A request reached a: b's turn.
        let hosts = [
            host("a", true, NOW - 1000, Some(NOW - 10)),
            host("b", true, 0, None),
        ];
        assert_eq!(lb_actions(&deploy(&set, &hosts, NOW)), [("b", false)]);
        // No request ever (no traffic at all), but the load balancer's rise time passed.
        let hosts = [
            host("a", true, NOW - 12_000, None),
            host("b", true, 0, None),
        ];
        assert_eq!(lb_actions(&deploy(&set, &hosts, NOW)), [("b", false)]);
    }

    #[test]
    fn only_the_host_out_is_touched_and_the_rollout_ends_with_all_hosts_in() {
        // a is out and settled, still old: only a gets a new instance, b's old one stays.
        let hosts = [
            host("a", false, NOW - SETTLE, None),
            host("b", true, 0, None),
        ];
        let mut set = old();
        set.push(on("a", 3, "1.1.0", Healthy, false));
        let p = deploy(&set, &hosts, NOW);
        assert_eq!(starts(&p), 0);
        assert!(drains(&p).iter().all(|id| *id == "web-1"), "{p:?}");
        // All new, all in: done.
        let set = [
            on("a", 3, "1.1.0", Healthy, true),
            on("b", 4, "1.1.0", Healthy, true),
        ];
        let hosts = [
            host("a", true, 0, None),
            host("b", true, NOW - 100_000, None),
        ];
        let p = deploy(&set, &hosts, NOW);
        assert_eq!(
            p.deployment.map(|d| d.phase),
            Some(Phase::Succeeded),
            "{:?}",
            p.events
        );
    }

    #[test]
    fn a_host_that_takes_nothing_new_does_not_hold_the_rollout() {
        // c was lost: its instance is gone; a and b share the two new instances.
        let mut c = host("c", true, 0, None);
        c.schedulable = false;
        let set = [
            on("a", 3, "1.1.0", Healthy, true),
            on("b", 4, "1.1.0", Healthy, true),
        ];
        let hosts = [host("a", true, 0, None), host("b", true, 0, None), c];
        let p = deploy(&set, &hosts, NOW);
        assert_eq!(p.deployment.map(|d| d.phase), Some(Phase::Succeeded));
    }

    #[test]
    fn a_drained_host_fails_its_endpoint_first_and_its_instances_leave_once_settled() {
        let app = lb_app();
        let set = [
            on("a", 1, "1.0.0", Healthy, true),
            on("b", 2, "1.0.0", Healthy, true),
            on("b", 3, "1.0.0", Healthy, true),
        ];
        let idle = |hosts: &[PlanHost], now: Millis| {
            plan(PlanInput {
                app: &app,
                current: Some("1.0.0"),
                deployment: None,
                instances: &set,
                now,
                verdict: None,
                hosts,
            })
        };
        let mut a = host("a", true, 0, Some(NOW));
        a.drained = true;
        a.schedulable = false;
        let p = idle(&[a.clone(), host("b", true, 0, None)], NOW);
        assert_eq!(lb_actions(&p), [("a", false)]);
        assert!(drains(&p).is_empty(), "{p:?}");
        // Failed, still busy: hold its drain.
        a.lb = Some(LbHost {
            passing: false,
            since: NOW - 1000,
            last_request: Some(NOW - 10),
        });
        let p = idle(&[a.clone(), host("b", true, 0, None)], NOW);
        assert!(drains(&p).is_empty(), "{p:?}");
        // Quiet: it goes.
        a.lb = Some(LbHost {
            passing: false,
            since: NOW - 5000,
            last_request: Some(NOW - 3000),
        });
        let p = idle(&[a.clone(), host("b", true, 0, None)], NOW);
        assert_eq!(drains(&p), ["web-1"]);
        // Undrained: its endpoint passes again.
        a.drained = false;
        a.schedulable = true;
        let p = idle(&[a, host("b", true, 0, None)], NOW);
        assert_eq!(lb_actions(&p), [("a", true)]);
    }
}
