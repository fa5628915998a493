//! Buying generated text: what the agent saw stream, and how it checked it.
//!
//! ```text
//!  submit ─▶ stream the last stage's tokens (Step::Token for each, decoded as they come)
//!         ─▶ verify_locally: run the same GenerationRequest here (the whole model, one
//!            process) ── a different token is never accepted
//!         ─▶ follow the job to settlement (watch.rs: disputes, audits)
//!         ─▶ Completed: the streamed tokens must hash to the last stage's revealed
//!            output (`check_transcript`) ── otherwise not accepted
//! ```
//!
//! `verify_locally` compares the whole token sequence with a local run (the tokens
//! are a pure function of the request and its seed), and then checks each stage as
//! an auditor would (`watch.rs`): one teacher-forced prefill of the streamed
//! transcript through the stage's layers, in stage order; the first stage whose
//! output differs while its input agrees lied, and is challenged (the descent, the
//! referee and the slash follow as for an auditor's dispute). Every provider of a
//! job whose tokens differ is left out of the next attempt.

use std::sync::Arc;
use std::time::Duration;

use agentic_compute::llm::generate::{LlmModel, TextStream};
use agentic_compute::llm::stage::GenerationRequest;
use agentic_protocol::{Hash, JobId};
use serde::Serialize;

use super::goal::Goal;
use super::watch::Step;
use crate::requester::generate::load_llm;
use crate::requester::{prepare, PreparedJob, Requester, RequesterError};

/// What the agent got from a generation job, and what it checked.
#[derive(Clone, Debug, Serialize)]
pub struct Generation {
    /// The tokens streamed from the last stage, in order.
    pub tokens: Vec<u32>,
    /// Their text.
    pub text: String,
    /// Seconds from the stream's start to the first token.
    pub first_token_s: Option<f64>,
    /// Seconds the stream took.
    pub stream_s: f64,
    /// Why the stream stopped before the session ended, if it did.
    pub stream_error: Option<String>,
    /// The streamed tokens against the chain.
    pub transcript: TranscriptCheck,
    /// With `verify_locally`: this machine's run of the same request.
    pub local: Option<LocalCheck>,
}

impl Generation {
    /// Whether the agent accepts the text: the session ended, the chain holds its
    /// transcript, and a local run (if asked for) agrees.
    pub fn accepted(&self) -> bool {
        self.stream_error.is_none()
            && matches!(self.transcript, TranscriptCheck::Matches { .. })
            && !matches!(self.local, Some(LocalCheck::Differs { .. }))
    }
}

/// The streamed tokens against the last stage's revealed output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TranscriptCheck {
    /// Not checked (the stream failed, or the job did not complete).
    Unchecked,
    /// The tokens hash to the revealed output.
    Matches {
        /// The transcript's hash.
        transcript: Hash,
    },
    /// The last stage streamed tokens other than those it committed to.
    Differs {
        /// Why (the hashes).
        reason: String,
    },
    /// The job completed but its last stage's output is not revealed.
    NotRevealed,
}

/// This machine's run of the generation against the stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LocalCheck {
    /// The same tokens.
    Agrees,
    /// A different token (or count): never accepted.
    Differs {
        /// The first position where they differ.
        at: usize,
        /// This machine's tokens.
        ours: Vec<u32>,
    },
    /// The request could not be run here.
    CannotRun {
        /// Why.
        reason: String,
    },
}

/// Compares the streamed tokens with a local run's (pure).
pub fn compare(streamed: &[u32], ours: &[u32]) -> LocalCheck {
    if streamed == ours {
        return LocalCheck::Agrees;
    }
    let at = streamed
        .iter()
        .zip(ours)
        .position(|(a, b)| a != b)
        .unwrap_or(streamed.len().min(ours.len()));
    LocalCheck::Differs {
        at,
        ours: ours.to_vec(),
    }
}

/// A generation goal made ready once for all attempts: the job as the ledger
/// would match it, the model (tokenizer and, for `verify_locally`, the runtime),
/// and this machine's own tokens once computed.
pub(crate) struct Prepared {
    pub(crate) base: PreparedJob,
    model: Arc<LlmModel>,
    ours: Option<Result<Vec<u32>, String>>,
}

