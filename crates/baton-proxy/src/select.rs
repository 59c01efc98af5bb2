//! Backend selection: a release by weight among those with an eligible backend, then a backend
//! by the power of two choices (least in flight of two random picks). Pure but for the rng.

use std::net::IpAddr;
use std::sync::Arc;

use crate::affinity::Target;
use crate::backend::Backend;
use crate::router::{AppRoute, ReleaseRoute};

/// Picks a backend for a new request, or `None` when no release with weight has an eligible one.
/// `skip` is a backend that just failed (a retry goes elsewhere).
pub fn select<'a>(
    route: &'a AppRoute,
    skip: Option<&Backend>,
    rng: &mut fastrand::Rng,
) -> Option<&'a Arc<Backend>> {
    select_avoiding(route, skip, None, rng)
}

/// [`select`] among the backends that are not on host `avoid` (by address) either.
fn select_avoiding<'a>(
    route: &'a AppRoute,
    skip: Option<&Backend>,
    avoid: Option<IpAddr>,
    rng: &mut fastrand::Rng,
) -> Option<&'a Arc<Backend>> {
    let usable = |r: &ReleaseRoute| r.weight > 0 && eligible_count(&r.backends, skip, avoid) > 0;
    let total: u64 = route
        .releases
        .iter()
        .filter(|r| usable(r))
        .map(|r| u64::from(r.weight))
        .sum();
    if total == 0 {
        return None;
    }
    let mut point = rng.u64(0..total);
    for release in route.releases.iter().filter(|r| usable(r)) {
        let weight = u64::from(release.weight);
        if point < weight {
            return pick_avoiding(&release.backends, skip, avoid, rng);
        }
        point -= weight;
    }
    None
}

/// Picks a backend in the release group affinity chose: the canary release, or the others by
/// their weights. `None` when that group has no eligible backend (the caller then falls back to
/// [`select`]: serving the user beats stickiness).
pub fn select_target<'a>(
    route: &'a AppRoute,
    canary: &str,
    target: &Target,
    rng: &mut fastrand::Rng,
) -> Option<&'a Arc<Backend>> {
    let in_group = |r: &ReleaseRoute| (r.release == canary) == (*target == Target::Canary);
    let usable = |r: &ReleaseRoute| in_group(r) && eligible_count(&r.backends, None, None) > 0;
    let total: u64 = route
        .releases
        .iter()
        .filter(|r| usable(r))
        .map(|r| u64::from(r.weight.max(1)))
        .sum();
    if total == 0 {
        return None;
    }
    let mut point = rng.u64(0..total);
    for release in route.releases.iter().filter(|r| usable(r)) {
        let weight = u64::from(release.weight.max(1));
        if point < weight {
            return pick_backend(&release.backends, None, rng);
        }
        point -= weight;
    }
    None
}

/// Picks a backend for a retry after `failed`, on another host than `failed`'s if one can take
/// it (what failed may be the host: its agent and tunnel gone, its network cut): another
/// instance of the same release there, else of any release by the usual rules; only then
/// another instance on the same host. On one host, the same release first, then any.
pub fn select_retry<'a>(
    route: &'a AppRoute,
    failed: &Backend,
    rng: &mut fastrand::Rng,
) -> Option<&'a Arc<Backend>> {
    let host = Some(failed.addr().ip());
    let same = route
        .releases
        .iter()
        .find(|r| r.release == failed.release());
    same.and_then(|r| pick_avoiding(&r.backends, Some(failed), host, rng))
        .or_else(|| select_avoiding(route, Some(failed), host, rng))
        .or_else(|| same.and_then(|r| pick_backend(&r.backends, Some(failed), rng)))
        .or_else(|| select(route, Some(failed), rng))
}

/// Power of two choices among the eligible backends of one release.
pub fn pick_backend<'a>(
    backends: &'a [Arc<Backend>],
    skip: Option<&Backend>,
    rng: &mut fastrand::Rng,
) -> Option<&'a Arc<Backend>> {
    pick_avoiding(backends, skip, None, rng)
}

