//! The HTTP/1.1 chunked transfer coding (RFC 9112 section 7.1), for the proxy's own upstream
//! HTTP/1 client.
//!
//! [`ChunkedDecoder`] turns a chunked message body, read into a [`BytesMut`] in pieces of any
//! size, into payload bytes (zero-copy) and stops right after the trailer section, so that what
//! follows (a pipelined next response) stays in the buffer. Encoding needs no state: each
//! non-empty chunk is [`encode_chunk_header`], the data and [`CRLF`]; the body ends with
//! [`LAST_CHUNK`].
//!
//! The decoder is bounded: a size line must end within [`MAX_SIZE_LINE`] bytes and the trailer
//! section within [`MAX_TRAILERS`] bytes, so a hostile backend cannot make the caller's buffer
//! grow forever. Like hyper, it accepts a bare LF where CRLF is expected (RFC 9112 section 2.2).
//! Chunk extensions and trailer fields are read only as far as needed to skip them.

use bytes::{Buf, Bytes, BytesMut};

/// Ends a chunk's data.
pub const CRLF: &[u8] = b"\r\n";

/// The last chunk with an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The longest a chunk size line may be, counting its line ending.
pub const MAX_SIZE_LINE: usize = 4096;

/// The largest a trailer section may be, counting every line ending and the final empty line.
pub const MAX_TRAILERS: usize = 16 * 1024;

/// What [`ChunkedDecoder::decode`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// Payload bytes (never empty).
    Data(Bytes),
    /// `buf` holds no complete element: read more into it and call again.
    NeedMore,
    /// The last chunk and the trailer section are consumed; bytes after them stay in `buf`.
    Done,
}

/// Why a chunked body could not be decoded. The body's framing is lost: close the connection.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChunkedError {
    /// The size line is not hex digits, optional extensions, then the line ending.
    #[error("invalid chunk size line: expected hex digits, optional extensions, then CRLF")]
    BadSize,
    /// The chunk size does not fit in 64 bits.
    #[error("chunk size does not fit in 64 bits")]
    Overflow,
    /// No line ending within [`MAX_SIZE_LINE`] bytes of a size line.
    #[error("chunk size line is longer than {} bytes", MAX_SIZE_LINE)]
    SizeLineTooLong,
    /// A chunk's data is not followed by CRLF.
    #[error("chunk data is not followed by CRLF")]
    MissingCrlf,
    /// The trailer section does not end within [`MAX_TRAILERS`] bytes.
    #[error("trailer section is larger than {} bytes", MAX_TRAILERS)]
    TrailersTooLarge,
}

/// Where the decoder is in the body.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk size line.
    #[default]
    Size,
    /// Inside a chunk's data.
    Data {
        /// Bytes of the chunk not yet returned (never 0).
        remaining: u64,
    },
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk, skipping trailer lines up to the empty line.
    Trailers {
        /// Bytes of the trailer section consumed so far.
        seen: usize,
    },
    /// The body is complete.
    Done,
}

/// Incremental decoder of a chunked message body.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    /// Where the decoder is; kept between calls so input may be split anywhere.
    state: State,
}

