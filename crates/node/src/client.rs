//! A client for the node's HTTP API (what `agentic tx`, `agentic query`, the
//! provider daemon and the agent use).
//!
//! Responses are returned as JSON values in the API's documented shapes (see
//! `api::openapi`); errors keep the API's `code` so callers can branch on it.

use std::time::Duration;

use agentic_protocol::{Address, Hash, SignedTx};
use serde_json::{json, Value};

use crate::blobs::hex32;
use crate::genesis::hex;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node could not be reached or the connection failed.
    #[error("cannot reach the node at {url}: {source}")]
    Transport {
        /// The URL.
        url: String,
        /// The error.
        source: reqwest::Error,
    },
    /// The node answered with an error.
    #[error("node refused ({status} {code}): {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// The API's message.
        message: String,
    },
    /// The node's answer was not what the API documents.
    #[error("unexpected answer from the node: {0}")]
    Unexpected(String),
    /// A transaction was not finalized in time.
    #[error("transaction {id} not finalized after {waited:?}")]
    Timeout {
        /// The transaction.
        id: String,
        /// How long we waited.
        waited: Duration,
    },
}

/// A node API client.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:8001`).
    pub fn new(base: impl Into<String>) -> Client {
        let mut base = base.into();
        while base.ends_with('/') {
            base.pop();
        }
        if !base.starts_with("http://") && !base.starts_with("https://") {
            base = format!("http://{base}");
        }
        Client {
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("a client without TLS always builds"),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn decode(url: String, r: reqwest::Response) -> Result<Value, ClientError> {
        let status = r.status().as_u16();
        let body: Value = r
            .json()
            .await
            .map_err(|source| ClientError::Transport { url, source })?;
        if (200..300).contains(&status) {
            Ok(body)
        } else {
            Err(ClientError::Api {
                status,
                code: body["error"]["code"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string(),
                message: body["error"]["message"]
                    .as_str()
                    .unwrap_or("no message")
                    .to_string(),
            })
        }
    }

    /// `GET {base}{path}` as JSON.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        Self::decode(url, r).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Value, ClientError> {
        self.get("/v1/status").await
    }

    /// The account's next nonce.
    pub async fn nonce(&self, who: &Address) -> Result<u64, ClientError> {
        let v = self.account(who).await?;
        v["nonce"]
            .as_u64()
            .ok_or_else(|| ClientError::Unexpected(format!("account without nonce: {v}")))
    }

    /// `GET /v1/accounts/{address}`.
    pub async fn account(&self, who: &Address) -> Result<Value, ClientError> {
        self.get(&format!("/v1/accounts/{}", hex(&who.0))).await
    }

    /// Submits a signed transaction; returns its id (hex).
    pub async fn submit(&self, tx: &SignedTx) -> Result<String, ClientError> {
        let url = format!("{}/v1/txs", self.base);
        let r = self
            .http
            .post(&url)
            .json(&json!({"tx": hex(&tx.to_bytes())}))
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        let v = Self::decode(url, r).await?;
        v["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| ClientError::Unexpected(format!("no id in {v}")))
    }

    /// `GET /v1/txs/{id}`.
    pub async fn tx(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&format!("/v1/txs/{id}")).await
    }

    /// Polls until the transaction is finalized; returns its receipt.
    pub async fn wait(&self, id: &str, timeout: Duration) -> Result<Value, ClientError> {
        let start = std::time::Instant::now();
        loop {
            match self.tx(id).await {
                Ok(v) if v["status"] == "finalized" => return Ok(v),
                Ok(_) => {}
                // Not yet visible on this node (gossip in flight): keep polling.
                Err(ClientError::Api { status: 404, .. }) => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= timeout {
                return Err(ClientError::Timeout {
                    id: id.to_string(),
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stores a blob; returns its hash.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<Hash, ClientError> {
        let hash = Hash(*blake3::hash(&bytes).as_bytes());
        let url = format!("{}/v1/blobs/{}", self.base, hex32(&hash));
        let r = self
            .http
            .put(&url)
            .body(bytes)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        Self::decode(url, r).await?;
        Ok(hash)
    }

    /// Fetches a blob and checks its hash.
    pub async fn get_blob(&self, hash: &Hash) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/blobs/{}", self.base, hex32(hash));
        let r = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        if !r.status().is_success() {
            return Self::decode(url, r).await.map(|_| Vec::new());
        }
        let bytes = r
            .bytes()
            .await
            .map_err(|source| ClientError::Transport { url, source })?;
        if blake3::hash(&bytes).as_bytes() != &hash.0 {
            return Err(ClientError::Unexpected(format!(
                "blob {} does not hash to its name",
                hex32(hash)
            )));
        }
        Ok(bytes.to_vec())
    }
}
