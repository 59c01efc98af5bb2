//! Picking a free port for a new instance to listen on.

use std::io;
use std::net::{IpAddr, Ipv4Addr, TcpListener};

/// Returns a TCP port on 127.0.0.1 that was free a moment ago: binds port 0, reads the port the
/// kernel chose, and releases it. Another process may take it before the instance binds it; the
/// instance's failing health check is what catches that.
pub fn free_port() -> io::Result<u16> {
    free_port_on(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// Like [`free_port`], on `address` (a host's address, where its instances listen).
pub fn free_port_on(address: IpAddr) -> io::Result<u16> {
    let listener = TcpListener::bind((address, 0))?;
    Ok(listener.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_can_be_bound_again() {
        let port = free_port().unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }
}
