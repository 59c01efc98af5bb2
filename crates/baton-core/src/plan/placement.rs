//! Placement: the last stage of planning picks a host for every instance the rollout starts
//! (docs/design-notes.md, "Many hosts and containers").
//!
//! The rollout stages decide how many instances of which release start; they know nothing of
//! hosts. Here each start goes to the schedulable host with the fewest live instances of that
//! release, then the fewest instances of the app, then the first in `hosts` order. So an app's
//! `instances` spread evenly (at most one apart) and a surge lands where the fleet is thinnest.
//! A start no host can take is dropped: the rollout asks again next tick, and its progress
//! deadline decides if no host comes back.

use crate::model::{Instance, Millis};

use super::{Action, Plan, PlanInput};

/// One of an app's hosts, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanHost {
    /// The host's name (`local` for the controller's own).
    pub name: String,
    /// Whether it may get new instances: connected and not drained.
    pub schedulable: bool,
    /// The operator drained it (`baton host drain`): its instances move to the other hosts.
    pub drained: bool,
    /// Its health endpoint for the app's external load balancer (`external_lb`), if any.
    pub lb: Option<LbHost>,
    /// Away for longer than the heartbeat timeout: its instances were fenced, and a
    /// deployment of the app holds until it is back (`hold.rs`).
    pub lost: bool,
}

/// A host's health endpoint for an app's external load balancer, as the planner sees it
/// (`external_lb.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LbHost {
    /// It answers 200 (the host should get traffic) rather than 503.
    pub passing: bool,
    /// When it last changed.
    pub since: Millis,
    /// When the host's listener last saw a new request of the app, as far as the controller
    /// knows (hosts report their traffic every second).
    pub last_request: Option<Millis>,
}

impl PlanHost {
    /// A host that takes new instances.
    pub fn up(name: &str) -> PlanHost {
        PlanHost {
            name: name.to_string(),
            schedulable: true,
            drained: false,
            lb: None,
            lost: false,
        }
    }
}

/// Fills in the host of every `Start` in `out`, dropping the starts no host can take. A start
/// that already names a host (host-by-host rolling) keeps it if that host takes new instances.
pub(super) fn place(input: &PlanInput<'_>, out: &mut Plan) {
    let live: Vec<&Instance> = input
        .instances
        .iter()
        .filter(|i| !i.state.is_leaving())
        .collect();
    // (release, host) of every instance counted so far, the starts placed here included.
    let mut placed: Vec<(String, String)> = live
        .iter()
        .map(|i| (i.release.clone(), i.host.clone()))
        .collect();
    out.actions.retain_mut(|action| {
        let Action::Start { release, host } = action else {
            return true;
        };
        if !host.is_empty() {
            let takes = input.hosts.iter().any(|h| h.name == *host && h.schedulable);
            if takes {
                placed.push((release.clone(), host.clone()));
            }
            return takes;
        }
        let Some(choice) = choose(input.hosts, release, &placed) else {
            return false;
        };
        *host = choice.to_string();
        placed.push((release.clone(), host.clone()));
        true
    });
}

fn choose<'h>(
    hosts: &'h [PlanHost],
    release: &str,
    placed: &[(String, String)],
) -> Option<&'h str> {
    hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.schedulable)
        .min_by_key(|(order, h)| {
            let on_host = placed.iter().filter(|(_, host)| *host == h.name);
            let of_release = on_host.clone().filter(|(r, _)| r == release).count();
            (of_release, on_host.count(), *order)
        })
        .map(|(_, h)| h.name.as_str())
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::tests::{app, inst, starts};
    use super::*;
    use crate::model::InstanceState::*;
    use crate::plan::plan;

    fn on(host: &str, mut i: Instance) -> Instance {
        i.host = host.to_string();
        i
    }

    pub(in crate::plan) fn hosts_of_starts(p: &Plan) -> Vec<&str> {
        p.actions
            .iter()
            .filter_map(|a| match a {
                Action::Start { host, .. } => Some(host.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The plan for an idle app of `n` instances of 1.0.0 over `hosts`.
    pub(in crate::plan) fn idle(instances: &[Instance], hosts: &[PlanHost], n: u32) -> Plan {
        let mut app = app("rolling");
        app.instances = n;
        plan(PlanInput {
            app: &app,
            current: Some("1.0.0"),
            deployment: None,
            instances,
            now: 0,
            verdict: None,
            hosts,
        })
    }

    #[test]
    fn instances_spread_evenly_in_hosts_order() {
        let hosts = [PlanHost::up("web-1"), PlanHost::up("web-2")];
        assert_eq!(
            hosts_of_starts(&idle(&[], &hosts, 4)),
            ["web-1", "web-2", "web-1", "web-2"]
        );
        assert_eq!(
            hosts_of_starts(&idle(&[], &hosts, 3)),
            ["web-1", "web-2", "web-1"]
        );
    }

    #[test]
    fn a_replacement_goes_to_the_thinnest_host() {
        let hosts = [PlanHost::up("a"), PlanHost::up("b"), PlanHost::up("c")];
        let running = [
            on("a", inst(1, "1.0.0", Healthy, true)),
            on("a", inst(2, "1.0.0", Healthy, true)),
            on("b", inst(3, "1.0.0", Healthy, true)),
        ];
        assert_eq!(hosts_of_starts(&idle(&running, &hosts, 5)), ["c", "b"]);
    }

    #[test]
    fn unschedulable_hosts_get_nothing_and_no_host_means_no_start() {
        let mut hosts = [PlanHost::up("web-1"), PlanHost::up("web-2")];
        hosts[0].schedulable = false;
        assert_eq!(hosts_of_starts(&idle(&[], &hosts, 2)), ["web-2", "web-2"]);
        hosts[1].schedulable = false;
        let p = idle(&[], &hosts, 2);
        assert_eq!(starts(&p), 0);
    }

    #[test]
    fn leaving_instances_do_not_count() {
        let hosts = [PlanHost::up("web-1"), PlanHost::up("web-2")];
        // web-1 holds two draining instances, web-2 one serving one: web-1 is the thinner.
        let running = [
            on("web-1", inst(1, "0.9.0", Draining, false)),
            on("web-1", inst(2, "0.9.0", Draining, false)),
            on("web-2", inst(3, "1.0.0", Healthy, true)),
        ];
        assert_eq!(
            hosts_of_starts(&idle(&running, &hosts, 3)),
            ["web-1", "web-1"]
        );
    }
}
