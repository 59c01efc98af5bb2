//! Join tokens and joined hosts. A token is stored as its id and the sha256 of its secret
//! (the secret itself never), joins exactly one host, and expires. A host is stored with the
//! sha256 of the certificate issued at its last join, which is how a connection's verified
//! certificate is mapped to its host, and how an older certificate of the same host is
//! refused; and with its `generation`, incremented at each join and each session.

use baton_core::model::Millis;
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::db::Store;
use crate::error::{SqlResultExt, StoreError};

/// Why a join token was refused. The messages never contain the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenRefusal {
    /// No token has this id.
    #[error("unknown join token: create one with `baton host token` on the controller")]
    Unknown,
    /// The id is known but the secret is not its secret.
    #[error("wrong join token secret: copy the whole token that `baton host token` printed")]
    BadSecret,
    /// The token expired.
    #[error("the join token expired at {at} (unix ms): create a new one with `baton host token`")]
    Expired {
        /// When it expired.
        at: Millis,
    },
    /// The token already joined a host: a token joins one host only.
    #[error(
        "the join token was already used by host {by:?}: a token joins one host; create another with `baton host token`"
    )]
    Used {
        /// The host it joined.
        by: String,
    },
}

/// A stored token, as checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredToken {
    /// The hex sha256 of its secret.
    pub secret_sha256: String,
    /// When it expires (unix ms).
    pub expires_at: Millis,
    /// The host that used it, if any.
    pub used_by: Option<String>,
}

/// Whether `token` (looked up by id) admits a join presenting `secret_sha256` at `now`.
pub fn check_token(
    token: Option<&StoredToken>,
    secret_sha256: &str,
    now: Millis,
) -> Result<(), TokenRefusal> {
    let t = token.ok_or(TokenRefusal::Unknown)?;
    if !digests_equal(&t.secret_sha256, secret_sha256) {
        return Err(TokenRefusal::BadSecret);
    }
    if let Some(by) = &t.used_by {
        return Err(TokenRefusal::Used { by: by.clone() });
    }
    if now >= t.expires_at {
        return Err(TokenRefusal::Expired { at: t.expires_at });
    }
    Ok(())
}

/// Whether two hex digests are equal, in time that does not depend on where they differ.
fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A host that joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredHost {
    /// Its name (`[hosts.NAME]`).
    pub name: String,
    /// The address it joined with.
    pub address: String,
    /// When it (last) joined (unix ms).
    pub joined_at: Millis,
    /// Incremented at each join and each session.
    pub generation: i64,
    /// The sha256 (hex) of the certificate issued at its last join.
    pub cert_sha256: String,
    /// The agent version of its last join or session.
    pub agent_version: Option<String>,
    /// When its last session began or ended (unix ms).
    pub last_seen: Option<Millis>,
}

fn read_host(row: &Row<'_>) -> rusqlite::Result<StoredHost> {
    Ok(StoredHost {
        name: row.get(0)?,
        address: row.get(1)?,
        joined_at: row.get(2)?,
        generation: row.get(3)?,
        cert_sha256: row.get(4)?,
        agent_version: row.get(5)?,
        last_seen: row.get(6)?,
    })
}

const HOST_COLUMNS: &str =
    "name, address, joined_at, generation, cert_sha256, agent_version, last_seen";

/// A join to record: the token it presents and the host it admits.
#[derive(Debug, Clone)]
pub struct HostJoin<'a> {
    /// The token's id.
    pub token_id: &'a str,
    /// The hex sha256 of the secret presented.
    pub secret_sha256: &'a str,
    /// The host's name.
    pub name: &'a str,
    /// The host's address.
    pub address: &'a str,
    /// The hex sha256 of the certificate issued to it.
    pub cert_sha256: &'a str,
    /// Its agent's version.
    pub version: &'a str,
    /// Now (unix ms).
    pub now: Millis,
}

