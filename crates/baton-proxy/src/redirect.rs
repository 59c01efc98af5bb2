//! The plain-HTTP listener of an app that terminates TLS (`[apps.<name>.tls] redirect_http`):
//! every request is answered with a redirect to the same host and path over HTTPS, and never
//! reaches an instance.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

/// Longest wait for a request head on the redirect listener.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection may stay open after shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Answers every request on `listener` with a redirect to `https://host[:https_port]/path`
/// until `shutdown`; `https_port` is the TLS listener's (left out when 443).
pub async fn serve_redirect(
    listener: TcpListener,
    app: String,
    https_port: u16,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    tracing::info!(%app, addr = ?listener.local_addr().ok(), "redirecting plain HTTP to HTTPS");
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%app, %error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let mut server = http1::Builder::new();
        server
            .timer(TokioTimer::new())
            .header_read_timeout(HEAD_TIMEOUT);
        tracker.spawn(async move {
            let service =
                service_fn(
                    move |req| async move { Ok::<_, Infallible>(redirect(&req, https_port)) },
                );
            let _ = server.serve_connection(TokioIo::new(stream), service).await;
        });
    }
    drop(listener);
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
    Ok(())
}

/// 301 for GET and HEAD (what browsers and caches know best), 308 otherwise: the client
/// repeats the method and body.
fn redirect<B>(req: &Request<B>, https_port: u16) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .map(strip_port)
        .filter(|h| !h.is_empty());
    let Some(host) = host else {
        return plain(StatusCode::BAD_REQUEST, "a Host header is required\n");
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    let Ok(location) = HeaderValue::from_str(&location) else {
        return plain(StatusCode::BAD_REQUEST, "invalid Host header\n");
    };
    let status = if req.method() == Method::GET || req.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut response = plain(status, "");
    response.headers_mut().insert(header::LOCATION, location);
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}

/// `example.com:80` -> `example.com`; `[::1]:80` -> `[::1]`.
fn strip_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(method: Method, uri: &str, host: Option<&str>, port: u16) -> (u16, String) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(host) = host {
            req = req.header("host", host);
        }
        let res = redirect(&req.body(()).unwrap(), port);
        let loc = res
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string())
            .unwrap_or_default();
        (res.status().as_u16(), loc)
    }

    #[test]
    fn redirects_to_the_same_host_and_path_over_https() {
        assert_eq!(
            location(Method::GET, "/a?b=1", Some("example.com:80"), 443),
            (301, "https://example.com/a?b=1".into())
        );
        assert_eq!(
            location(Method::POST, "/form", Some("[::1]:8080"), 8443),
            (308, "https://[::1]:8443/form".into())
        );
        assert_eq!(
            location(Method::GET, "http://abs.test/x", None, 443),
            (301, "https://abs.test/x".into())
        );
        assert_eq!(location(Method::GET, "/", None, 443).0, 400);
    }
}
