//! The API client the CLI uses: finds the address and token through the config (or
//! `BATON_API` / `BATON_TOKEN`), sends JSON, turns API errors into plain messages.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use baton_server::views::ErrorBody;
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::exit::{Failure, Result};

/// A connection to a running `baton up`.
#[derive(Clone)]
pub struct Client {
    api: SocketAddr,
    token: String,
    http: HyperClient<HttpConnector, BoxBody<Bytes, std::io::Error>>,
}

/// An API answer that was not a success.
#[derive(Debug)]
pub struct ApiFailure {
    /// Whether the request itself was wrong (400/404): bad usage, exit 2.
    pub usage: bool,
    pub message: String,
    /// The API's error code (`ErrorDetail::code`), when it answered with one.
    pub code: Option<String>,
}

impl From<ApiFailure> for Failure {
    fn from(e: ApiFailure) -> Self {
        if e.usage {
            Failure::usage(e.message)
        } else {
            Failure::failed(e.message)
        }
    }
}

impl Client {
    /// A client for an API at `api` with `token`.
    pub fn new(api: SocketAddr, token: String) -> Self {
        Self {
            api,
            token,
            http: HyperClient::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Finds the API through the config file, or the environment.
    pub fn from_config(config_path: &Path) -> Result<Self> {
        let env_api = std::env::var("BATON_API").ok();
        let env_token = std::env::var("BATON_TOKEN").ok();
        let config = match (&env_api, &env_token) {
            (Some(_), Some(_)) => None,
            _ => Some(
                baton_server::load_config(config_path)
                    .map_err(|e| Failure::usage(e.to_string()))?,
            ),
        };
        let api: SocketAddr = match env_api {
            Some(a) => a
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .parse()
                .map_err(|_| Failure::usage(format!("BATON_API={a:?} is not host:port")))?,
            None => config.as_ref().expect("loaded").api.listen,
        };
        let token = match env_token {
            Some(t) => t,
            None => {
                let data_dir = config.as_ref().expect("loaded").data_dir(config_path);
                baton_server::read_token(&data_dir).ok_or_else(|| {
                    Failure::failed(format!(
                        "no API token in {}: is `baton up --config {}` running? (or set BATON_TOKEN)",
                        data_dir.display(),
                        config_path.display()
                    ))
                })?
            }
        };
        Ok(Self::new(api, token))
    }

    /// The API's address.
    pub fn api(&self) -> SocketAddr {
        self.api
    }

    /// GET `path` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> std::result::Result<T, ApiFailure> {
        self.send(Method::GET, path, None, "application/json").await
    }

    /// POST a JSON body.
    pub async fn post_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> std::result::Result<T, ApiFailure> {
        let bytes = serde_json::to_vec(body).expect("serializable");
        self.send(
            Method::POST,
            path,
            Some(Bytes::from(bytes)),
            "application/json",
        )
        .await
    }

    /// POST raw bytes.
    pub async fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> std::result::Result<T, ApiFailure> {
        self.send(Method::POST, path, Some(Bytes::from(body)), content_type)
            .await
    }

    /// POST `head` then the rest of `file`, streamed from disk (an artifact of any size).
    pub async fn post_file<T: DeserializeOwned>(
        &self,
        path: &str,
        head: Vec<u8>,
        file: std::fs::File,
        content_type: &str,
    ) -> std::result::Result<T, ApiFailure> {
        let body = crate::upload::file_body(head, file).map_err(|e| ApiFailure {
            usage: false,
            code: None,
            message: format!("reading the packed artifact: {e}"),
        })?;
        self.request(Method::POST, path, body, content_type).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        content_type: &str,
    ) -> std::result::Result<T, ApiFailure> {
        let body = Full::new(body.unwrap_or_default())
            .map_err(|never| match never {})
            .boxed();
        self.request(method, path, body, content_type).await
    }

    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: BoxBody<Bytes, std::io::Error>,
        content_type: &str,
    ) -> std::result::Result<T, ApiFailure> {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.api, path))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", content_type)
            .body(body)
            .expect("valid request");
        let unreachable = |e: String| ApiFailure {
            usage: false,
            code: None,
            message: format!(
                "cannot reach the Baton API at {}: {e}; is `baton up` running?",
                self.api
            ),
        };
        // Accepted, then closed (reset or EOF) before any answer: what the API does to a
        // connection over its cap (crates/baton-server/src/api/listener.rs).
        let closed = |e: String| ApiFailure {
            usage: false,
            code: None,
            message: format!(
                "the Baton API at {} refused the connection: it closed it before answering ({e}), \
                 perhaps because it is at its `[api] max_connections` cap; retry in a moment",
                self.api
            ),
        };
        let resp = tokio::time::timeout(Duration::from_secs(300), self.http.request(req))
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|e| {
                if e.is_connect() {
                    unreachable(e.to_string())
                } else {
                    closed(e.to_string())
                }
            })?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        if !status.is_success() {
            let (message, code) = match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => (b.error.message, Some(b.error.code)),
                Err(_) => (
                    format!("API answered {status}: {}", String::from_utf8_lossy(&bytes)),
                    None,
                ),
            };
            let usage = status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND;
            return Err(ApiFailure {
                usage,
                message,
                code,
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiFailure {
            usage: false,
            code: None,
            message: format!(
                "unexpected API answer ({e}); are the CLI and `baton up` the same version?"
            ),
        })
    }
}

/// `?env=ENV` for app routes, or nothing for the default environment.
pub fn env_query(env: Option<&str>) -> String {
    env.map(|e| format!("?env={}", encode(e)))
        .unwrap_or_default()
}

/// Who runs this command, recorded with forced deployments.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    if host.is_empty() {
        user
    } else {
        format!("{user}@{host}")
    }
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_closed_before_any_answer_says_the_api_refused_it_and_to_retry() {
        // An API at its connection cap accepts and closes at once.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                drop(stream);
            }
        });
        let client = Client::new(addr, "t".into());
        let err = client
            .get::<serde_json::Value>("/v1/apps")
            .await
            .unwrap_err();
        server.abort();
        assert!(
            err.message.contains("refused the connection")
                && err.message.contains("max_connections")
                && err.message.contains("retry")
                && !err.message.contains("is `baton up` running"),
            "{}",
            err.message
        );
    }
}