impl ChunkedDecoder {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes what it can from the front of `buf` (advancing it) and returns the next piece of
    /// payload, or NeedMore, or Done.
    ///
    /// Payload is split off `buf` without copying. When `buf` ends inside a chunk's data, the part
    /// that is there is returned and the rest of the chunk is expected next. Calling again after
    /// Done returns Done and leaves `buf` alone. After an error the body cannot be resumed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkedError> {
        loop {
            match self.state {
                State::Size => {
                    let n = match find_line(buf, MAX_SIZE_LINE) {
                        Line::Complete(n) => n,
                        Line::Partial => return Ok(Decoded::NeedMore),
                        Line::TooLong => return Err(ChunkedError::SizeLineTooLong),
                    };
                    let size = parse_size_line(&buf[..n - 1])?;
                    buf.advance(n);
                    self.state = match size {
                        0 => State::Trailers { seen: 0 },
                        remaining => State::Data { remaining },
                    };
                }
                State::Data { remaining } => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    self.state = match remaining - n as u64 {
                        0 => State::DataEnd,
                        remaining => State::Data { remaining },
                    };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                State::DataEnd => {
                    let n = match buf[..] {
                        [b'\r', b'\n', ..] => 2,
                        [b'\n', ..] => 1,
                        [] | [b'\r'] => return Ok(Decoded::NeedMore),
                        _ => return Err(ChunkedError::MissingCrlf),
                    };
                    buf.advance(n);
                    self.state = State::Size;
                }
                State::Trailers { seen } => {
                    let n = match find_line(buf, MAX_TRAILERS - seen) {
                        Line::Complete(n) => n,
                        Line::Partial => return Ok(Decoded::NeedMore),
                        Line::TooLong => return Err(ChunkedError::TrailersTooLarge),
                    };
                    let empty = matches!(&buf[..n], b"\n" | b"\r\n");
                    buf.advance(n);
                    self.state = if empty {
                        State::Done
                    } else {
                        State::Trailers { seen: seen + n }
                    };
                }
                State::Done => return Ok(Decoded::Done),
            }
        }
    }

    /// Whether Done has been reached.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

/// Appends one chunk's size line, `{len:x}\r\n`, to `dst` (the caller then writes the data and
/// [`CRLF`]). `len` must not be 0 (that is [`LAST_CHUNK`]).
pub fn encode_chunk_header(len: usize, dst: &mut BytesMut) {
    debug_assert_ne!(len, 0, "a zero-length chunk is the last chunk");
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 2 * size_of::<usize>()];
    let mut start = digits.len();
    let mut rest = len;
    loop {
        start -= 1;
        digits[start] = HEX[rest & 0xf];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    dst.reserve(digits.len() - start + CRLF.len());
    dst.extend_from_slice(&digits[start..]);
    dst.extend_from_slice(CRLF);
}

/// How far the line at the front of a buffer goes, as [`find_line`] sees it.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// The line ends within the limit; its length, counting the LF.
    Complete(usize),
    /// No LF yet, but the buffer is shorter than the limit: more may complete the line.
    Partial,
    /// No LF within the limit.
    TooLong,
}

/// Finds the end (LF) of the line at the front of `buf`, looking at no more than `limit` bytes.
fn find_line(buf: &[u8], limit: usize) -> Line {
    let window = &buf[..buf.len().min(limit)];
    match window.iter().position(|&b| b == b'\n') {
        Some(i) => Line::Complete(i + 1),
        None if buf.len() >= limit => Line::TooLong,
        None => Line::Partial,
    }
}

