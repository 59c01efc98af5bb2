//! An idle app's upkeep across hosts (docs/design-notes.md, "Many hosts and containers"):
//! replace lost instances, move instances off drained hosts (new ones first, then the old
//! ones drain: the capacity never drops), and even out the spread when a host comes back or is
//! undrained, one instance at a time (start one on the thinnest host; once it is healthy,
//! drain one from the thickest).

use crate::model::{Instance, InstanceState};

use super::{Action, Plan, PlanInput, converge};

pub(super) fn idle(input: PlanInput<'_>, current: &str, live: &[&Instance], out: &mut Plan) {
    let n = input.app.instances;
    // Off a drained host, or a host the app no longer lists.
    let drained = |i: &&&Instance| !input.hosts.iter().any(|h| !h.drained && h.name == i.host);
    let (leaving, staying): (Vec<&Instance>, Vec<&Instance>) =
        live.iter().partition(|i| drained(i));
    let target: Vec<&&Instance> = staying.iter().filter(|i| i.release == current).collect();
    let all_healthy = target.iter().all(|i| i.state == InstanceState::Healthy);
    let all_serving = all_healthy && target.iter().all(|i| i.in_split);
    // One instance over the count until it serves is a rebalance in progress, not excess:
    // only then does the excess drain pick one on the thickest host.
    let warming = target.len() == n as usize + 1 && !all_serving;
    let want = if warming { n + 1 } else { n };
    // Replacing lost instances is not a rollout: start every missing one at once.
    let c = converge::rolling(current, want, want, 0, &staying);
    out.actions.extend(c.actions);
    if !c.done || warming {
        return;
    }
    if !leaving.is_empty() {
        for i in leaving {
            out.actions.push(Action::Drain {
                instance: i.id.clone(),
            });
        }
        return;
    }
    if target.len() == n as usize && all_healthy && spread_gap(input, &target) > 1 {
        out.actions.push(Action::Start {
            release: current.to_string(),
            host: String::new(),
        });
    }
}

/// The difference between the most and the fewest instances on the hosts that take new ones.
fn spread_gap(input: PlanInput<'_>, target: &[&&Instance]) -> usize {
    let counts: Vec<usize> = input
        .hosts
        .iter()
        .filter(|h| h.schedulable)
        .map(|h| target.iter().filter(|i| i.host == h.name).count())
        .collect();
    match (counts.iter().max(), counts.iter().min()) {
        (Some(max), Some(min)) => max - min,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::placement::{self, tests::hosts_of_starts};
    use super::super::tests::{admits, drains, inst, starts};
    use super::*;
    use crate::model::InstanceState::*;
    use crate::plan::PlanHost;

    fn on(host: &str, mut i: Instance) -> Instance {
        i.host = host.to_string();
        i
    }

    fn hosts(drained: &[&str]) -> Vec<PlanHost> {
        ["a", "b"]
            .iter()
            .map(|name| PlanHost {
                name: name.to_string(),
                schedulable: !drained.contains(name),
                drained: drained.contains(name),
                lb: None,
                lost: false,
            })
            .collect()
    }

    fn idle(instances: &[Instance], hosts: &[PlanHost]) -> Plan {
        placement::tests::idle(instances, hosts, 4)
    }

    #[test]
    fn a_drained_host_is_replaced_first_then_drained() {
        let two_and_two = [
            on("a", inst(1, "1.0.0", Healthy, true)),
            on("a", inst(2, "1.0.0", Healthy, true)),
            on("b", inst(3, "1.0.0", Healthy, true)),
            on("b", inst(4, "1.0.0", Healthy, true)),
        ];
        let p = idle(&two_and_two, &hosts(&["b"]));
        assert_eq!(hosts_of_starts(&p), ["a", "a"]);
        assert!(
            drains(&p).is_empty(),
            "nothing leaves b before its replacements serve"
        );

        let mut moved = two_and_two.to_vec();
        moved.push(on("a", inst(5, "1.0.0", Starting, false)));
        moved.push(on("a", inst(6, "1.0.0", Starting, false)));
        let p = idle(&moved, &hosts(&["b"]));
        assert_eq!((starts(&p), drains(&p).len()), (0, 0), "{p:?}");

        for i in &mut moved[4..] {
            i.state = Healthy;
        }
        let p = idle(&moved, &hosts(&["b"]));
        let mut gone = drains(&p);
        gone.sort();
        assert_eq!(gone, ["web-3", "web-4"]);
    }

    #[test]
    fn an_undrained_host_gets_its_share_back_one_instance_at_a_time() {
        let all_on_a: Vec<Instance> = (1..=4)
            .map(|n| on("a", inst(n, "1.0.0", Healthy, true)))
            .collect();
        let p = idle(&all_on_a, &hosts(&[]));
        assert_eq!(hosts_of_starts(&p), ["b"]);
        assert!(drains(&p).is_empty());

        let mut one_more = all_on_a.clone();
        one_more.push(on("b", inst(5, "1.0.0", Starting, false)));
        let p = idle(&one_more, &hosts(&[]));
        assert_eq!(
            (starts(&p), drains(&p).len()),
            (0, 0),
            "it warms up first: {p:?}"
        );

        one_more[4].state = Healthy;
        let p = idle(&one_more, &hosts(&[]));
        assert_eq!(
            admits(&p),
            ["web-5"],
            "healthy: it serves before anything leaves"
        );
        assert!(drains(&p).is_empty(), "{p:?}");

        one_more[4].in_split = true;
        let p = idle(&one_more, &hosts(&[]));
        assert_eq!(starts(&p), 0);
        let gone = drains(&p);
        assert_eq!(gone.len(), 1);
        assert!(
            gone[0] != "web-5",
            "the drained one is from the thickest host: {gone:?}"
        );

        let even = [
            on("a", inst(1, "1.0.0", Healthy, true)),
            on("a", inst(2, "1.0.0", Healthy, true)),
            on("b", inst(3, "1.0.0", Healthy, true)),
            on("b", inst(4, "1.0.0", Healthy, true)),
        ];
        let p = idle(&even, &hosts(&[]));
        assert_eq!((starts(&p), drains(&p).len()), (0, 0), "{p:?}");
    }
}
