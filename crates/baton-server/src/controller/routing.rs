//! Building the split from the instances the controller admitted, and publishing it in one swap.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use baton_proxy::{AppRoute, ReleaseRoute, RoutingTable};

use crate::shared::Shared;

/// What was last published, to publish only on change.
#[derive(Default, PartialEq, Eq)]
pub struct Published(Vec<(String, String, String, SocketAddr)>);

/// Publishes every app's in-split instances as one routing table when it differs from the last.
pub fn publish(shared: &Shared, last: &mut Published) -> anyhow::Result<()> {
    let instances = shared.store.instances(None, false)?;
    let live = shared.live();
    let mut apps: BTreeMap<String, BTreeMap<String, ReleaseRoute>> = BTreeMap::new();
    let mut signature = Vec::new();
    for inst in instances.iter().filter(|i| i.in_split && !i.state.is_leaving()) {
        let Some(l) = live.get(&inst.id) else { continue };
        if l.stopping {
            continue;
        }
        signature.push((inst.app.clone(), inst.release.clone(), inst.id.clone(), l.backend.addr()));
        let route = apps
            .entry(inst.app.clone())
            .or_default()
            .entry(inst.release.clone())
            .or_insert_with(|| ReleaseRoute { release: inst.release.clone(), weight: 0, backends: Vec::new() });
        // Rolling and blue-green weigh releases by their instances: each instance an equal share.
        route.weight += 1;
        route.backends.push(l.backend.clone());
    }
    drop(live);
    let signature = Published(signature);
    if signature == *last {
        return Ok(());
    }
    let table = RoutingTable {
        apps: apps
            .into_iter()
            .map(|(app, releases)| (app, AppRoute { releases: releases.into_values().collect() }))
            .collect(),
    };
    shared.router.publish(table);
    *last = signature;
    Ok(())
}