/// Parses a chunk size line without its LF: hex digits, optional spaces or tabs, optional
/// extensions (`;` then anything but control characters other than tab), optional CR.
fn parse_size_line(line: &[u8]) -> Result<u64, ChunkedError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut size: u64 = 0;
    let mut digits = 0;
    for digit in line.iter().map_while(|&b| char::from(b).to_digit(16)) {
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(u64::from(digit)))
            .ok_or(ChunkedError::Overflow)?;
        digits += 1;
    }
    if digits == 0 {
        return Err(ChunkedError::BadSize);
    }
    let rest = &line[digits..];
    let spaces = rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    match &rest[spaces..] {
        [] => Ok(size),
        [b';', extensions @ ..]
            if extensions
                .iter()
                .all(|&b| b == b'\t' || !b.is_ascii_control()) =>
        {
            Ok(size)
        }
        _ => Err(ChunkedError::BadSize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body with several chunks, extensions, upper-case hex, whitespace and trailers.
    const FULL: &[u8] = b"5;name=value\r\nhello\r\n\
        1A ; a=\"b c\";d\r\nabcdefghijklmnopqrstuvwxyz\r\n\
        1\t\r\n!\r\n\
        0;last\r\nExpires: never\r\nX-Sum: 42\r\n\r\n";

    /// The payload of [`FULL`].
    const FULL_PAYLOAD: &[u8] = b"helloabcdefghijklmnopqrstuvwxyz!";

    /// Decodes all complete elements in `buf`: the payload so far, and whether Done was reached.
    fn drain(
        dec: &mut ChunkedDecoder,
        buf: &mut BytesMut,
    ) -> Result<(Vec<u8>, bool), ChunkedError> {
        let mut out = Vec::new();
        loop {
            match dec.decode(buf)? {
                Decoded::Data(data) => {
                    assert!(!data.is_empty(), "Data must never be empty");
                    out.extend_from_slice(&data);
                }
                Decoded::NeedMore => return Ok((out, false)),
                Decoded::Done => return Ok((out, true)),
            }
        }
    }

    /// Feeds `pieces` one at a time and returns the payload and what is left in the buffer,
    /// checking that Done comes exactly when the last byte is in.
    fn feed<'a>(
        pieces: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(Vec<u8>, BytesMut), ChunkedError> {
        let pieces: Vec<&[u8]> = pieces.into_iter().collect();
        let last = pieces.iter().rposition(|p| !p.is_empty());
        let mut dec = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        let mut payload = Vec::new();
        for (i, piece) in pieces.into_iter().enumerate() {
            buf.extend_from_slice(piece);
            let (data, done) = drain(&mut dec, &mut buf)?;
            payload.extend_from_slice(&data);
            assert_eq!(
                done,
                Some(i) >= last,
                "Done exactly when the last byte is in"
            );
            assert_eq!(done, dec.is_done());
        }
        Ok((payload, buf))
    }

    /// Decodes `input` given all at once and returns the first error.
    fn error_of(input: &[u8]) -> ChunkedError {
        let mut buf = BytesMut::from(input);
        match drain(&mut ChunkedDecoder::new(), &mut buf) {
            Err(e) => e,
            Ok(r) => panic!("expected an error, got {r:?}"),
        }
    }

    #[test]
    fn two_chunks() {
        let mut buf = BytesMut::from(&b"4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"[..]);
        let mut dec = ChunkedDecoder::new();
        assert!(!dec.is_done());
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"Wiki")))
        );
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"pedia")))
        );
        assert_eq!(dec.decode(&mut buf), Ok(Decoded::Done));
        assert!(dec.is_done());
        assert!(buf.is_empty());
    }

    #[test]
    fn extensions_and_upper_case_hex() {
        let mut buf = BytesMut::from(
            &b"A;ext\r\n0123456789\r\n0b ; a=1 ;b=\"x;y\"\t\r\nhello world\r\n0\r\n\r\n"[..],
        );
        assert_eq!(
            drain(&mut ChunkedDecoder::new(), &mut buf),
            Ok((b"0123456789hello world".to_vec(), true))
        );
    }

    #[test]
    fn whitespace_before_line_end_and_leading_zeros() {
        let mut buf = BytesMut::from(&b"0003 \t\r\nabc\r\n00000000000000000000\r\n\r\n"[..]);
        assert_eq!(
            drain(&mut ChunkedDecoder::new(), &mut buf),
            Ok((b"abc".to_vec(), true))
        );
    }

    #[test]
    fn bare_lf_line_endings() {
        let mut buf = BytesMut::from(&b"3\nabc\n2;x\r\nde\n0\nTrailer: t\n\n"[..]);
        assert_eq!(
            drain(&mut ChunkedDecoder::new(), &mut buf),
            Ok((b"abcde".to_vec(), true))
        );
    }

    #[test]
    fn trailers_are_skipped() {
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\nExpires: never\r\nX-Sum: 42\r\n\r\n"[..]);
        assert_eq!(
            drain(&mut ChunkedDecoder::new(), &mut buf),
            Ok((b"abc".to_vec(), true))
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn bytes_after_the_end_stay_in_buf() {
        let next = &b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"[..];
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n0\r\nX: y\r\n\r\n"[..]);
        buf.extend_from_slice(next);
        let mut dec = ChunkedDecoder::new();
        assert_eq!(drain(&mut dec, &mut buf), Ok((b"abc".to_vec(), true)));
        assert_eq!(&buf[..], next);
        // Done is sticky and leaves the buffer alone.
        assert_eq!(dec.decode(&mut buf), Ok(Decoded::Done));
        assert_eq!(&buf[..], next);
    }

    #[test]
    fn partial_chunk_data_is_returned_and_the_rest_expected() {
        let mut dec = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        assert_eq!(dec.decode(&mut buf), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"5\r\nab");
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"ab")))
        );
        assert_eq!(dec.decode(&mut buf), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"cde\r");
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"cde")))
        );
        assert_eq!(dec.decode(&mut buf), Ok(Decoded::NeedMore));
        assert_eq!(&buf[..], b"\r");
        buf.extend_from_slice(b"\n0\r\n\r");
        assert_eq!(dec.decode(&mut buf), Ok(Decoded::NeedMore));
        buf.extend_from_slice(b"\n");
        assert_eq!(dec.decode(&mut buf), Ok(Decoded::Done));
    }

    #[test]
    fn every_split_in_two_and_three_pieces() {
        for i in 0..=FULL.len() {
            let (payload, rest) = feed([&FULL[..i], &FULL[i..]]).unwrap();
            assert_eq!(payload, FULL_PAYLOAD, "split at {i}");
            assert!(rest.is_empty());
            for j in i..=FULL.len() {
                let (payload, rest) = feed([&FULL[..i], &FULL[i..j], &FULL[j..]]).unwrap();
                assert_eq!(payload, FULL_PAYLOAD, "split at {i} and {j}");
                assert!(rest.is_empty());
            }
        }
    }

    #[test]
    fn byte_by_byte() {
        let (payload, rest) = feed(FULL.chunks(1)).unwrap();
        assert_eq!(payload, FULL_PAYLOAD);
        assert!(rest.is_empty());
    }

    #[test]
    fn bad_size() {
        for input in [
            &b"\r\n"[..],
            b"x\r\n",
            b";ext\r\n",
            b" 5\r\n",
            b"+5\r\n",
            b"5x\r\n",
            b"5 5\r\n",
            b"5 x\r\n",
            b"5;a\x00b\r\n",
            b"5;a\rb\r\n",
            b"5\r\r\n",
            b"3\r\nabc\r\ng\r\n",
        ] {
            assert_eq!(error_of(input), ChunkedError::BadSize, "{input:?}");
        }
    }

    #[test]
    fn size_overflow() {
        assert_eq!(error_of(b"fffffffffffffffff\r\n"), ChunkedError::Overflow);
        assert_eq!(error_of(b"10000000000000000;x\r\n"), ChunkedError::Overflow);
        // The largest size is fine (the data just never comes).
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\nabc"[..]);
        let mut dec = ChunkedDecoder::new();
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Decoded::Data(Bytes::from_static(b"abc")))
        );
        assert_eq!(dec.decode(&mut buf), Ok(Decoded::NeedMore));
    }

    #[test]
    fn size_line_too_long() {
        // A line ending within the limit is fine.
        let mut ok = b"1;".to_vec();
        ok.resize(MAX_SIZE_LINE - 2, b'a');
        ok.extend_from_slice(b"\r\nz\r\n0\r\n\r\n");
        assert_eq!(feed([&ok[..]]).unwrap().0, b"z");

        let mut long = b"1;".to_vec();
        long.resize(MAX_SIZE_LINE - 1, b'a');
        long.extend_from_slice(b"\r\n");
        assert_eq!(error_of(&long), ChunkedError::SizeLineTooLong);

        // Fed piece by piece, the error comes as soon as the limit is reached without a LF.
        let mut dec = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        for _ in 0..MAX_SIZE_LINE - 1 {
            buf.extend_from_slice(b"0");
            assert_eq!(dec.decode(&mut buf), Ok(Decoded::NeedMore));
        }
        buf.extend_from_slice(b"0");
        assert_eq!(dec.decode(&mut buf), Err(ChunkedError::SizeLineTooLong));
    }

    #[test]
    fn missing_crlf_after_data() {
        for input in [
            &b"3\r\nabcX"[..],
            b"3\r\nabc\rX",
            b"3\r\nabc\r\r\n",
            b"3\r\nabcd\r\n",
        ] {
            assert_eq!(error_of(input), ChunkedError::MissingCrlf, "{input:?}");
        }
    }

    #[test]
    fn trailers_too_large() {
        // One huge trailer line.
        let mut huge = b"0\r\nX: ".to_vec();
        huge.resize(3 + MAX_TRAILERS, b'a');
        assert_eq!(error_of(&huge), ChunkedError::TrailersTooLarge);

        // Many small lines: exactly the limit is fine, one byte more is not.
        let line = b"X-Trailer: 0123456789abcdef\r\n";
        let lines = (MAX_TRAILERS - 2) / line.len();
        let mut section = line.repeat(lines);
        section.resize(MAX_TRAILERS - 4, b'y');
        section.extend_from_slice(b"\r\n\r\n");
        assert_eq!(section.len(), MAX_TRAILERS);
        let ok = [&b"0\r\n"[..], &section].concat();
        assert_eq!(feed(ok.chunks(100)).unwrap().0, b"");
        let too_large = [&b"0\r\n"[..], b"y", &section].concat();
        assert_eq!(error_of(&too_large), ChunkedError::TrailersTooLarge);
    }

    #[test]
    fn one_mib_chunk_in_4_kib_reads() {
        const MIB: usize = 1 << 20;
        let mut dec = ChunkedDecoder::new();
        let mut buf = BytesMut::new();
        encode_chunk_header(MIB, &mut buf);
        assert_eq!(&buf[..], b"100000\r\n");
        let mut total = 0;
        let data = vec![7u8; 4096];
        for _ in 0..MIB / data.len() {
            buf.extend_from_slice(&data);
            match dec.decode(&mut buf) {
                Ok(Decoded::Data(bytes)) => {
                    assert_eq!(bytes.len(), data.len());
                    total += bytes.len();
                }
                other => panic!("expected data, got {other:?}"),
            }
            assert_eq!(dec.decode(&mut buf), Ok(Decoded::NeedMore));
        }
        assert_eq!(total, MIB);
        buf.extend_from_slice(CRLF);
        buf.extend_from_slice(LAST_CHUNK);
        assert_eq!(dec.decode(&mut buf), Ok(Decoded::Done));
        assert!(buf.is_empty());
    }

    #[test]
    fn encode_chunk_headers() {
        let header = |len| {
            let mut dst = BytesMut::new();
            encode_chunk_header(len, &mut dst);
            dst
        };
        assert_eq!(&header(255)[..], b"ff\r\n");
        assert_eq!(&header(1)[..], b"1\r\n");
        assert_eq!(&header(16)[..], b"10\r\n");
        assert_eq!(header(usize::MAX).len(), 2 * size_of::<usize>() + 2);
        let mut dst = BytesMut::from(&b"abc"[..]);
        encode_chunk_header(0xabc, &mut dst);
        assert_eq!(&dst[..], b"abcabc\r\n");
    }

    #[test]
    fn round_trip() {
        let chunks: Vec<Vec<u8>> = [1, 15, 16, 255, 256, 4096, 70_000]
            .iter()
            .enumerate()
            .map(|(i, &len)| (0..len).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let mut wire = BytesMut::new();
        for chunk in &chunks {
            encode_chunk_header(chunk.len(), &mut wire);
            wire.extend_from_slice(chunk);
            wire.extend_from_slice(CRLF);
        }
        wire.extend_from_slice(LAST_CHUNK);
        let expected = chunks.concat();
        let (payload, rest) = feed([&wire[..]]).unwrap();
        assert_eq!(payload, expected);
        assert!(rest.is_empty());
        let (payload, _) = feed(wire.chunks(1000)).unwrap();
        assert_eq!(payload, expected);
    }
}
