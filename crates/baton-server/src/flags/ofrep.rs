//! The OFREP listener (OpenFeature Remote Evaluation Protocol, open-feature/protocol
//! `service/openapi.yaml`): single and bulk evaluation of one app's flags in one environment,
//! chosen by the read-only token presented (`Authorization: Bearer` or `X-API-Key`). It serves
//! nothing else: no admin route, no app traffic.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json};
use baton_core::flags::{EvalError, JsonContext, evaluate};
use serde_json::{Map, Value, json};

use super::{FlagBook, FlagSnapshot, Scope, secret_sha256};

/// The largest request body: an evaluation context.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The OFREP routes, behind the flag tokens.
pub fn router(book: Arc<FlagBook>) -> axum::Router {
    axum::Router::new()
        .route("/ofrep/v1/evaluate/flags/{key}", post(single))
        .route("/ofrep/v1/evaluate/flags", post(bulk))
        .route("/ofrep/v1/configuration", get(configuration))
        .fallback(|| async { general(StatusCode::NOT_FOUND, "no such OFREP route: use POST /ofrep/v1/evaluate/flags/{key} or POST /ofrep/v1/evaluate/flags") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn_with_state(book.clone(), authorize))
        .with_state(book)
}

fn general(status: StatusCode, details: &str) -> Response {
    (status, Json(json!({ "errorDetails": details }))).into_response()
}

/// Admits a request whose token is a known flag token, and hands on its scope.
async fn authorize(State(book): State<Arc<FlagBook>>, mut req: Request, next: Next) -> Response {
    let h = req.headers();
    let presented = h
        .get(header::AUTHORIZATION)
        .and_then(|v| crate::api::bearer_token(v.as_bytes()))
        .or_else(|| h.get("x-api-key").map(|v| v.as_bytes().trim_ascii()));
    let scope = presented.and_then(|p| book.snapshot().tokens.get(&secret_sha256(p)).cloned());
    match scope {
        Some(scope) => {
            req.extensions_mut().insert(scope);
            next.run(req).await
        }
        None => general(
            StatusCode::UNAUTHORIZED,
            "a flag token is required: send `Authorization: Bearer TOKEN` with a token from `baton flag token APP --env ENV`",
        ),
    }
}

/// The request's `context`, or the error answer.
fn context(body: &Bytes) -> Result<Option<Value>, (&'static str, String)> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ("PARSE_ERROR", format!("the body is not JSON: {e}")))?;
    match v {
        Value::Object(mut m) => Ok(m.remove("context")),
        _ => Err(("PARSE_ERROR", "the body must be a JSON object".into())),
    }
}

fn failure(key: &str, e: &EvalError) -> Value {
    json!({ "key": key, "errorCode": e.code(), "errorDetails": e.to_string() })
}

/// One flag's answer: success object, or failure object with its HTTP status.
fn evaluate_one(
    snap: &FlagSnapshot,
    scope: &Scope,
    key: &str,
    ctx: &JsonContext<'_>,
) -> Result<Value, (StatusCode, Value)> {
    let entry = snap.units.get(scope).and_then(|f| f.get(key));
    let Some(entry) = entry else {
        let e = EvalError::FlagNotFound(key.to_string());
        return Err((StatusCode::NOT_FOUND, failure(key, &e)));
    };
    match evaluate(key, &entry.spec, entry.forced_off.as_deref(), ctx) {
        Ok(r) => {
            let mut metadata = Map::new();
            if let Some(why) = &r.forced_off {
                metadata.insert("forcedOff".into(), Value::String(why.clone()));
            }
            Ok(json!({
                "key": key,
                "value": r.value,
                "reason": r.reason.as_str(),
                "variant": r.variant(),
                "metadata": metadata,
            }))
        }
        Err(e) => Err((StatusCode::BAD_REQUEST, failure(key, &e))),
    }
}

async fn single(
    State(book): State<Arc<FlagBook>>,
    Extension(scope): Extension<Scope>,
    Path(key): Path<String>,
    body: Bytes,
) -> Response {
    let bad = |code: &str, details: String| {
        let body = json!({ "key": key, "errorCode": code, "errorDetails": details });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    };
    let ctx = match context(&body) {
        Ok(c) => c,
        Err((code, details)) => return bad(code, details),
    };
    let ctx = match JsonContext::new(ctx.as_ref()) {
        Ok(c) => c,
        Err(e) => return bad(e.code(), e.to_string()),
    };
    match evaluate_one(&book.snapshot(), &scope, &key, &ctx) {
        Ok(v) => Json(v).into_response(),
        Err((status, v)) => (status, Json(v)).into_response(),
    }
}

async fn bulk(
    State(book): State<Arc<FlagBook>>,
    Extension(scope): Extension<Scope>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let bad = |code: &str, details: String| {
        let body = json!({ "errorCode": code, "errorDetails": details });
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    };
    let ctx = match context(&body) {
        Ok(c) => c,
        Err((code, details)) => return bad(code, details),
    };
    let ctx = match JsonContext::new(ctx.as_ref()) {
        Ok(c) => c,
        Err(e) => return bad(e.code(), e.to_string()),
    };
    let snap = book.snapshot();
    let names = snap.units.get(&scope).into_iter().flat_map(|f| f.keys());
    let flags: Vec<Value> = names
        .map(|k| evaluate_one(&snap, &scope, k, &ctx).unwrap_or_else(|(_, v)| v))
        .collect();
    let body = serde_json::to_vec(&json!({ "flags": flags })).expect("JSON serializes");
    let etag = format!("\"{}\"", &secret_sha256(&body)[..32]);
    let etag_value = HeaderValue::from_str(&etag).expect("hex is a valid header");
    if if_none_match(&headers, &etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag_value)]).into_response();
    }
    (
        [
            (header::ETAG, etag_value),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
        ],
        body,
    )
        .into_response()
}

/// Whether `If-None-Match` lists `etag` (weak comparison, RFC 9110 13.1.2) or is `*`.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

async fn configuration() -> Json<Value> {
    Json(json!({
        "name": "baton",
        "capabilities": {
            "cacheInvalidation": { "polling": { "enabled": true, "minPollingIntervalMs": 1000 } },
            "flagEvaluation": { "supportedTypes": ["boolean"] }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_takes_lists_weak_tags_and_star() {
        let mut h = HeaderMap::new();
        h.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(if_none_match(&h, "\"b\"") && if_none_match(&h, "\"a\""));
        assert!(!if_none_match(&h, "\"c\""));
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&h, "\"c\""));
        assert!(!if_none_match(&HeaderMap::new(), "\"c\""));
    }

    #[test]
    fn a_body_is_empty_an_object_or_a_parse_error() {
        assert_eq!(context(&Bytes::new()).unwrap(), None);
        assert_eq!(
            context(&Bytes::from_static(b"{\"context\":{\"a\":1}}")).unwrap(),
            Some(json!({"a": 1}))
        );
        assert_eq!(
            context(&Bytes::from_static(b"[")).unwrap_err().0,
            "PARSE_ERROR"
        );
        assert_eq!(
            context(&Bytes::from_static(b"3")).unwrap_err().0,
            "PARSE_ERROR"
        );
    }
}
