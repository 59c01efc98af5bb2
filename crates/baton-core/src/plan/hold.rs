//! A deployment holds while hosts of its app are lost (docs/design-notes.md, "Many hosts and
//! containers", "Host lost"): it takes no step forward (no new instance of its release, no
//! drain of the old one, no deadline running out) until the fleet is whole again or the
//! operator acts. What is lost of the release that served before it is replaced meanwhile,
//! so capacity comes back at once, and an abort still goes back at once.
//!
//! The hold ends by itself when every lost host is back, drained (`baton host drain`: the
//! operator says it is out of the fleet) or no longer one of the app's hosts. `baton resume`
//! (and a canary's `baton promote`) goes on without the hosts the deployment announced it
//! holds for; a host that comes back and is lost again holds it again. Like a pause, a hold
//! stops the progress clock: the step gets a whole deadline when it ends.

use crate::model::{Deployment, EventKind, Instance, InstanceState, Strategy};

use super::{Action, Plan, PlanInput};

/// Whether `d` holds now. Updates its hold and records an event when it begins to hold, holds
/// for other hosts, goes on without them at the operator's word, or resumes.
pub(super) fn holds(input: PlanInput<'_>, d: &mut Deployment, out: &mut Plan) -> bool {
    let lost: Vec<String> = input
        .hosts
        .iter()
        .filter(|h| h.lost && !h.drained)
        .map(|h| h.name.clone())
        .collect();
    d.hold.without.retain(|h| lost.contains(h));
    let was = std::mem::take(&mut d.hold.lost);
    let go_on = d.intents.resume || d.intents.promote.is_some();
    if go_on {
        let left: Vec<String> = was.iter().filter(|h| lost.contains(h)).cloned().collect();
        if !left.is_empty() {
            out.events.push((
                EventKind::DeploymentResumed,
                format!(
                    "{} {} goes on at step {} without {} (lost), as the operator asked",
                    d.app,
                    d.to,
                    d.step,
                    hosts_phrase(&left).0
                ),
            ));
            d.hold.without.extend(left);
        }
    }
    let holding: Vec<String> = lost
        .into_iter()
        .filter(|h| !d.hold.without.contains(h))
        .collect();
    if holding.is_empty() {
        if !was.is_empty() {
            let back: Vec<String> = was
                .iter()
                .filter(|h| !d.hold.without.contains(h))
                .map(|h| why_not_lost(input, h))
                .collect();
            if !back.is_empty() {
                out.events.push((
                    EventKind::DeploymentResumed,
                    format!(
                        "{} {} resumes at step {}: {}",
                        d.app,
                        d.to,
                        d.step,
                        back.join("; ")
                    ),
                ));
            }
            // The hold stopped the progress clock, as a pause does.
            if d.deadline.is_some() {
                d.deadline = Some(
                    input
                        .now
                        .saturating_add(input.app.health.deadline.as_millis_i64()),
                );
            }
        }
        return false;
    }
    if holding != was {
        out.events
            .push((EventKind::DeploymentHeld, held_message(d, &holding)));
    }
    d.hold.lost = holding;
    true
}

/// While a deployment holds or is paused, nothing moves but this: instances of the release
/// that served before it, lost with their host, are replaced (on the other hosts) and join
/// the split once healthy, so capacity comes back and an abort still has its full size.
pub(super) fn keep_capacity(
    input: PlanInput<'_>,
    live: &[&Instance],
    d: &Deployment,
    out: &mut Plan,
) {
    let Some(from) = d.from.as_deref() else {
        return; // Nothing served before: there is no capacity to keep.
    };
    // A warm instance of another deployment serves nobody and leaves on its own.
    let counts = |i: &&&Instance| i.in_split || i.retire_at.is_none();
    let of_from: Vec<&&Instance> = live
        .iter()
        .filter(|i| i.release == from)
        .filter(counts)
        .collect();
    // Rolling: the new release's serving instances took the place of old ones (one still
    // starting is no capacity: nothing joins the split while the deployment holds).
    // Blue-green and canary keep the old release at full size beside the new one.
    let of_to = match d.strategy {
        Strategy::Rolling => live
            .iter()
            .filter(|i| i.release == d.to && i.in_split)
            .count(),
        Strategy::BlueGreen | Strategy::Canary | Strategy::Dark => 0,
    };
    for _ in (of_from.len() + of_to)..input.app.instances as usize {
        out.actions.push(Action::Start {
            release: from.to_string(),
            host: String::new(),
        });
    }
    for i in of_from {
        if i.state == InstanceState::Healthy && !i.in_split {
            out.actions.push(Action::Admit {
                instance: i.id.clone(),
            });
        }
    }
}

/// "host web-2 is" / "hosts web-2 and web-3 are", and the hosts alone ("web-2", "web-2 and
/// web-3").
fn hosts_phrase(hosts: &[String]) -> (String, String) {
    let names = match hosts {
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        [] => String::new(),
    };
    let noun = if hosts.len() == 1 { "host" } else { "hosts" };
    (format!("{noun} {names}"), names)
}

fn held_message(d: &Deployment, lost: &[String]) -> String {
    let (hosts, names) = hosts_phrase(lost);
    let verb = if lost.len() == 1 { "is" } else { "are" };
    let it = if lost.len() == 1 { "it" } else { "them" };
    let back = match d.from.as_deref() {
        Some(from) => format!("`baton abort` goes back to {from}"),
        None => "`baton abort` stops it".to_string(),
    };
    format!(
        "{} {} holds at step {}: {hosts} {verb} lost; it goes on when {names} {verb} back or \
         drained (`baton host drain`), or without {it} on `baton resume`; {back}",
        d.app, d.to, d.step
    )
}

/// Why a host the deployment held for holds it no longer.
fn why_not_lost(input: PlanInput<'_>, host: &str) -> String {
    match input.hosts.iter().find(|h| h.name == host) {
        Some(h) if h.drained => format!("host {host} was drained"),
        Some(_) => format!("host {host} is back"),
        None => format!("host {host} is no longer one of the app's hosts"),
    }
}
