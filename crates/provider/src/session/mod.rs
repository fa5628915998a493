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

use agentic_protocol::{Address, Hash, JobId};
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
    /// The job's requester, once a session writes the feed: who may stop it.
    requester: Mutex<Option<Address>>,
    /// Set by the requester's signed stop: the next token sampled is the last.
    stop: AtomicBool,
}

impl Default for TokenFeed {
    fn default() -> Self {
        TokenFeed {
            state: watch::Sender::new(FeedState::default()),
            requester: Mutex::new(None),
            stop: AtomicBool::new(false),
        }
    }
}

/// Why a request to stop a session early was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StopError {
    /// No session writes this feed here (yet): nobody to stop.
    #[error("no session of this job runs its last stage here")]
    NoSession,
    /// Not an ed25519 signature by the job's requester over the job.
    #[error("the signature is not the job's requester's over the job")]
    BadSignature,
}

impl TokenFeed {
    /// The session writing the feed belongs to `requester`'s job.
    pub fn set_requester(&self, requester: Address) {
        *lock(&self.requester) = Some(requester);
    }

    /// Stops the session after the token being sampled, if `signature` is the job's
    /// requester's over [`agentic_client::api::session_stop_message`]`(job)`. Returns the
    /// tokens sampled so far.
    pub fn request_stop(&self, job: JobId, signature: &[u8]) -> Result<u32, StopError> {
        use commonware_codec::DecodeExt as _;
        use commonware_cryptography::ed25519::{PublicKey, Signature};
        use commonware_cryptography::Verifier as _;
        let requester = lock(&self.requester).ok_or(StopError::NoSession)?;
        let key = PublicKey::decode(requester.0.to_vec()).map_err(|_| StopError::BadSignature)?;
        let sig = Signature::decode(signature.to_vec()).map_err(|_| StopError::BadSignature)?;
        let msg = agentic_client::api::session_stop_message(job);
        if !key.verify(agentic_client::api::SESSION_STOP_NAMESPACE, &msg, &sig) {
            return Err(StopError::BadSignature);
        }
        self.stop.store(true, Ordering::SeqCst);
        Ok(self.state.borrow().tokens.len() as u32)
    }

    /// Whether the requester asked the session to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

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

/// How many token feeds a provider keeps before it forgets finished ones that nobody
/// follows, oldest first.
pub const MAX_FEEDS: usize = 1024;

/// How many feeds subscribers may create for sessions not (yet) running here.
pub const MAX_WAITING_FEEDS: usize = 256;

/// A subscriber asked for an unknown session's feed while [`MAX_WAITING_FEEDS`] feeds
/// wait for their sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{MAX_WAITING_FEEDS} token feeds already wait for their sessions")]
pub struct FeedsFull;

/// One feed and how it came to be.
#[derive(Debug)]
struct FeedEntry {
    feed: Arc<TokenFeed>,
    /// When it was created (a counter: smaller is older).
    born: u64,
    /// Created by a subscriber, and no session wrote it since.
    waiting: bool,
}

/// The token feeds, bounded: [`MAX_FEEDS`] before finished unfollowed ones go,
/// [`MAX_WAITING_FEEDS`] created by subscribers.
#[derive(Debug, Default)]
struct Feeds {
    map: BTreeMap<JobId, FeedEntry>,
    born: u64,
    waiting: usize,
}

impl Feeds {
    fn insert(&mut self, job: JobId, waiting: bool) -> &mut FeedEntry {
        self.born += 1;
        self.waiting += usize::from(waiting);
        let born = self.born;
        self.map.entry(job).or_insert(FeedEntry {
            feed: Arc::default(),
            born,
            waiting,
        })
    }

    /// `job`'s feed for its session (a waiting one is now the session's).
    fn writer(&mut self, job: JobId) -> Arc<TokenFeed> {
        if let Some(e) = self.map.get_mut(&job) {
            if std::mem::take(&mut e.waiting) {
                self.waiting -= 1;
            }
            return e.feed.clone();
        }
        self.insert(job, false).feed.clone()
    }

    /// A subscription to `job`'s feed, created (waiting) if unknown and allowed.
    fn subscribe(&mut self, job: JobId) -> Result<watch::Receiver<FeedState>, FeedsFull> {
        if let Some(e) = self.map.get(&job) {
            return Ok(e.feed.subscribe());
        }
        if self.waiting >= MAX_WAITING_FEEDS {
            return Err(FeedsFull);
        }
        Ok(self.insert(job, true).feed.subscribe())
    }