fn stored_token(conn: &Connection, id: &str) -> Result<Option<StoredToken>, StoreError> {
    conn.query_row(
        "SELECT secret_sha256, expires_at, used_by FROM join_tokens WHERE id = ?1",
        params![id],
        |r| {
            Ok(StoredToken {
                secret_sha256: r.get(0)?,
                expires_at: r.get(1)?,
                used_by: r.get(2)?,
            })
        },
    )
    .optional()
    .op("read join token")
}

impl Store {
    /// Stores a new join token: its id and the sha256 of its secret.
    pub fn create_join_token(
        &self,
        id: &str,
        secret_sha256: &str,
        now: Millis,
        expires_at: Millis,
    ) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT INTO join_tokens (id, secret_sha256, created_at, expires_at) \
                 VALUES (?1, ?2, ?3, ?4)",
                params![id, secret_sha256, now, expires_at],
            )
            .op("create join token")?;
        Ok(())
    }

    /// Whether the token `id` would admit a join presenting `secret_sha256` now; changes
    /// nothing.
    pub fn check_join_token(
        &self,
        id: &str,
        secret_sha256: &str,
        now: Millis,
    ) -> Result<Result<(), TokenRefusal>, StoreError> {
        let token = stored_token(&self.conn(), id)?;
        Ok(check_token(token.as_ref(), secret_sha256, now))
    }

    /// In one transaction: checks the token again, marks it used by the host, and records
    /// the host (replacing an earlier join of the same name, with the next generation).
    /// Returns the host's generation.
    pub fn join_host(&self, join: &HostJoin<'_>) -> Result<Result<i64, TokenRefusal>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction().op("begin join")?;
        let token = stored_token(&tx, join.token_id)?;
        if let Err(refusal) = check_token(token.as_ref(), join.secret_sha256, join.now) {
            return Ok(Err(refusal));
        }
        tx.execute(
            "UPDATE join_tokens SET used_at = ?2, used_by = ?3 WHERE id = ?1",
            params![join.token_id, join.now, join.name],
        )
        .op("use join token")?;
        let generation: i64 = tx
            .query_row(
                "INSERT INTO hosts (name, address, joined_at, generation, cert_sha256, agent_version, last_seen) \
                 VALUES (?1, ?2, ?3, 1, ?4, ?5, ?3) \
                 ON CONFLICT (name) DO UPDATE SET address = excluded.address, \
                   joined_at = excluded.joined_at, generation = hosts.generation + 1, \
                   cert_sha256 = excluded.cert_sha256, agent_version = excluded.agent_version, \
                   last_seen = excluded.last_seen, tunnel = NULL \
                 RETURNING generation",
                params![join.name, join.address, join.now, join.cert_sha256, join.version],
                |r| r.get(0),
            )
            .op("record host")?;
        tx.commit().op("commit join")?;
        Ok(Ok(generation))
    }

    /// The host whose last join issued the certificate with sha256 `cert_sha256`.
    pub fn host_by_cert(&self, cert_sha256: &str) -> Result<Option<StoredHost>, StoreError> {
        self.conn()
            .query_row(
                &format!("SELECT {HOST_COLUMNS} FROM hosts WHERE cert_sha256 = ?1"),
                params![cert_sha256],
                read_host,
            )
            .optional()
            .op("find host by certificate")
    }

    /// A session of host `name` began: the next generation, which this returns.
    pub fn host_session(&self, name: &str, version: &str, now: Millis) -> Result<i64, StoreError> {
        self.conn()
            .query_row(
                "UPDATE hosts SET generation = generation + 1, agent_version = ?2, last_seen = ?3 \
                 WHERE name = ?1 RETURNING generation",
                params![name, version, now],
                |r| r.get(0),
            )
            .op("open host session")
    }

    /// Records where host `name`'s tunnel listens (`ip:port`, from its session's `hello`).
    pub fn set_host_tunnel(&self, name: &str, tunnel: &str) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE hosts SET tunnel = ?2 WHERE name = ?1 AND tunnel IS NOT ?2",
                params![name, tunnel],
            )
            .op("record a host's tunnel")?;
        Ok(())
    }

    /// Where each joined host's tunnel last listened, as (name, `ip:port`): none for a host
    /// that has had no session since it joined.
    pub fn host_tunnels(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name, tunnel FROM hosts WHERE tunnel IS NOT NULL ORDER BY name")
            .op("list host tunnels")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .op("list host tunnels")?;
        rows.collect::<Result<_, _>>().op("read host tunnels")
    }

    /// Host `name` was last seen at `now` (its session ended).
    pub fn host_seen(&self, name: &str, now: Millis) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE hosts SET last_seen = ?2 WHERE name = ?1",
                params![name, now],
            )
            .op("record host last seen")?;
        Ok(())
    }

    /// Marks host `name` drained (its instances move to the other hosts) or not; returns
    /// whether that changed anything.
    pub fn set_host_drained(
        &self,
        name: &str,
        drained: bool,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let conn = self.conn();
        let changed = if drained {
            conn.execute(
                "INSERT INTO host_drains (name, since) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                rusqlite::params![name, now],
            )
        } else {
            conn.execute("DELETE FROM host_drains WHERE name = ?1", [name])
        }
        .op("record a host drain")?;
        Ok(changed > 0)
    }

    /// The drained hosts, by name.
    pub fn drained_hosts(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT name FROM host_drains ORDER BY name")
            .op("list drained hosts")?;
        let rows = stmt.query_map([], |r| r.get(0)).op("list drained hosts")?;
        rows.collect::<Result<_, _>>().op("read drained hosts")
    }

    /// Records the state of `host`'s health endpoint for `app`'s external load balancer;
    /// returns whether that changed anything (the time of an unchanged state is kept).
    pub fn set_lb_endpoint(
        &self,
        app: &str,
        host: &str,
        passing: bool,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .execute(
                "INSERT INTO lb_endpoints (app, host, passing, since) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (app, host) DO UPDATE SET passing = ?3, since = ?4
                 WHERE passing != ?3",
                rusqlite::params![app, host, passing, now],
            )
            .op("record a load-balancer endpoint")?;
        Ok(changed > 0)
    }

    /// The recorded health endpoint states, as (app, host, passing, since).
    pub fn lb_endpoints(&self) -> Result<Vec<(String, String, bool, Millis)>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT app, host, passing, since FROM lb_endpoints ORDER BY app, host")
            .op("list load-balancer endpoints")?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .op("list load-balancer endpoints")?;
        rows.collect::<Result<_, _>>()
            .op("read load-balancer endpoints")
    }

    /// Every host that joined, by name.
    pub fn hosts(&self) -> Result<Vec<StoredHost>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY name"))
            .op("list hosts")?;
        let rows = stmt.query_map([], read_host).op("list hosts")?;
        rows.collect::<Result<_, _>>().op("read hosts")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lb_endpoints_keep_the_time_of_their_last_change() {
        let store = Store::open_in_memory().unwrap();
        assert!(store.lb_endpoints().unwrap().is_empty());
        assert!(
            store
                .set_lb_endpoint("web@production", "h1", false, 10)
                .unwrap()
        );
        assert!(
            !store
                .set_lb_endpoint("web@production", "h1", false, 20)
                .unwrap()
        );
        assert!(
            store
                .set_lb_endpoint("web@production", "h1", true, 30)
                .unwrap()
        );
        assert_eq!(
            store.lb_endpoints().unwrap(),
            [("web@production".into(), "h1".into(), true, 30)]
        );
    }

    #[test]
    fn drains_are_recorded_once_and_lifted() {
        let s = Store::open_in_memory().unwrap();
        assert!(s.set_host_drained("web-2", true, 5).unwrap());
        assert!(
            !s.set_host_drained("web-2", true, 6).unwrap(),
            "already drained"
        );
        assert_eq!(s.drained_hosts().unwrap(), ["web-2"]);
        assert!(s.set_host_drained("web-2", false, 7).unwrap());
        assert!(!s.set_host_drained("web-2", false, 8).unwrap());
        assert!(s.drained_hosts().unwrap().is_empty());
    }

    fn join<'a>(
        token: &'a str,
        secret: &'a str,
        name: &'a str,
        cert: &'a str,
        now: Millis,
    ) -> HostJoin<'a> {
        HostJoin {
            token_id: token,
            secret_sha256: secret,
            name,
            address: "10.0.0.11",
            cert_sha256: cert,
            version: "0.1.0",
            now,
        }
    }

    #[test]
    fn a_token_is_refused_when_unknown_wrong_expired_or_used() {
        let t = StoredToken {
            secret_sha256: "aa".into(),
            expires_at: 100,
            used_by: None,
        };
        assert_eq!(check_token(Some(&t), "aa", 99), Ok(()));
        assert_eq!(check_token(None, "aa", 1), Err(TokenRefusal::Unknown));
        assert_eq!(check_token(Some(&t), "ab", 1), Err(TokenRefusal::BadSecret));
        assert_eq!(
            check_token(Some(&t), "aa", 100),
            Err(TokenRefusal::Expired { at: 100 })
        );
        let used = StoredToken {
            used_by: Some("web-1".into()),
            ..t
        };
        assert_eq!(
            check_token(Some(&used), "aa", 1),
            Err(TokenRefusal::Used { by: "web-1".into() })
        );
    }

    #[test]
    fn a_token_joins_one_host_and_generations_grow() {
        let s = Store::open_in_memory().unwrap();
        s.create_join_token("t1", "s1", 0, 1000).unwrap();
        assert_eq!(s.check_join_token("t1", "s1", 10).unwrap(), Ok(()));
        assert_eq!(
            s.join_host(&join("t1", "s1", "web-1", "c1", 10)).unwrap(),
            Ok(1)
        );
        // A replay of the same token is refused and changes nothing.
        assert_eq!(
            s.join_host(&join("t1", "s1", "web-2", "c2", 11)).unwrap(),
            Err(TokenRefusal::Used { by: "web-1".into() })
        );
        assert_eq!(s.hosts().unwrap().len(), 1);
        assert_eq!(s.host_session("web-1", "0.2.0", 20).unwrap(), 2);
        s.host_seen("web-1", 30).unwrap();
        let h = s.host_by_cert("c1").unwrap().unwrap();
        assert_eq!(
            (h.generation, h.last_seen, h.agent_version.as_deref()),
            (2, Some(30), Some("0.2.0"))
        );
        // Joining again with a new token replaces the certificate: the old one maps to nothing.
        s.create_join_token("t2", "s2", 40, 1000).unwrap();
        assert_eq!(
            s.join_host(&join("t2", "s2", "web-1", "c3", 41)).unwrap(),
            Ok(3)
        );
        assert!(s.host_by_cert("c1").unwrap().is_none());
        assert_eq!(s.host_by_cert("c3").unwrap().unwrap().name, "web-1");
        assert_eq!(
            s.check_join_token("t3", "s", 0).unwrap(),
            Err(TokenRefusal::Unknown)
        );
    }

    #[test]
    fn a_hosts_tunnel_is_kept_until_it_joins_again() {
        let s = Store::open_in_memory().unwrap();
        s.create_join_token("t1", "s1", 0, 1000).unwrap();
        s.join_host(&join("t1", "s1", "web-1", "c1", 10))
            .unwrap()
            .unwrap();
        assert!(s.host_tunnels().unwrap().is_empty(), "no session yet");
        s.set_host_tunnel("web-1", "10.0.0.11:7000").unwrap();
        s.set_host_tunnel("web-1", "10.0.0.11:7001").unwrap();
        s.set_host_tunnel("nobody", "10.0.0.12:7000").unwrap();
        assert_eq!(
            s.host_tunnels().unwrap(),
            [("web-1".to_string(), "10.0.0.11:7001".to_string())]
        );
        // A new join is a new machine, maybe: its tunnel is known from its next session only.
        s.create_join_token("t2", "s2", 20, 1000).unwrap();
        s.join_host(&join("t2", "s2", "web-1", "c2", 21))
            .unwrap()
            .unwrap();
        assert!(s.host_tunnels().unwrap().is_empty());
    }
}
