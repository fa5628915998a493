//! Generation jobs: the stages held run as one session with the job's other stages
//! ([`crate::session`]); an audit replays the finished session as one prefill.
//!
//! ```text
//!  plan (pure):
//!   held stage, Running, not committed ─▶ journaled? CommitResult again
//!                                         running? wait. data missing? plan_missing
//!                                         session finished ─▶ Journal ─▶ CommitResult
//!                                         every stage assigned ─▶ Compute (= the session)
//!   audited stage                       ─▶ audit::plan_audit (the input is the request)
//!  executor:
//!   start_session: the model, the request blob, every stage's provider and endpoint
//!                  ─▶ session::run::run ─▶ Computed (the stage's trace, its result)
//!   start_audit:   the model, the request, the transcript from the last stage (else
//!                  stage 0's copy) ─▶ stage::replay_stage (one prefill) ─▶ Computed
//!   start_rebuild: a stage taken over after its session ended (another stage
//!                  committed; its holder lapsed, `jobs::deadlines`): the same replay,
//!                  committed as the stage's own result
//! ```
//!
//! A generation stage's result is a claim about the whole session: its trace root over
//! (step, layer) leaves, the hashes chaining it to its neighbours and the step count
//! (`StageResult::steps`). The ledger checks the chain once every stage revealed.

use std::sync::Arc;
use std::time::Duration;

use agentic_client::Client;
use agentic_compute::llm::generate::LlmModel;
use agentic_compute::llm::stage::{self, GenerationRequest, StageRange};
use agentic_protocol::state::Job;
use agentic_protocol::tx::StageResult;
use agentic_protocol::{Hash, JobId, TxBody};

use super::plan::{Action, Actor, Landed, Me, TxKey, View};
use super::tasks::{load_workload, Blob, Computed, Models, TaskError, Workload};
use super::{AuditTiming, Daemon, SessionTiming, Status};
use crate::dataplane::Fetcher;
use crate::journal::Role;
use crate::session::run::{self as session, Peer, SessionPlan};
use crate::session::Sessions;

/// How long a session waits for a link or a frame, and an auditor for the transcript.
pub const SESSION_PATIENCE: Duration = Duration::from_secs(30);

/// How long a session waits for the chain to replace a stage that dropped out.
pub const REPLACE_PATIENCE: Duration = Duration::from_secs(120);

/// Whether `job` is a generation job.
pub(crate) fn is_generation(job: &Job) -> bool {
    job.spec.generation.is_some()
}

/// The trace-layer range of stage `s` of a generation job.
pub(crate) fn range_of(job: &Job, s: u32) -> StageRange {
    let spec = job.spec.stages[s as usize];
    StageRange {
        first: spec.first_layer as usize,
        count: spec.layers as usize,
    }
}

/// A held generation stage, assigned, not committed, not journaled, not running: run
/// the session once every stage has a provider, then journal its result and commit.
pub(crate) fn plan_work(
    view: &View<'_>,
    me: &Me,
    actor: Actor,
    id: JobId,
    job: &Job,
    s: u32,
    out: &mut Vec<Action>,
) {
    // (`stage::plan_started` handled the journaled, running and missing cases.)
    let key = (id, s);
    let local = view.local;
    if let Some(c) = local.computed.get(&key) {
        if !crate::misbehave::lapse::commits_generation(actor.mode()) {
            return;
        }
        out.push(Action::Journal {
            job: id,
            stage: s,
            role: Role::Stage,
            misbehaviour: actor.mode(),
        });
        return super::stage::plan_commit(view, me, (id, job), s, &c.result, out);
    }
    // The session needs every stage's provider.
    let assigned = job
        .stages
        .iter()
        .all(|st| st.slots.iter().all(|x| x.assignment.is_some()));
    if assigned {
        out.push(Action::Compute {
            job: id,
            stage: s,
            input: job.spec.input,
            mode: actor.mode(),
        });
    }
}