impl Prepared {
    /// Prepares the goal's job and loads its model (off the async threads).
    pub(crate) async fn new(goal: &Goal) -> Result<Prepared, RequesterError> {
        let req = goal.request();
        let name = goal.model.clone();
        let joined = tokio::task::spawn_blocking(move || {
            let base = prepare(&req, &[])?;
            let (m, _, _) = load_llm(&name)?;
            Ok::<_, RequesterError>((base, m))
        })
        .await
        .map_err(|e| RequesterError::Model {
            model: goal.model.clone(),
            reason: agentic_compute::ComputeError::config(format!("loading stopped: {e}")),
        })?;
        let (base, m) = joined?;
        Ok(Prepared {
            base,
            model: m,
            ours: None,
        })
    }

    /// Streams job `job`'s tokens, reporting each as it arrives, for at most `timeout`.
    pub(crate) async fn stream(
        &self,
        requester: &Requester,
        job: JobId,
        timeout: Duration,
        on: &mut impl FnMut(Step<'_>),
    ) -> Generation {
        let mut text = TextStream::default();
        let mut seen = Vec::new();
        let start = std::time::Instant::now();
        let res = requester
            .stream(job, timeout, |index, token| {
                seen.push(token);
                let piece = text.push(&self.model.tokenizer, token);
                tracing::debug!(%job, index, token, "token");
                on(Step::Token {
                    job,
                    index,
                    token,
                    text: &piece,
                });
            })
            .await;
        let (tokens, first_token_s, stream_error) = match res {
            Ok(s) => (s.tokens, s.first_token.map(|d| d.as_secs_f64()), None),
            Err(e) => {
                tracing::warn!(%job, "the token stream stopped: {e}");
                (seen, None, Some(e.to_string()))
            }
        };
        Generation {
            text: self.model.tokenizer.decode(&tokens).unwrap_or_default(),
            tokens,
            first_token_s,
            stream_s: start.elapsed().as_secs_f64(),
            stream_error,
            transcript: TranscriptCheck::Unchecked,
            local: None,
        }
    }

    /// What replaying job stages from `tokens` (the streamed transcript) takes, or
    /// `None` if the prepared request does not decode.
    pub(crate) fn replay(&self, tokens: &[u32]) -> Option<super::watch::Replay> {
        let request = GenerationRequest::decode(&self.base.input).ok()?;
        Some(super::watch::Replay {
            model: Arc::clone(&self.model),
            request,
            tokens: tokens.to_vec(),
        })
    }

    /// This machine's run of the request (once per goal: the tokens are a pure
    /// function of the request), compared with `streamed`.
    pub(crate) async fn check_locally(&mut self, streamed: &[u32]) -> LocalCheck {
        if self.ours.is_none() {
            let m = Arc::clone(&self.model);
            let input = self.base.input.clone();
            let run = tokio::task::spawn_blocking(move || {
                let req = GenerationRequest::decode(&input).map_err(|e| e.to_string())?;
                m.generate_request(&req, |_| {})
                    .map(|g| g.tokens)
                    .map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("the local run stopped: {e}")));
            self.ours = Some(run);
        }
        match self.ours.as_ref() {
            Some(Ok(ours)) => compare(streamed, ours),
            Some(Err(reason)) => LocalCheck::CannotRun {
                reason: reason.clone(),
            },
            None => LocalCheck::CannotRun {
                reason: "no local run".into(),
            },
        }
    }
}

/// Checks the streamed tokens against the last stage's revealed output.
pub(crate) async fn check_transcript(
    requester: &Requester,
    job: JobId,
    tokens: &[u32],
) -> Result<TranscriptCheck, RequesterError> {
    match requester.check_transcript(job, tokens).await {
        Ok(true) => Ok(TranscriptCheck::Matches {
            transcript: agentic_compute::llm::stage::tokens_hash(tokens),
        }),
        Ok(false) => Ok(TranscriptCheck::NotRevealed),
        Err(e @ RequesterError::TranscriptMismatch { .. }) => Ok(TranscriptCheck::Differs {
            reason: e.to_string(),
        }),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_run_is_compared_token_by_token() {
        assert_eq!(compare(&[1, 2, 3], &[1, 2, 3]), LocalCheck::Agrees);
        assert_eq!(
            compare(&[1, 2, 3], &[1, 5, 3]),
            LocalCheck::Differs {
                at: 1,
                ours: vec![1, 5, 3]
            }
        );
        assert_eq!(
            compare(&[1, 2], &[1, 2, 3]),
            LocalCheck::Differs {
                at: 2,
                ours: vec![1, 2, 3]
            }
        );
    }
}
