//! Act 7: an agent under a mandate buys a chat completion from an LLM split over
//! three providers. The stages run as one session across the providers, the tokens
//! stream to the agent as the last stage samples them, every stage is audited by one
//! prefill replay, and each provider is paid the ops of the tokens actually generated
//! × its price.

use std::time::Instant;

use agentic_agent::requester::generate::load_llm;
use agentic_agent::requester::{GenerationInput, JobInput, JobRequest};
use agentic_compute::llm::generate::TextStream;
use agentic_compute::llm::stage::GenerationRequest;
use agentic_compute::llm::Sampler;
use agentic_protocol::event::Event;
use agentic_protocol::state::JobStatus;
use agentic_protocol::tx::MandateTerms;
use agentic_protocol::types::Region;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Amount, Height, JobId, MandateId};
use anyhow::{bail, Context};
use serde::Serialize;

use crate::demo::cast;
use crate::demo::purchase::thousands;
use crate::demo::world::World;

/// The question the agent asks.
const PROMPT: &str = "What does a compute market sell? Answer in one sentence.";
/// Most tokens it pays for.
const MAX_TOKENS: u32 = 32;

/// One stage of the generation and its bill.
#[derive(Clone, Debug, Serialize)]
pub struct GenerationStage {
    /// The stage.
    pub stage: u32,
    /// Its trace layers (0 the embedding, the blocks, the head last).
    pub layers: String,
    /// Who ran it.
    pub provider: String,
    /// At what price per mega-op.
    pub price: Amount,
    /// Ops of the tokens generated (`StageSpec::generation_ops`).
    pub ops: u64,
    /// `ops × price / 10^6`.
    pub bill: Amount,
    /// What the ledger paid it.
    pub paid: Amount,
    /// Who audited it, and its fee.
    pub auditor: Option<String>,
    /// The auditor's verdict (`agreed`).
    pub audit: String,
}

/// What the generation act did.
#[derive(Clone, Debug, Serialize)]
pub struct GenerationReport {
    /// The model.
    pub model: String,
    /// The mandate the agent spent under.
    pub mandate: MandateId,
    /// The job.
    pub job: JobId,
    /// The prompt.
    pub prompt: String,
    /// The answer as it streamed.
    pub text: String,
    /// Tokens generated.
    pub tokens: usize,
    /// Seconds from submission to the first token, and to the last.
    pub first_token_s: f64,
    /// Seconds from submission to the last token.
    pub last_token_s: f64,
    /// The escrow locked (prefill + `max_tokens` decode steps at the max price).
    pub escrow: Amount,
    /// Per stage.
    pub stages: Vec<GenerationStage>,
    /// Paid to providers and auditors.
    pub paid: Amount,
    /// The principal's balance drop.
    pub principal_paid: Amount,
    /// The tokens equal one local run of the model on the same request.
    pub same_as_local_run: bool,
    /// The last stage's committed output is the hash of the streamed tokens.
    pub transcript_on_chain: bool,
}

