//! One stage's part of a generation session.
//!
//! ```text
//!  epoch (one line-up of providers; a replaced stage starts a new one):
//!    links: dial the next stage (the last stage dials stage 0), take the link from the
//!           previous one (stage 0 takes the last stage's), both under the epoch's id
//!    sync:  the last stage sends Sync(its transcript) to stage 0; stage 0 takes the
//!           longer of that and its own (one must extend the other) as the agreed
//!           transcript of T tokens, rolls back or rebuilds to it and sends Resume(T
//!           tokens) down the pipeline; every stage rolls back (a survivor: its cache
//!           and trace cut to T steps) or rebuilds (a replacement: one prefill of the
//!           prompt and the T tokens, `StageSession::resume`) and passes it on
//!    steps: stage 0 computes step T (the prompt if T = 0, else token T − 1) ─▶ Rows
//!           down ─▶ … ─▶ the last stage samples, feeds the token to the requester's
//!           stream and sends it to stage 0 ─▶ …
//!    end:   stage 0 gets the last token and sends End(n) down; every stage ends after
//!           n steps with its trace; the last stage stores the transcript blob
//!  fault: a link that breaks or goes silent, a malformed or out-of-order frame or an
//!         abort blames the sending stage, a write that fails the receiving one: the
//!         session reports it (`Sessions::report_fault`; the daemon sends
//!         `ReplaceStage`), keeps its cache, and waits for the chain's new line-up ─▶
//!         the next epoch
//! ```
//!
//! The compute runs on a blocking thread that owns the stage's KV cache across epochs;
//! per epoch a reader task turns the upstream link into frames and a writer task sends
//! the thread's frames downstream, each flushed at once. The thread's tokens are the
//! same whatever the epochs: sampling is a pure function of the logits and the step.

use std::sync::Arc;
use std::time::Duration;

use agentic_client::blobs::BlobStore;
use agentic_compute::llm::generate::LlmModel;
use agentic_compute::llm::stage::{
    self, GenerationRequest, StageInput, StageOutput, StageRange, StageSession, StageTrace,
    StepRecord,
};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Address, Hash, JobId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::frame::{Frame, FrameError};
use super::link::{self, LinkError};
use super::{FeedEnd, Lineup, LinkReader, Sessions, TokenFeed};

/// Frames buffered between the compute thread and a link.
const QUEUE: usize = 256;

/// One stage of the session, as the chain assigned it.
#[derive(Clone, Debug)]
pub struct Peer {
    /// Its trace layers.
    pub range: StageRange,
    /// Its provider.
    pub provider: Address,
    /// The provider's data-plane endpoint.
    pub endpoint: String,
}

/// Everything a stage needs to take part.
#[derive(Clone, Debug)]
pub struct SessionPlan {
    /// The job.
    pub job: JobId,
    /// Our stage.
    pub stage: u32,
    /// Every stage, in pipeline order (the first line-up; later ones come from
    /// [`Sessions::lineup`]).
    pub stages: Vec<Peer>,
    /// The prompt, sampler and stop rule.
    pub request: GenerationRequest,
    /// How long to wait for a link or the next frame.
    pub patience: Duration,
    /// How long to wait for the chain to replace a stage that dropped out.
    pub replace_patience: Duration,
    /// Emulated one-way delay before each frame sent downstream (zero: none;
    /// `Config::link_delay`). Frames keep their order: the writer sleeps, then writes.
    pub link_delay: Duration,
    /// The job's requester: the one whose signed stop ends the session early
    /// (`TokenFeed::request_stop`).
    pub requester: Address,
    /// A misbehaviour under test: perturb `(step, trace layer)`
    /// (`StageSession::set_fault`, `crate::misbehave::perturb_step`).
    pub fault: Option<(usize, usize)>,
}

