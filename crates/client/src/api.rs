//! The node API's bodies, written once: the node's handlers build these, its OpenAPI
//! document is checked against them (`crates/node/tests/api.rs`), and [`crate::Client`]
//! returns them — no caller re-parses JSON by hand.
//!
//! Conventions (the same on every route): hashes and addresses are lowercase hex,
//! amounts decimal strings, ids and heights JSON integers; an entity fetched by id
//! carries its `id` next to the ledger's own fields ([`WithId`]); every list carries the
//! `height` it was read at; every error is [`ErrorBody`].

use agentic_protocol::event::EventRecord;
use agentic_protocol::params::Params;
use agentic_protocol::state::{Account, Dispute, Job, Proposal, Provider};
use agentic_protocol::tx::Offer;
use agentic_protocol::{Address, Amount, ChainId, Hash, Height, JobId, TxError};
use serde::{Deserialize, Serialize};

/// A ledger entity with the id it is stored under (`/v1/jobs/{id}` and the lists).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithId<T> {
    /// The entity's id (a job, dispute, proposal or mandate number).
    pub id: u64,
    /// The ledger's fields.
    #[serde(flatten)]
    pub item: T,
}

/// `GET /v1/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The chain's id (transactions name it).
    pub chain_id: ChainId,
    /// The last finalized height.
    pub height: Height,
    /// The ledger's state root after it.
    pub state_root: Hash,
    /// The last finalized block, if any.
    pub latest_block: Option<Block>,
    /// What waits in the mempool.
    pub mempool: MempoolSize,
    /// The node's software version.
    pub version: String,
    /// Where the token supply stands after `height`.
    pub supply: Supply,
    /// The validator set this node runs consensus with: ed25519 public keys, hex, in
    /// consensus order (empty where the node was started without one, as in tests that
    /// serve a chain without consensus).
    pub validators: Vec<String>,
}

/// The token supply, from the ledger's own counters (`Meta`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Supply {
    /// Created at genesis.
    pub genesis: Amount,
    /// Minted since genesis (issuance to the treasury).
    pub issued: Amount,
    /// Burned since genesis (fees, slash remainders, forfeited bonds).
    pub burned: Amount,
    /// In existence: genesis + issued − burned.
    pub total: Amount,
    /// Bonded as stake by every account.
    pub bonded: Amount,
}

/// The mempool's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MempoolSize {
    /// Transactions.
    pub txs: u64,
    /// Their encoded bytes.
    pub bytes: u64,
}

/// `POST /v1/txs`'s body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitTx {
    /// The signed transaction's bytes, hex.
    pub tx: String,
}

/// `POST /v1/txs`'s answer (202): the transaction is pooled.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Submitted {
    /// The transaction id.
    pub id: Hash,
    /// Always `pending`.
    pub status: TxPhase,
}

/// Where a transaction is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxPhase {
    /// In the mempool.
    Pending,
    /// In a finalized block (the receipt says whether it succeeded).
    Finalized,
}

/// `GET /v1/txs/{id}`: a receipt, or `pending` while the transaction waits in the
/// mempool. Read by its `status` field first ([`TxStatus::from_json`]): serde's
/// buffered (untagged) enums cannot hold the `u128`s a receipt may carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum TxStatus {
    /// Finalized (`status: "finalized"`), with what it did.
    Finalized(TxReceipt),
    /// Pooled, not yet in a finalized block (`status: "pending"`).
    Pending(Submitted),
}

impl TxStatus {
    /// Parses the body of `/v1/txs/{id}`: its `status` first, then the whole as that
    /// variant.
    pub fn from_json(bytes: &[u8]) -> Result<TxStatus, serde_json::Error> {
        #[derive(Deserialize)]
        struct Phase {
            status: TxPhase,
        }
        Ok(match serde_json::from_slice::<Phase>(bytes)?.status {
            TxPhase::Finalized => TxStatus::Finalized(serde_json::from_slice(bytes)?),
            TxPhase::Pending => TxStatus::Pending(serde_json::from_slice(bytes)?),
        })
    }
}

