//! Fuzzes the chunked decoder.
//!
//! Properties: decoding any bytes never panics and gives the same payload, end and error
//! whatever the pieces they arrive in; and a body encoded with the encoder decodes to the
//! same payload, ends exactly after its last chunk, and leaves what follows in the buffer.
#![no_main]

use baton_h1::chunked::{ChunkedDecoder, Decoded, LAST_CHUNK, CRLF, encode_chunk_header};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

/// Decodes `input` fed in pieces cut at `cuts` (offsets): the payload, whether the body
/// ended, whether it failed, and the bytes left after it.
fn decode(input: &[u8], cuts: &[usize]) -> (Vec<u8>, bool, bool, Vec<u8>) {
    let mut decoder = ChunkedDecoder::new();
    let mut buf = BytesMut::new();
    let mut payload = Vec::new();
    let mut at = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(input.len());
    for end in ends {
        if end < at {
            continue;
        }
        buf.extend_from_slice(&input[at..end]);
        at = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(data)) => {
                    assert!(!data.is_empty());
                    payload.extend_from_slice(&data);
                }
                Ok(Decoded::NeedMore) => break,
                Ok(Decoded::Done) => {
                    assert!(decoder.is_done());
                    buf.extend_from_slice(&input[at..]);
                    return (payload, true, false, buf.to_vec());
                }
                Err(_) => return (payload, false, true, Vec::new()),
            }
        }
    }
    (payload, false, false, buf.to_vec())
}

fuzz_target!(|data: &[u8]| {
    let (cut_bytes, body) = data.split_at(data.len().min(8));
    let cuts: Vec<usize> = cut_bytes.iter().map(|b| usize::from(*b) * 7).collect();

    // Any bytes: the pieces do not change the outcome.
    let whole = decode(body, &[]);
    let pieces = decode(body, &cuts);
    assert_eq!((whole.1, whole.2), (pieces.1, pieces.2));
    if !whole.2 {
        assert_eq!(whole.0, pieces.0);
        assert_eq!(whole.3, pieces.3);
    }

    // The body's bytes as a payload, cut into chunks at the cut points, encoded.
    let mut encoded = BytesMut::new();
    let mut at = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (body.len() + 1)).collect();
    ends.sort_unstable();
    ends.push(body.len());
    for end in ends {
        if end > at {
            encode_chunk_header(end - at, &mut encoded);
            encoded.extend_from_slice(&body[at..end]);
            encoded.extend_from_slice(CRLF);
            at = end;
        }
    }
    encoded.extend_from_slice(LAST_CHUNK);
    encoded.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    let (payload, done, failed, rest) = decode(&encoded, &cuts);
    assert!(!failed && done);
    assert_eq!(payload, body);
    assert_eq!(rest, b"HTTP/1.1 200 OK\r\n");
});
