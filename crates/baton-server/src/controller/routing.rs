//! Building the split from the instances the controller admitted, and publishing it in one swap.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;

use baton_core::model::{Millis, Phase, Strategy};
use baton_proxy::{Affinity, AppRoute, Match, MatchSource, MatchValue, ReleaseRoute, RoutingTable};
use hyper::header::HeaderName;

use baton_cluster::ControllerMsg;
use baton_core::run::{HostApp, HostHealth, HostLb, HostRelease, HostSplit};

use crate::shared::Shared;

/// What was last published, to publish only on change: the edge's table, and each host's
/// split with the generation of the session it was sent to.
#[derive(Default)]
pub struct Published {
    edge: Vec<(String, String, u32, String, SocketAddr)>,
    hosts: HashMap<String, (i64, HostSplit)>,
}

/// A canary deployment's explicit weights and affinity: (canary release, its percent, rules).
fn canary_weight(shared: &Shared, app: &str) -> anyhow::Result<Option<(String, u32, Affinity)>> {
    let Some(d) = shared.store.active_deployment(app)?.filter(|d| {
        matches!(d.strategy, Strategy::Canary | Strategy::Dark)
            && !super::dark::in_dark_step(d)
            && matches!(d.phase, Phase::Pending | Phase::Progressing | Phase::Paused)
            && d.weight < 100
    }) else {
        return Ok(None);
    };
    let config = &shared.app(app).expect("units come from the config").canary;
    let header = |name: &str| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()).ok();
    let affinity = Affinity {
        canary: d.to.clone(),
        weight: d.weight,
        // Per deployment, so each canary picks its own set of users.
        salt: format!("{app}#{}", d.id),
        header: config
            .sticky
            .as_ref()
            .and_then(|s| s.header.as_deref())
            .and_then(header),
        cookie: config.sticky.as_ref().and_then(|s| s.cookie.clone()),
        matches: config
            .matches
            .iter()
            .filter_map(|m| {
                let source = match (&m.header, &m.cookie) {
                    (Some(h), _) => MatchSource::Header(header(h)?),
                    (None, Some(c)) => MatchSource::Cookie(c.clone()),
                    (None, None) => return None,
                };
                let value = match (&m.equals, &m.prefix) {
                    (Some(v), _) => MatchValue::Equals(v.clone()),
                    (None, Some(p)) => MatchValue::Prefix(p.clone()),
                    (None, None) => return None,
                };
                Some(Match { source, value })
            })
            .collect(),
    };
    Ok(Some((d.to, d.weight, affinity)))
}

/// Publishes every app's in-split instances as one routing table when it differs from the last.
pub fn publish(shared: &Shared, last: &mut Published) -> anyhow::Result<()> {
    let instances = shared.store.instances(None, false)?;
    let mut canary = BTreeMap::new();
    let snapshot = shared.config();
    crate::breakers::sync(shared, &snapshot);
    for app in snapshot.units.keys() {
        if let Some(w) = canary_weight(shared, app)? {
            canary.insert(app.clone(), w);
        }
    }
    let live = shared.live();
    let mut apps: BTreeMap<String, BTreeMap<String, ReleaseRoute>> = BTreeMap::new();
    for inst in instances
        .iter()
        .filter(|i| i.in_split && !i.state.is_leaving())
    {
        let Some(l) = live.get(&inst.id) else {
            continue;
        };
        if l.stopping {
            continue;
        }
        let route = apps
            .entry(inst.app.clone())
            .or_default()
            .entry(inst.release.clone())
            .or_insert_with(|| ReleaseRoute {
                release: inst.release.clone(),
                weight: 0,
                backends: Vec::new(),
            });
        // Rolling and blue-green weigh releases by their instances: each instance an equal share.
        route.weight += 1;
        route.backends.push(l.backend.clone());
    }
    drop(live);
    let mut mirrors = super::dark::routes(shared, &instances)?;
    // A canary's releases are weighed by percent, whatever their instance counts.
    for (app, (release, weight, _)) in &canary {
        if let Some(routes) = apps.get_mut(app) {
            for r in routes.values_mut() {
                r.weight = if &r.release == release {
                    *weight
                } else {
                    100 - weight
                };
            }
        }
    }
    send_host_splits(shared, &apps, last);
    let mut signature = Vec::new();
    for (app, routes) in &apps {
        for r in routes.values() {
            for b in &r.backends {
                signature.push((
                    app.clone(),
                    r.release.clone(),
                    r.weight,
                    b.instance().to_string(),
                    b.addr(),
                ));
            }
        }
    }
    for (app, m) in &mirrors {
        for b in &m.dark {
            let release = format!("dark:{}", b.release());
            signature.push((app.clone(), release, 0, b.instance().to_string(), b.addr()));
        }
    }
    if signature == last.edge {
        return Ok(());
    }
    let table = RoutingTable {
        apps: apps
            .into_iter()
            .map(|(app, releases)| {
                let affinity = canary.get(&app).map(|(_, _, a)| a.clone());
                let mirror = mirrors.remove(&app);
                (
                    app,
                    AppRoute {
                        releases: releases.into_values().collect(),
                        affinity,
                        mirror,
                    },
                )
            })
            .collect(),
    };
    shared.router.publish(table);
    last.edge = signature;
    Ok(())
}