/// Why a session ended without a result, or why an epoch of it did.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The plan does not make sense (our stage out of range, a stage without layers).
    #[error("session plan: {0}")]
    Plan(String),
    /// A link could not be opened.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The previous stage never linked to us in time.
    #[error("stage {from} did not link to stage {to} within {patience:?}")]
    NoLink {
        /// The stage that should have dialed.
        from: u32,
        /// Our stage.
        to: u32,
        /// How long we waited.
        patience: Duration,
    },
    /// The link was dialed by someone other than the stage's provider.
    #[error("the link from stage {stage} was dialed by {dialer}, not its provider {expected}")]
    Impostor {
        /// The stage.
        stage: u32,
        /// Who dialed.
        dialer: Address,
        /// Who holds it on chain.
        expected: Address,
    },
    /// A frame that could not be read (the link closed, or a malformed frame).
    #[error("frame from stage {stage}: {source}")]
    Frame {
        /// The sending stage.
        stage: u32,
        /// Why.
        source: FrameError,
    },
    /// A well-formed frame that breaks the session's order.
    #[error("stage {stage} sent {got} where {expected} was due")]
    OutOfOrder {
        /// The sending stage.
        stage: u32,
        /// What came.
        got: String,
        /// What was due.
        expected: String,
    },
    /// No frame in time.
    #[error("no frame from stage {stage} within {patience:?}")]
    Silent {
        /// The stage.
        stage: u32,
        /// How long we waited.
        patience: Duration,
    },
    /// A peer aborted.
    #[error("stage {stage} aborted the session: {reason}")]
    Aborted {
        /// The stage.
        stage: u32,
        /// Its reason.
        reason: String,
    },
    /// The compute runtime refused a step.
    #[error("compute: {0}")]
    Compute(#[from] agentic_compute::ComputeError),
    /// The downstream link closed.
    #[error("the link to stage {0} closed")]
    Downstream(u32),
    /// A stage dropped out and the chain named no replacement in time.
    #[error("stage {stage} dropped out ({why}) and was not replaced within {patience:?}")]
    NotReplaced {
        /// The stage.
        stage: u32,
        /// What we saw.
        why: String,
        /// How long we waited.
        patience: Duration,
    },
    /// A neighbour ended the epoch because another stage dropped out.
    #[error("stage {by} paused the session: stage {stage} dropped out")]
    Paused {
        /// The neighbour.
        by: u32,
        /// The stage it blames.
        stage: u32,
    },
    /// The provider stopped the session (it shut down, or no longer holds the stage).
    #[error("the session was stopped")]
    Stopped,
    /// Storing the transcript failed.
    #[error("storing the transcript: {0}")]
    Store(String),
}

/// A stage's part of a finished session.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Its trace over (step, layer).
    pub trace: StageTrace,
    /// The token transcript as this stage knows it (stage 0: received; the last stage:
    /// sampled; others: the agreed transcript of the last epoch's start).
    pub transcript: Vec<u32>,
    /// The result to commit.
    pub result: StageResult,
    /// Epochs the session ran (1: no stage was replaced).
    pub epochs: u32,
    /// Past stage 0, the bytes of the input rows of every step
    /// (`stage::input_rows_bytes`): what the stage's auditor replays from. Empty for
    /// stage 0, and once `run` has stored them (they are served from the store).
    pub inputs: Vec<u8>,
}

/// The id of a line-up: `blake3("agentic session epoch v1" ‖ job ‖ each provider)`.
pub fn epoch_of(job: JobId, peers: &[Peer]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("agentic session epoch v1");
    h.update(&job.0.to_be_bytes());
    for p in peers {
        h.update(&p.provider.0);
    }
    *h.finalize().as_bytes()
}

/// The stage that sends to `s` (stage 0's input comes from the last stage).
fn upstream(s: u32, n: u32) -> u32 {
    if s == 0 {
        n - 1
    } else {
        s - 1
    }
}

/// The stage `s` sends to (the last stage's tokens go to stage 0).
fn downstream(s: u32, n: u32) -> u32 {
    if s + 1 == n {
        0
    } else {
        s + 1
    }
}

pub use agentic_compute::llm::stage::{transcript_bytes, transcript_from_bytes};