/// The sessions' faults this provider reported: `ReplaceStage` for each stage still
/// held, uncommitted, by the provider the session blamed.
pub(crate) fn plan_replacements(view: &View<'_>, out: &mut Vec<Action>) {
    for &(id, stage, provider) in &view.local.faults {
        let Some(job) = view.jobs.get(&id) else {
            continue;
        };
        let Some(st) = job.stages.get(stage as usize) else {
            continue;
        };
        let held = st
            .slots
            .first()
            .and_then(|x| x.assignment.as_ref())
            .is_some_and(|a| a.provider == provider && a.commitment.is_none());
        // Once a stage committed the session ended: the ledger takes no report
        // (a stage that dropped out misses its deadline instead).
        if held && job.status == agentic_protocol::state::JobStatus::Active && !job.any_committed()
        {
            super::plan::send(
                view,
                out,
                TxKey::Replace(id, stage),
                TxBody::ReplaceStage {
                    job: id,
                    stage,
                    provider,
                },
                Landed::Nothing,
            );
        }
    }
}

/// The request a generation job carries as its input blob, fetched and decoded.
async fn request(
    fetcher: &Fetcher,
    input: Hash,
    sources: &[Client],
) -> Result<GenerationRequest, TaskError> {
    let quiet = |_: u64, _: u64| {};
    fetcher
        .fetch(&input, sources, &quiet)
        .await
        .map_err(|e| TaskError::fetch(Blob::Input, e))?;
    let bytes = fetcher
        .store()
        .get(&input)
        .map_err(|e| TaskError::Failed(e.to_string()))?
        .ok_or_else(|| TaskError::Failed("the request vanished from the store".into()))?;
    GenerationRequest::decode(&bytes)
        .map_err(|e| TaskError::Failed(format!("the job's input is not a generation request: {e}")))
}

/// The job's LLM.
async fn llm(
    fetcher: &Fetcher,
    models: &Models,
    model: Hash,
    sources: &[Client],
) -> Result<Arc<LlmModel>, TaskError> {
    match &*load_workload(fetcher, models, model, sources).await? {
        Workload::Llm(m) => Ok(m.clone()),
        _ => Err(TaskError::Failed(
            "a generation job's model must be an LLM (GGUF)".into(),
        )),
    }
}

/// Checks the request against the job on chain (the ledger knows only the counts).
fn check_request(job: &Job, req: &GenerationRequest, m: &LlmModel) -> Result<(), TaskError> {
    req.validate(&m.model)
        .map_err(|e| TaskError::Failed(format!("generation request: {e}")))?;
    let g = job.spec.generation.unwrap_or_default();
    if req.prompt.len() as u64 != u64::from(g.prompt_tokens) || req.max_tokens != g.max_tokens {
        return Err(TaskError::Failed(format!(
            "the request has {} prompt tokens and max_tokens {}, the job says {} and {}",
            req.prompt.len(),
            req.max_tokens,
            g.prompt_tokens,
            g.max_tokens
        )));
    }
    Ok(())
}

/// What a finished stage hands the planner.
fn computed(result: StageResult, leaves: Vec<Hash>, ops: u64) -> Computed {
    Computed {
        pushed: result.output,
        result,
        leaves,
        ops,
    }
}

impl Daemon {
    /// Every stage's provider and endpoint as the chain assigns them now (`None`: a
    /// stage is unassigned, or a provider has no endpoint yet).
    async fn lineup_of(&mut self, job: &Job) -> Option<Vec<Peer>> {
        let mut peers = Vec::with_capacity(job.stages.len());
        for (i, st) in job.stages.iter().enumerate() {
            let a = st.slots.first().and_then(|x| x.assignment.as_ref())?;
            let endpoint = if a.provider == self.me.address {
                self.status().endpoint.clone()
            } else {
                self.endpoint(&a.provider).await?
            };
            peers.push(Peer {
                range: range_of(job, i as u32),
                provider: a.provider,
                endpoint,
            });
        }
        Some(peers)
    }