/// Sends each host with a session its own split (`host_port` apps: the host's instances in the
/// edge's split, with the release weights), when it changed or the host reconnected.
fn send_host_splits(
    shared: &Shared,
    apps: &BTreeMap<String, BTreeMap<String, ReleaseRoute>>,
    last: &mut Published,
) {
    let Some(cluster) = &shared.cluster else {
        return;
    };
    let hosts_of: HashMap<String, String> = shared
        .store
        .instances(None, false)
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.id, i.host))
        .collect();
    let snapshot = shared.config();
    let any_lb = snapshot
        .units
        .values()
        .any(|u| u.config.external_lb.is_some());
    let endpoints = if any_lb {
        shared.store.lb_endpoints().unwrap_or_default()
    } else {
        Vec::new()
    };
    for host in snapshot.config.hosts.keys() {
        let Some(link) = cluster.link(host) else {
            continue;
        };
        let split = host_split(shared, host, apps, &hosts_of, &endpoints);
        if last.hosts.get(host) == Some(&(link.generation, split.clone())) {
            continue;
        }
        if cluster
            .send(host, ControllerMsg::Split(split.clone()))
            .is_ok()
        {
            last.hosts.insert(host.clone(), (link.generation, split));
        }
    }
}

fn host_split(
    shared: &Shared,
    host: &str,
    apps: &BTreeMap<String, BTreeMap<String, ReleaseRoute>>,
    hosts_of: &HashMap<String, String>,
    endpoints: &[(String, String, bool, Millis)],
) -> HostSplit {
    let mut split = HostSplit::default();
    let snapshot = shared.config();
    for (key, unit) in &snapshot.units {
        let config = &unit.config;
        let Some(port) = config.host_port else {
            continue;
        };
        if !config.host_names().iter().any(|h| h == host) {
            continue;
        }
        let releases = apps
            .get(key)
            .map(|routes| {
                routes
                    .values()
                    .map(|r| HostRelease {
                        release: r.release.clone(),
                        weight: r.weight,
                        instances: r
                            .backends
                            .iter()
                            .map(|b| b.instance().to_string())
                            .filter(|id| hosts_of.get(id).is_some_and(|h| h == host))
                            .collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        split.apps.push(HostApp {
            app: key.clone(),
            port,
            health: HostHealth {
                path: config.health.path.clone(),
                interval_ms: config.health.interval.as_millis(),
                timeout_ms: config.health.timeout.as_millis(),
                healthy_threshold: config.health.healthy_threshold,
                unhealthy_threshold: config.health.unhealthy_threshold,
            },
            request_timeout_ms: config.proxy.request_timeout.as_millis(),
            max_header_bytes: config.proxy.max_header_bytes,
            releases,
            // Resolved at start (crate::tls::resolve): the same paths on every host.
            tls: config
                .tls
                .as_ref()
                .map(|t| t.certificates(Path::new("")))
                .unwrap_or_default(),
            lb: config.external_lb.as_ref().map(|lb| HostLb {
                port: lb.health_port,
                passing: endpoints
                    .iter()
                    .find(|(a, h, _, _)| a == key && h == host)
                    .is_none_or(|(_, _, passing, _)| *passing),
            }),
            // Breakers on an app metric are driven by the controller, for its listener only.
            breakers: config
                .breakers
                .iter()
                .filter(|b| b.metric.is_none())
                .cloned()
                .collect(),
            outlier: config.outlier.clone(),
            flags: shared.router.flags().get(key).map(|f| host_flags(f)),
        });
    }
    split
}

/// An app's flags as the proxy holds them, for a host's split.
fn host_flags(f: &baton_proxy::AppFlags) -> baton_core::run::HostFlags {
    baton_core::run::HostFlags {
        key_header: f.key_header.as_ref().map(|h| h.as_str().to_string()),
        key_cookie: f.key_cookie.clone(),
        flags: f
            .flags
            .iter()
            .map(|(name, spec, forced_off)| baton_core::run::HostFlag {
                name: name.clone(),
                spec: spec.clone(),
                forced_off: forced_off.clone(),
            })
            .collect(),
    }
}
