//! What each tool does on the market: the node API and the requester SDK,
//! turned into JSON answers for an LLM (amounts as decimal strings, hashes and
//! addresses as hex).

use std::collections::BTreeMap;

use agentic_client::Client;
use agentic_compute::{Activation, ActivationKind};
use agentic_protocol::event::Event;
use agentic_protocol::matching;
use agentic_protocol::state::{Account, Job, JobStatus, Mandate};
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount, Height, JobId, MandateId};
use commonware_cryptography::ed25519::PrivateKey;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::args::{self, GenerateArgs, JobArgs, ListOffersArgs, Placement, ResultArgs};
use super::{Config, ToolError};
use crate::procure::policy::{self, Means, Purchase};
use crate::requester::{
    candidate, cost, prepare, GenerationInput, JobInput, JobRequest, OfferView, PlacementChoice,
    PreparedJob, Requester, RequesterError,
};

/// Where a long tool reports its progress: `(done, total, message)`, in order.
pub(crate) type Progress = tokio::sync::mpsc::UnboundedSender<(u32, u32, String)>;

/// Resolves when the caller cancelled its call (MCP `notifications/cancelled`).
pub(crate) type Cancelled = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// The server's hold on the market: one key, one node, maybe one mandate.
pub(crate) struct Market {
    pub(crate) cfg: Config,
    pub(crate) requester: Requester,
    /// Held while signing and sending a transaction (one nonce at a time).
    pub(crate) tx_lock: Mutex<()>,
    /// Each job's ledger events read so far and the height they were read up to:
    /// `job_status` reads only the blocks since (not the whole job again).
    events: Mutex<BTreeMap<JobId, (Height, Vec<Event>)>>,
}

/// A mandate as the node reports it.
pub(crate) struct MandateView {
    pub(crate) id: MandateId,
    pub(crate) mandate: Mandate,
}

impl Market {
    pub(crate) fn new(cfg: Config) -> Market {
        let mut requester = Requester::new(Client::new(cfg.node.clone()), cfg.key.clone());
        requester.tx_timeout = cfg.tx_timeout;
        Market {
            cfg,
            requester,
            tx_lock: Mutex::new(()),
            events: Mutex::new(BTreeMap::new()),
        }
    }

    /// Job `id`'s ledger events up to now (submitted at `from`), read incrementally.
    async fn job_events(&self, id: JobId, from: Height) -> Result<Vec<Event>, ToolError> {
        let mut cache = self.events.lock().await;
        let (read_to, events) = cache
            .entry(id)
            .or_insert((Height(from.0.saturating_sub(1)), Vec::new()));
        let (more, tip) = self
            .requester
            .events_since(id, Height(read_to.0 + 1))
            .await?;
        events.extend(more);
        *read_to = tip.max(*read_to);
        Ok(events.clone())
    }

    pub(crate) fn client(&self) -> &Client {
        self.requester.client()
    }

    pub(crate) fn key(&self) -> &PrivateKey {
        &self.cfg.key
    }

    pub(crate) fn me(&self) -> Address {
        self.requester.address()
    }

    /// The chain's finalized height.
    pub(crate) async fn height(&self) -> Result<u64, ToolError> {
        Ok(self.client().status().await?.height.0)
    }

    /// The job record, or [`ToolError::UnknownJob`].
    pub(crate) async fn job(&self, id: JobId) -> Result<Job, ToolError> {
        match self.requester.job(id).await {
            Err(RequesterError::Node(e)) if e.is_not_found() => Err(ToolError::UnknownJob(id)),
            other => Ok(other?),
        }
    }

    async fn account(&self, who: &Address) -> Result<Account, ToolError> {
        Ok(self.client().account(who).await?.account)
    }