pub async fn run(w: &mut World) -> anyhow::Result<GenerationReport> {
    let title = "An agent buys a chat completion from an LLM split over three providers";
    w.progress.begin(title);
    // Two more providers join; the job accepts only the regions of the six honest,
    // live providers (the crashed and the slashed ones are elsewhere).
    for p in cast::LLM_PROVIDERS {
        w.progress.step(format!("{} joins", p.name));
        w.start_provider(p).await?;
    }
    let agent = w.requester(cast::AGENT)?;
    let principal = w.address(cast::PRINCIPAL)?;
    let regions: Vec<Region> = cast::PROVIDERS
        .iter()
        .chain(cast::LLM_PROVIDERS)
        .map(|p| Region(p.region))
        .collect();
    let mut r = JobRequest::new(
        cast::LLM,
        JobInput::Generate(GenerationInput {
            prompt: PROMPT.into(),
            chat: true,
            max_tokens: MAX_TOKENS,
            sampler: Sampler::Greedy,
            stop: None,
        }),
    );
    r.stages = 3;
    r.max_price = Amount(cast::MANDATE_UNIT_PRICE);
    r.deadline = cast::LLM_DEADLINE;
    r.verification = VerificationLevel::Audited;
    r.regions = regions;
    w.progress
        .step(format!("preparing {} (fetched on first use)", cast::LLM));
    let sized = agent
        .prepare(&r)
        .await
        .context("preparing the generation")?;
    let terms = MandateTerms {
        agent: agent.address(),
        total_cap: Amount(sized.escrow.0 * 2),
        per_job_cap: Amount(sized.escrow.0 * 3 / 2),
        max_unit_price: Amount(cast::MANDATE_UNIT_PRICE),
        expiry: Height(w.height() + 10_000),
        min_verification: VerificationLevel::Audited,
    };
    let mandate = w.grant_mandate(cast::PRINCIPAL, terms.clone()).await?;
    r.mandate = Some(mandate);
    let prepared = agent.prepare(&r).await?;
    let mut log = vec![format!(
        "{} join for LLM work; the job accepts only the six honest providers' regions",
        cast::LLM_PROVIDERS
            .iter()
            .map(|p| p.name)
            .collect::<Vec<_>>()
            .join(" and ")
    )];
    log.push(format!(
        "{} grants {} mandate {mandate} for chat: ≤ {} per job, audited results only",
        cast::PRINCIPAL,
        cast::AGENT,
        terms.per_job_cap
    ));
    let bob0 = w.account(&principal).balance;
    w.progress.step("bob-agent submits the generation");
    let t0 = Instant::now();
    let sub = agent
        .submit_detailed(&prepared)
        .await
        .context("submitting the generation")?;
    log.push(format!(
        "{} asks {} over 3 stages (layers {}): \"{PROMPT}\" — escrow {} for the prompt's prefill + {MAX_TOKENS} tokens at ≤ {} per mega-op",
        cast::AGENT,
        cast::LLM,
        prepared
            .spec
            .stages
            .iter()
            .map(|s| format!("{}..{}", s.first_layer, s.first_layer + s.layers))
            .collect::<Vec<_>>()
            .join(", "),
        sub.escrow,
        cast::MANDATE_UNIT_PRICE
    ));
    let (m, _, _) = load_llm(cast::LLM)?;
    let mut text = TextStream::default();
    let mut streamed_text = String::new();
    let mut arrivals: Vec<f64> = Vec::new();
    w.progress.step(format!("job {} streams", sub.job));
    let streamed = agent
        .stream(sub.job, crate::demo::world::JOB_TIMEOUT, |_, tok| {
            arrivals.push(t0.elapsed().as_secs_f64());
            streamed_text.push_str(&text.push(&m.tokenizer, tok));
        })
        .await;
    let streamed = match streamed {
        Ok(s) => s,
        Err(e) => {
            let events = w
                .events
                .select(|h, e| (e.job() == Some(sub.job)).then(|| format!("{h}: {e:?}")));
            bail!(
                "streaming the tokens of job {}: {e}; its events: {events:#?}",
                sub.job
            );
        }
    };
    log.push(format!(
        "the tokens stream from the last stage: first after {:.2} s, {} in {:.2} s — \"{}\"",
        arrivals.first().copied().unwrap_or_default(),
        streamed.tokens.len(),
        arrivals.last().copied().unwrap_or_default(),
        streamed_text.trim()
    ));
    w.progress
        .step(format!("job {} is audited and settles", sub.job));
    let job = w.follow(&agent, sub.job).await?;
    if job.status != JobStatus::Completed {
        bail!("generation job {} ended {:?}", sub.job, job.status);
    }
    let on_chain = agent.check_transcript(sub.job, &streamed.tokens).await?;
    let request = GenerationRequest::decode(&prepared.input)?;
    let local = m.generate_request(&request, |_| {})?;
    let same = local.tokens == streamed.tokens;

    let events = w
        .events
        .select(|_, e| (e.job() == Some(sub.job)).then(|| e.clone()));
    let mut stages = Vec::new();
    let mut paid = Amount::ZERO;
    let mut exact = true;
    for (i, (st, spec)) in job.stages.iter().zip(&prepared.spec.stages).enumerate() {
        let Some(a) = st.slots.first().and_then(|s| s.assignment.as_ref()) else {
            bail!("stage {i} has no provider");
        };
        let ops = job.billed_ops(i);
        let bill = Amount::cost(ops, a.price).unwrap_or_default();
        let mut stage_paid = Amount::ZERO;
        let mut auditor = None;
        let mut audit = "none".to_string();
        for e in events.iter().cloned() {
            match e {
                Event::StagePaid {
                    stage,
                    provider,
                    amount,
                    ..
                } if stage as usize == i && provider == a.provider => {
                    stage_paid = stage_paid.saturating_add(amount)
                }
                Event::AuditAgreed {
                    stage,
                    auditor: x,
                    fee,
                    ..
                } if stage as usize == i => {
                    auditor = Some(format!("{} (fee {fee})", w.name(&x)));
                    audit = "agreed".into();
                    paid = paid.saturating_add(fee);
                }
                _ => {}
            }
        }
        exact &= stage_paid == bill;
        paid = paid.saturating_add(stage_paid);
        log.push(format!(
            "stage {i} (layers {}..{}) on {} at {}/Mop: {} ops for {} tokens → billed {bill}, paid {stage_paid}; audit by prefill: {audit}{}",
            spec.first_layer,
            spec.first_layer + spec.layers,
            w.name(&a.provider),
            a.price,
            thousands(ops),
            streamed.tokens.len(),
            auditor.as_deref().map(|x| format!(" by {x}")).unwrap_or_default()
        ));
        stages.push(GenerationStage {
            stage: i as u32,
            layers: format!("{}..{}", spec.first_layer, spec.first_layer + spec.layers),
            provider: w.name(&a.provider),
            price: a.price,
            ops,
            bill,
            paid: stage_paid,
            auditor,
            audit,
        });
    }
    let bob1 = w.account(&principal).balance;
    let principal_paid = bob0.saturating_sub(bob1);
    log.push(format!(
        "{} paid {principal_paid} = the stages' bills + the auditors' fees; the rest of the {} escrow came back",
        cast::PRINCIPAL,
        sub.escrow
    ));
    w.check(
        "generation: the streamed tokens are a local run's, and the last stage committed to them",
        same && on_chain && streamed.tokens.len() == local.tokens.len(),
        format!(
            "{} tokens, local run equal: {same}, transcript on chain: {on_chain}",
            streamed.tokens.len()
        ),
    );
    let agreed = stages.iter().filter(|s| s.audit == "agreed").count();
    w.check(
        "generation: each stage audited by prefill and paid exactly the ops of the tokens generated × its price",
        exact && agreed == stages.len() && principal_paid == paid,
        format!(
            "{agreed}/{} audits agreed; paid {paid}, principal −{principal_paid}",
            stages.len()
        ),
    );
    w.act(title, log);
    Ok(GenerationReport {
        model: cast::LLM.into(),
        mandate,
        job: sub.job,
        prompt: PROMPT.into(),
        text: streamed_text,
        tokens: streamed.tokens.len(),
        first_token_s: arrivals.first().copied().unwrap_or_default(),
        last_token_s: arrivals.last().copied().unwrap_or_default(),
        escrow: sub.escrow,
        stages,
        paid,
        principal_paid,
        same_as_local_run: same,
        transcript_on_chain: on_chain,
    })
}
