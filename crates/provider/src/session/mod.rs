//! Generation sessions: the providers of a generation job's stages run it together,
//! token by token, over direct links, and the chain sees only the start (the job) and
//! the end (each stage's commitment to its trace).
//!
//! ```text
//!  requester ◀── SSE /v1/sessions/{job}/tokens ── last stage
//!                                                      │ Token(t)
//!  stage 0 ──Rows(t)──▶ stage 1 ──Rows(t)──▶ … ──▶ last stage (samples)
//!     ▲                                                │
//!     └──────────────────── Token(t) ──────────────────┘   (the input of step t + 1)
//! ```
//!
//! * [`link`]: one persistent TCP link per neighbour pair, an HTTP upgrade on the
//!   receiver's data plane, authenticated both ways with the providers' keys.
//! * [`frame`]: what travels on it (rows, tokens, the end, an abort), every length
//!   bounded before allocation.
//! * [`run`]: one stage's part: the KV cache of its layers, a step per frame, the
//!   sampler on the last stage; it ends with the stage's trace over (step, layer)
//!   leaves and the [`StageResult`](agentic_protocol::tx::StageResult) to commit.
//! * [`Sessions`]: what the data plane shares with the running sessions: links
//!   accepted and waiting for their session, and the token feed of each session this
//!   provider ends (the requester's stream and the auditors' transcript).

pub mod frame;
pub mod link;
pub mod run;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentic_protocol::JobId;
use commonware_cryptography::ed25519::PrivateKey;
use tokio::io::AsyncRead;
use tokio::sync::{watch, Notify};

pub use link::Hello;

/// An accepted link's read half, boxed (the upgraded connection's type is hyper's).
pub type LinkReader = Box<dyn AsyncRead + Send + Unpin>;

/// How long an accepted link waits for its session to take it.
pub const LINK_TTL: Duration = Duration::from_secs(600);

pub use agentic_client::api::{SessionEnd as FeedEnd, SessionState as FeedState};

/// The token stream of one session: written by its last stage, read by any number of
/// subscribers, each from any index.
#[derive(Debug)]
pub struct TokenFeed {
    state: watch::Sender<FeedState>,
}

impl Default for TokenFeed {
    fn default() -> Self {
        TokenFeed {
            state: watch::Sender::new(FeedState::default()),
        }
    }
}

impl TokenFeed {
    /// Appends a token.
    pub fn push(&self, token: u32) {
        self.state.send_modify(|s| s.tokens.push(token));
    }

    /// Marks the session ended.
    pub fn end(&self, end: FeedEnd) {
        self.state.send_modify(|s| s.end = Some(end));
    }

    /// Marks the session aborted.
    pub fn abort(&self, why: String) {
        self.state.send_modify(|s| s.aborted = Some(why));
    }

    /// The state now.
    pub fn snapshot(&self) -> FeedState {
        self.state.borrow().clone()
    }

    /// A receiver woken at every change.
    pub fn subscribe(&self) -> watch::Receiver<FeedState> {
        self.state.subscribe()
    }
}

/// A link accepted by the data plane, waiting for its session.
struct Pending {
    hello: Hello,
    reader: LinkReader,
    at: std::time::Instant,
}

/// What the data plane and the running sessions share.
pub struct Sessions {
    key: PrivateKey,
    links: Mutex<BTreeMap<(JobId, u32, u32), Pending>>,
    arrived: Notify,
    feeds: Mutex<BTreeMap<JobId, Arc<TokenFeed>>>,
}

impl Sessions {
    /// The registry of a provider holding `key`.
    pub fn new(key: PrivateKey) -> Sessions {
        Sessions {
            key,
            links: Mutex::default(),
            arrived: Notify::new(),
            feeds: Mutex::default(),
        }
    }

    /// The provider's key (the listener signs the handshake with it).
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Files a link whose handshake passed, for the session of `hello.job` at stage
    /// `hello.to` to take.
    pub fn file(&self, hello: Hello, reader: LinkReader) {
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|_, p| p.at.elapsed() < LINK_TTL);
        links.insert(
            (hello.job, hello.to, hello.from),
            Pending {
                hello,
                reader,
                at: std::time::Instant::now(),
            },
        );
        drop(links);
        self.arrived.notify_waiters();
    }

    /// Waits up to `patience` for the link into stage `to` of `job` from stage `from`.
    pub async fn take(
        &self,
        job: JobId,
        to: u32,
        from: u32,
        patience: Duration,
    ) -> Option<(Hello, LinkReader)> {
        let until = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.arrived.notified();
            if let Some(p) = self
                .links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(job, to, from))
            {
                return Some((p.hello, p.reader));
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return None;
            }
        }
    }

    /// The token feed of `job` (created on first use: a subscriber may come before
    /// the session starts).
    pub fn feed(&self, job: JobId) -> Arc<TokenFeed> {
        self.feeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(job)
            .or_default()
            .clone()
    }

    /// The token feed of `job`, if anyone asked for it or a session writes it.
    pub fn existing_feed(&self, job: JobId) -> Option<Arc<TokenFeed>> {
        self.feeds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job)
            .cloned()
    }
}