    /// The configured mandate's current state (`None` without one).
    async fn mandate(&self) -> Result<Option<MandateView>, ToolError> {
        let Some(id) = self.cfg.mandate else {
            return Ok(None);
        };
        match self.client().mandate(id).await {
            Ok(mandate) => Ok(Some(MandateView { id, mandate })),
            Err(e) if e.is_not_found() => Err(ToolError::UnknownMandate(id)),
            Err(e) => Err(e.into()),
        }
    }

    /// The request `args` describe (defaults filled in; a mandate's minimum
    /// verification when the caller names none).
    fn request(
        &self,
        tool: &'static str,
        a: &JobArgs,
        mandate: Option<&MandateView>,
    ) -> Result<JobRequest, ToolError> {
        let invalid = |reason: String| ToolError::InvalidArguments { tool, reason };
        let mut r = JobRequest::new(a.model.clone(), JobInput::Texts(a.texts.clone()));
        r.placement = match (a.placement, &a.providers) {
            (Some(Placement::Auto), Some(_)) => {
                return Err(invalid(
                    "give either `placement: auto` or a `providers` list, not both".into(),
                ))
            }
            (_, Some(list)) => {
                let mut named = Vec::with_capacity(list.len());
                for (i, p) in list.iter().enumerate() {
                    named.push(args::address(p).ok_or_else(|| {
                        invalid(format!(
                            "providers[{i}] = {p:?} is not an address (64 hex digits)"
                        ))
                    })?);
                }
                if named.is_empty() {
                    return Err(invalid("`providers` is empty: name one per stage".into()));
                }
                PlacementChoice::Named(named)
            }
            (Some(Placement::Auto), None) => PlacementChoice::Auto,
            (Some(Placement::Ledger) | None, None) => PlacementChoice::Ledger,
        };
        r.stages = match (a.stages, &r.placement) {
            (Some(k), _) => k as usize,
            (None, PlacementChoice::Named(names)) => names.len(),
            (None, _) => 1,
        };
        r.replicas = a.replicas.unwrap_or(1);
        r.max_price = a.max_price.map_or(JobRequest::DEFAULT_MAX_PRICE, |p| p.0);
        r.deadline = a.deadline.unwrap_or(JobRequest::DEFAULT_DEADLINE);
        r.verification = match (a.verification, mandate) {
            (Some(v), _) => v.into(),
            (None, Some(m)) => m.mandate.terms.min_verification,
            (None, None) => VerificationLevel::Optimistic,
        };
        r.mandate = self.cfg.mandate;
        Ok(r)
    }

    /// Prepares `req` off the async runtime (loading a model and metering take CPU).
    async fn prepare(req: JobRequest, offers: Vec<OfferView>) -> Result<PreparedJob, ToolError> {
        tokio::task::spawn_blocking(move || prepare(&req, &offers))
            .await
            .map_err(|e| ToolError::Stopped(format!("preparing the job: {e}")))?
            .map_err(ToolError::from)
    }

    /// The mandate and balance rules for `job`: `Err` names the first one broken.
    async fn check_purchase(
        &self,
        req: &JobRequest,
        job: &PreparedJob,
        mandate: Option<&MandateView>,
    ) -> Result<Result<(), policy::Refusal>, ToolError> {
        let fee = job.fee(&self.client().params().await?);
        let me = self.me();
        let signer_balance = self.account(&me).await?.balance;
        let payer_balance = match mandate {
            Some(m) => self.account(&m.mandate.principal).await?.balance,
            None => signer_balance,
        };
        let height = self.height().await?;
        let purchase = Purchase {
            escrow: job.escrow,
            max_price: req.max_price,
            verification: req.verification,
            fee,
        };
        let means = Means {
            me,
            height,
            budget_left: Amount(u128::MAX),
            payer_balance,
            signer_balance,
            mandate: mandate.map(|m| &m.mandate),
        };
        Ok(policy::check(&purchase, &means))
    }

    // ---- the tools --------------------------------------------------------

