//! `agentic tx`: build one transaction of any of the ledger's 23 kinds from flags,
//! sign it with a key file, submit it to a node and (by default) wait for its
//! receipt.
//!
//! ```text
//!   flags ──▶ TxBody ──▶ Tx { chain_id, nonce, fee, body } ──sign(key)──▶ SignedTx
//!                              ▲        ▲      ▲
//!              /v1/status ─────┘        │      └── /v1/params: the fee the body's work
//!              /v1/accounts/{signer} ───┘          requires (Params::required_fee)
//!                                                  (each only when not given)
//!   POST /v1/txs ──▶ id ──poll /v1/txs/{id}──▶ receipt: height, ok | ledger error, events
//! ```
//!
//! Exit status: 0 only when the node accepted the transaction and (with the
//! default `--wait`) the ledger applied it successfully. A refusal by the API
//! shows its `code`; a rejection by the ledger shows the ledger's error.

use std::path::PathBuf;
use std::time::Duration;

use agentic_client::api::TxReceipt;
use agentic_client::keystore::KeyFile;
use agentic_protocol::coord::Coord;
use agentic_protocol::hex;
use agentic_protocol::tx::{JobSpec, MandateTerms, Offer, Requirements, StageResult, StageSpec};
use agentic_protocol::types::{Capabilities, Endpoint, Region, VerificationLevel};
use agentic_protocol::{
    Address, Amount, ChainId, DisputeId, Hash, Height, JobId, MandateId, ParamChange, ParamKey,
    ProposalId, SignedTx, Tx, TxBody,
};
use anyhow::{bail, Context};
use clap::Subcommand;
use serde_json::json;

use super::{ledger_event_line, NodeArgs};

/// Flags shared by every kind (they may come before or after the kind).
#[derive(clap::Args)]
pub struct TxArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The signer's key file.
    #[arg(long, global = true, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Fee in base units (burned) [default: what the transaction's work requires:
    /// the chain's `min_fee`, plus `fee_per_slot` per replica and auditor slot of a
    /// submit-job, plus `fee_per_kib` per whole KiB].
    #[arg(long, global = true, value_parser = super::amount)]
    fee: Option<Amount>,
    /// The signer's nonce [default: the account's next nonce on the node, which does not
    /// count pending transactions: pass it to send again before the last is finalized].
    #[arg(long, global = true)]
    nonce: Option<u64>,
    /// The chain id [default: the node's, from /v1/status].
    #[arg(long, global = true)]
    chain_id: Option<u64>,
    /// Wait for the receipt (the default).
    #[arg(long, global = true, overrides_with = "no_wait")]
    wait: bool,
    /// Print the id and return once the node accepted the transaction.
    #[arg(long, global = true, overrides_with = "wait")]
    no_wait: bool,
    /// Seconds to wait for the receipt.
    #[arg(long, global = true, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
    /// Print the receipt (or, with --no-wait, the id) as JSON.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    kind: Box<Kind>,
}

/// A provider's standing offer.
#[derive(clap::Args)]
struct OfferArgs {
    /// Price in base units per mega-op (10^6 metered operations).
    #[arg(long, value_parser = super::amount)]
    price: Amount,
    /// Stage assignments taken at once.
    #[arg(long, default_value_t = 1)]
    capacity: u32,
    /// Region number.
    #[arg(long, default_value_t = 0)]
    region: u16,
    /// Capabilities: cpu, gpu, training, large-memory (comma list) or a bit mask.
    #[arg(long, default_value = "cpu", value_parser = super::capabilities)]
    capabilities: Capabilities,
    /// Network coordinate x,y,height in µs of round-trip time.
    #[arg(long, default_value = "0,0,0", value_parser = super::coord, allow_hyphen_values = true)]
    coord: Coord,
    /// Data-plane address where others fetch blobs and push activations [default: none].
    #[arg(long, default_value = "", hide_default_value = true, value_name = "HOST:PORT", value_parser = super::endpoint)]
    endpoint: Endpoint,
    /// Measured speed of the compute runtime, in operations per second (0: unknown).
    #[arg(long, default_value_t = 0, value_name = "OPS_PER_SEC")]
    speed: u64,
}

impl OfferArgs {
    fn offer(&self) -> Offer {
        Offer {
            capabilities: self.capabilities,
            price: self.price,
            region: Region(self.region),
            coord: self.coord,
            capacity: self.capacity,
            endpoint: self.endpoint.clone(),
            speed: self.speed,
        }
    }
}

