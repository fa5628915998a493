//! [`Client`]: one typed method per route of the node API (and of a provider's data
//! plane, which serves the same blob routes), returning the [`crate::api`] types.
//!
//! Errors keep the API's `code` ([`ClientError::Api`]) so callers can branch on it.

use std::time::Duration;

use agentic_protocol::params::Params;
use agentic_protocol::state::{Dispute, Job, Mandate, Proposal};
use agentic_protocol::{
    Address, Amount, ChainId, DisputeId, Hash, Height, JobId, MandateId, ProposalId, SignedTx, Tx,
    TxBody,
};
use commonware_cryptography::ed25519::PrivateKey;
use commonware_cryptography::Signer as _;
use futures::Stream;
use serde::de::DeserializeOwned;

use crate::api::{
    AccountView, ActivationStored, BlobStored, Block, BlockRange, Blocks, Disputes, ErrorBody,
    Event, Jobs, Offers, Page, ParamsView, Ping, Proposals, ProviderView, ProviderWork, Providers,
    SessionEvent, SessionInputs, SessionState, SessionStopping, Status, StopSession, SubmitTx,
    Submitted, TxReceipt, TxStatus, WithId,
};
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
    /// The answer is not the documented body of that route.
    #[error("unexpected answer from {url}: {detail}")]
    Decode {
        /// The URL.
        url: String,
        /// What did not parse.
        detail: String,
    },
    /// A blob's bytes do not hash to its name.
    #[error("blob {0} does not hash to its name")]
    BlobMismatch(Hash),
    /// The ledger finalized the transaction but rejected it.
    #[error("the ledger rejected {kind} {id}: {reason}")]
    Rejected {
        /// The transaction kind.
        kind: &'static str,
        /// Its id.
        id: Hash,
        /// The ledger's reason.
        reason: String,
        /// The same, typed (absent from nodes that do not send it).
        detail: Option<Box<agentic_protocol::TxError>>,
    },
    /// A transaction was not finalized in time.
    #[error("transaction {id} not finalized after {waited:?}")]
    Timeout {
        /// The transaction.
        id: Hash,
        /// How long we waited.
        waited: Duration,
    },
}

impl ClientError {
    /// Whether the node answered `404` (an unknown id, or a transaction not yet seen).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ClientError::Api { status: 404, .. })
    }
}