    pub(crate) async fn list_offers(&self, a: ListOffersArgs) -> Result<Value, ToolError> {
        let mut offers = self.requester.offers().await?;
        let total = offers.len();
        if let Some(max) = a.max_price {
            offers.retain(|o| o.offer.price <= max.0);
        }
        offers.sort_by(|x, y| {
            (
                x.offer.price,
                std::cmp::Reverse(x.reputation_ppm),
                x.provider,
            )
                .cmp(&(
                    y.offer.price,
                    std::cmp::Reverse(y.reputation_ppm),
                    y.provider,
                ))
        });
        let matching = offers.len();
        offers.truncate(a.limit.unwrap_or(50).max(1) as usize);
        Ok(json!({
            "offers": offers,
            "shown": offers.len(),
            "matching": matching,
            "total": total,
            "prices": "base units per mega-op (10^6 metered operations)",
        }))
    }

    /// Quote: placement, escrow, expected cost per stage, whether the mandate allows it.
    pub(crate) async fn quote(&self, a: JobArgs) -> Result<Value, ToolError> {
        let mandate = self.mandate().await?;
        let req = self.request("quote_job", &a, mandate.as_ref())?;
        let offers = self.requester.offers().await?;
        let job = Self::prepare(req.clone(), offers.clone()).await?;
        let check = self.check_purchase(&req, &job, mandate.as_ref()).await?;
        let fee = job.fee(&self.client().params().await?);
        let mut out = plan_json(&req, &job, &offers);
        out["fee"] = json!(fee);
        out["payer"] = json!(mandate.as_ref().map_or(self.me(), |m| m.mandate.principal));
        out["mandate"] = json!(self.cfg.mandate.map(|m| m.0));
        out["allowed"] = json!(check.is_ok());
        out["refusal"] = json!(check.err().map(|r| r.to_string()));
        out["note"] = json!(
            "a quote signs nothing; submit_job locks the escrow, pays each provider ops × its price once its stage is final, and returns the rest"
        );
        Ok(out)
    }

    /// Submit: the quote's checks, then upload and `SubmitJob`.
    pub(crate) async fn submit(&self, a: JobArgs) -> Result<Value, ToolError> {
        let mandate = self.mandate().await?;
        let req = self.request("submit_job", &a, mandate.as_ref())?;
        let offers = self.requester.offers().await?;
        let job = Self::prepare(req.clone(), offers.clone()).await?;
        let _one_at_a_time = self.tx_lock.lock().await;
        if let Err(refusal) = self.check_purchase(&req, &job, mandate.as_ref()).await? {
            return Err(ToolError::Refused {
                mandate: self.cfg.mandate,
                refusal,
            });
        }
        let sub = self.requester.submit_detailed(&job).await?;
        let mut out = plan_json(&req, &job, &offers);
        out["job"] = json!(sub.job.0);
        out["escrow"] = json!(sub.escrow);
        out["payer"] = json!(sub.payer);
        out["fee"] = json!(sub.fee);
        out["uploaded_bytes"] = json!(sub.uploaded_bytes);
        out["mandate"] = json!(self.cfg.mandate.map(|m| m.0));
        out["next"] = json!(format!(
            "poll job_status with {{\"job\": {}}} until status is Completed, then get_result",
            sub.job.0
        ));
        Ok(out)
    }