/// A stage result: the hashes of its input, output and trace root.
#[derive(clap::Args)]
struct ResultArgs {
    /// Hash of the stage's input (trace leaf 0).
    #[arg(long, value_parser = super::hash)]
    input: Hash,
    /// Hash of the stage's output (the last trace leaf).
    #[arg(long, value_parser = super::hash)]
    output: Hash,
    /// Merkle root of the trace.
    #[arg(long, value_parser = super::hash)]
    trace_root: Hash,
    /// Steps a generation stage's session ran (0 for any other stage).
    #[arg(long, default_value_t = 0)]
    steps: u32,
}

impl ResultArgs {
    fn result(&self) -> StageResult {
        StageResult {
            input: self.input,
            output: self.output,
            trace_root: self.trace_root,
            steps: self.steps,
        }
    }
}

/// Addresses are 64 hex digits or a key file (its address is used).
#[derive(Subcommand)]
enum Kind {
    /// Move tokens to another account.
    Transfer {
        /// Recipient (address or key file).
        #[arg(long, value_parser = super::address)]
        to: Address,
        /// Base units.
        #[arg(long, value_parser = super::amount)]
        amount: Amount,
    },
    /// Lock balance as bonded stake.
    Bond {
        /// Base units.
        #[arg(long, value_parser = super::amount)]
        amount: Amount,
    },
    /// Start unbonding stake (withdrawable after the unbonding delay).
    Unbond {
        /// Base units.
        #[arg(long, value_parser = super::amount)]
        amount: Amount,
    },
    /// Move released stake back to the balance.
    Withdraw {
        /// Base units.
        #[arg(long, value_parser = super::amount)]
        amount: Amount,
    },
    /// Become a provider with a standing offer, bonding --stake more first.
    RegisterProvider {
        #[command(flatten)]
        offer: OfferArgs,
        /// Extra stake bonded from the balance in the same transaction.
        #[arg(long, default_value = "0", value_parser = super::amount)]
        stake: Amount,
    },
    /// Change the standing offer.
    UpdateProvider {
        #[command(flatten)]
        offer: OfferArgs,
    },
    /// Stop taking jobs.
    Retire,
    /// Let an agent spend from the signer's balance within caps.
    GrantMandate {
        /// The agent (address or key file).
        #[arg(long, value_parser = super::address)]
        agent: Address,
        /// Most in escrow plus spent, in total.
        #[arg(long, value_parser = super::amount)]
        total_cap: Amount,
        /// Most escrow one job may lock.
        #[arg(long, value_parser = super::amount)]
        per_job_cap: Amount,
        /// Highest price per mega-op a job may offer.
        #[arg(long, value_parser = super::amount)]
        max_unit_price: Amount,
        /// First height at which the mandate no longer authorizes jobs.
        #[arg(long, value_name = "HEIGHT")]
        expiry: u64,
        /// Weakest verification a job may ask for: optimistic, sampled, audited.
        #[arg(long, default_value = "optimistic", value_parser = super::level)]
        min_verification: VerificationLevel,
    },
    /// Stop a mandate from authorizing new jobs.
    RevokeMandate {
        /// The mandate id.
        #[arg(long)]
        mandate: u64,
    },
    /// Post a job and lock its escrow.
    SubmitJob(Box<JobArgs>),
    /// Withdraw your job before any provider committed work: the whole escrow comes back.
    CancelJob {
        /// The job id.
        #[arg(long)]
        job: u64,
    },
    /// Commit to a stage result: --commitment, or the result and --salt to compute it.
    CommitResult {
        /// The job id.
        #[arg(long)]
        job: u64,
        /// The stage index.
        #[arg(long)]
        stage: u32,
        /// The commitment, if computed elsewhere.
        #[arg(long, value_parser = super::hash)]
        commitment: Option<Hash>,
        /// Stage input hash (to compute the commitment).
        #[arg(long, value_parser = super::hash)]
        input: Option<Hash>,
        /// Stage output hash (to compute the commitment).
        #[arg(long, value_parser = super::hash)]
        output: Option<Hash>,
        /// Trace root (to compute the commitment).
        #[arg(long, value_parser = super::hash)]
        trace_root: Option<Hash>,
        /// Secret salt, 64 hex digits; keep it for reveal-result.
        #[arg(long, value_parser = super::hash)]
        salt: Option<Hash>,
    },
    /// A generation stage's commitment, with its input claim in the clear (which its
    /// reveal must claim too): --commitment, or --output/--trace-root/--steps and --salt
    /// to compute it; --input always.
    CommitSession {
        /// The job id.
        #[arg(long)]
        job: u64,
        /// The stage index.
        #[arg(long)]
        stage: u32,
        /// The stage's input claim (published).
        #[arg(long, value_parser = super::hash)]
        input: Hash,
        /// The commitment, if computed elsewhere.
        #[arg(long, value_parser = super::hash)]
        commitment: Option<Hash>,
        /// Stage output claim (to compute the commitment).
        #[arg(long, value_parser = super::hash)]
        output: Option<Hash>,
        /// Trace root (to compute the commitment).
        #[arg(long, value_parser = super::hash)]
        trace_root: Option<Hash>,
        /// Steps the session ran (to compute the commitment).
        #[arg(long)]
        steps: Option<u32>,
        /// Secret salt, 64 hex digits; keep it for reveal-result.
        #[arg(long, value_parser = super::hash)]
        salt: Option<Hash>,
    },
    /// Report that a generation stage's provider dropped out of the session (a stage
    /// provider of the job, or its requester): it is evicted and the stage matched
    /// again; a stage provider's report also costs it the miss penalty.
    ReplaceStage {
        /// The job id.
        #[arg(long)]
        job: u64,
        /// The stage index.
        #[arg(long)]
        stage: u32,
        /// The stage's current provider (64 hex digits or a key file).
        #[arg(long, value_parser = super::address)]
        provider: Address,
    },
    /// Reveal the committed result.
    RevealResult {
        /// The job id.
        #[arg(long)]
        job: u64,
        /// The stage index.
        #[arg(long)]
        stage: u32,
        #[command(flatten)]
        result: ResultArgs,
        /// The salt used in the commitment.
        #[arg(long, value_parser = super::hash)]
        salt: Hash,
    },
    /// The drawn auditor commits to its own result for a stage (before the replicas
    /// may reveal): --commitment, or the result and --salt to compute it.
    AuditCommit {
        /// The job id.
        #[arg(long)]
        job: u64,
        /// The stage index.
        #[arg(long)]
        stage: u32,
        /// The commitment, if computed elsewhere.
        #[arg(long, value_parser = super::hash)]
        commitment: Option<Hash>,
        /// Stage input hash (to compute the commitment).
        #[arg(long, value_parser = super::hash)]
        input: Option<Hash>,
        /// Stage output hash (to compute the commitment).
        #[arg(long, value_parser = super::hash)]
        output: Option<Hash>,
        /// Trace root (to compute the commitment).
        #[arg(long, value_parser = super::hash)]
        trace_root: Option<Hash>,
        /// Steps of a generation stage's session (to compute the commitment; 0 if not
        /// given).
        #[arg(long)]
        steps: Option<u32>,
        /// Secret salt, 64 hex digits; keep it for audit-report.
        #[arg(long, value_parser = super::hash)]
        salt: Option<Hash>,
    },
    /// The auditor opens its commitment once the replicas revealed.
    AuditReport {
        /// The job id.
        #[arg(long)]
        job: u64,
        /// The stage index.
        #[arg(long)]
        stage: u32,
        #[command(flatten)]
        result: ResultArgs,
        /// The salt used in the audit commitment.
        #[arg(long, value_parser = super::hash)]
        salt: Hash,
    },
    /// As an assigned provider that has not committed: claim the job's model or input
    /// cannot be fetched (the validators check; a false claim costs the miss penalty).
    ClaimUnavailable {
        /// The job id.
        #[arg(long)]
        job: u64,
    },
    /// Dispute a stage's result, posting the challenge bond.
    Challenge {
        /// The job id.
        #[arg(long)]
        job: u64,
        /// The stage index.
        #[arg(long)]
        stage: u32,
        #[command(flatten)]
        result: ResultArgs,
    },
    /// One bisection move: the signer's trace leaf at the dispute's midpoint and its proof.
    Bisect {
        /// The dispute id.
        #[arg(long)]
        dispute: u64,
        /// The leaf value.
        #[arg(long, value_parser = super::hash)]
        leaf: Hash,
        /// The Merkle proof, comma-separated hashes (empty for none).
        #[arg(long, value_delimiter = ',', value_parser = super::hash, num_args = 0..)]
        proof: Vec<Hash>,
    },
    /// A training dispute's step-level move: the signer's root over the disputed step's
    /// unit leaves, with proofs of its first and last leaf.
    StepRoot {
        /// The dispute id.
        #[arg(long)]
        dispute: u64,
        /// Merkle root of the signer's unit leaves of the step.
        #[arg(long, value_parser = super::hash)]
        root: Hash,
        /// Proof of leaf 0 against the root, comma-separated hashes (empty for none).
        #[arg(long, value_delimiter = ',', value_parser = super::hash, num_args = 0..)]
        first_proof: Vec<Hash>,
        /// Proof of the last leaf, comma-separated hashes (empty for none).
        #[arg(long, value_delimiter = ',', value_parser = super::hash, num_args = 0..)]
        last_proof: Vec<Hash>,
    },
    /// Propose a parameter change (bonded stakers).
    Propose {
        /// The parameter's name as in `agentic query params` (e.g. challenge_window).
        #[arg(long, value_parser = super::param_key)]
        param: ParamKey,
        /// The new value (base units, blocks or ppm).
        #[arg(long)]
        value: u128,
    },
    /// Vote on a proposal with the signer's bonded stake.
    Vote {
        /// The proposal id.
        #[arg(long)]
        proposal: u64,
        /// Vote yes.
        #[arg(long, conflicts_with = "no", required_unless_present = "no")]
        yes: bool,
        /// Vote no.
        #[arg(long)]
        no: bool,
    },
}

