//! Generation jobs: a prompt in, tokens streamed out as the last stage samples them,
//! a bill for the tokens actually generated.
//!
//! ```text
//!  prepare_generation (pure but for reading the model):
//!    prompt text ─ tokenizer (+ chat template) ─▶ prompt ids ─▶ GenerationRequest blob ─▶ spec.input
//!    trace layers 0..=L+1 split into K stages by prefill ops ─▶ per stage GenerationCost
//!      (prefill, step, per key) ─▶ StageSpec { ops, step_ops, key_ops }
//!    escrow = State::escrow_for(spec) = Σ ops(max_tokens) × max_price
//!  Requester::stream (I/O):
//!    wait until every stage has a provider ─▶ the last stage's data plane
//!    GET /v1/sessions/{job}/tokens ─▶ on_token(index, id) for each, resuming after a
//!    dropped connection ─▶ the end (steps, transcript hash)
//! ```
//!
//! The model is named by its GGUF's blake3. A registry LLM (`smollm2-135m`) is not
//! uploaded: providers take it from the registry's public source by that hash; a GGUF
//! file given by path is uploaded like any model. The streamed tokens are checked
//! against the chain once the last stage reveals ([`Requester::check_transcript`]): its
//! committed output is the hash of the transcript.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentic_compute::llm::generate::LlmModel;
use agentic_compute::llm::stage::{self, GenerationRequest, StageRange};
use agentic_compute::llm::{self, Sampler};
use agentic_compute::registry;
use agentic_protocol::state::{Job, JobStatus};
use agentic_protocol::tx::{GenerationSpec, StageSpec};
use agentic_protocol::{Address, Hash, JobId};
use futures::StreamExt as _;

use agentic_client::api::SessionEvent;
use agentic_client::Client;

use super::client::Requester;
use super::error::RequesterError;
use super::placement;
use super::request::JobRequest;
use super::spec::{assemble_spec, PreparedJob};

/// What to generate ([`super::JobInput::Generate`]).
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationInput {
    /// The prompt text.
    pub prompt: String,
    /// Wrap the prompt as one user turn of the model's chat template.
    pub chat: bool,
    /// Most tokens to generate (≥ 1).
    pub max_tokens: u32,
    /// Greedy or seeded sampling.
    pub sampler: Sampler,
    /// Tokens that end the generation (`None`: the model's end-of-text tokens).
    pub stop: Option<Vec<u32>>,
}

impl GenerationInput {
    /// `max_tokens` greedy tokens after `prompt`, stopping at the model's end tokens.
    pub fn new(prompt: impl Into<String>, max_tokens: u32) -> GenerationInput {
        GenerationInput {
            prompt: prompt.into(),
            chat: false,
            max_tokens,
            sampler: Sampler::Greedy,
            stop: None,
        }
    }
}

/// Loads an LLM by registry name (fetched from its public source on first use) or GGUF
/// path; returns it with its GGUF's hash and the bytes to upload (none for a registry
/// model). A registry model is loaded once per process and shared (a requester that
/// prepares a job and then decodes its tokens, the gateway, the MCP server).
pub fn load_llm(name: &str) -> Result<(Arc<LlmModel>, Hash, Vec<u8>), RequesterError> {
    static LOADED: Mutex<BTreeMap<String, Arc<LlmModel>>> = Mutex::new(BTreeMap::new());
    let err = |reason| RequesterError::Model {
        model: name.to_string(),
        reason,
    };
    if registry::is_registry_llm(name) {
        let hash = registry::SMOLLM2_GGUF_BLAKE3
            .parse::<Hash>()
            .map_err(|_| err(agentic_compute::ComputeError::config("bad pinned hash")))?;
        let mut loaded = LOADED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = loaded.get(name) {
            return Ok((m.clone(), hash, Vec::new()));
        }
        registry::fetch_smollm2(&registry::smollm2_dir()).map_err(err)?;
        let m = Arc::new(llm::load(name).map_err(err)?);
        loaded.insert(name.to_string(), m.clone());
        return Ok((m, hash, Vec::new()));
    }
    let bytes = std::fs::read(name).map_err(|source| {
        err(agentic_compute::ComputeError::Io {
            path: name.into(),
            source,
        })
    })?;
    let m = llm::generate::load_gguf_from(&mut std::io::Cursor::new(&bytes[..])).map_err(err)?;
    Ok((Arc::new(m), Hash(*blake3::hash(&bytes).as_bytes()), bytes))
}