/// Dials `to`, retrying until `patience` runs out (its daemon may still be starting).
async fn dial(
    sessions: &Sessions,
    plan: &SessionPlan,
    peers: &[Peer],
    epoch: [u8; 32],
    to: u32,
) -> Result<tokio::net::TcpStream, SessionError> {
    let peer = &peers[to as usize];
    let until = tokio::time::Instant::now() + plan.patience;
    let mut wait = Duration::from_millis(20);
    loop {
        match link::dial(
            &peer.endpoint,
            sessions.key(),
            plan.job,
            (plan.stage, to),
            epoch,
            peer.provider,
        )
        .await
        {
            Ok(s) => return Ok(s),
            Err(e @ LinkError::Handshake(_)) => return Err(e.into()),
            Err(e) if tokio::time::Instant::now() + wait > until => return Err(e.into()),
            Err(e) => {
                tracing::debug!(job = plan.job.0, to, error = %e, "dialing the next stage again");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        }
    }
}

/// An epoch's links, handed to the compute thread.
struct EpochLinks {
    /// The epoch's number (0, 1, …): faults of an older one are ignored.
    index: u32,
    /// Frames from upstream (or why they stopped).
    inbox: mpsc::Receiver<Result<Frame, SessionError>>,
    /// Frames downstream.
    outbox: mpsc::Sender<Frame>,
}

/// The tasks of an epoch's links: the reader and the writer(s).
#[derive(Default)]
struct LinkTasks {
    reader: Option<JoinHandle<()>>,
    writers: Vec<JoinHandle<()>>,
}

impl LinkTasks {
    /// Lets the writers send what the thread left them (its last frame: the end, or a
    /// Pause), for at most `grace`, then stops every task.
    async fn close(mut self, grace: Duration) {
        if let Some(r) = self.reader.take() {
            r.abort();
        }
        for t in std::mem::take(&mut self.writers) {
            if !t.is_finished() {
                let _ = tokio::time::timeout(grace, t).await;
            }
        }
    }
}

impl Drop for LinkTasks {
    fn drop(&mut self) {
        for t in self.reader.iter().chain(&self.writers) {
            t.abort();
        }
    }
}

/// A stage the session blames, and why.
struct Fault {
    stage: u32,
    error: SessionError,
    /// We saw it ourselves (report it on chain); `false`: a neighbour's Pause told us.
    report: bool,
}

/// Opens the epoch's links: dial downstream, take the link from upstream.
async fn open_links(
    sessions: &Sessions,
    plan: &SessionPlan,
    peers: &[Peer],
    width: usize,
    index: u32,
) -> Result<(EpochLinks, LinkTasks), Fault> {
    let n = peers.len() as u32;
    let s = plan.stage;
    let (to, from) = (downstream(s, n), upstream(s, n));
    let epoch = epoch_of(plan.job, peers);
    // The most values a Rows frame may carry: the prompt's rows.
    let max_values = plan.request.prompt.len().saturating_mul(width);
    let max_tokens = plan.request.max_tokens as usize;
    let (in_tx, inbox) = mpsc::channel::<Result<Frame, SessionError>>(QUEUE);
    let (outbox, mut out_rx) = mpsc::channel::<Frame>(QUEUE);
    let mut tasks = LinkTasks::default();
    // Dial first, then take: every dial completes on the peer's data plane whether or
    // not its session runs yet, so nobody waits on anybody here.
    let mut down = dial(sessions, plan, peers, epoch, to)
        .await
        .map_err(|error| Fault {
            stage: to,
            error,
            report: true,
        })?;
    let (hello, mut reader): (_, LinkReader) = sessions
        .take(plan.job, (from, s), epoch, plan.patience)
        .await
        .ok_or(Fault {
            stage: from,
            error: SessionError::NoLink {
                from,
                to: s,
                patience: plan.patience,
            },
            report: true,
        })?;
    let expected = peers[from as usize].provider;
    if hello.dialer != expected {
        return Err(Fault {
            stage: from,
            error: SessionError::Impostor {
                stage: from,
                dialer: hello.dialer,
                expected,
            },
            report: true,
        });
    }
    let patience = plan.patience;
    tasks.reader = Some(tokio::spawn(async move {
        loop {
            let f = match tokio::time::timeout(
                patience,
                Frame::read(&mut reader, max_values, max_tokens),
            )
            .await
            {
                Ok(Ok(f)) => Ok(f),
                Ok(Err(source)) => Err(SessionError::Frame {
                    stage: from,
                    source,
                }),
                Err(_) => Err(SessionError::Silent {
                    stage: from,
                    patience,
                }),
            };
            let stop = f.is_err();
            if in_tx.send(f).await.is_err() || stop {
                return;
            }
        }
    }));
    // An emulated link delay (`link_delay`): each frame is stamped when the compute
    // thread hands it over and written `link_delay` later, frames in flight overlapping
    // as on a real link (latency, not bandwidth).
    let delay = plan.link_delay;
    if delay.is_zero() {
        tasks.writers.push(tokio::spawn(async move {
            while let Some(f) = out_rx.recv().await {
                if let Err(e) = f.write(&mut down).await {
                    tracing::debug!(to, error = %e, "session link closed");
                    return;
                }
            }
        }));
    } else {
        let (late_tx, mut late_rx) = mpsc::unbounded_channel();
        tasks.writers.push(tokio::spawn(async move {
            while let Some(f) = out_rx.recv().await {
                if late_tx
                    .send((tokio::time::Instant::now() + delay, f))
                    .is_err()
                {
                    return;
                }
            }
        }));
        tasks.writers.push(tokio::spawn(async move {
            while let Some((due, f)) = late_rx.recv().await {
                tokio::time::sleep_until(due).await;
                let f: Frame = f;
                if let Err(e) = f.write(&mut down).await {
                    tracing::debug!(to, error = %e, "session link closed");
                    return;
                }
            }
        }));
    }
    Ok((
        EpochLinks {
            index,
            inbox,
            outbox,
        },
        tasks,
    ))
}

/// Runs stage `plan.stage` of the session to its end, across as many epochs as stages
/// are replaced (module docs).
pub async fn run(
    plan: SessionPlan,
    model: Arc<LlmModel>,
    sessions: Arc<Sessions>,
    store: Arc<BlobStore>,
) -> Result<Outcome, SessionError> {
    let r = run_epochs(&plan, model, &sessions, store).await;
    sessions.finish(plan.job);
    r
}

async fn run_epochs(
    plan: &SessionPlan,
    model: Arc<LlmModel>,
    sessions: &Arc<Sessions>,
    store: Arc<BlobStore>,
) -> Result<Outcome, SessionError> {
    let n = plan.stages.len() as u32;
    let s = plan.stage;
    if s >= n {
        return Err(SessionError::Plan(format!("stage {s} of {n}")));
    }
    let width = model.model.config().dim;
    let mut lineup = sessions.lineup(plan.job, plan.stages.clone());
    let feed = (s + 1 == n).then(|| sessions.feed(plan.job));
    if let Some(f) = &feed {
        f.reopen();
        f.set_requester(plan.requester);
    }
    let (epoch_tx, epoch_rx) = mpsc::channel::<EpochLinks>(1);
    let (fault_tx, mut fault_rx) = mpsc::unbounded_channel::<(u32, Fault)>();
    let (thread_plan, thread_feed) = (plan.clone(), feed.clone());
    let mut thread = tokio::task::spawn_blocking(move || {
        drive(
            &thread_plan,
            &model,
            epoch_rx,
            fault_tx,
            thread_feed.as_deref(),
        )
    });
    let mut index = 0u32;
    let outcome = 'epochs: loop {
        let peers: Lineup = lineup.borrow_and_update().clone();
        if peers.len() as u32 != n {
            break Err(SessionError::Plan(format!(
                "a line-up of {} stages for a session of {n}",
                peers.len()
            )));
        }
        let mut tasks = LinkTasks::default();
        // The links (none for a one-stage session), then the epoch goes to the thread.
        let fault = if n == 1 {
            let (in_tx, inbox) = mpsc::channel(1);
            let (outbox, _) = mpsc::channel(1);
            drop(in_tx);
            let _ = epoch_tx
                .send(EpochLinks {
                    index,
                    inbox,
                    outbox,
                })
                .await;
            None
        } else {
            let opened = tokio::select! {
                o = open_links(sessions, plan, &peers, width, index) => o,
                _ = lineup.changed() => {
                    index += 1;
                    continue 'epochs;
                }
            };
            match opened {
                Ok((links, t)) => {
                    tasks = t;
                    let _ = epoch_tx.send(links).await;
                    None
                }
                Err(f) => Some(f),
            }
        };
        let fault = match fault {
            Some(f) => f,
            None => loop {
                tokio::select! {
                    r = &mut thread => {
                        tasks.close(Duration::from_secs(5)).await;
                        break 'epochs r.unwrap_or_else(|e| {
                            Err(SessionError::Plan(format!("the compute thread failed: {e}")))
                        });
                    }
                    f = fault_rx.recv() => match f {
                        Some((i, f)) if i == index => break f,
                        Some(_) => continue,
                        None => {
                            // The thread ended: its result comes next turn.
                            continue;
                        }
                    },
                    c = lineup.changed() => {
                        if c.is_err() {
                            break 'epochs Err(SessionError::Stopped);
                        }
                        // Another stage was replaced: a new epoch.
                        drop(tasks);
                        index += 1;
                        continue 'epochs;
                    }
                }
            },
        };
        tasks.close(Duration::from_secs(1)).await;
        let blamed = peers[fault.stage as usize].provider;
        tracing::warn!(
            job = plan.job.0,
            stage = s,
            blamed = fault.stage,
            error = %fault.error,
            "a stage dropped out of the session: waiting for its replacement"
        );
        if fault.report {
            sessions.report_fault(plan.job, fault.stage, blamed);
        }
        // Wait for the chain to name another line-up.
        let replaced = tokio::time::timeout(plan.replace_patience, async {
            loop {
                if lineup.changed().await.is_err() {
                    return false;
                }
                if lineup
                    .borrow()
                    .get(fault.stage as usize)
                    .map(|p| p.provider)
                    != Some(blamed)
                {
                    return true;
                }
            }
        })
        .await;
        match replaced {
            Ok(true) => index += 1,
            Ok(false) => break Err(SessionError::Stopped),
            Err(_) => {
                break Err(SessionError::NotReplaced {
                    stage: fault.stage,
                    why: fault.error.to_string(),
                    patience: plan.replace_patience,
                })
            }
        }
    };
    // Stop the thread if it still waits for an epoch.
    drop(epoch_tx);
    if !thread.is_finished() {
        thread.abort();
    }
    match outcome {
        Ok(mut o) => {
            // The last stage ends the requester's stream; stage 0 keeps a copy for
            // when the last stage is gone (`Sessions::publish_transcript`).
            if feed.is_some() || s == 0 {
                let transcript = store_transcript(&store, &o.transcript)
                    .await
                    .map_err(SessionError::Store)?;
                let end = FeedEnd {
                    steps: o.result.steps,
                    transcript,
                };
                match &feed {
                    Some(feed) => feed.end(end),
                    None => sessions.publish_transcript(plan.job, &o.transcript, end),
                }
            }
            // The input rows for the stage's auditor; without them it replays the
            // layers before the stage too (slower, as sure).
            if !o.inputs.is_empty() {
                match store_blob(&store, std::mem::take(&mut o.inputs)).await {
                    Ok(blob) => sessions.publish_inputs(plan.job, s, blob),
                    Err(e) => tracing::warn!(
                        job = plan.job.0,
                        stage = s,
                        error = %e,
                        "the stage's input rows were not stored: its auditor replays the prefix"
                    ),
                }
            }
            Ok(o)
        }
        Err(e) => {
            if let Some(feed) = &feed {
                feed.abort(e.to_string());
            }
            Err(e)
        }
    }
}