/// A job: its model and input, stages, price and requirements.
#[derive(clap::Args)]
struct JobArgs {
    /// Hash of the model in the blob store.
    #[arg(long, value_parser = super::hash)]
    model: Hash,
    /// Hash of the input in the blob store.
    #[arg(long, value_parser = super::hash)]
    input: Hash,
    /// A stage FIRST_LAYER:LAYERS:OPS, in pipeline order (repeat for each stage).
    #[arg(long = "stage", required = true, value_parser = super::stage)]
    stages: Vec<StageSpec>,
    /// Highest price per mega-op paid.
    #[arg(long, value_parser = super::amount)]
    max_price: Amount,
    /// Blocks a provider has to deliver after it is assigned.
    #[arg(long, default_value_t = 10)]
    deadline: u64,
    /// Independent providers per stage.
    #[arg(long, default_value_t = 1)]
    replicas: u8,
    /// How results are verified: optimistic, sampled, audited.
    #[arg(long, default_value = "optimistic", value_parser = super::level)]
    verification: VerificationLevel,
    /// Minimum provider reputation (ppm).
    #[arg(long, default_value_t = 0)]
    min_reputation_ppm: u32,
    /// Minimum provider bonded stake.
    #[arg(long, default_value = "0", value_parser = super::amount)]
    min_stake: Amount,
    /// Accepted regions, comma-separated (none: any).
    #[arg(long, value_delimiter = ',')]
    regions: Vec<u16>,
    /// Capabilities a provider must have.
    #[arg(long, default_value = "cpu", value_parser = super::capabilities)]
    capabilities: Capabilities,
    /// The requester's network coordinate x,y,height (µs).
    #[arg(long, default_value = "0,0,0", value_parser = super::coord, allow_hyphen_values = true)]
    coord: Coord,
    /// Spend under this mandate (the signer must be its agent).
    #[arg(long)]
    mandate: Option<u64>,
    /// A provider named for a stage, in stage order (repeat; none: the ledger matches).
    #[arg(long = "placement", value_parser = super::address)]
    placement: Vec<Address>,
}

