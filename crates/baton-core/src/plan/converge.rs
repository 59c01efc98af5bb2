//! Converging an app's instances on one release: the rolling algorithm (also used for idle
//! upkeep and for going back after a failure).

use crate::model::{Instance, InstanceState};

use super::Action;

/// The outcome of one convergence decision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converge {
    /// What to do now.
    pub actions: Vec<Action>,
    /// Target instances healthy (and, after these actions, in the split).
    pub healthy: u32,
    /// Progress as a step number (rolling: target instances serving; blue-green: 1 once switched).
    pub step: u32,
    /// The target serves alone at full size.
    pub done: bool,
    /// These actions put the target in front of users.
    pub exposes: bool,
}

fn healthy(i: &Instance) -> bool {
    i.state == InstanceState::Healthy
}

/// Replaces instances of other releases by `n` instances of `target`, never running more than
/// `n + surge` and never serving with fewer than `n - unavailable` healthy instances
/// (docs/DESIGN.md I3). The same rule as a Kubernetes Deployment's rolling update.
pub fn rolling(target: &str, n: u32, surge: u32, unavailable: u32, live: &[&Instance]) -> Converge {
    let mut c = Converge::default();
    let (mut new, mut old): (Vec<&Instance>, Vec<&Instance>) =
        live.iter().partition(|i| i.release == target);
    // A warm instance of another release is no capacity: it serves nobody and leaves on its own.
    old.retain(|i| i.in_split || i.retire_at.is_none());

    for i in &new {
        if i.retire_at.is_some() {
            c.actions.push(Action::Reuse {
                instance: i.id.clone(),
            });
        }
    }
    // Too many of the target (the instance count was lowered): drop the least useful first.
    // `>=` would be equivalent (no excess: nothing drained, the stable sort keeps the order
    // of the instances admitted below).
    if new.len() > n as usize {
        // Among equals, from the host that runs the most of them, so the spread evens out.
        let hosts: Vec<&str> = new.iter().map(|i| i.host.as_str()).collect();
        let on_host = |host: &str| hosts.iter().filter(|h| **h == host).count();
        let mut keyed: Vec<_> = new
            .iter()
            .map(|i| {
                (
                    (healthy(i), i.in_split, std::cmp::Reverse(on_host(&i.host))),
                    *i,
                )
            })
            .collect();
        keyed.sort_by_key(|(key, _)| *key);
        new = keyed.into_iter().map(|(_, i)| i).collect();
        let excess = new.len() - n as usize;
        for i in new.drain(..excess) {
            c.actions.push(Action::Drain {
                instance: i.id.clone(),
            });
        }
    }
    for i in &new {
        if healthy(i) && !i.in_split {
            c.actions.push(Action::Admit {
                instance: i.id.clone(),
            });
            c.exposes = true;
        }
    }
    let new_available = new.iter().filter(|i| healthy(i)).count() as i64;
    let mut old_available = old.iter().filter(|i| healthy(i) && i.in_split).count() as i64;
    let total = (new.len() + old.len()) as i64;
    let (n, surge, unavailable) = (n as i64, surge as i64, unavailable as i64);

    let can_start = (n - new.len() as i64).min(n + surge - total).max(0);
    for _ in 0..can_start {
        c.actions.push(Action::Start {
            release: target.to_string(),
            host: String::new(),
        });
    }

    // Kubernetes also bounds the drains by `total - min_available - new_unavailable`; here that
    // bound is implied by the availability check below (it adds the old instances that serve
    // nobody, which drain without counting), so it is not kept.
    let min_available = (n - unavailable).max(0);
    // Old instances that serve nobody go first; then serving ones from the host that serves
    // the most (so a host's own listener, `host_port`, is never left empty while another host
    // has more), the oldest first.
    let mut serving_on: std::collections::HashMap<&str, usize> = Default::default();
    for i in new.iter().filter(|i| healthy(i)) {
        *serving_on.entry(i.host.as_str()).or_default() += 1;
    }
    for i in old.iter().filter(|i| healthy(i) && i.in_split) {
        *serving_on.entry(i.host.as_str()).or_default() += 1;
    }
    let on = |i: &Instance| serving_on.get(i.host.as_str()).copied().unwrap_or(0);
    old.sort_by_key(|i| {
        (
            healthy(i) && i.in_split,
            std::cmp::Reverse(on(i)),
            i.started_at,
        )
    });
    for i in &old {
        let serving = healthy(i) && i.in_split;
        if serving {
            if new_available + old_available - 1 < min_available {
                break;
            }
            old_available -= 1;
        }
        // One that serves nobody costs no capacity, so it may always go.
        c.actions.push(Action::Drain {
            instance: i.id.clone(),
        });
    }
    let drained_old = old
        .iter()
        .filter(|i| {
            c.actions.contains(&Action::Drain {
                instance: i.id.clone(),
            })
        })
        .count();

    c.healthy = new_available as u32;
    c.step = new_available as u32;
    c.done = new.len() as i64 == n && new_available == n && drained_old == old.len();
    c
}