/// Stores a session's transcript blob (`transcript_bytes`) under its hash, the name
/// the last stage commits to; returns the hash.
pub async fn store_transcript(store: &Arc<BlobStore>, tokens: &[u32]) -> Result<Hash, String> {
    store_blob(store, transcript_bytes(tokens)).await
}

/// Stores `bytes` under their blake3 hash; returns the hash.
async fn store_blob(store: &Arc<BlobStore>, bytes: Vec<u8>) -> Result<Hash, String> {
    let hash = Hash(*blake3::hash(&bytes).as_bytes());
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.put(&hash, &bytes))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    Ok(hash)
}

/// Why an epoch of the compute thread ended without the session's end.
enum Stop {
    /// A stage is to blame: report it and wait for the next epoch.
    Fault(Fault),
    /// The session cannot go on.
    Fatal(SessionError),
}

/// What the compute thread keeps across epochs.
struct StageState<'m> {
    sess: StageSession<'m>,
    /// Each step run so far (or rebuilt).
    steps: Vec<StepRecord>,
    /// Stage 0: the tokens received; the last stage: sampled; others: the agreed
    /// transcript of the last epoch's start.
    transcript: Vec<u32>,
    /// Nothing run or rebuilt yet.
    fresh: bool,
}

/// The stage's compute thread: one epoch after another until the session ends.
fn drive(
    plan: &SessionPlan,
    model: &LlmModel,
    mut epochs: mpsc::Receiver<EpochLinks>,
    faults: mpsc::UnboundedSender<(u32, Fault)>,
    feed: Option<&TokenFeed>,
) -> Result<Outcome, SessionError> {
    let req = &plan.request;
    let llama = &model.model;
    let range = plan.stages[plan.stage as usize].range;
    let capacity = req.prompt.len() + req.max_tokens as usize;
    let mut sess = StageSession::with_capacity(llama, range, capacity)?;
    if let Some((step, layer)) = plan.fault {
        sess.set_fault(step, layer);
    }
    let mut st = StageState {
        sess,
        steps: Vec::new(),
        transcript: Vec::new(),
        fresh: true,
    };
    let mut count = 0u32;
    loop {
        let Some(links) = epochs.blocking_recv() else {
            return Err(SessionError::Stopped);
        };
        count += 1;
        let index = links.index;
        let outbox = links.outbox.clone();
        let r = epoch(plan, llama, &mut st, links, &outbox, feed);
        let n = plan.stages.len() as u32;
        if let Err(Stop::Fault(f)) = &r {
            // Tell the next stage that the link closing next is not our fault.
            if n > 1 && f.stage != downstream(plan.stage, n) {
                let _ = outbox.blocking_send(Frame::Pause { stage: f.stage });
            }
        }
        drop(outbox);
        match r {
            Ok(steps) => {
                let trace = StageTrace {
                    leaves: st.steps.iter().map(|r| r.leaves.clone()).collect(),
                    ops: st.steps.iter().fold(0u64, |a, r| a.saturating_add(r.ops)),
                };
                let (input, output) = trace.claim(&range, llama.config().layers(), &st.transcript);
                let result = StageResult {
                    input,
                    output,
                    trace_root: trace.root(),
                    steps,
                };
                let inputs = if range.takes_tokens() {
                    Vec::new()
                } else {
                    let d = llama.config().dim;
                    let rows = st.sess.input_rows();
                    let positions = (req.prompt.len() + trace.steps()).saturating_sub(1);
                    let rows = &rows[..(positions * d).min(rows.len())];
                    stage::input_rows_bytes(rows, d)
                };
                return Ok(Outcome {
                    trace,
                    transcript: st.transcript,
                    result,
                    epochs: count,
                    inputs,
                });
            }
            Err(Stop::Fault(f)) => {
                if faults.send((index, f)).is_err() {
                    return Err(SessionError::Stopped);
                }
            }
            Err(Stop::Fatal(e)) => return Err(e),
        }
    }
}