    /// Publishes each running session's line-up as the chain has it now (a replaced
    /// stage starts the session's next epoch), and stops the sessions of stages this
    /// provider no longer holds.
    pub(super) async fn refresh_sessions(&mut self, held: &[JobId]) {
        for (id, current) in self.sessions.lineups() {
            let job = held
                .contains(&id)
                .then(|| self.jobs.get(&id).cloned())
                .flatten();
            let mine = job.as_ref().and_then(|j| {
                j.stages.iter().position(|st| {
                    st.slots
                        .first()
                        .and_then(|x| x.assignment.as_ref())
                        .is_some_and(|a| a.provider == self.me.address)
                })
            });
            let (Some(job), Some(_)) = (job, mine) else {
                let stale: Vec<(JobId, u32)> =
                    self.running.keys().filter(|k| k.0 == id).copied().collect();
                for k in stale {
                    if let Some(t) = self.running.remove(&k) {
                        t.abort();
                    }
                }
                self.sessions.finish(id);
                continue;
            };
            let changed = job.stages.iter().zip(current.iter()).any(|(st, p)| {
                st.slots
                    .first()
                    .and_then(|x| x.assignment.as_ref())
                    .map(|a| a.provider)
                    != Some(p.provider)
            });
            if changed {
                if let Some(peers) = self.lineup_of(&job).await {
                    tracing::info!(job = id.0, "a stage was replaced: the session's next epoch");
                    self.sessions.set_lineup(id, peers);
                }
            }
        }
    }

    /// Starts our part of the session of generation job `id` at stage `s`.
    pub(super) async fn start_session(&mut self, id: JobId, job: &Job, s: u32) {
        let Some(stages) = self.lineup_of(job).await else {
            self.report(&format!(
                "job {} stage {s}: a stage without a provider or an endpoint",
                id.0
            ));
            return;
        };
        let sources = self.sources(job, s).await;
        let (fetcher, models, sessions) = (
            self.fetcher.clone(),
            self.models.clone(),
            self.sessions.clone(),
        );
        let (model, input, job_c) = (job.spec.model, job.spec.input, job.clone());
        let (status, link_delay) = (self.status.clone(), self.config.link_delay);
        let (mode, range) = (self.actor.mode(), range_of(job, s));
        tracing::info!(
            job = id.0,
            stage = s,
            stages = stages.len(),
            "joining a generation session"
        );
        self.running.insert(
            (id, s),
            tokio::spawn(async move {
                let m = llm(&fetcher, &models, model, &sources).await?;
                let request = request(&fetcher, input, &sources).await?;
                check_request(&job_c, &request, &m)?;
                let plan = SessionPlan {
                    job: id,
                    stage: s,
                    stages,
                    request,
                    patience: SESSION_PATIENCE,
                    replace_patience: REPLACE_PATIENCE,
                    link_delay,
                    requester: job_c.requester,
                    fault: crate::misbehave::perturb_step::session_fault(
                        mode,
                        range,
                        m.model.config().n_layer,
                    ),
                };
                let (started, clock) = (unix_ms(), std::time::Instant::now());
                let o = session::run(plan, m, sessions, fetcher.store().clone())
                    .await
                    .map_err(|e| TaskError::Failed(format!("session: {e}")))?;
                record(&status, |st| {
                    st.last_session = Some(SessionTiming {
                        job: id,
                        stage: s,
                        steps: o.result.steps,
                        started_unix_ms: started,
                        wall_ms: clock.elapsed().as_secs_f64() * 1e3,
                    })
                });
                Ok(computed(o.result, o.trace.flat(), o.trace.ops))
            }),
        );
    }

    /// Starts the audit of stage `s` of generation job `id`: the transcript from the
    /// session's stages, then one teacher-forced prefill through the stage's layers.
    pub(super) async fn start_generation_audit(&mut self, id: JobId, job: &Job, s: u32) {
        let holders = self.transcript_sources(job).await;
        self.start_replay(id, job, s, Replay::Audit, holders).await
    }

    /// Starts rebuilding stage `s` of generation job `id`, which this provider took
    /// over after the session ended (its holder missed a deadline, `jobs::deadlines`):
    /// the same replay as an audit, from `holders` (`ended_transcript`), whose result
    /// this provider then commits as the stage's (an honest session's trace is a pure
    /// function of the transcript).
    pub(super) async fn start_rebuild(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        holders: Vec<Client>,
    ) {
        self.start_replay(id, job, s, Replay::Rebuild, holders)
            .await
    }

