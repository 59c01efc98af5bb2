//! Listen addresses that could not all be bound together: `[api] listen`, every app's and
//! every environment's `listen`, checked pairwise before anything binds.
//!
//! Two listeners clash when they share a port and either are the same address, or one is the
//! wildcard of the other's family (`0.0.0.0:P` takes `P` on every IPv4 address). `[::]:P`
//! also takes `P` on every IPv4 address: Baton binds IPv6 sockets dual-stack (the Linux
//! default, `net.ipv6.bindv6only = 0`), so `[::]:P` beside `127.0.0.1:P` or `0.0.0.0:P` fails to
//! bind. An IPv4-mapped address (`[::ffff:127.0.0.1]:P`) is treated as the IPv4 one.

use std::net::{IpAddr, SocketAddr};

/// One listener: its address, who owns it (`api`, `web@production`) and its dotted key.
#[derive(Debug, Clone)]
pub(super) struct Listener {
    pub addr: SocketAddr,
    pub owner: String,
    pub key: Vec<String>,
}

/// Whether `a` and `b` cannot both be bound at once.
pub fn clash(a: SocketAddr, b: SocketAddr) -> bool {
    // Port 0 asks the OS for a free port: never a clash.
    if a.port() != b.port() || a.port() == 0 {
        return false;
    }
    match (unmapped(a.ip()), unmapped(b.ip())) {
        (x, y) if x == y => true,
        (IpAddr::V4(x), IpAddr::V4(y)) => x.is_unspecified() || y.is_unspecified(),
        (IpAddr::V6(x), IpAddr::V6(y)) => x.is_unspecified() || y.is_unspecified(),
        // Dual-stack: `[::]` covers IPv4 too; a specific IPv6 address never does.
        (IpAddr::V6(v6), IpAddr::V4(_)) | (IpAddr::V4(_), IpAddr::V6(v6)) => v6.is_unspecified(),
    }
}

fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The first listener that clashes with an earlier one: its key and what to do.
pub(super) fn check(listeners: &[Listener]) -> Result<(), (Vec<String>, String)> {
    for (i, l) in listeners.iter().enumerate() {
        let Some(other) = listeners[..i].iter().find(|o| clash(o.addr, l.addr)) else {
            continue;
        };
        let message = if other.addr == l.addr {
            format!(
                "{} is already used by {} ({}); give each listener its own port",
                l.addr,
                other.owner,
                other.key.join(".")
            )
        } else {
            format!(
                "{} cannot be bound beside {} of {} ({}): a wildcard address (0.0.0.0, or [::] \
                 which also covers IPv4) takes port {} on every address; give each listener its \
                 own port, or use specific addresses only",
                l.addr,
                other.addr,
                other.owner,
                other.key.join("."),
                l.addr.port()
            )
        };
        return Err((l.key.clone(), message));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn same_port_on_a_wildcard_and_a_specific_address_clashes() {
        let clashing = [
            ("0.0.0.0:80", "127.0.0.1:80"),
            ("127.0.0.1:80", "0.0.0.0:80"),
            ("0.0.0.0:80", "0.0.0.0:80"),
            ("[::]:80", "[::1]:80"),
            ("[::]:80", "127.0.0.1:80"),
            ("[::]:80", "0.0.0.0:80"),
            ("[::ffff:127.0.0.1]:80", "127.0.0.1:80"),
            ("[::ffff:10.0.0.1]:80", "0.0.0.0:80"),
            ("127.0.0.1:80", "127.0.0.1:80"),
        ];
        for (x, y) in clashing {
            assert!(clash(a(x), a(y)), "{x} {y}");
            assert!(clash(a(y), a(x)), "{y} {x}");
        }
    }

    #[test]
    fn different_ports_specific_addresses_and_port_0_do_not_clash() {
        let fine = [
            ("0.0.0.0:80", "127.0.0.1:81"),
            ("127.0.0.1:80", "127.0.0.2:80"),
            ("0.0.0.0:80", "[::1]:80"),
            ("[::1]:80", "127.0.0.1:80"),
            ("0.0.0.0:0", "127.0.0.1:0"),
            ("127.0.0.1:0", "127.0.0.1:0"),
        ];
        for (x, y) in fine {
            assert!(!clash(a(x), a(y)), "{x} {y}");
            assert!(!clash(a(y), a(x)), "{y} {x}");
        }
    }
}