/// Rolls the stage back (a survivor) or rebuilds it (a replacement, or a survivor that
/// somehow fell behind) to the agreed transcript `tokens`.
fn sync_to<'m>(
    plan: &SessionPlan,
    llama: &'m agentic_compute::llm::llama::Llama,
    st: &mut StageState<'m>,
    tokens: &[u32],
) -> Result<(), agentic_compute::ComputeError> {
    let req = &plan.request;
    let t = tokens.len();
    if st.fresh || st.steps.len() < t {
        let range = plan.stages[plan.stage as usize].range;
        let capacity = req.prompt.len() + req.max_tokens as usize;
        let (mut sess, steps) =
            StageSession::resume(llama, range, &req.prompt, tokens, &req.sampler, capacity)?;
        if let Some((step, layer)) = plan.fault {
            sess.set_fault(step, layer);
        }
        st.sess = sess;
        st.steps = steps;
    } else {
        st.steps.truncate(t);
        st.sess.truncate(t);
    }
    st.transcript = tokens.to_vec();
    st.fresh = false;
    Ok(())
}

/// One epoch of the stage's compute: sync, then steps until the session ends (the
/// step count) or a stage is to blame.
fn epoch<'m>(
    plan: &SessionPlan,
    llama: &'m agentic_compute::llm::llama::Llama,
    st: &mut StageState<'m>,
    links: EpochLinks,
    outbox: &mpsc::Sender<Frame>,
    feed: Option<&TokenFeed>,
) -> Result<u32, Stop> {
    let n = plan.stages.len() as u32;
    let s = plan.stage;
    let last = s + 1 == n;
    let from = upstream(s, n);
    let to = downstream(s, n);
    let req = &plan.request;
    let context = llama.config().context;
    let EpochLinks { mut inbox, .. } = links;
    let upstream_fault = |error: SessionError| {
        Stop::Fault(Fault {
            stage: from,
            error,
            report: true,
        })
    };
    let send = |f: Frame| {
        outbox.blocking_send(f).map_err(|_| {
            Stop::Fault(Fault {
                stage: to,
                error: SessionError::Downstream(to),
                report: true,
            })
        })
    };
    let mut recv = || -> Result<Frame, Stop> {
        match inbox.blocking_recv() {
            Some(Ok(Frame::Pause { stage })) if stage < n => Err(Stop::Fault(Fault {
                stage,
                error: SessionError::Paused { by: from, stage },
                report: false,
            })),
            Some(Ok(Frame::Abort { reason })) => Err(upstream_fault(SessionError::Aborted {
                stage: from,
                reason,
            })),
            Some(Ok(f)) => Ok(f),
            Some(Err(e)) => Err(upstream_fault(e)),
            None => Err(upstream_fault(SessionError::Frame {
                stage: from,
                source: FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()),
            })),
        }
    };
    let out_of_order = |got: &Frame, expected: String| {
        upstream_fault(SessionError::OutOfOrder {
            stage: from,
            got: describe(got),
            expected,
        })
    };
    // A step's input from upstream that the runtime refuses is the sender's fault; a
    // step of our own tokens that fails is fatal.
    // Runs one step and records it in the trace; returns its output.
    let compute = |st: &mut StageState<'_>, input: StageInput, blame: bool| {
        let r = st.sess.step(input).map_err(|e| {
            if blame {
                upstream_fault(e.into())
            } else {
                Stop::Fatal(e.into())
            }
        })?;
        st.steps.push(StepRecord {
            leaves: r.leaves,
            ops: r.ops,
        });
        Ok(r.output)
    };
    // The head's stage samples step `t`'s token, keeps it and feeds it to the
    // requester's stream; returns it and whether it ends the session.
    let sample = |st: &mut StageState<'_>, logits: &[f32], t: u32| {
        let token = req.sampler.pick(logits, u64::from(t));
        st.transcript.push(token);
        if let Some(feed) = feed {
            feed.push(token);
        }
        // The requester's signed stop ends the session at this token, as a stop
        // token would (the bill is the tokens generated).
        let stop = feed.is_some_and(TokenFeed::stop_requested);
        (token, stop || stage::ends(req, context, t as usize, token))
    };

    // Sync: agree on the transcript every stage resumes from.
    let agreed: Vec<u32> = if n == 1 {
        st.transcript.clone()
    } else if s == 0 {
        let theirs = match recv()? {
            Frame::Sync { tokens } => tokens,
            f => return Err(out_of_order(&f, "the last stage's transcript".into())),
        };
        let mine = &st.transcript;
        let (long, short) = if theirs.len() >= mine.len() {
            (&theirs, mine)
        } else {
            (mine, &theirs)
        };
        if long[..short.len()] != short[..] {
            return Err(upstream_fault(SessionError::OutOfOrder {
                stage: from,
                got: format!("a transcript of {} tokens", theirs.len()),
                expected: format!("one extending ours of {} tokens", mine.len()),
            }));
        }
        long.clone()
    } else {
        if last {
            send(Frame::Sync {
                tokens: st.transcript.clone(),
            })?;
        }
        match recv()? {
            Frame::Resume { tokens } => tokens,
            f => return Err(out_of_order(&f, "the transcript to resume from".into())),
        }
    };
    // With links, the transcript came from upstream (stage 0: from the last stage's
    // Sync): one that does not rebuild is the sender's fault.
    sync_to(plan, llama, st, &agreed).map_err(|e| {
        if n > 1 {
            upstream_fault(e.into())
        } else {
            Stop::Fatal(e.into())
        }
    })?;
    if let Some(feed) = feed {
        feed.extend_to(&st.transcript);
    }
    if n > 1 && !last {
        send(Frame::Resume {
            tokens: agreed.clone(),
        })?;
    }
    let mut t = agreed.len() as u32;
    // The session may have ended with the agreed transcript's last token.
    let done = |t: u32, st: &StageState<'_>| {
        t > 0 && stage::ends(req, context, t as usize - 1, st.transcript[t as usize - 1])
    };

    // Steps.
    if s == 0 {
        if done(t, st) {
            if n > 1 {
                send(Frame::End { steps: t })?;
            }
            return Ok(t);
        }
        let mut input = if t == 0 {
            StageInput::Tokens(req.prompt.clone())
        } else {
            StageInput::Tokens(vec![st.transcript[t as usize - 1]])
        };
        loop {
            match compute(st, input, false)? {
                StageOutput::Rows(rows) => send(Frame::Rows { step: t, rows })?,
                StageOutput::Logits(logits) => {
                    // One stage holds the whole model.
                    let (token, end) = sample(st, &logits, t);
                    if end {
                        return Ok(t + 1);
                    }
                    input = StageInput::Tokens(vec![token]);
                    t += 1;
                    continue;
                }
            }
            match recv()? {
                Frame::Token {
                    step,
                    token,
                    last: end,
                } if step == t => {
                    st.transcript.push(token);
                    if end {
                        send(Frame::End { steps: t + 1 })?;
                        return Ok(t + 1);
                    }
                    input = StageInput::Tokens(vec![token]);
                }
                f => return Err(out_of_order(&f, format!("the token of step {t}"))),
            }
            t += 1;
        }
    }
    loop {
        match recv()? {
            Frame::Rows { step, rows } if step == t => {
                match compute(st, StageInput::Rows(rows), true)? {
                    StageOutput::Rows(rows) => send(Frame::Rows { step: t, rows })?,
                    StageOutput::Logits(logits) => {
                        let (token, end) = sample(st, &logits, t);
                        send(Frame::Token {
                            step: t,
                            token,
                            last: end,
                        })?;
                        if end {
                            // Stage 0 confirms the count down the pipeline.
                            return match recv()? {
                                Frame::End { steps } if steps == t + 1 => Ok(t + 1),
                                f => Err(out_of_order(&f, format!("end after {} steps", t + 1))),
                            };
                        }
                    }
                }
                t += 1;
            }
            // The end: after the step the last token came from, or — resumed from a
            // transcript that already ended — at once.
            Frame::End { steps } if steps == t && (!last || done(t, st)) => {
                if !last {
                    send(Frame::End { steps })?;
                }
                return Ok(t);
            }
            f => {
                return Err(out_of_order(
                    &f,
                    format!("rows of step {t}{}", if last { "" } else { " or the end" }),
                ))
            }
        }
    }
}