    /// Generate: submit a generation job, stream its tokens (as progress), follow it
    /// to settlement, return the text, the token count, the bill and the job id. A
    /// caller that cancels the call stops the generation (`Requester::stop`): the job
    /// settles, billed for the tokens generated.
    pub(crate) async fn generate(
        &self,
        a: GenerateArgs,
        progress: Option<Progress>,
        cancelled: Option<Cancelled>,
    ) -> Result<Value, ToolError> {
        let tool = "generate";
        let invalid = |reason: String| ToolError::InvalidArguments { tool, reason };
        let mandate = self.mandate().await?;
        use agentic_compute::llm::Sampler;
        let sampler = Sampler::from_flags(
            a.greedy.unwrap_or(false),
            a.seed.unwrap_or(0),
            a.temperature.unwrap_or(Sampler::DEFAULT_TEMPERATURE),
            a.top_k.map_or(Sampler::DEFAULT_TOP_K, |k| k as usize),
            a.top_p.unwrap_or(Sampler::DEFAULT_TOP_P),
        )
        .map_err(|e| invalid(e.to_string()))?;
        let max_tokens = a.max_tokens.unwrap_or(64);
        if max_tokens == 0 {
            return Err(invalid("max_tokens must be at least 1".into()));
        }
        let model = a.model.clone().unwrap_or_else(|| "smollm2-135m".into());
        let mut r = JobRequest::new(
            model.clone(),
            JobInput::Generate(GenerationInput {
                prompt: a.prompt.clone(),
                chat: a.chat.unwrap_or(true),
                max_tokens,
                sampler,
                stop: None,
            }),
        );
        r.stages = a.stages.unwrap_or(1) as usize;
        r.max_price = a.max_price.map_or(JobRequest::DEFAULT_MAX_PRICE, |p| p.0);
        r.deadline = a.deadline.unwrap_or(JobRequest::DEFAULT_DEADLINE);
        r.verification = match (a.verification, &mandate) {
            (Some(v), _) => v.into(),
            (None, Some(m)) => m.mandate.terms.min_verification,
            (None, None) => VerificationLevel::Optimistic,
        };
        r.mandate = self.cfg.mandate;
        let job = Self::prepare(r.clone(), Vec::new()).await?;
        let sub = {
            let _one_at_a_time = self.tx_lock.lock().await;
            if let Err(refusal) = self.check_purchase(&r, &job, mandate.as_ref()).await? {
                return Err(ToolError::Refused {
                    mandate: self.cfg.mandate,
                    refusal,
                });
            }
            self.requester.submit_detailed(&job).await?
        };
        let timeout = std::time::Duration::from_secs(a.timeout_secs.unwrap_or(300));
        // The tokenizer, to turn the stream into text as it comes.
        let m = tokio::task::spawn_blocking(move || crate::requester::generate::load_llm(&model))
            .await
            .map_err(|e| ToolError::Stopped(format!("loading the tokenizer: {e}")))??
            .0;
        let mut text = agentic_compute::llm::generate::TextStream::default();
        let stream = self.requester.stream(sub.job, timeout, |i, tok| {
            let piece = text.push(&m.tokenizer, tok);
            if let Some(p) = &progress {
                let _ = p.send((i + 1, max_tokens, piece));
            }
        });
        tokio::pin!(stream);
        let cancelled = cancelled.unwrap_or_else(|| Box::pin(std::future::pending()));
        let streamed = tokio::select! {
            r = &mut stream => r?,
            () = cancelled => {
                // Nobody will read the rest: stop paying for it.
                match self.requester.stop(sub.job).await {
                    Ok(at) => tracing::info!(job = sub.job.0, tokens = at, "generate cancelled: stopped"),
                    Err(e) => tracing::warn!(job = sub.job.0, error = %e, "generate cancelled; stopping failed"),
                }
                stream.await?
            }
        };
        let settled = self.requester.wait(sub.job, timeout, |_| {}).await.ok();
        let on_chain = self
            .requester
            .check_transcript(sub.job, &streamed.tokens)
            .await?;
        let jobrec = self.job(sub.job).await?;
        let bill = cost(
            &jobrec,
            sub.job,
            &self.job_events(sub.job, jobrec.submitted_at).await?,
        );
        Ok(json!({
            "job": sub.job.0,
            "text": m.tokenizer.decode(&streamed.tokens).unwrap_or_default(),
            "tokens": streamed.tokens.len(),
            "token_ids": streamed.tokens,
            "first_token_secs": streamed.first_token.map(|d| d.as_secs_f64()),
            "transcript": streamed.transcript,
            "transcript_on_chain": on_chain,
            "escrow": sub.escrow,
            "fee": sub.fee,
            "payer": sub.payer,
            "status": jobrec.status,
            "settled": settled.is_some(),
            "cost": bill,
            "note": if settled.is_some() {
                "settled: each stage's provider was paid the ops of the tokens generated × its price; the rest of the escrow came back"
            } else {
                "generated; the job is still being verified (poll job_status): providers are paid when their challenge windows close"
            },
        }))
    }

