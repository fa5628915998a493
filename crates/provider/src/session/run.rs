//! One stage's part of a generation session.
//!
//! ```text
//!  links: dial the next stage (the last stage dials stage 0), take the link from the
//!         previous one (stage 0 takes the last stage's) ─▶
//!  compute thread: step 0 = the prompt (stage 0) or the first Rows frame
//!         loop: StageSession::step ─▶ Rows to the next stage | sample a Token (last)
//!               ─▶ wait for the next input frame (Rows, Token, End, Abort)
//!  end:   stage 0 gets the last token and sends End(n) down; every stage ends after
//!         n steps with its trace; the last stage stores the transcript blob
//! ```
//!
//! The compute runs on a blocking thread that owns the stage's KV cache; a reader task
//! turns the upstream link into frames and a writer task sends the thread's frames
//! downstream, each flushed at once. A frame out of order, malformed, or an abort
//! ends the session with a [`SessionError`] naming the stage at fault where it can.

use std::sync::Arc;
use std::time::Duration;

use agentic_client::blobs::BlobStore;
use agentic_compute::llm::generate::LlmModel;
use agentic_compute::llm::stage::{
    self, GenerationRequest, StageInput, StageOutput, StageRange, StageSession, StageTrace,
};
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Address, Hash, JobId};
use tokio::sync::mpsc;

use super::frame::{Frame, FrameError};
use super::link::{self, LinkError};
use super::{FeedEnd, LinkReader, Sessions};

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
    /// Every stage, in pipeline order.
    pub stages: Vec<Peer>,
    /// The prompt, sampler and stop rule.
    pub request: GenerationRequest,
    /// How long to wait for a link or the next frame.
    pub patience: Duration,
    /// Emulated one-way delay before each frame sent downstream (zero: none;
    /// `Config::link_delay`). Frames keep their order: the writer sleeps, then writes.
    pub link_delay: Duration,
}

/// Why a session ended without a result.
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
    /// sampled; others: empty).
    pub transcript: Vec<u32>,
    /// The result to commit.
    pub result: StageResult,
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

/// The bytes of a transcript blob: their blake3 is [`stage::tokens_hash`].
pub fn transcript_bytes(tokens: &[u32]) -> Vec<u8> {
    let mut b = b"AGLLMTS1".to_vec();
    b.extend_from_slice(&(tokens.len() as u32).to_le_bytes());
    for t in tokens {
        b.extend_from_slice(&t.to_le_bytes());
    }
    b
}