    /// The transcript's sources: the last stage's provider (it sampled the tokens and
    /// serves the requester's stream), then stage 0's (it was fed every token and
    /// serves a copy once the session ended), never this provider itself.
    async fn transcript_sources(&mut self, job: &Job) -> Vec<Client> {
        let last = job.stages.len() - 1;
        let mut out = Vec::new();
        let mut seen = Vec::new();
        for st in [last, 0] {
            let Some(p) = job.stages[st]
                .slots
                .first()
                .and_then(|x| x.assignment.as_ref())
                .map(|a| a.provider)
            else {
                continue;
            };
            if p == self.me.address || seen.contains(&p) {
                continue;
            }
            seen.push(p);
            if let Some(endpoint) = self.endpoint(&p).await {
                out.push(Client::new(endpoint));
            }
        }
        out
    }

    /// The transcript's holders if one of them (the last stage, stage 0) reports the
    /// session of `id` ended, each asked once and briefly. A stage taken over while
    /// another has committed is rebuilt only then; otherwise the session still runs (a
    /// stage may commit before the end) and the new holder joins it.
    pub(super) async fn ended_transcript(&mut self, id: JobId, job: &Job) -> Option<Vec<Client>> {
        let holders = self.transcript_sources(job).await;
        for c in &holders {
            let asked = tokio::time::timeout(Duration::from_secs(2), c.session_state(id)).await;
            if matches!(asked, Ok(Ok(st)) if st.end.is_some()) {
                return Some(holders);
            }
        }
        None
    }

    async fn start_replay(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        why: Replay,
        holders: Vec<Client>,
    ) {
        let sources = self.sources(job, s).await;
        // An auditor of a stage past 0 replays only the stage's layers, from the input
        // rows the stage received, once they match the input claim the stage published
        // with its commitment (`CommitSession`); else it replays the prefix too.
        let rows_from = match why {
            Replay::Audit if s > 0 => {
                let st = &job.stages[s as usize];
                let held = st.slots.iter().filter_map(|x| x.assignment.as_ref());
                let claimed = held.clone().find_map(|a| a.input);
                let provider = held.map(|a| a.provider).next();
                let client = match provider {
                    Some(p) => self.endpoint(&p).await.map(Client::new),
                    None => None,
                };
                claimed.zip(client)
            }
            _ => None,
        };
        if holders.is_empty() {
            self.report(&format!(
                "job {} stage {s}: no stage serves the session's transcript",
                id.0
            ));
            return;
        }
        let (fetcher, models) = (self.fetcher.clone(), self.models.clone());
        let (model, input, job_c) = (job.spec.model, job.spec.input, job.clone());
        let (status, sessions) = (self.status.clone(), self.sessions.clone());
        let turns = self.config.replay_turns.clone();
        let range = range_of(job, s);
        match why {
            Replay::Audit => {
                tracing::info!(job = id.0, stage = s, "auditing a generation by prefill")
            }
            Replay::Rebuild => tracing::info!(
                job = id.0,
                stage = s,
                "rebuilding a stage of a finished session by prefill"
            ),
        }
        self.running.insert(
            (id, s),
            tokio::spawn(async move {
                let m = llm(&fetcher, &models, model, &sources).await?;
                let req = request(&fetcher, input, &sources).await?;
                check_request(&job_c, &req, &m)?;
                let tokens = transcript(&holders, id).await?;
                let rows = match &rows_from {
                    Some((claim, client)) => {
                        let shape = (&range, req.prompt.len(), tokens.len());
                        match input_rows(client, id, s, &m, shape, claim).await {
                            Ok(rows) => Some(rows),
                            Err(why) => {
                                tracing::info!(
                                    job = id.0,
                                    stage = s,
                                    %why,
                                    "no usable input rows: replaying the prefix too"
                                );
                                None
                            }
                        }
                    }
                    None => None,
                };
                if why == Replay::Rebuild {
                    // Serve it onwards, as stage 0 does, for later auditors.
                    let hash = crate::session::run::store_transcript(fetcher.store(), &tokens)
                        .await
                        .map_err(TaskError::Failed)?;
                    sessions.publish_transcript(
                        id,
                        &tokens,
                        crate::session::FeedEnd {
                            steps: tokens.len() as u32,
                            transcript: hash,
                        },
                    );
                }
                tokio::task::spawn_blocking(move || {
                    let _turn = turns
                        .as_ref()
                        .map(|t| t.lock().unwrap_or_else(|e| e.into_inner()));
                    let clock = std::time::Instant::now();
                    // The last stage claims what the model samples; stage 0 what it was
                    // fed (the transcript): an honest session makes them equal.
                    let (p, t) = (&req.prompt, &tokens);
                    let replayed = match &rows {
                        Some(rows) => stage::replay_claim_from_rows(
                            &m.model,
                            &range,
                            p,
                            t,
                            rows,
                            &req.sampler,
                        ),
                        None => stage::replay_claim(&m.model, &range, p, t, &req.sampler),
                    };
                    let (trace, input, output) =
                        replayed.map_err(|e| TaskError::Failed(format!("replay: {e}")))?;
                    let replay_ms = clock.elapsed().as_secs_f64() * 1e3;
                    if why == Replay::Audit {
                        record(&status, |st| {
                            st.last_audit = Some(AuditTiming {
                                job: id,
                                stage: s,
                                replay_ms,
                                from_rows: rows.is_some(),
                            })
                        });
                    }
                    let result = StageResult {
                        input,
                        output,
                        trace_root: trace.root(),
                        steps: trace.steps() as u32,
                    };
                    Ok(computed(result, trace.flat(), trace.ops))
                })
                .await
                .map_err(|e| TaskError::Failed(e.to_string()))?
            }),
        );
    }
}