/// Prepares a generation job (module docs).
pub(crate) fn prepare_generation(
    req: &JobRequest,
    g: &GenerationInput,
) -> Result<PreparedJob, RequesterError> {
    let (m, model_hash, bundle) = load_llm(&req.model)?;
    let input_err = |reason| RequesterError::Input {
        model: req.model.clone(),
        reason,
    };
    if g.prompt.is_empty() {
        return Err(RequesterError::EmptyInput("the prompt is empty".into()));
    }
    let prompt = m.encode_prompt(&g.prompt, g.chat).map_err(input_err)?;
    let request = GenerationRequest {
        prompt,
        max_tokens: g.max_tokens,
        sampler: g.sampler,
        stop: g.stop.clone().unwrap_or_else(|| m.stop_tokens.clone()),
    };
    request.validate(&m.model).map_err(input_err)?;
    let p = request.prompt.len();
    // Trace layers: 0 the embedding, 1..=L the blocks, L + 1 the head (L + 2).
    let layers = m.model.config().layers();
    if req.stages > layers {
        return Err(RequesterError::MoreStagesThanLayers {
            stages: req.stages,
            layers,
            model: req.model.clone(),
        });
    }
    // Split by the ops of a whole generation at max_tokens (the head and the blocks
    // dominate; the embedding alone meters nothing).
    let per_layer: Vec<u64> = (0..layers)
        .map(|l| {
            stage::stage_cost(&m.model, &StageRange { first: l, count: 1 }, p)
                .ops(p as u64, u64::from(g.max_tokens))
                .unwrap_or(u64::MAX / layers as u64)
        })
        .collect();
    let ranges =
        placement::balanced_split(&per_layer, req.stages).ok_or(RequesterError::ZeroStages)?;
    let costs: Vec<_> = ranges
        .iter()
        .map(|r| {
            stage::stage_cost(
                &m.model,
                &StageRange {
                    first: r.start,
                    count: r.len(),
                },
                p,
            )
        })
        .collect();
    let input = request.encode();
    let input_hash = Hash(*blake3::hash(&input).as_bytes());
    // Each stage: its prefill ops, and what each further step and attended key adds.
    let stages: Vec<StageSpec> = ranges
        .iter()
        .zip(&costs)
        .map(|(r, c)| StageSpec {
            first_layer: r.start as u32,
            layers: r.len() as u32,
            ops: c.prefill,
            step_units: 0,
            step_ops: c.step,
            key_ops: c.per_key,
        })
        .collect();
    // Named providers, one per stage (the partitioner's `auto` placement is for
    // single passes: a session's stages are placed by the ledger or by name).
    let placement = match &req.placement {
        super::request::PlacementChoice::Named(names) if names.len() != stages.len() => {
            return Err(RequesterError::PlacementLength {
                stages: stages.len(),
                named: names.len(),
            })
        }
        super::request::PlacementChoice::Named(names) => names.clone(),
        _ => Vec::new(),
    };
    let generation = GenerationSpec {
        prompt_tokens: p as u32,
        max_tokens: g.max_tokens,
    };
    let (spec, escrow) = assemble_spec(
        req,
        model_hash,
        input_hash,
        stages,
        placement,
        Some(generation),
    )?;
    let layer_names = (0..layers).map(|i| m.model.layer_name(i)).collect();
    Ok(PreparedJob {
        bundle,
        model_hash,
        input_hash,
        input,
        spec,
        escrow,
        layer_ops: per_layer,
        layer_names,
        boundary_bytes: Vec::new(),
        placement: None,
        training: None,
    })
}

