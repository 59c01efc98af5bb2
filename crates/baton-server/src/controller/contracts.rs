//! Contract migrations as scheduled steps. A deployment's success does not run `migrate.after`:
//! it records a contract due once the release has served for `migrate.contract_delay`, as data
//! in the store (restart-safe, visible in status and events). Each tick runs the due ones of a
//! unit that is idle and still serves that release, one at a time; one whose release stopped
//! serving (a rollback or another deploy before it was due) is cancelled and never runs, so going
//! back within the window is never refused by a contract mark. A running one is never cancelled.

use std::sync::Arc;

use baton_core::model::{EventKind, Millis};
use baton_store::{Contract, ContractState};

use super::migrate::{self, Step};
use crate::shared::Shared;

/// Records the contract of `release` that deployment `id` of unit `key` asks for with its
/// success. A repeat (the planner derives the end again after a crash) changes nothing.
pub fn schedule(
    shared: &Shared,
    key: &str,
    id: i64,
    release: &str,
    now: Millis,
) -> anyhow::Result<()> {
    let Some(delay) = shared
        .app(key)
        .and_then(|a| a.migrate.as_ref().map(|m| m.contract_delay))
    else {
        return Ok(());
    };
    let due = now + delay.as_millis() as Millis;
    let Some((_, superseded)) = shared.store.schedule_contract(key, id, release, due, now)? else {
        return Ok(());
    };
    for c in superseded {
        shared.event(
            now,
            key,
            Some(c.deployment),
            EventKind::Migration,
            &format!(
                "contract migration of {} cancelled before it ran: {release} succeeded first and its own contract runs instead",
                c.release
            ),
        )?;
    }
    shared.event(
        now,
        key,
        Some(id),
        EventKind::Migration,
        &format!(
            "contract migration of {release} scheduled: it runs once {release} has served for {delay} (migrate.contract_delay); until then a rollback stays allowed"
        ),
    )?;
    Ok(())
}

/// Starts the unit's due contract; cancels pending ones whose release no longer serves. One
/// contract runs per unit at a time: while one runs (or one a crash cut waits to run again,
/// whatever serves now: a running contract is never cancelled), the others wait.
pub fn run_due(shared: &Arc<Shared>, key: &str, now: Millis) -> anyhow::Result<()> {
    let open = shared.store.open_contracts(key)?;
    // While a deployment runs, the release it may replace keeps its contract waiting: the
    // deployment may still go back to it.
    if open.is_empty() || shared.store.active_deployment(key)?.is_some() {
        return Ok(());
    }
    if let Some(c) = open.iter().find(|c| c.state == ContractState::Running) {
        if !shared.migrations().contains(&(c.deployment, true)) {
            start(shared, key, c, ContractState::Running, now)?;
        }
        return Ok(());
    }
    let current = shared.store.current_release(key)?;
    for c in open {
        if current.as_deref() != Some(c.release.as_str()) {
            cancel(shared, key, &c, current.as_deref(), now)?;
        } else if c.due_at <= now {
            return start(shared, key, &c, ContractState::Pending, now);
        }
    }
    Ok(())
}

fn cancel(
    shared: &Shared,
    key: &str,
    c: &Contract,
    current: Option<&str>,
    now: Millis,
) -> anyhow::Result<()> {
    let serving = current.unwrap_or("nothing");
    let why = format!(
        "{serving} serves now; {} was replaced before it was due",
        c.release
    );
    if shared.store.set_contract_state(
        c.deployment,
        ContractState::Pending,
        ContractState::Cancelled,
        Some(&why),
        now,
    )? {
        shared.event(
            now,
            key,
            Some(c.deployment),
            EventKind::Migration,
            &format!(
                "contract migration of {} cancelled before it ran: {why}",
                c.release
            ),
        )?;
    }
    Ok(())
}

/// Starts contract `c`, seen in state `from` (running: Baton stopped while it ran).
fn start(
    shared: &Arc<Shared>,
    key: &str,
    c: &Contract,
    from: ContractState,
    now: Millis,
) -> anyhow::Result<()> {
    if !shared
        .store
        .set_contract_state(c.deployment, from, ContractState::Running, None, now)?
    {
        return Ok(());
    }
    let again = if from == ContractState::Running {
        " again (Baton stopped while it ran)"
    } else {
        ""
    };
    shared.event(
        now,
        key,
        Some(c.deployment),
        EventKind::Migration,
        &format!("contract migration of {} started{again}", c.release),
    )?;
    migrate::start(shared, key, c.deployment, &c.release, Step::Contract);
    Ok(())
}