/// A frame, briefly, for errors.
fn describe(f: &Frame) -> String {
    match f {
        Frame::Rows { step, rows } => format!("rows of step {step} ({} values)", rows.len()),
        Frame::Token { step, token, last } => {
            format!(
                "token {token} of step {step}{}",
                if *last { " (last)" } else { "" }
            )
        }
        Frame::End { steps } => format!("the end after {steps} steps"),
        Frame::Abort { reason } => format!("an abort ({reason})"),
        Frame::Sync { tokens } => format!("a transcript of {} tokens", tokens.len()),
        Frame::Resume { tokens } => format!("a resume from {} tokens", tokens.len()),
        Frame::Pause { stage } => format!("a pause (stage {stage} dropped out)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transcript_blobs_round_trip_and_hash_like_the_runtime() {
        let t = vec![1, 49_151, 0, 7];
        let b = transcript_bytes(&t);
        assert_eq!(transcript_from_bytes(&b), Some(t.clone()));
        assert_eq!(
            Hash(*blake3::hash(&b).as_bytes()),
            stage::tokens_hash(&t),
            "the blob's name is the hash the last stage commits to"
        );
        for k in 0..b.len() {
            assert_eq!(transcript_from_bytes(&b[..k]), None);
        }
    }

    #[test]
    fn links_form_a_ring() {
        assert_eq!((upstream(0, 3), downstream(0, 3)), (2, 1));
        assert_eq!((upstream(1, 3), downstream(1, 3)), (0, 2));
        assert_eq!((upstream(2, 3), downstream(2, 3)), (1, 0));
        assert_eq!((upstream(0, 2), downstream(1, 2)), (1, 0));
    }
}