    /// Forgets the feeds nobody needs: waiting ones nobody follows any more (a new
    /// subscriber makes them again), then, past [`MAX_FEEDS`], ended or aborted ones
    /// nobody follows, oldest first. Running sessions' feeds and followed ones stay.
    fn evict(&mut self) {
        let before = self.map.len();
        self.map
            .retain(|_, e| !(e.waiting && e.feed.state.receiver_count() == 0));
        self.waiting -= before - self.map.len();
        if self.map.len() <= MAX_FEEDS {
            return;
        }
        let mut done: Vec<(u64, JobId)> = self
            .map
            .iter()
            .filter(|(_, e)| {
                let st = e.feed.state.borrow();
                (st.end.is_some() || st.aborted.is_some()) && e.feed.state.receiver_count() == 0
            })
            .map(|(j, e)| (e.born, *j))
            .collect();
        done.sort_unstable();
        let excess = self.map.len() - MAX_FEEDS;
        for (_, job) in done.into_iter().take(excess) {
            self.map.remove(&job);
        }
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
    feeds: Mutex<Feeds>,
    lineups: Mutex<BTreeMap<JobId, watch::Sender<Lineup>>>,
    faults: Mutex<BTreeSet<(JobId, u32, Address)>>,
    /// The blob of each finished stage's input rows (`(job, stage) → hash`), for its
    /// auditor ([`Sessions::publish_inputs`]); the newest [`MAX_INPUT_BLOBS`] kept.
    inputs: Mutex<BTreeMap<(JobId, u32), Hash>>,
    closed: AtomicBool,
}

/// Most stages' input-row blobs a provider names at once (the oldest jobs' dropped first;
/// the blobs stay in the store).
pub const MAX_INPUT_BLOBS: usize = 4096;

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
            inputs: Mutex::default(),
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
        for e in lock(&self.feeds).map.values() {
            e.feed.abort("the provider stopped".into());
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

    /// Serves a finished session's transcript from this provider too: stage 0 at its
    /// session's end and a stage rebuilt after the session (both know every token), so
    /// that an auditor or a replacement finds it when the last stage is gone. A feed a
    /// session here writes (this provider also holds the last stage) is left alone.
    pub fn publish_transcript(&self, job: JobId, tokens: &[u32], end: FeedEnd) {
        let mut feeds = lock(&self.feeds);
        if feeds.map.get(&job).is_some_and(|e| !e.waiting) {
            return;
        }
        let feed = feeds.writer(job);
        feed.extend_to(tokens);
        feed.end(end);
        feeds.evict();
    }

    /// Names the stored blob of stage `stage`'s input rows for `job`
    /// (`agentic_compute::llm::stage::input_rows_bytes`): the stage's auditor fetches it
    /// (`GET /v1/sessions/{job}/inputs/{stage}`) and checks it against the input claim
    /// the stage published with its commitment before it replays from it.
    pub fn publish_inputs(&self, job: JobId, stage: u32, blob: Hash) {
        let mut inputs = lock(&self.inputs);
        inputs.insert((job, stage), blob);
        while inputs.len() > MAX_INPUT_BLOBS {
            inputs.pop_first();
        }
    }

    /// The blob of `job`'s stage `stage` input rows, if this provider ran that stage.
    pub fn inputs(&self, job: JobId, stage: u32) -> Option<Hash> {
        lock(&self.inputs).get(&(job, stage)).copied()
    }

    /// The token feed of `job` for the session that writes it (created if no
    /// subscriber asked for it first).
    pub fn feed(&self, job: JobId) -> Arc<TokenFeed> {
        let mut feeds = lock(&self.feeds);
        let feed = feeds.writer(job);
        feeds.evict();
        feed
    }

    /// A subscription to `job`'s token feed: a subscriber may come before the session
    /// starts, so an unknown job's feed is created, unless [`MAX_WAITING_FEEDS`] such
    /// feeds wait for their session already.
    pub fn subscribe(&self, job: JobId) -> Result<watch::Receiver<FeedState>, FeedsFull> {
        let mut feeds = lock(&self.feeds);
        feeds.evict();
        feeds.subscribe(job)
    }

    /// The token feed of `job`, if anyone asked for it or a session writes it.
    pub fn existing_feed(&self, job: JobId) -> Option<Arc<TokenFeed>> {
        lock(&self.feeds).map.get(&job).map(|e| e.feed.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_cryptography::Signer as _;

    fn sessions() -> Sessions {
        Sessions::new(PrivateKey::from_seed(7))
    }

    fn end() -> FeedEnd {
        FeedEnd {
            steps: 1,
            transcript: agentic_protocol::Hash([0; 32]),
        }
    }

    #[test]
    fn only_the_requesters_signature_over_the_job_stops_its_session() {
        use agentic_client::api::{session_stop_message, SESSION_STOP_NAMESPACE};
        use commonware_codec::Encode as _;
        let s = sessions();
        let job = JobId(4);
        let (requester, other) = (PrivateKey::from_seed(11), PrivateKey::from_seed(12));
        let sign = |k: &PrivateKey, j: JobId| {
            k.sign(SESSION_STOP_NAMESPACE, &session_stop_message(j))
                .encode()
                .to_vec()
        };
        let f = s.feed(job);
        assert_eq!(
            f.request_stop(job, &sign(&requester, job)),
            Err(StopError::NoSession),
            "no session writes the feed yet"
        );
        f.set_requester(Address::from(&requester.public_key()));
        f.push(5);
        for (why, sig) in [
            ("another key", sign(&other, job)),
            ("another job", sign(&requester, JobId(5))),
            ("not a signature", b"junk".to_vec()),
            ("empty", Vec::new()),
        ] {
            assert_eq!(
                f.request_stop(job, &sig),
                Err(StopError::BadSignature),
                "{why}"
            );
            assert!(!f.stop_requested(), "{why}");
        }
        assert_eq!(f.request_stop(job, &sign(&requester, job)), Ok(1));
        assert!(f.stop_requested());
        assert_eq!(f.request_stop(job, &sign(&requester, job)), Ok(1), "again");
    }

    #[test]
    fn finished_unfollowed_feeds_go_oldest_first_past_the_bound() {
        let s = sessions();
        let extra = 10;
        // Job 5 is followed from before its session; job 3 still runs.
        let _follower = s.subscribe(JobId(5)).unwrap();
        for j in 0..(MAX_FEEDS + extra) as u64 {
            let f = s.feed(JobId(j));
            f.push(1);
            if j != 3 {
                f.end(end());
            }
        }
        let f = s.feed(JobId(9_999));
        assert_eq!(lock(&s.feeds).map.len(), MAX_FEEDS);
        assert!(
            s.existing_feed(JobId(3)).is_some(),
            "a running session's feed"
        );
        assert!(s.existing_feed(JobId(5)).is_some(), "a followed feed");
        let gone: Vec<u64> = (0..(MAX_FEEDS + extra) as u64)
            .filter(|j| s.existing_feed(JobId(*j)).is_none())
            .collect();
        let want: Vec<u64> = (0..13).filter(|j| *j != 3 && *j != 5).collect();
        assert_eq!(gone, want, "the oldest finished ones, 11 to make room");
        assert!(s.existing_feed(JobId(9_999)).is_some());
        drop(f);
    }

    #[test]
    fn subscribers_create_a_bounded_number_of_feeds() {
        let s = sessions();
        let held: Vec<_> = (0..MAX_WAITING_FEEDS as u64)
            .map(|j| s.subscribe(JobId(j)).unwrap())
            .collect();
        assert_eq!(s.subscribe(JobId(1_000_000)).err(), Some(FeedsFull));
        // A known job's feed is always open to subscribers.
        assert!(s.subscribe(JobId(0)).is_ok());
        // A session adopting a waiting feed frees its place.
        s.feed(JobId(1));
        let late = s.subscribe(JobId(1_000_000)).unwrap();
        assert_eq!(s.subscribe(JobId(1_000_001)).err(), Some(FeedsFull));
        // Subscribers that leave free theirs: the feeds nobody writes are forgotten.
        drop(held);
        assert!(s.subscribe(JobId(1_000_001)).is_ok());
        assert!(s.existing_feed(JobId(2)).is_none());
        assert!(
            s.existing_feed(JobId(1)).is_some(),
            "the session's feed stays"
        );
        assert!(s.existing_feed(JobId(1_000_000)).is_some(), "followed");
        drop(late);
    }
}