/// A finalized transaction's receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxReceipt {
    /// The transaction id.
    pub id: Hash,
    /// Always `finalized`.
    pub status: TxPhase,
    /// The block it landed in.
    pub height: Height,
    /// Its index in the block.
    pub index: u32,
    /// Success, or why the ledger refused it (a refused transaction changes nothing
    /// but its fee and nonce).
    pub result: TxOutcome,
    /// The events it caused, in order.
    pub events: Vec<EventRecord>,
}

/// A receipt's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxOutcome {
    /// Whether the ledger applied it.
    pub ok: bool,
    /// The ledger's reason, readable (when `ok` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The same reason, typed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<TxError>,
}

impl TxOutcome {
    /// The outcome of a ledger result.
    pub fn of(r: &Result<(), TxError>) -> TxOutcome {
        match r {
            Ok(()) => TxOutcome {
                ok: true,
                error: None,
                detail: None,
            },
            Err(e) => TxOutcome {
                ok: false,
                error: Some(e.to_string()),
                detail: Some(e.clone()),
            },
        }
    }
}

/// `GET /v1/accounts/{address}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountView {
    /// The account.
    pub address: Address,
    /// The height read at.
    pub height: Height,
    /// Whether it is a registered provider.
    pub is_provider: bool,
    /// Balance, nonce, bonded, withdrawable.
    #[serde(flatten)]
    pub account: Account,
}

/// A provider as `/v1/providers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderView {
    /// Its address.
    pub address: Address,
    /// Its reputation in parts per million.
    pub reputation_ppm: u32,
    /// Its bonded stake.
    pub bonded: Amount,
    /// The ledger's record.
    #[serde(flatten)]
    pub provider: Provider,
}

/// `GET /v1/providers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Providers {
    /// The height read at.
    pub height: Height,
    /// Registered providers, by address.
    pub providers: Vec<ProviderView>,
}

/// `GET /v1/providers/{address}/work`: what a provider daemon follows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderWork {
    /// The height read at.
    pub height: Height,
    /// Jobs where it holds a replica slot or an open audit, by id.
    pub jobs: Vec<WithId<Job>>,
    /// Open disputes it is a party to, by id.
    pub disputes: Vec<WithId<Dispute>>,
}

/// An active provider's offer as `/v1/offers` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferView {
    /// The provider.
    pub provider: Address,
    /// What it sells and at what price.
    pub offer: Offer,
    /// Its reputation in parts per million.
    pub reputation_ppm: u32,
    /// Its bonded stake.
    pub bonded: Amount,
    /// Job slots it holds now.
    pub open_jobs: u32,
}

/// `GET /v1/offers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offers {
    /// The height read at.
    pub height: Height,
    /// Active providers' offers, by address.
    pub offers: Vec<OfferView>,
}

/// `GET /v1/jobs` (paged by `after` and `limit`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jobs {
    /// The height read at.
    pub height: Height,
    /// Jobs, ids ascending.
    pub jobs: Vec<WithId<Job>>,
}

/// `GET /v1/disputes` (paged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disputes {
    /// The height read at.
    pub height: Height,
    /// Disputes, ids ascending.
    pub disputes: Vec<WithId<Dispute>>,
}

/// `GET /v1/proposals` (paged).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposals {
    /// The height read at.
    pub height: Height,
    /// Proposals, ids ascending.
    pub proposals: Vec<WithId<Proposal>>,
}

/// `after` and `limit` of the paged lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Only ids greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<u64>,
    /// At most this many (the node caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `GET /v1/params`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamsView {
    /// The height read at.
    pub height: Height,
    /// The parameters in force.
    pub params: Params,
}

