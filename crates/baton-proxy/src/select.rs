//! Backend selection: a release by weight among those with an eligible backend, then a backend
//! by the power of two choices (least in flight of two random picks). Pure but for the rng.

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
    let usable = |r: &ReleaseRoute| r.weight > 0 && eligible_count(&r.backends, skip) > 0;
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
            return pick_backend(&release.backends, skip, rng);
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
    let usable = |r: &ReleaseRoute| in_group(r) && eligible_count(&r.backends, None) > 0;
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

/// Picks a backend for a retry after `failed`: another one of the same release if there is one,
/// else any other by the usual rules.
pub fn select_retry<'a>(
    route: &'a AppRoute,
    failed: &Backend,
    rng: &mut fastrand::Rng,
) -> Option<&'a Arc<Backend>> {
    route
        .releases
        .iter()
        .find(|r| r.release == failed.release())
        .and_then(|r| pick_backend(&r.backends, Some(failed), rng))
        .or_else(|| select(route, Some(failed), rng))
}

/// Power of two choices among the eligible backends of one release.
pub fn pick_backend<'a>(
    backends: &'a [Arc<Backend>],
    skip: Option<&Backend>,
    rng: &mut fastrand::Rng,
) -> Option<&'a Arc<Backend>> {
    let n = eligible_count(backends, skip);
    match n {
        0 => None,
        1 => nth_eligible(backends, skip, 0),
        _ => {
            let i = rng.usize(0..n);
            // A second, distinct index: shift past the first.
            let mut j = rng.usize(0..n - 1);
            if j >= i {
                j += 1;
            }
            let a = nth_eligible(backends, skip, i)?;
            let b = nth_eligible(backends, skip, j)?;
            Some(if b.local_in_flight() < a.local_in_flight() {
                b
            } else {
                a
            })
        }
    }
}

fn is_candidate(backend: &Arc<Backend>, skip: Option<&Backend>) -> bool {
    backend.is_eligible()
        && !skip.is_some_and(|s| std::ptr::eq(Arc::as_ptr(backend), s))
        && !backend.outlier.is_ejected()
}

fn eligible_count(backends: &[Arc<Backend>], skip: Option<&Backend>) -> usize {
    backends.iter().filter(|b| is_candidate(b, skip)).count()
}

fn nth_eligible<'a>(
    backends: &'a [Arc<Backend>],
    skip: Option<&Backend>,
    n: usize,
) -> Option<&'a Arc<Backend>> {
    backends.iter().filter(|b| is_candidate(b, skip)).nth(n)
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
}