impl JobArgs {
    fn spec(&self) -> JobSpec {
        JobSpec {
            mandate: self.mandate.map(MandateId),
            model: self.model,
            input: self.input,
            stages: self.stages.clone(),
            max_price: self.max_price,
            deadline: self.deadline,
            requirements: Requirements {
                min_reputation_ppm: self.min_reputation_ppm,
                regions: self.regions.iter().copied().map(Region).collect(),
                min_stake: self.min_stake,
                capabilities: self.capabilities,
                replicas: self.replicas,
                verification: self.verification,
            },
            coord: self.coord,
            placement: self.placement.clone(),
            generation: None,
        }
    }
}

impl Kind {
    /// The transaction body; `signer` is needed to compute a commitment.
    fn body(&self, signer: &Address) -> anyhow::Result<TxBody> {
        Ok(match self {
            Kind::Transfer { to, amount } => TxBody::Transfer {
                to: *to,
                amount: *amount,
            },
            Kind::Bond { amount } => TxBody::Bond { amount: *amount },
            Kind::Unbond { amount } => TxBody::Unbond { amount: *amount },
            Kind::Withdraw { amount } => TxBody::Withdraw { amount: *amount },
            Kind::RegisterProvider { offer, stake } => TxBody::RegisterProvider {
                offer: offer.offer(),
                stake: *stake,
            },
            Kind::UpdateProvider { offer } => TxBody::UpdateProvider {
                offer: offer.offer(),
            },
            Kind::Retire => TxBody::Retire,
            Kind::GrantMandate {
                agent,
                total_cap,
                per_job_cap,
                max_unit_price,
                expiry,
                min_verification,
            } => TxBody::GrantMandate {
                terms: MandateTerms {
                    agent: *agent,
                    total_cap: *total_cap,
                    per_job_cap: *per_job_cap,
                    max_unit_price: *max_unit_price,
                    expiry: Height(*expiry),
                    min_verification: *min_verification,
                },
            },
            Kind::RevokeMandate { mandate } => TxBody::RevokeMandate {
                mandate: MandateId(*mandate),
            },
            Kind::SubmitJob(job) => TxBody::SubmitJob { spec: job.spec() },
            Kind::CancelJob { job } => TxBody::CancelJob { job: JobId(*job) },
            Kind::CommitResult {
                job,
                stage,
                commitment,
                input,
                output,
                trace_root,
                salt,
            } => TxBody::CommitResult {
                job: JobId(*job),
                stage: *stage,
                commitment: commitment_of(
                    "commit-result",
                    (*job, *stage, signer),
                    *commitment,
                    (*input, *output, *trace_root, *salt),
                    0,
                )?,
            },
            Kind::AuditCommit {
                job,
                stage,
                commitment,
                input,
                output,
                trace_root,
                steps,
                salt,
            } => {
                if commitment.is_some() && steps.is_some() {
                    bail!("give either --commitment or the result's parts, not both");
                }
                TxBody::AuditCommit {
                    job: JobId(*job),
                    stage: *stage,
                    commitment: commitment_of(
                        "audit-commit",
                        (*job, *stage, signer),
                        *commitment,
                        (*input, *output, *trace_root, *salt),
                        steps.unwrap_or(0),
                    )?,
                }
            }
            Kind::CommitSession {
                job,
                stage,
                input,
                commitment,
                output,
                trace_root,
                steps,
                salt,
            } => {
                let commitment = match (commitment, output, trace_root, steps, salt) {
                    (Some(c), None, None, None, None) => *c,
                    (Some(_), ..) => bail!(
                        "give either --commitment or --output/--trace-root/--steps/--salt, not both"
                    ),
                    (None, Some(output), Some(trace_root), Some(steps), Some(salt)) => {
                        StageResult {
                            input: *input,
                            output: *output,
                            trace_root: *trace_root,
                            steps: *steps,
                        }
                        .commitment(JobId(*job), *stage, salt, signer)
                    }
                    (None, ..) => bail!(
                        "commit-session needs --commitment HASH, or all of --output, \
                         --trace-root, --steps and --salt"
                    ),
                };
                TxBody::CommitSession {
                    job: JobId(*job),
                    stage: *stage,
                    commitment,
                    input: *input,
                }
            }
            Kind::ReplaceStage {
                job,
                stage,
                provider,
            } => TxBody::ReplaceStage {
                job: JobId(*job),
                stage: *stage,
                provider: *provider,
            },
            Kind::StepRoot {
                dispute,
                root,
                first_proof,
                last_proof,
            } => TxBody::StepRoot {
                dispute: DisputeId(*dispute),
                root: *root,
                first_proof: first_proof.clone(),
                last_proof: last_proof.clone(),
            },
            Kind::ClaimUnavailable { job } => TxBody::ClaimUnavailable { job: JobId(*job) },
            Kind::RevealResult {
                job,
                stage,
                result,
                salt,
            } => TxBody::RevealResult {
                job: JobId(*job),
                stage: *stage,
                result: result.result(),
                salt: *salt,
            },
            Kind::AuditReport {
                job,
                stage,
                result,
                salt,
            } => TxBody::AuditReport {
                job: JobId(*job),
                stage: *stage,
                result: result.result(),
                salt: *salt,
            },
            Kind::Challenge { job, stage, result } => TxBody::Challenge {
                job: JobId(*job),
                stage: *stage,
                result: result.result(),
            },
            Kind::Bisect {
                dispute,
                leaf,
                proof,
            } => TxBody::Bisect {
                dispute: DisputeId(*dispute),
                leaf: *leaf,
                proof: proof.clone(),
            },
            Kind::Propose { param, value } => TxBody::Propose {
                change: ParamChange {
                    key: *param,
                    value: *value,
                },
            },
            Kind::Vote { proposal, yes, .. } => TxBody::Vote {
                proposal: ProposalId(*proposal),
                approve: *yes,
            },
        })
    }
}

