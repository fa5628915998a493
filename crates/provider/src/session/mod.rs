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
//! * [`Sessions`]: what the data plane, the daemon and the running sessions share:
//!   links accepted and waiting for their session, the token feed of each session this
//!   provider ends (the requester's stream and the auditors' transcript), each
//!   session's line-up (the daemon publishes it from the chain; a replaced stage
//!   changes it) and the faults the sessions saw (the daemon reports them on chain
//!   with `ReplaceStage`).

pub mod frame;
pub mod link;
pub mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentic_protocol::{Address, JobId};
use commonware_cryptography::ed25519::PrivateKey;
use tokio::io::AsyncRead;
use tokio::sync::{watch, Notify};

pub use link::Hello;
use run::Peer;

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

    /// Brings the feed up to `tokens` (a transcript it is a prefix of): a replacement
    /// last stage starts its feed with the tokens sampled before it joined.
    pub fn extend_to(&self, tokens: &[u32]) {
        self.state.send_if_modified(|s| {
            let n = s.tokens.len();
            if n < tokens.len() {
                s.tokens.extend_from_slice(&tokens[n..]);
                true
            } else {
                false
            }
        });
    }

    /// Marks the session ended.
    pub fn end(&self, end: FeedEnd) {
        self.state.send_modify(|s| s.end = Some(end));
    }

    /// A session (again) writes the feed: an earlier abort no longer stands (the tokens
    /// stay: a session's tokens are the same in every run).
    pub fn reopen(&self) {
        self.state.send_if_modified(|s| s.aborted.take().is_some());
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

/// A waiting link's key: (job, receiving stage, sending stage, line-up id).
type LinkKey = (JobId, u32, u32, [u8; 32]);

/// A session's line-up: every stage's provider and endpoint, as the chain assigns them.
pub type Lineup = Arc<Vec<Peer>>;

/// What the data plane, the daemon and the running sessions share.
pub struct Sessions {
    key: PrivateKey,
    links: Mutex<BTreeMap<LinkKey, Pending>>,
    arrived: Notify,
    feeds: Mutex<BTreeMap<JobId, Arc<TokenFeed>>>,
    lineups: Mutex<BTreeMap<JobId, watch::Sender<Lineup>>>,
    faults: Mutex<BTreeSet<(JobId, u32, Address)>>,
    closed: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sessions {
    /// The registry of a provider holding `key`.
    pub fn new(key: PrivateKey) -> Sessions {
        Sessions {
            key,
            links: Mutex::default(),
            arrived: Notify::new(),
            feeds: Mutex::default(),
            lineups: Mutex::default(),
            faults: Mutex::default(),
            closed: AtomicBool::new(false),
        }
    }

    /// The line-up of `job`'s session, starting from `initial` if nobody published one.
    pub fn lineup(&self, job: JobId, initial: Vec<Peer>) -> watch::Receiver<Lineup> {
        lock(&self.lineups)
            .entry(job)
            .or_insert_with(|| watch::Sender::new(Arc::new(initial)))
            .subscribe()
    }

    /// The jobs whose sessions run here, with their line-ups.
    pub fn lineups(&self) -> Vec<(JobId, Lineup)> {
        lock(&self.lineups)
            .iter()
            .map(|(j, tx)| (*j, tx.borrow().clone()))
            .collect()
    }

    /// Publishes `job`'s new line-up to its running session (if it runs and the line-up
    /// changed).
    pub fn set_lineup(&self, job: JobId, peers: Vec<Peer>) {
        if let Some(tx) = lock(&self.lineups).get(&job) {
            tx.send_if_modified(|cur| {
                let same = cur.len() == peers.len()
                    && cur
                        .iter()
                        .zip(&peers)
                        .all(|(a, b)| a.provider == b.provider && a.endpoint == b.endpoint);
                if !same {
                    *cur = Arc::new(peers);
                }
                !same
            });
        }
    }

    /// A session of `job` ended here: its line-up and faults are forgotten.
    pub fn finish(&self, job: JobId) {
        lock(&self.lineups).remove(&job);
        lock(&self.faults).retain(|f| f.0 != job);
    }

    /// A session saw stage `stage`'s provider `provider` drop out.
    pub fn report_fault(&self, job: JobId, stage: u32, provider: Address) {
        lock(&self.faults).insert((job, stage, provider));
    }

    /// The faults reported and not finished.
    pub fn faults(&self) -> Vec<(JobId, u32, Address)> {
        lock(&self.faults).iter().copied().collect()
    }

    /// The provider stops (a crash or a shutdown): every feed ends as aborted (its
    /// subscribers' streams end), waiting links are dropped, and no link is filed again.
    pub fn shutdown(&self) {
        self.closed.store(true, Ordering::SeqCst);
        lock(&self.links).clear();
        lock(&self.lineups).clear();
        for f in lock(&self.feeds).values() {
            f.abort("the provider stopped".into());
        }
    }

    /// Whether [`Sessions::shutdown`] ran.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// The provider's key (the listener signs the handshake with it).
    pub fn key(&self) -> &PrivateKey {
        &self.key
    }

    /// Files a link whose handshake passed, for the session of `hello.job` at stage
    /// `hello.to` to take.
    pub fn file(&self, hello: Hello, reader: LinkReader) {
        if self.is_closed() {
            return;
        }
        let mut links = self.links.lock().unwrap_or_else(|e| e.into_inner());
        links.retain(|_, p| p.at.elapsed() < LINK_TTL);
        links.insert(
            (hello.job, hello.to, hello.from, hello.epoch),
            Pending {
                hello,
                reader,
                at: std::time::Instant::now(),
            },
        );
        drop(links);
        self.arrived.notify_waiters();
    }

    /// Waits up to `patience` for the link into stage `to` of `job` from stage `from`,
    /// opened under line-up `epoch`.
    pub async fn take(
        &self,
        job: JobId,
        (from, to): (u32, u32),
        epoch: [u8; 32],
        patience: Duration,
    ) -> Option<(Hello, LinkReader)> {
        let until = tokio::time::Instant::now() + patience;
        loop {
            let notified = self.arrived.notified();
            if let Some(p) = self
                .links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&(job, to, from, epoch))
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