/// [`pick_backend`] among the backends not on host `avoid` (by address) either.
fn pick_avoiding<'a>(
    backends: &'a [Arc<Backend>],
    skip: Option<&Backend>,
    avoid: Option<IpAddr>,
    rng: &mut fastrand::Rng,
) -> Option<&'a Arc<Backend>> {
    let n = eligible_count(backends, skip, avoid);
    match n {
        0 => None,
        1 => nth_eligible(backends, skip, avoid, 0),
        _ => {
            let i = rng.usize(0..n);
            // A second, distinct index: shift past the first.
            let mut j = rng.usize(0..n - 1);
            if j >= i {
                j += 1;
            }
            let a = nth_eligible(backends, skip, avoid, i)?;
            let b = nth_eligible(backends, skip, avoid, j)?;
            Some(if b.local_in_flight() < a.local_in_flight() {
                b
            } else {
                a
            })
        }
    }
}

fn is_candidate(backend: &Arc<Backend>, skip: Option<&Backend>, avoid: Option<IpAddr>) -> bool {
    backend.is_eligible()
        && !skip.is_some_and(|s| std::ptr::eq(Arc::as_ptr(backend), s))
        && avoid.is_none_or(|ip| backend.addr().ip() != ip)
        && !backend.outlier.is_ejected()
}

fn eligible_count(
    backends: &[Arc<Backend>],
    skip: Option<&Backend>,
    avoid: Option<IpAddr>,
) -> usize {
    backends
        .iter()
        .filter(|b| is_candidate(b, skip, avoid))
        .count()
}

