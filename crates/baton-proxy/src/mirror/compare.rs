//! Comparing two answers to one request: status, selected headers and body (JSON field by
//! field), and the route template (method + path with ids as `:id`) a difference is filed under.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::StatusCode;

/// Largest body kept for a comparison; a larger one is compared by status and headers only.
pub const MAX_BODY: usize = 64 * 1024;

/// One answer, as far as a comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The response status.
    pub status: StatusCode,
    /// The compared headers that were present, lower-case names.
    pub headers: BTreeMap<String, String>,
    /// The body, or none when it was larger than [`MAX_BODY`] (not compared).
    pub body: Option<Bytes>,
}

/// The fields in which two answers differ: `status`, `header:NAME`, `body` (not JSON) or a
/// JSON path such as `body.items[0].price`. Sorted, each once.
pub fn differences(a: &Answer, b: &Answer) -> Vec<String> {
    let mut out = Vec::new();
    if a.status != b.status {
        out.push("status".to_string());
    }
    let names: std::collections::BTreeSet<&String> =
        a.headers.keys().chain(b.headers.keys()).collect();
    for name in names {
        if a.headers.get(name) != b.headers.get(name) {
            out.push(format!("header:{name}"));
        }
    }
    if let (Some(x), Some(y)) = (&a.body, &b.body) {
        body_differences(x, y, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

fn body_differences(a: &[u8], b: &[u8], out: &mut Vec<String>) {
    if a == b {
        return;
    }
    let parsed = (
        serde_json::from_slice::<serde_json::Value>(a),
        serde_json::from_slice::<serde_json::Value>(b),
    );
    let (Ok(x), Ok(y)) = parsed else {
        out.push("body".to_string());
        return;
    };
    let (mut fx, mut fy) = (BTreeMap::new(), BTreeMap::new());
    flatten("body", &x, &mut fx);
    flatten("body", &y, &mut fy);
    let paths: std::collections::BTreeSet<&String> = fx.keys().chain(fy.keys()).collect();
    for p in paths {
        if fx.get(p) != fy.get(p) {
            out.push(p.clone());
        }
    }
}

/// Deepest nesting looked into; deeper values are compared whole.
const MAX_DEPTH: usize = 16;

fn flatten<'a>(
    path: &str,
    v: &'a serde_json::Value,
    out: &mut BTreeMap<String, &'a serde_json::Value>,
) {
    fn walk<'a>(
        path: String,
        v: &'a serde_json::Value,
        depth: usize,
        out: &mut BTreeMap<String, &'a serde_json::Value>,
    ) {
        match v {
            serde_json::Value::Object(m) if depth < MAX_DEPTH && !m.is_empty() => {
                for (k, v) in m {
                    walk(format!("{path}.{k}"), v, depth + 1, out);
                }
            }
            serde_json::Value::Array(a) if depth < MAX_DEPTH && !a.is_empty() => {
                for (i, v) in a.iter().enumerate() {
                    walk(format!("{path}[{i}]"), v, depth + 1, out);
                }
            }
            _ => {
                out.insert(path, v);
            }
        }
    }
    walk(path.to_string(), v, 0, out);
}

/// The route a request is filed under: its method and its path with every segment that looks
/// like an id (digits, a UUID, 16+ hex digits) replaced by `:id`; the query is left out.
pub fn route_template(method: &str, target: &str) -> String {
    let path = target.split(['?', '#']).next().unwrap_or("/");
    let mut out = String::with_capacity(method.len() + path.len() + 1);
    out.push_str(method);
    out.push(' ');
    if path.is_empty() {
        out.push('/');
    }
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        if is_id(seg) {
            out.push_str(":id");
        } else {
            out.push_str(seg);
        }
    }
    out
}

fn is_id(seg: &str) -> bool {
    if seg.is_empty() {
        return false;
    }
    let digits = seg.bytes().all(|b| b.is_ascii_digit());
    let hex = seg.len() >= 16 && seg.bytes().all(|b| b.is_ascii_hexdigit());
    let uuid = seg.len() == 36
        && seg.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    digits || hex || uuid
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status: StatusCode::from_u16(status).unwrap(),
            headers: BTreeMap::new(),
            body: Some(Bytes::from(body.to_string())),
        }
    }

    #[test]
    fn json_bodies_differ_field_by_field() {
        let a = answer(200, r#"{"id":7,"price":10,"tags":["a","b"],"at":1}"#);
        let b = answer(200, r#"{"at":2, "id":7,"price":12,"tags":["a","c"]}"#);
        assert_eq!(
            differences(&a, &b),
            vec!["body.at", "body.price", "body.tags[1]"]
        );
    }

    #[test]
    fn the_same_json_in_another_order_does_not_differ() {
        let a = answer(200, r#"{"a":1,"b":{"c":[1,2]}}"#);
        let b = answer(200, r#"{ "b": {"c": [1, 2]}, "a": 1 }"#);
        assert!(differences(&a, &b).is_empty());
    }

    #[test]
    fn status_headers_and_plain_bodies() {
        let mut a = answer(200, "hello");
        let mut b = answer(500, "hullo");
        a.headers.insert("content-type".into(), "text/plain".into());
        b.headers.insert("content-type".into(), "text/html".into());
        assert_eq!(
            differences(&a, &b),
            vec!["body", "header:content-type", "status"]
        );
        // A body too large to keep is not compared.
        b.body = None;
        assert_eq!(differences(&a, &b), vec!["header:content-type", "status"]);
    }

    #[test]
    fn a_field_only_one_side_has_differs() {
        let a = answer(200, r#"{"a":1}"#);
        let b = answer(200, r#"{"a":1,"b":null}"#);
        assert_eq!(differences(&a, &b), vec!["body.b"]);
    }

    #[test]
    fn templates_replace_ids() {
        for (method, target, want) in [
            ("GET", "/item/42?x=1", "GET /item/:id"),
            ("GET", "/", "GET /"),
            ("GET", "", "GET /"),
            (
                "DELETE",
                "/u/123e4567-e89b-12d3-a456-426614174000/x",
                "DELETE /u/:id/x",
            ),
            ("GET", "/blob/deadbeefdeadbeef00", "GET /blob/:id"),
            ("GET", "/blob/cafe", "GET /blob/cafe"),
            ("GET", "/v2/users", "GET /v2/users"),
        ] {
            assert_eq!(route_template(method, target), want, "{target}");
        }
    }
}