    pub(crate) async fn status(&self, id: JobId) -> Result<Value, ToolError> {
        let job = self.job(id).await?;
        let height = self.height().await.ok();
        let bill = cost(&job, id, &self.job_events(id, job.submitted_at).await?);
        let stages: Vec<Value> = job
            .spec
            .stages
            .iter()
            .zip(&job.stages)
            .enumerate()
            .map(|(i, (spec, st))| {
                let providers: Vec<Value> = st
                    .slots
                    .iter()
                    .enumerate()
                    .map(|(r, slot)| match &slot.assignment {
                        None => json!({"replica": r, "provider": null, "state": "waiting for a provider"}),
                        Some(a) => json!({
                            "replica": r,
                            "provider": a.provider,
                            "price": a.price,
                            "deadline": a.deadline,
                            "state": match (a.commitment.is_some(), &a.result) {
                                (_, Some(_)) => "revealed",
                                (true, None) => "committed",
                                (false, None) => "working",
                            },
                            "revealed_output": a.result.map(|r| r.output),
                        }),
                    })
                    .collect();
                json!({
                    "stage": i,
                    "first_layer": spec.first_layer,
                    "layers": spec.layers,
                    "ops": spec.ops,
                    "phase": st.phase.name(),
                    "phase_detail": st.phase,
                    "providers": providers,
                    "agreed_output": st.result.map(|r| r.output),
                })
            })
            .collect();
        // Done once settled: a failed job holds what its delivered stages still being
        // verified may pay until the last of them settles.
        let done = job.status != JobStatus::Active && job.escrow == Amount::ZERO;
        Ok(json!({
            "job": id.0,
            "status": job.status,
            "done": done,
            "height": height,
            "requester": job.requester,
            "payer": job.payer,
            "mandate": job.spec.mandate.map(|m| m.0),
            "submitted_at": job.submitted_at,
            "verification": job.spec.requirements.verification,
            "stages": stages,
            "excluded": job.excluded,
            "bill": bill,
            "next": match job.status {
                JobStatus::Active => "still running: poll again (a block comes every fraction of a second to a few seconds)",
                JobStatus::Completed => "completed: get_result returns the verified output",
                JobStatus::Failed if !done => "failed: a stage lost a dispute; the payer got the escrow back except what delivered stages still being verified may pay (their honest providers are paid), refunded when they settle: poll again",
                JobStatus::Failed => "failed: a stage lost a dispute; the payer got the unused escrow back",
                JobStatus::Cancelled => "cancelled: no provider in time or withdrawn; the escrow went back to the payer",
            },
        }))
    }