/// A finalized block (`/v1/blocks/…` and the `block` event).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// Its height.
    pub height: Height,
    /// The consensus digest, hex.
    pub digest: Hash,
    /// The consensus view it was finalized in.
    pub view: u64,
    /// The proposer's timestamp (ms since the epoch).
    pub timestamp_ms: u64,
    /// The block's randomness (from the threshold signature), hex.
    pub beacon: Hash,
    /// The ledger's state root after it.
    pub state_root: Hash,
    /// Its transaction ids, in order.
    pub txs: Vec<Hash>,
    /// How many of them succeeded.
    pub succeeded: u32,
}

/// `GET /v1/blocks?from=&limit=`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocks {
    /// The finalized height.
    pub height: Height,
    /// Blocks, heights ascending.
    pub blocks: Vec<Block>,
}

/// `from` and `limit` of `/v1/blocks`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockRange {
    /// The first height (default: the last `limit` blocks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<u64>,
    /// At most this many (the node caps it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// The `ledger` event of `/v1/events`: something the ledger did in a block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEvent {
    /// The block.
    pub height: Height,
    /// The index of the transaction that caused it (none for per-block steps).
    pub tx: Option<u32>,
    /// The event.
    pub event: agentic_protocol::event::Event,
}

impl LedgerEvent {
    /// The event with its transaction index, as a receipt lists it.
    pub fn record(&self) -> EventRecord {
        EventRecord {
            tx: self.tx,
            event: self.event.clone(),
        }
    }
}

/// One item of `/v1/events` (server-sent events; the SSE `event:` field is the kind).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// `block`: a block was finalized and applied.
    Block(Block),
    /// `ledger`: one ledger event of a finalized block.
    Ledger(LedgerEvent),
    /// `lagged`: the reader fell behind and this many items were dropped.
    Lagged {
        /// How many.
        missed: u64,
    },
}

impl Event {
    /// The SSE event name.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Block(_) => "block",
            Event::Ledger(_) => "ledger",
            Event::Lagged { .. } => "lagged",
        }
    }

    /// The SSE data line.
    pub fn data(&self) -> String {
        let v = match self {
            Event::Block(b) => serde_json::to_string(b),
            Event::Ledger(e) => serde_json::to_string(e),
            Event::Lagged { missed } => Ok(format!("{{\"missed\":{missed}}}")),
        };
        v.unwrap_or_default()
    }

    /// Parses one SSE item; `None` for kinds this version does not know.
    pub fn parse(kind: &str, data: &str) -> Result<Option<Event>, serde_json::Error> {
        #[derive(Deserialize)]
        struct Lagged {
            missed: u64,
        }
        Ok(Some(match kind {
            "block" => Event::Block(serde_json::from_str(data)?),
            "ledger" => Event::Ledger(serde_json::from_str(data)?),
            "lagged" => Event::Lagged {
                missed: serde_json::from_str::<Lagged>(data)?.missed,
            },
            _ => return Ok(None),
        }))
    }
}

/// `PUT /v1/blobs/{hash}`'s answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobStored {
    /// The blob's blake3 hash.
    pub hash: Hash,
    /// Its size in bytes.
    pub size: u64,
    /// Whether it was new (201) or already held (200).
    pub new: bool,
}

/// Every error's body: `{"error": {"code": "...", "message": "..."}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// A stable machine-readable code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// E.g. `not_found`, `bad_hash`, `fee_too_low`.
    pub code: String,
    /// What went wrong.
    pub message: String,
}

/// An API error as the servers (the node, a provider's data plane) answer it: HTTP
/// status plus [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: axum::http::StatusCode,
    /// The stable code.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(
        status: axum::http::StatusCode,
        code: &'static str,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// `404 not_found`: "no such {what}".
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            format!("no such {what}"),
        )
    }

    /// `400` with this code.
    pub fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(axum::http::StatusCode::BAD_REQUEST, code, message)
    }

    /// The body it is sent with.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
            },
        }
    }
}

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> axum::response::Response {
        (self.status, axum::Json(self.body())).into_response()
    }
}

impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> ApiError {
        let status = r.status();
        if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "body_too_large", r.body_text())
        } else {
            ApiError::new(status, "bad_body", r.body_text())
        }
    }
}

/// Parses a `{hash}` path segment (64 hex digits).
pub fn parse_hash_param(s: &str) -> Result<Hash, ApiError> {
    s.parse::<Hash>()
        .map_err(|_| ApiError::bad("bad_hash", format!("not 64 hex digits: {s:?}")))
}

/// Parses an `{address}` path segment (64 hex digits).
pub fn parse_address_param(s: &str) -> Result<Address, ApiError> {
    s.parse::<Address>()
        .map_err(|_| ApiError::bad("bad_address", format!("not 64 hex digits: {s:?}")))
}

/// A provider data plane's `GET /v1/ping`: who answers and where it places itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// The provider's address.
    pub address: Address,
    /// Its network coordinate.
    pub coord: agentic_protocol::coord::Coord,
    /// Its coordinate's relative error estimate (ppm).
    pub error_ppm: u32,
}

/// A generation session's token stream, as its last stage's data plane holds it
/// (`GET /v1/sessions/{job}/transcript`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// The tokens sampled so far, in order.
    pub tokens: Vec<u32>,
    /// Set when the session ended.
    pub end: Option<SessionEnd>,
    /// Set when the session was aborted: why.
    pub aborted: Option<String>,
}

/// The namespace of a requester's signature that stops its generation session early
/// ([`session_stop_message`]).
pub const SESSION_STOP_NAMESPACE: &[u8] = b"_AGENTIC_SESSION_STOP";

/// What a job's requester signs (under [`SESSION_STOP_NAMESPACE`]) to stop its
/// generation session after the token being sampled: the job id, big-endian. A
/// signature stops that job's session only; sending it again changes nothing.
pub fn session_stop_message(job: JobId) -> Vec<u8> {
    job.0.to_be_bytes().to_vec()
}

/// `POST /v1/sessions/{job}/stop`: the requester's signature over
/// [`session_stop_message`], hex.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopSession {
    /// Ed25519 signature, hex.
    pub signature: String,
}

/// The answer to [`StopSession`]: the session stops after its next token (its last
/// stage marks that token the last); `tokens` had been sampled when the stop arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionStopping {
    /// The job.
    pub job: JobId,
    /// Tokens sampled when the stop arrived.
    pub tokens: u32,
}

/// How a generation session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// Steps every stage computed (= tokens generated).
    pub steps: u32,
    /// The hash of the token transcript: the last stage's committed output, and the
    /// blob it publishes under that name.
    pub transcript: Hash,
}

/// One event of `GET /v1/sessions/{job}/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum SessionEvent {
    /// Token number `index` (0-based) of the generation.
    Token {
        /// Its position among the generated tokens.
        index: u32,
        /// The token id.
        token: u32,
    },
    /// The session ended.
    End(SessionEnd),
    /// The session was aborted.
    Abort {
        /// Why.
        reason: String,
    },
}

impl SessionEvent {
    /// Parses one server-sent event of a session's token stream (`None`: a kind this
    /// version does not know).
    pub fn parse(kind: &str, data: &str) -> Result<Option<SessionEvent>, serde_json::Error> {
        #[derive(Deserialize)]
        struct Token {
            index: u32,
            token: u32,
        }
        #[derive(Deserialize)]
        struct Abort {
            reason: String,
        }
        Ok(Some(match kind {
            "token" => {
                let t: Token = serde_json::from_str(data)?;
                SessionEvent::Token {
                    index: t.index,
                    token: t.token,
                }
            }
            "end" => SessionEvent::End(serde_json::from_str(data)?),
            "abort" => SessionEvent::Abort {
                reason: serde_json::from_str::<Abort>(data)?.reason,
            },
            _ => return Ok(None),
        }))
    }
}

