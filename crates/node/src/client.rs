//! A client for the node's HTTP API (what `agentic tx`, `agentic query`, the
//! provider daemon and the agent use).
//!
//! Responses are returned as JSON values in the API's documented shapes (see
//! `api::openapi`); errors keep the API's `code` so callers can branch on it.

use std::time::Duration;

use agentic_protocol::params::Params;
use agentic_protocol::{Address, Amount, ChainId, Hash, SignedTx, Tx, TxBody};
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;
use serde_json::{json, Value};

use agentic_protocol::hex;

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
    /// The ledger finalized the transaction but rejected it.
    #[error("the ledger rejected {kind} {id}: {reason}")]
    Rejected {
        /// The transaction kind.
        kind: &'static str,
        /// Its id (hex).
        id: String,
        /// The ledger's reason.
        reason: String,
    },
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
        self.get(&format!("/v1/accounts/{}", hex::encode(&who.0)))
            .await
    }

    /// Submits a signed transaction; returns its id (hex).
    pub async fn submit(&self, tx: &SignedTx) -> Result<String, ClientError> {
        let url = format!("{}/v1/txs", self.base);
        let r = self
            .http
            .post(&url)
            .json(&json!({"tx": hex::encode(&tx.to_bytes())}))
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
        let url = format!("{}/v1/blobs/{}", self.base, hash.to_hex());
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
        let url = format!("{}/v1/blobs/{}", self.base, hash.to_hex());
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
                hash.to_hex()
            )));
        }
        Ok(bytes.to_vec())
    }

    /// The blob's size if the server holds it (`HEAD`), `None` if not.
    pub async fn blob_size(&self, hash: &Hash) -> Result<Option<u64>, ClientError> {
        let url = format!("{}/v1/blobs/{}", self.base, hash.to_hex());
        let r = self
            .http
            .head(&url)
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        match r.status().as_u16() {
            200 => Ok(r
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())),
            404 => Ok(None),
            status => Err(ClientError::Api {
                status,
                code: "unknown".into(),
                message: format!("HEAD {url}"),
            }),
        }
    }

    /// Up to `len` bytes of a blob from `offset` (a `Range` request). The bytes are
    /// not checked here: a caller assembling a blob checks the whole hash.
    pub async fn get_blob_range(
        &self,
        hash: &Hash,
        offset: u64,
        len: u64,
    ) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}/v1/blobs/{}", self.base, hash.to_hex());
        let end = offset.saturating_add(len.max(1)) - 1;
        let r = self
            .http
            .get(&url)
            .header(reqwest::header::RANGE, format!("bytes={offset}-{end}"))
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                url: url.clone(),
                source,
            })?;
        if !r.status().is_success() {
            return Self::decode(url, r).await.map(|_| Vec::new());
        }
        let partial = r.status().as_u16() == 206;
        let bytes = r
            .bytes()
            .await
            .map_err(|source| ClientError::Transport { url, source })?;
        if partial {
            Ok(bytes.to_vec())
        } else {
            // A server without range support sent the whole blob.
            let start = (offset as usize).min(bytes.len());
            let stop = (end as usize).saturating_add(1).min(bytes.len());
            Ok(bytes[start..stop].to_vec())
        }
    }

    /// `PUT` raw bytes to `path` (e.g. a provider's activation inbox).
    pub async fn put_bytes(&self, path: &str, bytes: Vec<u8>) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
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
        Self::decode(url, r).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: u64) -> Result<Value, ClientError> {
        self.get(&format!("/v1/jobs/{id}")).await
    }

    /// `GET /v1/providers/{address}/work`: the active jobs where `provider` holds a
    /// slot or an audit.
    pub async fn provider_work(&self, provider: &Address) -> Result<Value, ClientError> {
        self.get(&format!("/v1/providers/{}/work", hex::encode(&provider.0)))
            .await
    }

    /// The chain's current parameters (`/v1/params`).
    pub async fn params(&self) -> Result<Params, ClientError> {
        let p = self.get("/v1/params").await?;
        serde_json::from_value(p["params"].clone())
            .map_err(|e| ClientError::Unexpected(format!("params: {e} in {p}")))
    }

    /// The least fee the ledger accepts for a transaction with `body` under the chain's
    /// current parameters ([`Params::required_fee`]: `min_fee`, plus `fee_per_slot` for
    /// each replica and auditor slot a `SubmitJob` asks the ledger to match, plus
    /// `fee_per_kib` for each whole KiB of the body).
    pub async fn fee_for(&self, body: &TxBody) -> Result<Amount, ClientError> {
        Ok(self.params().await?.required_fee(body))
    }

    /// Signs `body` with `key` (the chain's id, the signer's next nonce, the fee the body
    /// requires: [`Client::fee_for`]), submits it, waits up to `timeout` for its
    /// receipt, and returns the receipt; a ledger rejection is
    /// [`ClientError::Rejected`]. One signer must not send two transactions at once
    /// through this (they would take the same nonce).
    pub async fn send(
        &self,
        key: &PrivateKey,
        body: TxBody,
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let st = self.status().await?;
        let chain_id = st["chain_id"]
            .as_u64()
            .ok_or_else(|| ClientError::Unexpected(format!("no chain_id in {st}")))?;
        let signer = Address::from(&key.public_key());
        let nonce = self.nonce(&signer).await?;
        let fee = self.fee_for(&body).await?;
        let kind = body.kind();
        let tx = SignedTx::sign(
            key,
            Tx {
                chain_id: ChainId(chain_id),
                nonce,
                fee,
                body,
            },
        );
        let id = self.submit(&tx).await?;
        let receipt = self.wait(&id, timeout).await?;
        if receipt["result"]["ok"] == true {
            Ok(receipt)
        } else {
            Err(ClientError::Rejected {
                kind,
                id,
                reason: receipt["result"]["error"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string(),
            })
        }
    }
}