    pub(crate) async fn result(&self, a: ResultArgs) -> Result<Value, ToolError> {
        let id = JobId(a.job);
        let job = self.job(id).await?;
        let bill = cost(&job, id, &self.job_events(id, job.submitted_at).await?);
        if matches!(job.status, JobStatus::Failed | JobStatus::Cancelled) {
            return Err(ToolError::NoOutput {
                job: id,
                status: job.status,
                refund: bill.refund,
            });
        }
        let res = self.requester.result(id).await?;
        let max_values = a
            .max_values
            .map_or(self.cfg.max_output_values, |m| m as usize);
        let stage_results: Vec<Value> = res
            .stage_results
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"stage": i, "input": r.input, "output": r.output, "trace_root": r.trace_root}))
            .collect();
        Ok(json!({
            "job": id.0,
            "status": res.status,
            "output_hash": res.output_hash,
            "hash_checked": true,
            "output": output_json(&res.output, max_values),
            "stage_results": stage_results,
            "cost": bill,
            "note": if res.status == JobStatus::Active {
                "every stage's result is agreed but challenge windows are still open: the result can still be disputed"
            } else {
                "final: the output's bytes hash to the last stage's agreed output"
            },
        }))
    }

    pub(crate) async fn balance_and_mandate(&self) -> Result<Value, ToolError> {
        let me = self.me();
        let acct = self.account(&me).await?;
        let height = self.height().await?;
        let mandate = match self.mandate().await? {
            None => Value::Null,
            Some(MandateView { id, mandate: m }) => {
                let principal_balance = self.account(&m.principal).await?.balance;
                let t = &m.terms;
                json!({
                    "id": id.0,
                    "principal": m.principal,
                    "principal_balance": principal_balance,
                    "agent": t.agent,
                    "agent_is_this_key": t.agent == me,
                    "total_cap": t.total_cap,
                    "per_job_cap": t.per_job_cap,
                    "max_unit_price": t.max_unit_price,
                    "min_verification": t.min_verification,
                    "expiry": t.expiry,
                    "expired": height >= t.expiry.0,
                    "blocks_left": t.expiry.0.saturating_sub(height),
                    "spent": m.spent,
                    "remaining": t.total_cap.saturating_sub(m.spent),
                    "revoked": m.revoked,
                    "usable": !m.revoked && height < t.expiry.0 && t.agent == me,
                })
            }
        };
        Ok(json!({
            "address": me,
            "node": self.client().base(),
            "height": height,
            "balance": acct.balance,
            "bonded": acct.bonded,
            "withdrawable": acct.withdrawable,
            "nonce": acct.nonce,
            "mandate": mandate,
            "who_pays": if self.cfg.mandate.is_some() {
                "the mandate's principal pays escrow (within the caps); this key pays the transaction fees"
            } else {
                "this key pays escrow and fees"
            },
        }))
    }
}