/// A provider data plane's answer to `GET /v1/sessions/{job}/inputs/{stage}`: the blob
/// of the input rows the stage received in the session (fetch it with `GET
/// /v1/blobs/{blob}`), what its auditor replays from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInputs {
    pub job: agentic_protocol::JobId,
    pub stage: u32,
    pub blob: Hash,
}

/// A provider data plane's answer to `PUT /v1/activations/{job}/{stage}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationStored {
    /// The activation's blake3 hash.
    pub hash: Hash,
    /// The job.
    pub job: agentic_protocol::JobId,
    /// The stage it is input to.
    pub stage: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::reputation::Reputation;
    use agentic_protocol::types::{Capabilities, Endpoint, Region};

    /// Every body that flattens a ledger entity reads back what it wrote, with values
    /// past 2^64 (serde's flatten buffers fields and cannot hold a `u128` number).
    #[test]
    fn flattened_bodies_round_trip_with_large_values() {
        let provider = Provider {
            offer: Offer {
                capabilities: Capabilities(3),
                price: Amount(u128::MAX),
                region: Region(276),
                coord: agentic_protocol::coord::Coord::new(-5, 7, 9),
                capacity: 2,
                endpoint: Endpoint("127.0.0.1:9000".into()),
                speed: 1 << 40,
            },
            registered_at: Height(12),
            active: 1,
            open: 2,
            retired: false,
            reputation: Reputation {
                success: u128::MAX - 1,
                failure: (u64::MAX as u128) + 7,
                last_height: 11,
            },
        };
        let view = ProviderView {
            address: Address([4; 32]),
            reputation_ppm: 990_000,
            bonded: Amount(u128::MAX),
            provider,
        };
        let json = serde_json::to_string(&view).unwrap();
        assert_eq!(serde_json::from_str::<ProviderView>(&json).unwrap(), view);
        let account = AccountView {
            address: Address([5; 32]),
            height: Height(3),
            is_provider: true,
            account: Account {
                balance: Amount(u128::MAX),
                nonce: 9,
                bonded: Amount(1),
                withdrawable: Amount(2),
            },
        };
        let json = serde_json::to_string(&account).unwrap();
        assert_eq!(serde_json::from_str::<AccountView>(&json).unwrap(), account);
    }

    /// A receipt carrying `u128`s (a proposal's value, a refused range) reads back as
    /// finalized — an untagged read of it failed and fell through to `pending`.
    #[test]
    fn receipts_with_large_values_read_back_as_finalized() {
        use agentic_protocol::params::{ParamChange, ParamError, ParamKey};
        use agentic_protocol::{Event, ProposalId};
        let change = ParamChange {
            key: ParamKey::ChallengeWindow,
            value: u128::MAX,
        };
        let refused = TxError::InvalidParam(ParamError::OutOfRange {
            key: ParamKey::ChallengeWindow,
            value: u128::MAX,
            lo: 1,
            hi: 1 << 70,
        });
        let receipt = TxStatus::Finalized(TxReceipt {
            id: Hash([1; 32]),
            status: TxPhase::Finalized,
            height: Height(4),
            index: 0,
            result: TxOutcome::of(&Err(refused)),
            events: vec![EventRecord {
                tx: Some(0),
                event: Event::ProposalSubmitted {
                    proposal: ProposalId(1),
                    change,
                    voting_ends: Height(9),
                },
            }],
        });
        let json = serde_json::to_vec(&receipt).unwrap();
        assert_eq!(TxStatus::from_json(&json).unwrap(), receipt);
        let pending = TxStatus::Pending(Submitted {
            id: Hash([2; 32]),
            status: TxPhase::Pending,
        });
        let json = serde_json::to_vec(&pending).unwrap();
        assert_eq!(TxStatus::from_json(&json).unwrap(), pending);
    }
}