/// A node API client.
#[derive(Clone, Debug)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the node at `base` (e.g. `http://127.0.0.1:8001`; `http://` is
    /// added when no scheme is given, trailing slashes are dropped).
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
                .unwrap_or_default(),
        }
    }

    /// The base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send_req(
        url: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, ClientError> {
        req.send().await.map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })
    }

    /// The status and body of a 2xx answer; any other status as [`ClientError::Api`].
    async fn body_ok(url: &str, r: reqwest::Response) -> Result<(u16, bytes::Bytes), ClientError> {
        let status = r.status().as_u16();
        let bytes = r.bytes().await.map_err(|source| ClientError::Transport {
            url: url.to_string(),
            source,
        })?;
        if (200..300).contains(&status) {
            Ok((status, bytes))
        } else {
            Err(Self::api_error(status, &bytes))
        }
    }

    /// The body of a 2xx answer as `T`; any other status as [`ClientError::Api`].
    async fn decode<T: DeserializeOwned>(
        url: &str,
        r: reqwest::Response,
    ) -> Result<T, ClientError> {
        let (_, bytes) = Self::body_ok(url, r).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
            url: url.to_string(),
            detail: e.to_string(),
        })
    }

    fn api_error(status: u16, bytes: &[u8]) -> ClientError {
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(b) => ClientError::Api {
                status,
                code: b.error.code,
                message: b.error.message,
            },
            Err(_) => ClientError::Api {
                status,
                code: "unknown".into(),
                message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
            },
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let url = self.url(path);
        let r = Self::send_req(&url, self.http.get(&url)).await?;
        Self::decode(&url, r).await
    }

    async fn get_query<T: DeserializeOwned, Q: serde::Serialize>(
        &self,
        path: &str,
        query: &Q,
    ) -> Result<T, ClientError> {
        let url = self.url(path);
        let r = Self::send_req(&url, self.http.get(&url).query(query)).await?;
        Self::decode(&url, r).await
    }

    /// `GET /v1/status`.
    pub async fn status(&self) -> Result<Status, ClientError> {
        self.get("/v1/status").await
    }

    /// `GET /v1/accounts/{address}`.
    pub async fn account(&self, who: &Address) -> Result<AccountView, ClientError> {
        self.get(&format!("/v1/accounts/{}", who.to_hex())).await
    }

    /// The account's next nonce.
    pub async fn nonce(&self, who: &Address) -> Result<u64, ClientError> {
        Ok(self.account(who).await?.account.nonce)
    }

    /// `POST /v1/txs`: submits a signed transaction; returns its id.
    pub async fn submit(&self, tx: &SignedTx) -> Result<Hash, ClientError> {
        let url = self.url("/v1/txs");
        let body = SubmitTx {
            tx: hex::encode(&tx.to_bytes()),
        };
        let r = Self::send_req(&url, self.http.post(&url).json(&body)).await?;
        Ok(Self::decode::<Submitted>(&url, r).await?.id)
    }

    /// `GET /v1/txs/{id}`.
    pub async fn tx(&self, id: &Hash) -> Result<TxStatus, ClientError> {
        let url = self.url(&format!("/v1/txs/{}", id.to_hex()));
        let r = Self::send_req(&url, self.http.get(&url)).await?;
        let (_, bytes) = Self::body_ok(&url, r).await?;
        TxStatus::from_json(&bytes).map_err(|e| ClientError::Decode {
            url,
            detail: e.to_string(),
        })
    }

    /// Polls `/v1/txs/{id}` until the transaction is finalized; returns its receipt
    /// (whether or not the ledger applied it).
    pub async fn wait(&self, id: &Hash, timeout: Duration) -> Result<TxReceipt, ClientError> {
        let start = std::time::Instant::now();
        loop {
            match self.tx(id).await {
                Ok(TxStatus::Finalized(r)) => return Ok(r),
                Ok(TxStatus::Pending(_)) => {}
                // Not yet visible on this node (gossip in flight): keep polling.
                Err(e) if e.is_not_found() => {}
                Err(e) => return Err(e),
            }
            if start.elapsed() >= timeout {
                return Err(ClientError::Timeout {
                    id: *id,
                    waited: start.elapsed(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `GET /v1/providers`.
    pub async fn providers(&self) -> Result<Providers, ClientError> {
        self.get("/v1/providers").await
    }

    /// `GET /v1/providers/{address}`.
    pub async fn provider(&self, who: &Address) -> Result<ProviderView, ClientError> {
        self.get(&format!("/v1/providers/{}", who.to_hex())).await
    }

    /// `GET /v1/providers/{address}/work`: the active jobs where `provider` holds a
    /// slot or an audit, and its open disputes.
    pub async fn provider_work(&self, provider: &Address) -> Result<ProviderWork, ClientError> {
        self.get(&format!("/v1/providers/{}/work", provider.to_hex()))
            .await
    }

    /// `GET /v1/offers`.
    pub async fn offers(&self) -> Result<Offers, ClientError> {
        self.get("/v1/offers").await
    }

    /// `GET /v1/jobs?after=&limit=`.
    pub async fn jobs(&self, page: Page) -> Result<Jobs, ClientError> {
        self.get_query("/v1/jobs", &page).await
    }

    /// `GET /v1/jobs/{id}`.
    pub async fn job(&self, id: JobId) -> Result<Job, ClientError> {
        Ok(self
            .get::<WithId<Job>>(&format!("/v1/jobs/{}", id.0))
            .await?
            .item)
    }

    /// `GET /v1/disputes?after=&limit=`.
    pub async fn disputes(&self, page: Page) -> Result<Disputes, ClientError> {
        self.get_query("/v1/disputes", &page).await
    }

    /// `GET /v1/disputes/{id}`.
    pub async fn dispute(&self, id: DisputeId) -> Result<Dispute, ClientError> {
        Ok(self
            .get::<WithId<Dispute>>(&format!("/v1/disputes/{}", id.0))
            .await?
            .item)
    }

    /// `GET /v1/proposals?after=&limit=`.
    pub async fn proposals(&self, page: Page) -> Result<Proposals, ClientError> {
        self.get_query("/v1/proposals", &page).await
    }

    /// `GET /v1/proposals/{id}`.
    pub async fn proposal(&self, id: ProposalId) -> Result<Proposal, ClientError> {
        Ok(self
            .get::<WithId<Proposal>>(&format!("/v1/proposals/{}", id.0))
            .await?
            .item)
    }

    /// `GET /v1/mandates/{id}`.
    pub async fn mandate(&self, id: MandateId) -> Result<Mandate, ClientError> {
        Ok(self
            .get::<WithId<Mandate>>(&format!("/v1/mandates/{}", id.0))
            .await?
            .item)
    }

    /// `GET /v1/params` with the height it was read at.
    pub async fn params_view(&self) -> Result<ParamsView, ClientError> {
        self.get("/v1/params").await
    }

    /// The chain's current parameters (`/v1/params`).
    pub async fn params(&self) -> Result<Params, ClientError> {
        Ok(self.params_view().await?.params)
    }

    /// `GET /v1/blocks/latest`.
    pub async fn latest_block(&self) -> Result<Block, ClientError> {
        self.get("/v1/blocks/latest").await
    }

    /// `GET /v1/blocks/{height}`.
    pub async fn block(&self, height: Height) -> Result<Block, ClientError> {
        self.get(&format!("/v1/blocks/{}", height.0)).await
    }

    /// `GET /v1/blocks?from=&limit=`.
    pub async fn blocks(&self, range: BlockRange) -> Result<Blocks, ClientError> {
        self.get_query("/v1/blocks", &range).await
    }

    /// `GET /openapi.json`: the API's description (a JSON document, kept as one).
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.get("/openapi.json").await
    }

    /// `GET /metrics`: Prometheus text.
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let url = self.url("/metrics");
        let r = Self::send_req(&url, self.http.get(&url)).await?;
        let status = r.status().as_u16();
        let text = r.text().await.map_err(|source| ClientError::Transport {
            url: url.clone(),
            source,
        })?;
        if (200..300).contains(&status) {
            Ok(text)
        } else {
            Err(Self::api_error(status, text.as_bytes()))
        }
    }

    /// Follows `GET /v1/events` (server-sent events) from now on: each finalized
    /// block's ledger events, then the block. The stream ends when the node closes it;
    /// kinds this version does not know are skipped.
    pub async fn events(
        &self,
    ) -> Result<impl Stream<Item = Result<Event, ClientError>> + Send + 'static, ClientError> {
        self.open_events("/v1/events".to_string()).await
    }

    /// `GET /v1/events?from=H`: the stored blocks from `from` on (each block's ledger
    /// events, then the block), then live — a reader that saw `Block(h)` resumes with
    /// `from = h + 1` and misses nothing.
    pub async fn events_from(
        &self,
        from: Height,
    ) -> Result<impl Stream<Item = Result<Event, ClientError>> + Send + 'static, ClientError> {
        self.open_events(format!("/v1/events?from={}", from.0))
            .await
    }

    async fn open_events(
        &self,
        path: String,
    ) -> Result<impl Stream<Item = Result<Event, ClientError>> + Send + 'static, ClientError> {
        let url = self.url(&path);
        // No overall timeout: the stream lasts as long as the caller reads it.
        let http = reqwest::Client::new();
        let r = Self::send_req(&url, http.get(&url)).await?;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            let bytes = r.bytes().await.unwrap_or_default();
            return Err(Self::api_error(status, &bytes));
        }
        Ok(crate::sse::events(url, r))
    }

    /// Stores a blob (`PUT /v1/blobs/{hash}`); returns its hash.
    pub async fn put_blob(&self, bytes: Vec<u8>) -> Result<Hash, ClientError> {
        let hash = Hash(*blake3::hash(&bytes).as_bytes());
        self.put_blob_named(&hash, bytes).await?;
        Ok(hash)
    }

    /// Stores `bytes` under the name `hash` (`PUT /v1/blobs/{hash}`): the server
    /// refuses them (`422 hash_mismatch`) unless they hash to it.
    pub async fn put_blob_named(
        &self,
        hash: &Hash,
        bytes: Vec<u8>,
    ) -> Result<BlobStored, ClientError> {
        let url = self.url(&format!("/v1/blobs/{}", hash.to_hex()));
        let r = Self::send_req(&url, self.http.put(&url).body(bytes)).await?;
        Self::decode(&url, r).await
    }

    /// Fetches a blob and checks its hash.
    pub async fn get_blob(&self, hash: &Hash) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&format!("/v1/blobs/{}", hash.to_hex()));
        let r = Self::send_req(&url, self.http.get(&url)).await?;
        let (_, bytes) = Self::body_ok(&url, r).await?;
        if blake3::hash(&bytes).as_bytes() != &hash.0 {
            return Err(ClientError::BlobMismatch(*hash));
        }
        Ok(bytes.to_vec())
    }

    /// [`Client::get_blob`] of a blob expected to be at most `max` bytes: the body is read
    /// chunk by chunk and refused (`Decode`) past `max`, so a server cannot make the
    /// caller hold more.
    pub async fn get_blob_at_most(&self, hash: &Hash, max: u64) -> Result<Vec<u8>, ClientError> {
        let url = self.url(&format!("/v1/blobs/{}", hash.to_hex()));
        let mut r = Self::send_req(&url, self.http.get(&url)).await?;
        let status = r.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(ClientError::Api {
                status,
                code: "unknown".into(),
                message: format!("GET {url}"),
            });
        }
        let transport = |source| ClientError::Transport {
            url: url.clone(),
            source,
        };
        let mut out = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(transport)? {
            if (out.len() + chunk.len()) as u64 > max {
                return Err(ClientError::Decode {
                    url: url.clone(),
                    detail: format!("the blob is over the {max} bytes expected"),
                });
            }
            out.extend_from_slice(&chunk);
        }
        if blake3::hash(&out).as_bytes() != &hash.0 {
            return Err(ClientError::BlobMismatch(*hash));
        }
        Ok(out)
    }

    /// The blob's size if the server holds it (`HEAD`), `None` if not.
    pub async fn blob_size(&self, hash: &Hash) -> Result<Option<u64>, ClientError> {
        let url = self.url(&format!("/v1/blobs/{}", hash.to_hex()));
        let r = Self::send_req(&url, self.http.head(&url)).await?;
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
        let url = self.url(&format!("/v1/blobs/{}", hash.to_hex()));
        let end = offset.saturating_add(len.max(1)) - 1;
        let req = self
            .http
            .get(&url)
            .header(reqwest::header::RANGE, format!("bytes={offset}-{end}"));
        let r = Self::send_req(&url, req).await?;
        let (status, bytes) = Self::body_ok(&url, r).await?;
        if status == 206 {
            Ok(bytes.to_vec())
        } else {
            // A server without range support sent the whole blob.
            let start = (offset as usize).min(bytes.len());
            let stop = (end as usize).saturating_add(1).min(bytes.len());
            Ok(bytes[start..stop].to_vec())
        }
    }

    /// A provider data plane's `GET /v1/sessions/{job}/transcript`: where the token
    /// stream of a generation session it ends stands.
    pub async fn session_state(&self, job: JobId) -> Result<SessionState, ClientError> {
        self.get(&format!("/v1/sessions/{}/transcript", job.0))
            .await
    }

    /// A provider data plane's `GET /v1/sessions/{job}/inputs/{stage}`: the blob of the
    /// input rows that stage received in `job`'s session, if the provider ran it.
    pub async fn session_inputs(
        &self,
        job: JobId,
        stage: u32,
    ) -> Result<SessionInputs, ClientError> {
        self.get(&format!("/v1/sessions/{}/inputs/{stage}", job.0))
            .await
    }

    /// A provider data plane's `POST /v1/sessions/{job}/stop`, signed with `key` (the
    /// job's requester's): the session, whose last stage this provider holds, stops
    /// after the token being sampled, and every stage bills the steps it ran.
    pub async fn stop_session(
        &self,
        job: JobId,
        key: &PrivateKey,
    ) -> Result<SessionStopping, ClientError> {
        use commonware_codec::Encode as _;
        let sig = key.sign(
            crate::api::SESSION_STOP_NAMESPACE,
            &crate::api::session_stop_message(job),
        );
        let url = self.url(&format!("/v1/sessions/{}/stop", job.0));
        let body = StopSession {
            signature: hex::encode(&sig.encode()),
        };
        let r = Self::send_req(&url, self.http.post(&url).json(&body)).await?;
        Self::decode::<SessionStopping>(&url, r).await
    }

    /// A provider data plane's `GET /v1/sessions/{job}/tokens?from=K`: the tokens of a
    /// generation session it ends, from index `from`, as they are sampled, then its
    /// end (or abort). No overall timeout: it lasts as long as the session.
    pub async fn session_tokens(
        &self,
        job: JobId,
        from: u32,
    ) -> Result<impl Stream<Item = Result<SessionEvent, ClientError>> + Send + 'static, ClientError>
    {
        let url = self.url(&format!("/v1/sessions/{}/tokens?from={from}", job.0));
        let http = reqwest::Client::new();
        let r = Self::send_req(&url, http.get(&url)).await?;
        if !r.status().is_success() {
            let status = r.status().as_u16();
            let bytes = r.bytes().await.unwrap_or_default();
            return Err(Self::api_error(status, &bytes));
        }
        Ok(crate::sse::session_events(url, r))
    }

    /// A provider data plane's `GET /v1/ping`.
    pub async fn ping(&self) -> Result<Ping, ClientError> {
        self.get("/v1/ping").await
    }

    /// Pushes an activation to a provider's data plane:
    /// `PUT /v1/activations/{job}/{stage}`.
    pub async fn push_activation(
        &self,
        job: JobId,
        stage: u32,
        bytes: Vec<u8>,
    ) -> Result<ActivationStored, ClientError> {
        let url = self.url(&format!("/v1/activations/{}/{stage}", job.0));
        let r = Self::send_req(&url, self.http.put(&url).body(bytes)).await?;
        Self::decode(&url, r).await
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
    ) -> Result<TxReceipt, ClientError> {
        let chain_id: ChainId = self.status().await?.chain_id;
        let signer = Address::from(&key.public_key());
        let nonce = self.nonce(&signer).await?;
        let fee = self.fee_for(&body).await?;
        let kind = body.kind();
        let tx = SignedTx::sign(
            key,
            Tx {
                chain_id,
                nonce,
                fee,
                body,
            },
        );
        let id = self.submit(&tx).await?;
        let receipt = self.wait(&id, timeout).await?;
        if receipt.result.ok {
            Ok(receipt)
        } else {
            Err(ClientError::Rejected {
                kind,
                id,
                reason: receipt
                    .result
                    .error
                    .clone()
                    .unwrap_or_else(|| "unknown".into()),
                detail: receipt.result.detail.clone().map(Box::new),
            })
        }
    }
}