/// Why a finished session is replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Replay {
    /// To audit another provider's stage.
    Audit,
    /// To take over a stage whose provider lapsed after the session.
    Rebuild,
}

/// Whether generation job `job`'s session may have ended: a stage other than `s` has
/// committed (honest stages commit only once their session ran to its end). A provider
/// that takes stage `s` then asks the transcript's holders (`ended_transcript`) and
/// rebuilds the stage from the transcript instead of joining a session.
pub(crate) fn session_over(job: &Job, s: u32) -> bool {
    job.stages.iter().enumerate().any(|(i, st)| {
        i != s as usize
            && st
                .slots
                .iter()
                .filter_map(|x| x.assignment.as_ref())
                .any(|a| a.commitment.is_some())
    })
}

/// Why an auditor replays a stage's prefix instead of its input rows.
#[derive(Debug, thiserror::Error)]
enum RowsUnusable {
    #[error("the stage's provider did not serve them in time")]
    Late,
    #[error("fetching them: {0}")]
    Fetch(#[from] agentic_client::ClientError),
    #[error("the blob is not input rows of the model's width")]
    NotRows,
    #[error("they do not fit the session: {0}")]
    Shape(#[from] agentic_compute::ComputeError),
    #[error("they are not the rows of the stage's published input claim")]
    NotTheClaim,
    #[error("checking them: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The input rows stage `s` of `id` received, from its provider's data plane, checked
/// against the input claim it published with its commitment (`claim`) for a session of
/// `(range, prompt length, steps)`: why not, when they are missing or not those.
async fn input_rows(
    client: &Client,
    id: JobId,
    s: u32,
    m: &Arc<LlmModel>,
    (range, prompt_len, steps): (&StageRange, usize, usize),
    claim: &Hash,
) -> Result<Vec<f32>, RowsUnusable> {
    // Exactly the rows of the prompt and the steps (`input_rows_bytes`), no more.
    let d = m.model.config().dim;
    let expected = stage::input_rows_len((prompt_len + steps).saturating_sub(1), d);
    let fetch = async {
        let named = client.session_inputs(id, s).await?;
        client.get_blob_at_most(&named.blob, expected).await
    };
    let bytes = tokio::time::timeout(SESSION_PATIENCE / 6, fetch)
        .await
        .map_err(|_| RowsUnusable::Late)??;
    let model = m.clone();
    let range = *range;
    let claim = *claim;
    tokio::task::spawn_blocking(move || {
        let rows = stage::input_rows_from_bytes(&bytes, d).ok_or(RowsUnusable::NotRows)?;
        let ours = stage::rows_input_claim(&model.model, &range, prompt_len, steps, &rows)?;
        if ours != claim {
            return Err(RowsUnusable::NotTheClaim);
        }
        Ok(rows)
    })
    .await?
}

/// The finished session's transcript from the stages that serve it (the last stage,
/// then stage 0): follows a token stream (`/v1/sessions/{job}/tokens`) until the end,
/// going on from the token reached with the next holder if the stream breaks or a
/// holder cannot be reached, for up to [`SESSION_PATIENCE`] in all.
async fn transcript(holders: &[Client], id: JobId) -> Result<Vec<u32>, TaskError> {
    use agentic_client::api::SessionEvent;
    use futures::StreamExt as _;

    /// How one subscription ended (short of the patience).
    enum Followed {
        End,
        Abort(String),
        /// The stream closed before the end: subscribe again.
        Closed,
    }
    let until = tokio::time::Instant::now() + SESSION_PATIENCE;
    let mut tokens: Vec<u32> = Vec::new();
    // The last failure to reach the stream, while it stands.
    let mut failure: Option<agentic_client::ClientError> = None;
    let mut turn = 0;
    loop {
        // Each holder in turn, each try bounded: a holder that has no copy (a stage
        // rebuilt elsewhere) answers with a feed that never starts.
        let last = &holders[turn % holders.len()];
        turn += 1;
        let attempt = until.min(tokio::time::Instant::now() + SESSION_PATIENCE / 6);
        let follow = async {
            let stream = last.session_tokens(id, tokens.len() as u32).await?;
            failure = None;
            let mut stream = std::pin::pin!(stream);
            while let Some(ev) = stream.next().await {
                match ev? {
                    SessionEvent::Token { index, token } if index as usize == tokens.len() => {
                        tokens.push(token);
                    }
                    // A token out of order: subscribe again from the one expected.
                    SessionEvent::Token { .. } => return Ok(Followed::Closed),
                    SessionEvent::End(_) => return Ok(Followed::End),
                    SessionEvent::Abort { reason } => return Ok(Followed::Abort(reason)),
                }
            }
            Ok::<_, agentic_client::ClientError>(Followed::Closed)
        };
        let followed = tokio::time::timeout_at(attempt, follow).await;
        match followed {
            Ok(Ok(Followed::End)) => return Ok(tokens),
            Ok(Ok(Followed::Abort(reason))) => {
                return Err(TaskError::Failed(format!(
                    "the session was aborted: {reason}"
                )))
            }
            Ok(Ok(Followed::Closed)) | Err(_) => {}
            Ok(Err(e)) => failure = Some(e),
        }
        if tokio::time::Instant::now() >= until {
            return Err(match failure {
                Some(e) => TaskError::Unavailable {
                    what: Blob::Input,
                    detail: format!("the transcript: {e}"),
                },
                None => TaskError::Failed("the session has not ended".into()),
            });
        }
        // Not in a loop that hammers a provider that is down or restarting.
        tokio::time::sleep_until(
            until.min(tokio::time::Instant::now() + Duration::from_millis(200)),
        )
        .await;
    }
}

/// Updates the daemon's status from a background task.
fn record(status: &std::sync::Mutex<Status>, f: impl FnOnce(&mut Status)) {
    f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Now, in ms since the Unix epoch (0 if the clock is before it).
fn unix_ms() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or_default()
}

/// The sessions registry a daemon shares with its data plane.
pub(crate) fn registry(key: &commonware_cryptography::ed25519::PrivateKey) -> Arc<Sessions> {
    Arc::new(Sessions::new(key.clone()))
}
