//! A release upload streamed from the HTTP body into the blocking artifact import, so an
//! artifact of any size is never held in memory: the body's chunks pass through a small
//! bounded channel, counted against `[artifacts] max_upload_bytes`.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::http::StatusCode;
use baton_store::ArtifactError;
use bytes::{Buf, Bytes};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use super::ApiError;

/// Chunks in flight between the connection and the import: a few of hyper's reads.
const CHUNKS_IN_FLIGHT: usize = 4;

/// What is still read and discarded once the import stopped reading (refused, or done
/// before the end of the body), so the client, still sending, receives the answer rather
/// than a reset connection.
const DRAIN_AFTER_DONE: u64 = 16 << 20;

/// The longest metadata line of a release envelope (it carries the changelog).
pub const MAX_METADATA_BYTES: usize = 16 << 20;

/// The reading end of an upload, for the blocking import.
pub struct Upload {
    rx: mpsc::Receiver<std::io::Result<Bytes>>,
    chunk: Bytes,
    over: Arc<AtomicBool>,
    max: u64,
}

impl Upload {
    /// Starts pumping `body` and returns its reading end. The pump stops as soon as the
    /// body passes `max` bytes, or the reading end is dropped.
    pub fn start(body: Body, max: u64) -> Upload {
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let over = Arc::new(AtomicBool::new(false));
        tokio::spawn(pump(body, tx, max, over.clone()));
        Upload {
            rx,
            chunk: Bytes::new(),
            over,
            max,
        }
    }

    /// The error to answer when the upload was refused: the body limit if it tripped
    /// (whatever the reader made of the cut stream), else the artifact's own error.
    pub fn refusal(&self, e: ArtifactError) -> ApiError {
        if self.over.load(Ordering::SeqCst) {
            return too_large_upload(self.max);
        }
        // The server's own failure: its paths go to the log, not to the client.
        let internal = match &e {
            ArtifactError::Io { op, source, .. } => Some(format!(
                "cannot {op} a file of the artifact store ({source}); the server's log names it"
            )),
            ArtifactError::Write { source, .. } => Some(format!(
                "cannot write the canonical archive ({source}); the server's log names it"
            )),
            _ => None,
        };
        if let Some(message) = internal {
            tracing::error!(error = %e, "artifact import failed");
            return ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the artifact could not be stored: {message}"),
            );
        }
        let status = match &e {
            ArtifactError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            _ => "bad_request",
        };
        ApiError::new(
            status,
            code,
            format!("the artifact could not be stored: {e}"),
        )
    }

    /// Reads the first line of a release envelope (without the newline).
    pub fn metadata_line(&mut self) -> Result<Vec<u8>, ApiError> {
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match self.read(&mut byte) {
                Ok(0) => break,
                Ok(_) if byte[0] == b'\n' => return Ok(line),
                Ok(_) if line.len() >= MAX_METADATA_BYTES => {
                    return Err(ApiError::bad_request(format!(
                        "the release metadata line is longer than {MAX_METADATA_BYTES} bytes: \
                         shorten the notes or changelog"
                    )));
                }
                Ok(_) => line.push(byte[0]),
                Err(_) if self.over.load(Ordering::SeqCst) => {
                    return Err(too_large_upload(self.max));
                }
                Err(e) => return Err(ApiError::bad_request(format!("reading the upload: {e}"))),
            }
        }
        Err(ApiError::bad_request(
            "a release envelope starts with one line of JSON metadata, then a newline",
        ))
    }
}

impl Read for Upload {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk.advance(n);
        Ok(n)
    }
}

/// The 413 for a body over `[artifacts] max_upload_bytes`.
pub fn too_large_upload(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the upload is larger than {max} bytes, the limit `[artifacts] max_upload_bytes` in \
             baton.toml: make the artifact smaller, or raise the limit"
        ),
    )
}

async fn pump(
    mut body: Body,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    max: u64,
    over: Arc<AtomicBool>,
) {
    let mut total = 0u64;
    let mut drained: Option<u64> = None;
    while let Some(frame) = body.frame().await {
        let chunk = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_trailers) => continue,
            },
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e))).await;
                return;
            }
        };
        total = total.saturating_add(chunk.len() as u64);
        if let Some(d) = drained.as_mut() {
            *d += chunk.len() as u64;
            if *d > DRAIN_AFTER_DONE || total > max {
                return;
            }
            continue;
        }
        if total > max {
            over.store(true, Ordering::SeqCst);
            let _ = tx
                .send(Err(std::io::Error::other("the upload limit is reached")))
                .await;
            return;
        }
        if tx.send(Ok(chunk)).await.is_err() {
            // The import stopped reading (refused or done): the rest is not needed.
            drained = Some(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use axum::body::Body;
    use axum::response::IntoResponse;

    use super::*;

    async fn status_and_message(e: ApiError) -> (StatusCode, String) {
        let resp = e.into_response();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn a_body_over_the_upload_limit_is_413_naming_the_key() {
        let upload = Upload::start(Body::from(vec![7u8; 100]), 10);
        let (read, upload) = tokio::task::spawn_blocking(move || {
            let mut upload = upload;
            let mut all = Vec::new();
            let read = upload.read_to_end(&mut all);
            (read, upload)
        })
        .await
        .unwrap();
        assert!(read.is_err(), "the reader sees the cut");
        let refused = upload.refusal(ArtifactError::InvalidDigest("x".into()));
        let (status, message) = status_and_message(refused).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(
            message.contains("larger than 10 bytes")
                && message.contains("[artifacts] max_upload_bytes"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_store_failure_is_500_without_the_servers_paths() {
        let upload = Upload::start(Body::empty(), 10);
        let refused = upload.refusal(ArtifactError::Io {
            op: "write",
            path: "/srv/baton-data/artifacts/.import-x/tree/f".into(),
            source: std::io::Error::other("No space left on device"),
        });
        let (status, message) = status_and_message(refused).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(
            !message.contains("/srv/baton-data") && message.contains("No space left on device"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_body_within_the_limit_reads_whole_after_its_metadata_line() {
        let mut upload = Upload::start(Body::from(&b"{\"version\":\"1\"}\nTAR"[..]), 100);
        let (line, rest) = tokio::task::spawn_blocking(move || {
            let line = upload.metadata_line().unwrap();
            let mut rest = Vec::new();
            upload.read_to_end(&mut rest).unwrap();
            (line, rest)
        })
        .await
        .unwrap();
        assert_eq!(line, b"{\"version\":\"1\"}");
        assert_eq!(rest, b"TAR");
    }
}