/// A commitment given as is, or computed from the result's parts and the salt
/// ([`StageResult::commitment`], bound to the job, the stage and the signer).
#[allow(clippy::type_complexity)]
fn commitment_of(
    kind: &str,
    (job, stage, signer): (u64, u32, &Address),
    commitment: Option<Hash>,
    parts: (Option<Hash>, Option<Hash>, Option<Hash>, Option<Hash>),
    steps: u32,
) -> anyhow::Result<Hash> {
    Ok(match (commitment, parts) {
        (Some(c), (None, None, None, None)) => c,
        (Some(_), _) => {
            bail!("give either --commitment or --input/--output/--trace-root/--salt, not both")
        }
        (None, (Some(input), Some(output), Some(trace_root), Some(salt))) => StageResult {
            input,
            output,
            trace_root,
            steps,
        }
        .commitment(JobId(job), stage, &salt, signer),
        (None, _) => bail!(
            "{kind} needs --commitment HASH, or all of --input, --output, --trace-root and --salt"
        ),
    })
}

pub fn run(args: TxArgs) -> anyhow::Result<()> {
    let Some(key_path) = &args.key else {
        bail!("--key FILE is required: the key file of the transaction's signer");
    };
    let key = KeyFile::read(key_path)
        .with_context(|| format!("cannot sign with key file {}", key_path.display()))?;
    let signer = key.address();
    let body = args.kind.body(&signer)?;
    let client = args.node.client();
    let rt = super::runtime()?;
    rt.block_on(async {
        let chain_id = match args.chain_id {
            Some(c) => c,
            None => {
                client
                    .status()
                    .await
                    .context("reading the node's chain id")?
                    .chain_id
                    .0
            }
        };
        let nonce = match args.nonce {
            Some(n) => n,
            None => client
                .nonce(&signer)
                .await
                .context("reading the signer's nonce")?,
        };
        let fee = match args.fee {
            Some(f) => f,
            None => client
                .fee_for(&body)
                .await
                .context("reading the parameters for the fee")?,
        };
        let kind = body.kind();
        let tx = SignedTx::sign(
            &key.key,
            Tx {
                chain_id: ChainId(chain_id),
                nonce,
                fee,
                body,
            },
        );
        let id = client
            .submit(&tx)
            .await
            .with_context(|| format!("submitting {kind} to {}", client.base()))?;
        if !args.json {
            println!(
                "sent {kind} from {} (nonce {nonce}, fee {fee}, chain {chain_id})",
                hex::encode(&signer.0)
            );
            println!("id {id}");
        }
        if args.no_wait {
            if args.json {
                println!("{}", json!({"id": id, "status": "pending"}));
            } else {
                println!("pending (not waiting for the receipt)");
            }
            return Ok(());
        }
        let receipt = client
            .wait(&id, Duration::from_secs(args.timeout))
            .await
            .with_context(|| format!("waiting for the receipt of {id}"))?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&receipt)?);
        } else {
            print_receipt(&receipt);
        }
        check_receipt(&id, &receipt)
    })
}

fn print_receipt(r: &TxReceipt) {
    let outcome = if r.result.ok {
        "ok".to_string()
    } else {
        format!(
            "REJECTED by the ledger: {}",
            r.result.error.as_deref().unwrap_or("unknown error")
        )
    };
    println!(
        "finalized at height {} (index {}): {outcome}",
        r.height, r.index
    );
    if !r.events.is_empty() {
        println!("events:");
        for e in &r.events {
            println!("  {}", ledger_event_line(&e.event));
        }
    }
}

/// Errors unless the receipt says the ledger applied the transaction.
fn check_receipt(id: &Hash, r: &TxReceipt) -> anyhow::Result<()> {
    if r.result.ok {
        return Ok(());
    }
    bail!(
        "the ledger rejected transaction {id} at height {}: {}",
        r.height,
        r.result.error.as_deref().unwrap_or("unknown error")
    )
}
