//! The dashboard's static page: one HTML file, one script and one stylesheet, embedded in the
//! binary and served under `/ui/` without the token, since they hold no data. The page is a
//! client of the JSON API: it reads every figure from the `/v1/...` routes with the bearer
//! token it takes from its URL fragment, which `baton dashboard` prints (README "Dashboard").

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Where the page is served; `/` and `/ui` redirect here.
pub const PAGE_PATH: &str = "/ui/";

/// What the page may load: its own script and stylesheet, and fetches to its own origin (the
/// API). No inline script or style, no frames around it, no forms, no `<base>`.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file and its content type.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const PAGE: Asset = Asset {
    body: include_str!("assets/index.html"),
    content_type: "text/html; charset=utf-8",
};

const SCRIPT: Asset = Asset {
    body: include_str!("assets/dashboard.js"),
    content_type: "text/javascript; charset=utf-8",
};

const STYLE: Asset = Asset {
    body: include_str!("assets/dashboard.css"),
    content_type: "text/css; charset=utf-8",
};

/// The page's routes. They carry no state and are merged beside the API's routes, outside
/// the token check (crates/baton-server/src/api/mod.rs), which keeps guarding every other path.
pub fn routes<S: Clone + Send + Sync + 'static>() -> axum::Router<S> {
    axum::Router::new()
        .route("/", get(to_page))
        .route("/ui", get(to_page))
        .route(PAGE_PATH, get(|| async { serve(&PAGE) }))
        .route("/ui/dashboard.js", get(|| async { serve(&SCRIPT) }))
        .route("/ui/dashboard.css", get(|| async { serve(&STYLE) }))
}

/// A redirect to the page, keeping no query (the token travels in the fragment, which the
/// browser carries over a redirect by itself).
async fn to_page() -> Response {
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, PAGE_PATH)]).into_response();
    secure(&mut response);
    response
}

/// `asset` with its content type and the page's security headers.
fn serve(asset: &Asset) -> Response {
    let mut response = ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response();
    secure(&mut response);
    response
}

/// Adds the headers every dashboard answer carries: the content security policy, no content
/// sniffing, no referrer, and no caching (an upgrade of Baton serves its own page at once).
fn secure(response: &mut Response) {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
}
