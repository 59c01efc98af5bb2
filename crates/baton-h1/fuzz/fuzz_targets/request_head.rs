//! Fuzzes the request-head parser of Baton's own HTTP/1.1 server side.
//!
//! Properties: a head it takes has one unambiguous body boundary (its length plus at most
//! one `Content-Length`, never a transfer coding), the same whatever follows it in the buffer;
//! it has exactly one valid `Host` (HTTP/1.1) and an origin-form target of visible ASCII;
//! every header it passes on is neither framing nor hop-by-hop.
#![no_main]

use baton_h1::request::{Parsed, Role, as_http_1_1, parse};
use baton_h1::rules::{is_hop_by_hop, is_valid_host};
use libfuzzer_sys::fuzz_target;

const MAX_LEN: usize = 16 * 1024;
const MAX_BODY: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut buf = data.to_vec();
    // What the server side does with a version error.
    if let Parsed::NewerMinor = parse(&buf, MAX_LEN, MAX_BODY) {
        let _ = as_http_1_1(&mut buf);
    }
    let Parsed::Request(head) = parse(&buf, MAX_LEN, MAX_BODY) else {
        return;
    };
    assert!(head.len <= buf.len() && head.len <= MAX_LEN);
    assert!(head.body <= MAX_BODY);
    let text = |(start, end): (usize, usize)| &buf[start..end];
    let target = text(head.target);
    assert!(target.starts_with(b"/"), "{target:?}");
    assert!(target.iter().all(u8::is_ascii_graphic), "{target:?}");
    let hosts: Vec<&[u8]> = head
        .headers
        .iter()
        .filter(|h| h.role == Role::Host)
        .map(|h| text(h.value))
        .collect();
    assert!(hosts.len() <= 1);
    assert!(head.http10 || hosts.len() == 1);
    assert!(hosts.iter().all(|h| is_valid_host(h)));
    let mut lengths = 0;
    for h in &head.headers {
        let name = text(h.name);
        assert!(!name.eq_ignore_ascii_case(b"transfer-encoding"));
        if name.eq_ignore_ascii_case(b"content-length") {
            lengths += 1;
            assert!(h.role == Role::Drop);
        }
        if h.role == Role::Pass {
            assert!(!is_hop_by_hop(name), "{name:?} passed on");
            assert!(!name.eq_ignore_ascii_case(b"connection"));
        }
    }
    assert!(lengths <= 1);
    assert!(lengths == 1 || head.body == 0);
    // The boundary depends on the head alone: the same head with nothing, or other bytes,
    // after it parses the same.
    let mut alone = buf[..head.len].to_vec();
    for tail in [&b""[..], b"GET / HTTP/1.1\r\n", b"\r\n0\r\n\r\n"] {
        alone.truncate(head.len);
        alone.extend_from_slice(tail);
        let Parsed::Request(again) = parse(&alone, MAX_LEN, MAX_BODY) else {
            panic!("the head alone does not parse");
        };
        assert_eq!((again.len, again.body), (head.len, head.body));
    }
});
