//! Blue-green: start the whole new set beside the old one, switch 100 % in one atomic step,
//! keep the old set warm for an instant rollback.

use crate::model::{Instance, InstanceState, Millis};

use super::{Action, Converge};

/// Brings `n` instances of `target` up out of the split; once all are healthy, switches: every
/// target instance in, every other serving instance out and kept warm until `warm_until`.
pub fn converge(target: &str, n: u32, warm_until: Millis, live: &[&Instance]) -> Converge {
    let mut c = Converge::default();
    let (mut new, old): (Vec<&Instance>, Vec<&Instance>) =
        live.iter().partition(|i| i.release == target);
    for i in &new {
        if i.retire_at.is_some() {
            c.actions.push(Action::Reuse {
                instance: i.id.clone(),
            });
        }
    }
    // `>=` would be equivalent (no excess: nothing drained, the stable sort keeps the order
    // of the instances admitted below).
    if new.len() > n as usize {
        new.sort_by_key(|i| (i.state == InstanceState::Healthy, i.in_split));
        let excess = new.len() - n as usize;
        for i in new.drain(..excess) {
            c.actions.push(Action::Drain {
                instance: i.id.clone(),
            });
        }
    }
    for _ in new.len()..n as usize {
        c.actions.push(Action::Start {
            release: target.to_string(),
            host: String::new(),
        });
    }
    let healthy = new
        .iter()
        .filter(|i| i.state == InstanceState::Healthy)
        .count() as u32;
    c.healthy = healthy;
    if healthy < n {
        return c;
    }
    // The switch: all of these actions land in one published split.
    for i in new.iter().filter(|i| !i.in_split) {
        c.actions.push(Action::Admit {
            instance: i.id.clone(),
        });
        c.exposes = true;
    }
    for i in old.iter().filter(|i| i.in_split) {
        c.actions.push(Action::KeepWarm {
            instance: i.id.clone(),
            until: warm_until,
        });
    }
    // Old instances that were not serving (left over, never healthy) are no use warm.
    for i in old.iter().filter(|i| !i.in_split && i.retire_at.is_none()) {
        c.actions.push(Action::Drain {
            instance: i.id.clone(),
        });
    }
    c.step = 1;
    c.done = true;
    c
}