/// The plan of a prepared job: stages, placement, escrow and expected cost.
///
/// The expected cost of a stage is `ops × price` per replica slot: at the
/// price of its placed provider (named or automatic placement), else — the
/// ledger matching by price first and never giving one provider two slots of
/// a job — at the prices of the qualifying offers taken cheapest first, one
/// per slot in pipeline order. The most it can cost is at the job's max price.
/// An audit's fee, when one is drawn, is paid from the auditor reserve the
/// escrow holds.
fn plan_json(req: &JobRequest, job: &PreparedJob, offers: &[OfferView]) -> Value {
    let requirement = req.requirement();
    let mut prices: Vec<Amount> = offers
        .iter()
        .filter(|o| matching::qualifies(&candidate(o), &requirement))
        .map(|o| o.offer.price)
        .collect();
    prices.sort();
    let replicas = usize::from(req.replicas);
    let slots = job.spec.stages.len() * replicas;
    let sum = |costs: &[Option<Amount>]| -> Option<Amount> {
        costs
            .iter()
            .try_fold(0u128, |acc, c| c.map(|c| acc.saturating_add(c.0)))
            .map(Amount)
    };
    let mut expected_total = Some(Amount::ZERO);
    let stages: Vec<Value> = job
        .spec
        .stages
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let first = s.first_layer as usize;
            let names = &job.layer_names[first..first + s.layers as usize];
            let placed = job.placement.as_ref().and_then(|p| p.stages.get(i));
            let (slot_prices, basis): (Vec<Option<Amount>>, &str) =
                match placed.and_then(|p| p.price) {
                    Some(p) => (vec![Some(p); replicas], "the placed provider's offer"),
                    None if prices.len() >= slots => (
                        (0..replicas)
                            .map(|r| prices.get(i * replicas + r).copied())
                            .collect(),
                        "the qualifying offers, cheapest first, one per slot",
                    ),
                    None => (
                        vec![None; replicas],
                        "fewer qualifying offers than slots now: the job would wait for providers",
                    ),
                };
            let costs: Vec<Option<Amount>> = slot_prices
                .iter()
                .map(|p| p.and_then(|p| Amount::cost(s.ops, p)))
                .collect();
            let expected = sum(&costs);
            expected_total = match (expected_total, expected) {
                (Some(t), Some(e)) => Some(Amount(t.0.saturating_add(e.0))),
                _ => None,
            };
            let max = Amount::cost(s.ops, req.max_price)
                .map(|c| Amount(c.0.saturating_mul(replicas as u128)));
            json!({
                "stage": i,
                "first_layer": s.first_layer,
                "layers": s.layers,
                "layer_names": names,
                "ops": s.ops,
                "provider": placed.map(|p| p.provider),
                "expected_prices": slot_prices,
                "price_basis": basis,
                "expected_cost": expected,
                "max_cost": max,
            })
        })
        .collect();
    let placement = match &req.placement {
        PlacementChoice::Ledger => json!({"kind": "ledger"}),
        PlacementChoice::Auto | PlacementChoice::Named(_) => {
            let p = job.placement.as_ref();
            json!({
                "kind": if matches!(req.placement, PlacementChoice::Auto) { "auto" } else { "named" },
                "predicted_latency_s": p.and_then(|p| p.latency_s),
                "bottleneck_s": p.and_then(|p| p.bottleneck_s),
                "candidates": p.map(|p| p.candidates),
            })
        }
    };
    json!({
        "model": req.model,
        "model_hash": job.model_hash,
        "input_hash": job.input_hash,
        "input_bytes": job.input.len(),
        "total_ops": job.total_ops(),
        "stages": stages,
        "replicas": req.replicas,
        "verification": req.verification,
        "max_price": req.max_price,
        "deadline": req.deadline,
        "placement": placement,
        "escrow": job.escrow,
        "expected_cost": expected_total,
        "qualifying_offers": prices.len(),
    })
}

/// An activation as JSON: its shape, a summary, and up to `max_values` values.
fn output_json(a: &Activation, max_values: usize) -> Value {
    let data = a.tensor().data();
    let (rows, width) = (a.rows(), a.width());
    let finite = data.iter().copied().filter(|v| v.is_finite());
    let (mut min, mut max, mut sum, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0f64, 0usize);
    for v in finite {
        min = min.min(v);
        max = max.max(v);
        sum += f64::from(v);
        n += 1;
    }
    let argmax = |row: usize| -> Option<usize> {
        let r = data.get(row * width..(row + 1) * width)?;
        r.iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .max_by(|x, y| x.1.total_cmp(y.1))
            .map(|(i, _)| i)
    };
    let mut summary = json!({
        "min": (n > 0).then_some(min),
        "max": (n > 0).then_some(max),
        "mean": (n > 0).then(|| sum / n as f64),
    });
    if a.kind() == ActivationKind::Logits {
        // The last position of each sequence predicts its next token.
        let mut row = 0usize;
        let next: Vec<Option<usize>> = a
            .seq_lens()
            .iter()
            .map(|&len| {
                row += len;
                argmax(row.saturating_sub(1))
            })
            .collect();
        summary["next_token_ids"] = json!(next);
    }
    if width > 0 {
        summary["argmax_per_row"] = json!((0..rows.min(64)).map(argmax).collect::<Vec<_>>());
    }
    let shown = data.len().min(max_values);
    json!({
        "kind": a.kind().name(),
        "rows": rows,
        "width": width,
        "seq_lens": a.seq_lens(),
        "summary": summary,
        "values": &data[..shown],
        "values_shown": shown,
        "values_total": data.len(),
        "values_truncated": shown < data.len(),
    })
}