/// A finished generation as the requester saw it stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Streamed {
    /// The job.
    pub job: JobId,
    /// The tokens, in order.
    pub tokens: Vec<u32>,
    /// Steps the session ran (= tokens).
    pub steps: u32,
    /// The transcript's hash as the last stage announced it.
    pub transcript: Hash,
    /// From submission to the first token.
    pub first_token: Option<Duration>,
    /// From submission to the end.
    pub elapsed: Duration,
}

/// How long a stream waits, after the last stage aborted it, for the chain to replace
/// that stage before it reports the session failed.
pub const ABORT_GRACE: Duration = Duration::from_secs(60);

impl Requester {
    /// Streams the tokens of generation job `id` from its last stage, calling
    /// `on_token(index, token)` with each as soon as it arrives (each once, in order,
    /// also across a reconnect); returns when the session ends. Waits up to
    /// `timeout` in all.
    pub async fn stream(
        &self,
        id: JobId,
        timeout: Duration,
        mut on_token: impl FnMut(u32, u32),
    ) -> Result<Streamed, RequesterError> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut tokens: Vec<u32> = Vec::new();
        let mut first_token = None;
        let mut last_error = String::new();
        // The last stage's provider that aborted its stream, when, and why: a stage
        // replaced on chain (`ReplaceStage`) takes the stream over from where it is;
        // the same provider still assigned after [`ABORT_GRACE`] means the session
        // failed.
        let mut aborted: Option<(Address, Instant, String)> = None;
        loop {
            if Instant::now() >= deadline {
                return Err(RequesterError::Timeout {
                    job: id,
                    waited: start.elapsed(),
                });
            }
            let job = self.job(id).await?;
            if job.spec.generation.is_none() {
                return Err(RequesterError::NotGeneration(id));
            }
            if job.status != JobStatus::Active
                && job.stages.last().is_some_and(|st| st.result.is_none())
            {
                return Err(RequesterError::SessionFailed {
                    job: id,
                    reason: aborted.map_or_else(|| ended_why(&job), |a| a.2),
                });
            }
            let last_provider = job
                .stages
                .last()
                .and_then(|st| st.slots.first())
                .and_then(|x| x.assignment.as_ref())
                .map(|a| a.provider);
            if let Some((who, since, reason)) = &aborted {
                if last_provider == Some(*who) {
                    if since.elapsed() >= ABORT_GRACE {
                        return Err(RequesterError::SessionFailed {
                            job: id,
                            reason: reason.clone(),
                        });
                    }
                    tokio::time::sleep(self.poll_interval).await;
                    continue;
                }
                aborted = None;
            }
            let Some(endpoint) = self.last_stage_endpoint(&job).await? else {
                if job.status != JobStatus::Active {
                    return Err(RequesterError::SessionFailed {
                        job: id,
                        reason: format!("{} and no session ran", ended_why(&job)),
                    });
                }
                tokio::time::sleep(self.poll_interval).await;
                continue;
            };
            let events = Client::new(endpoint)
                .session_tokens(id, tokens.len() as u32)
                .await;
            let mut events = match events {
                Ok(e) => Box::pin(e),
                Err(e) => {
                    last_error = e.to_string();
                    tokio::time::sleep(self.poll_interval).await;
                    continue;
                }
            };
            loop {
                let next = tokio::time::timeout_at(deadline.into(), events.next()).await;
                match next {
                    Err(_) => {
                        return Err(RequesterError::Timeout {
                            job: id,
                            waited: start.elapsed(),
                        })
                    }
                    Ok(None) => break, // the connection ended: resume
                    Ok(Some(Err(e))) => {
                        last_error = e.to_string();
                        break;
                    }
                    Ok(Some(Ok(SessionEvent::Token { index, token }))) => {
                        if index as usize != tokens.len() {
                            continue; // a repeat after a resume
                        }
                        first_token.get_or_insert_with(|| start.elapsed());
                        tokens.push(token);
                        on_token(index, token);
                    }
                    Ok(Some(Ok(SessionEvent::End(end)))) => {
                        return Ok(Streamed {
                            job: id,
                            tokens,
                            steps: end.steps,
                            transcript: end.transcript,
                            first_token,
                            elapsed: start.elapsed(),
                        })
                    }
                    Ok(Some(Ok(SessionEvent::Abort { reason }))) => {
                        if let Some(p) = last_provider {
                            aborted = Some((p, Instant::now(), reason.clone()));
                        }
                        last_error = reason;
                        break;
                    }
                }
            }
            tracing::debug!(job = id.0, error = %last_error, "token stream dropped; resuming");
            tokio::time::sleep(self.poll_interval).await;
        }
    }

    /// The data-plane endpoint of the job's last stage, once it has a provider.
    /// Stops job `id`'s generation session early: the last stage, asked with this
    /// requester's signature, marks the token it samples next the last one, as a stop
    /// token would; every stage then commits the steps it ran and bills them, and the
    /// rest of the escrow comes back. Returns the tokens sampled when the stop arrived.
    /// A client that no longer wants the text (a closed stream) calls it so as not to
    /// pay for tokens nobody reads. Refused by the provider (an `Api` error) when the
    /// session already ended there or the key is not the job's requester's.
    pub async fn stop(&self, id: JobId) -> Result<u32, RequesterError> {
        let job = self.job(id).await?;
        if job.spec.generation.is_none() {
            return Err(RequesterError::NotGeneration(id));
        }
        let endpoint =
            self.last_stage_endpoint(&job)
                .await?
                .ok_or_else(|| RequesterError::SessionFailed {
                    job: id,
                    reason: "no provider holds its last stage to stop".into(),
                })?;
        let stopping = Client::new(endpoint).stop_session(id, self.key()).await?;
        Ok(stopping.tokens)
    }

    async fn last_stage_endpoint(&self, job: &Job) -> Result<Option<String>, RequesterError> {
        let Some(a) = job
            .stages
            .last()
            .and_then(|st| st.slots.first())
            .and_then(|x| x.assignment.as_ref())
        else {
            return Ok(None);
        };
        let p = self.client().provider(&a.provider).await?;
        let e = p.provider.offer.endpoint.0;
        Ok((!e.is_empty()).then_some(e))
    }

    /// Checks streamed tokens against the chain: the last stage's revealed output is
    /// the hash of the transcript. `Ok(false)` while it has not revealed.
    pub async fn check_transcript(
        &self,
        id: JobId,
        tokens: &[u32],
    ) -> Result<bool, RequesterError> {
        let job = self.job(id).await?;
        let Some(r) = job.stages.last().and_then(|st| st.result) else {
            return Ok(false);
        };
        let ours = stage::tokens_hash(tokens);
        if r.output != ours {
            return Err(RequesterError::TranscriptMismatch {
                job: id,
                streamed: ours,
                on_chain: r.output,
            });
        }
        Ok(true)
    }
}

/// Why a generation job that is no longer active produced no session result: its
/// status, and — when some stage never got a provider — that the ledger found none
/// within the match timeout at the job's price (the usual cause of a cancelled job: no
/// registered provider free at or below `max_price`).
fn ended_why(job: &Job) -> String {
    let unmatched: Vec<String> = job
        .stages
        .iter()
        .enumerate()
        .filter(|(_, st)| st.slots.iter().all(|x| x.assignment.is_none()))
        .map(|(i, _)| i.to_string())
        .collect();
    if job.status == JobStatus::Cancelled && !unmatched.is_empty() {
        return format!(
            "the job is Cancelled: no provider took stage(s) {} within the match timeout at \
             max price {} per mega-op (`agentic query offers` lists the providers' prices; \
             raise --max-price or wait for capacity)",
            unmatched.join(", "),
            job.spec.max_price
        );
    }
    format!("the job is {:?}", job.status)
}
