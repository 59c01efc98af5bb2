//! `baton dashboard`: the dashboard's URL with its read-only token in the fragment.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use crate::client::Client;
use crate::exit::Result;

/// Asks the API (with the API token) for the dashboard's read-only token, replaced first
/// with `rotate`, then prints the URL alone on stdout (for scripts) and how to open it from
/// another machine on stderr.
pub async fn print_url(config: &Path, rotate: bool) -> Result<()> {
    let client = Client::from_config(config)?;
    let req = baton_server::DashboardTokenRequest { rotate };
    let read: baton_server::DashboardToken = client.post_json("/v1/dashboard/token", &req).await?;
    let addr = browsable(client.api());
    println!("{}", url(addr, &read.token));
    eprintln!(
        "open it in a browser on this machine; from another one, forward the port first:\n  \
         ssh -L {port}:{ip}:{port} THIS_HOST\n\
         the token after # stays in the browser (it is never sent to a server); \
         anyone with this URL can read Baton's state (it is read-only: it cannot deploy or \
         change anything); `baton dashboard --rotate` makes the URLs printed before stop working",
        port = addr.port(),
        ip = match addr.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        },
    );
    Ok(())
}

/// The page's URL on `addr`, with `token` in the fragment.
fn url(addr: SocketAddr, token: &str) -> String {
    format!(
        "http://{addr}{}#token={}",
        baton_server::dashboard::PAGE_PATH,
        crate::client::encode(token)
    )
}

/// The address a browser on this machine uses: loopback for a wildcard listen address.
fn browsable(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), addr.port())
        }
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_carries_the_token_in_the_fragment_on_an_address_a_browser_can_open() {
        let at = |s: &str| browsable(s.parse().unwrap());
        assert_eq!(
            url(at("127.0.0.1:7070"), "abc"),
            "http://127.0.0.1:7070/ui/#token=abc"
        );
        assert_eq!(
            url(at("0.0.0.0:7070"), "abc"),
            "http://127.0.0.1:7070/ui/#token=abc"
        );
        assert_eq!(url(at("[::]:7070"), "t"), "http://[::1]:7070/ui/#token=t");
        assert_eq!(
            url(at("10.0.0.5:9000"), "t"),
            "http://10.0.0.5:9000/ui/#token=t"
        );
    }
}