/// Decodes a transcript blob (`None`: not one).
pub fn transcript_from_bytes(b: &[u8]) -> Option<Vec<u32>> {
    let rest = b.strip_prefix(b"AGLLMTS1")?;
    let n = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let body = rest.get(4..)?;
    if body.len() != n.checked_mul(4)? {
        return None;
    }
    Some(
        body.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

/// Dials `to`, retrying until `patience` runs out (its daemon may still be starting).
async fn dial(
    sessions: &Sessions,
    plan: &SessionPlan,
    to: u32,
) -> Result<tokio::net::TcpStream, SessionError> {
    let peer = &plan.stages[to as usize];
    let until = tokio::time::Instant::now() + plan.patience;
    let mut wait = Duration::from_millis(20);
    loop {
        match link::dial(
            &peer.endpoint,
            sessions.key(),
            plan.job,
            plan.stage,
            to,
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

/// Runs stage `plan.stage` of the session to its end.
pub async fn run(
    plan: SessionPlan,
    model: Arc<LlmModel>,
    sessions: Arc<Sessions>,
    store: Arc<BlobStore>,
) -> Result<Outcome, SessionError> {
    let n = plan.stages.len() as u32;
    let s = plan.stage;
    if s >= n {
        return Err(SessionError::Plan(format!("stage {s} of {n}")));
    }
    let cfg = model.model.config().clone();
    let width = cfg.dim;
    // The most values a Rows frame may carry: the prompt's rows.
    let max_values = plan.request.prompt.len().saturating_mul(width);
    let (in_tx, in_rx) = mpsc::channel::<Result<Frame, SessionError>>(QUEUE);
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(QUEUE);
    let mut tasks = Vec::new();
    if n > 1 {
        let to = downstream(s, n);
        let from = upstream(s, n);
        // Dial first, then take: every dial completes on the peer's data plane
        // whether or not its session runs yet, so nobody waits on anybody here.
        let mut down = dial(&sessions, &plan, to).await?;
        let (hello, mut reader): (_, LinkReader) = sessions
            .take(plan.job, s, from, plan.patience)
            .await
            .ok_or(SessionError::NoLink {
                from,
                to: s,
                patience: plan.patience,
            })?;
        let expected = plan.stages[from as usize].provider;
        if hello.dialer != expected {
            return Err(SessionError::Impostor {
                stage: from,
                dialer: hello.dialer,
                expected,
            });
        }
        let patience = plan.patience;
        tasks.push(tokio::spawn(async move {
            loop {
                let f = match tokio::time::timeout(patience, Frame::read(&mut reader, max_values))
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
        // thread hands it over and written `link_delay` later, frames in flight
        // overlapping as on a real link (latency, not bandwidth).
        let delay = plan.link_delay;
        if delay.is_zero() {
            tasks.push(tokio::spawn(async move {
                while let Some(f) = out_rx.recv().await {
                    if let Err(e) = f.write(&mut down).await {
                        tracing::warn!(to, error = %e, "session link closed");
                        return;
                    }
                }
            }));
        } else {
            let (late_tx, mut late_rx) = mpsc::unbounded_channel();
            tasks.push(tokio::spawn(async move {
                while let Some(f) = out_rx.recv().await {
                    if late_tx
                        .send((tokio::time::Instant::now() + delay, f))
                        .is_err()
                    {
                        return;
                    }
                }
            }));
            tasks.push(tokio::spawn(async move {
                while let Some((due, f)) = late_rx.recv().await {
                    tokio::time::sleep_until(due).await;
                    let f: Frame = f;
                    if let Err(e) = f.write(&mut down).await {
                        tracing::warn!(to, error = %e, "session link closed");
                        return;
                    }
                }
            }));
        }
    } else {
        drop(in_tx);
        tasks.push(tokio::spawn(async move {
            while out_rx.recv().await.is_some() {}
        }));
    }
    let feed = (s + 1 == n).then(|| sessions.feed(plan.job));
    let drive_plan = plan.clone();
    let drive_feed = feed.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        drive(&drive_plan, &model, in_rx, out_tx, drive_feed.as_deref())
    })
    .await
    .map_err(|e| SessionError::Plan(format!("the compute thread failed: {e}")))?;
    for t in tasks {
        // The writer drains what the thread sent; the reader may be waiting on a link
        // that has nothing more to say.
        if t.is_finished() {
            continue;
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = t.await;
        })
        .await;
    }
    match outcome {
        Ok(o) => {
            if let Some(feed) = &feed {
                let bytes = transcript_bytes(&o.transcript);
                let hash = Hash(*blake3::hash(&bytes).as_bytes());
                let store = store.clone();
                tokio::task::spawn_blocking(move || store.put(&hash, &bytes))
                    .await
                    .map_err(|e| SessionError::Store(e.to_string()))?
                    .map_err(|e| SessionError::Store(e.to_string()))?;
                feed.end(FeedEnd {
                    steps: o.result.steps,
                    transcript: hash,
                });
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

/// The stage's compute loop (on a blocking thread).
fn drive(
    plan: &SessionPlan,
    model: &LlmModel,
    mut inbox: mpsc::Receiver<Result<Frame, SessionError>>,
    outbox: mpsc::Sender<Frame>,
    feed: Option<&super::TokenFeed>,
) -> Result<Outcome, SessionError> {
    let n = plan.stages.len() as u32;
    let s = plan.stage;
    let last = s + 1 == n;
    let from = upstream(s, n);
    let to = downstream(s, n);
    let req = &plan.request;
    let llama = &model.model;
    let context = llama.config().context;
    let range = plan.stages[s as usize].range;
    let send = |f: Frame| {
        outbox
            .blocking_send(f)
            .map_err(|_| SessionError::Downstream(to))
    };
    let mut recv = || -> Result<Frame, SessionError> {
        match inbox.blocking_recv() {
            Some(Ok(Frame::Abort { reason })) => Err(SessionError::Aborted {
                stage: from,
                reason,
            }),
            Some(r) => r,
            None => Err(SessionError::Frame {
                stage: from,
                source: FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()),
            }),
        }
    };
    let out_of_order = |got: &Frame, expected: String| SessionError::OutOfOrder {
        stage: from,
        got: describe(got),
        expected,
    };
    let mut sess =
        StageSession::with_capacity(llama, range, req.prompt.len() + req.max_tokens as usize)?;
    let mut leaves = Vec::new();
    let mut ops = 0u64;
    let mut transcript = Vec::new();
    let mut input = if s == 0 {
        StageInput::Tokens(req.prompt.clone())
    } else {
        match recv()? {
            Frame::Rows { step: 0, rows } => StageInput::Rows(rows),
            f => return Err(out_of_order(&f, "rows of step 0".into())),
        }
    };
    let mut step: u32 = 0;
    let steps = loop {
        let r = match sess.step(input) {
            Ok(r) => r,
            Err(e) => {
                let _ = send(Frame::Abort {
                    reason: format!("stage {s}: {e}"),
                });
                return Err(e.into());
            }
        };
        leaves.push(r.leaves);
        ops += r.ops;
        match r.output {
            StageOutput::Rows(rows) => send(Frame::Rows { step, rows })?,
            StageOutput::Logits(logits) => {
                let token = req.sampler.pick(&logits, u64::from(step));
                transcript.push(token);
                if let Some(feed) = feed {
                    feed.push(token);
                }
                let end = stage::ends(req, context, step as usize, token);
                if n > 1 {
                    send(Frame::Token {
                        step,
                        token,
                        last: end,
                    })?;
                }
                if end {
                    if n > 1 {
                        // Every stage confirms the count: stage 0 sends End down the
                        // pipeline once it has the last token.
                        match recv()? {
                            Frame::End { steps } if steps == step + 1 => {}
                            f => {
                                return Err(out_of_order(
                                    &f,
                                    format!("end after {} steps", step + 1),
                                ))
                            }
                        }
                    }
                    break step + 1;
                }
                if n == 1 {
                    input = StageInput::Tokens(vec![token]);
                    step += 1;
                    continue;
                }
            }
        }
        // The next input.
        match recv()? {
            Frame::Rows { step: t, rows } if s > 0 && t == step + 1 => {
                input = StageInput::Rows(rows);
            }
            Frame::Token {
                step: t,
                token,
                last: end,
            } if s == 0 && t == step => {
                transcript.push(token);
                if end {
                    send(Frame::End { steps: step + 1 })?;
                    break step + 1;
                }
                input = StageInput::Tokens(vec![token]);
            }
            Frame::End { steps } if s > 0 && !last && steps == step + 1 => {
                send(Frame::End { steps })?;
                break steps;
            }
            f => {
                let expected = if s == 0 {
                    format!("the token of step {step}")
                } else {
                    format!("rows of step {} or the end", step + 1)
                };
                let _ = send(Frame::Abort {
                    reason: format!("stage {s}: out-of-order frame from stage {from}"),
                });
                return Err(out_of_order(&f, expected));
            }
        }
        step += 1;
    };
    let trace = StageTrace { leaves, ops };
    let (input, output) = trace.claim(&range, llama.config().layers(), &transcript);
    let result = StageResult {
        input,
        output,
        trace_root: trace.root(),
        steps,
    };
    Ok(Outcome {
        trace,
        transcript,
        result,
    })
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