fn nth_eligible<'a>(
    backends: &'a [Arc<Backend>],
    skip: Option<&Backend>,
    avoid: Option<IpAddr>,
    n: usize,
) -> Option<&'a Arc<Backend>> {
    backends
        .iter()
        .filter(|b| is_candidate(b, skip, avoid))
        .nth(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Health, InFlight};

    fn backend(instance: &str, release: &str, health: Health) -> Arc<Backend> {
        let b = Backend::new(
            instance.into(),
            release.into(),
            "127.0.0.1:9".parse().unwrap(),
            3,
        );
        b.set_health(health);
        b
    }

    fn release(name: &str, weight: u32, backends: Vec<Arc<Backend>>) -> ReleaseRoute {
        ReleaseRoute {
            release: name.into(),
            weight,
            backends,
        }
    }

    fn count_by_release(
        route: &AppRoute,
        picks: usize,
    ) -> std::collections::HashMap<String, usize> {
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..picks {
            let b = select(route, None, &mut rng).expect("a backend");
            *counts.entry(b.release().to_string()).or_insert(0) += 1;
        }
        counts
    }

    #[test]
    fn weights_are_honoured() {
        let route = AppRoute {
            releases: vec![
                release(
                    "1.0",
                    90,
                    vec![
                        backend("a", "1.0", Health::Healthy),
                        backend("b", "1.0", Health::Healthy),
                    ],
                ),
                release("2.0", 10, vec![backend("c", "2.0", Health::Healthy)]),
            ],
            affinity: None,
            mirror: None,
        };
        let counts = count_by_release(&route, 10_000);
        let canary = counts["2.0"];
        // 10 % of 10k is 1000 with a standard deviation of 30: 5 sigma either side.
        assert!(
            (850..=1150).contains(&canary),
            "release 2.0 got {canary} of 10000"
        );
        assert_eq!(counts["1.0"] + canary, 10_000);
    }

    #[test]
    fn release_without_eligible_backend_gives_its_share_to_the_others() {
        let draining = backend("c", "2.0", Health::Healthy);
        draining.start_drain();
        let route = AppRoute {
            releases: vec![
                release("1.0", 50, vec![backend("a", "1.0", Health::Healthy)]),
                release(
                    "2.0",
                    50,
                    vec![draining, backend("d", "2.0", Health::Starting)],
                ),
                release("3.0", 0, vec![backend("e", "3.0", Health::Healthy)]),
            ],
            affinity: None,
            mirror: None,
        };
        assert_eq!(count_by_release(&route, 1_000)["1.0"], 1_000);
    }

    #[test]
    fn nothing_eligible_gives_none() {
        let mut rng = fastrand::Rng::with_seed(1);
        let route = AppRoute {
            releases: vec![release(
                "1.0",
                100,
                vec![backend("a", "1.0", Health::Unhealthy)],
            )],
            affinity: None,
            mirror: None,
        };
        assert!(select(&route, None, &mut rng).is_none());
        assert!(select(&AppRoute::default(), None, &mut rng).is_none());
    }

    #[test]
    fn two_choices_prefer_the_less_loaded() {
        let busy = backend("a", "1.0", Health::Healthy);
        let idle = backend("b", "1.0", Health::Healthy);
        let _load: Vec<_> = (0..5).map(|_| InFlight::acquire(&busy).unwrap()).collect();
        let backends = vec![busy, idle];
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..100 {
            assert_eq!(
                pick_backend(&backends, None, &mut rng).unwrap().instance(),
                "b"
            );
        }
    }

    #[test]
    fn retry_prefers_the_same_release_and_never_the_failed_backend() {
        let failed = backend("a", "1.0", Health::Healthy);
        let route = AppRoute {
            releases: vec![
                release(
                    "1.0",
                    1,
                    vec![failed.clone(), backend("b", "1.0", Health::Healthy)],
                ),
                release("2.0", 1000, vec![backend("c", "2.0", Health::Healthy)]),
            ],
            affinity: None,
            mirror: None,
        };
        let mut rng = fastrand::Rng::with_seed(5);
        for _ in 0..100 {
            assert_eq!(
                select_retry(&route, &failed, &mut rng).unwrap().instance(),
                "b"
            );
        }
        let alone = AppRoute {
            releases: vec![release("1.0", 1, vec![failed.clone()])],
            affinity: None,
            mirror: None,
        };
        assert!(select_retry(&alone, &failed, &mut rng).is_none());
    }

    fn on_host(instance: &str, release: &str, host: &str) -> Arc<Backend> {
        let b = Backend::new(
            instance.into(),
            release.into(),
            format!("{host}:9").parse().unwrap(),
            3,
        );
        b.set_health(Health::Healthy);
        b
    }

    #[test]
    fn retry_goes_to_another_host_first() {
        // a failed on host .2, whose agent may be gone: b (same release, same host) only when
        // no instance elsewhere can take the request.
        let failed = on_host("a", "1.0", "127.0.0.2");
        let same_host = on_host("b", "1.0", "127.0.0.2");
        let elsewhere = on_host("c", "1.0", "127.0.0.3");
        let canary_elsewhere = on_host("d", "2.0", "127.0.0.3");
        let route = |backends: Vec<Arc<Backend>>, canary: Vec<Arc<Backend>>| AppRoute {
            releases: vec![release("1.0", 95, backends), release("2.0", 5, canary)],
            affinity: None,
            mirror: None,
        };
        let mut rng = fastrand::Rng::with_seed(9);
        let pick = |r: &AppRoute, rng: &mut fastrand::Rng| {
            select_retry(r, &failed, rng)
                .unwrap()
                .instance()
                .to_string()
        };
        let r = route(
            vec![failed.clone(), same_host.clone(), elsewhere.clone()],
            vec![canary_elsewhere.clone()],
        );
        for _ in 0..100 {
            assert_eq!(pick(&r, &mut rng), "c");
        }
        // No instance of its release elsewhere: another release elsewhere beats the same host.
        let r = route(
            vec![failed.clone(), same_host.clone()],
            vec![canary_elsewhere.clone()],
        );
        for _ in 0..100 {
            assert_eq!(pick(&r, &mut rng), "d");
        }
        // Nothing elsewhere: the same host's other instance.
        let r = route(vec![failed.clone(), same_host.clone()], vec![]);
        for _ in 0..100 {
            assert_eq!(pick(&r, &mut rng), "b");
        }
    }
}
