//! Test helpers shared by this crate's tests, the CLI demo and the ledger
//! bench (feature `test-utils`).
//!
//! - [`key`] / [`address_of`]: deterministic ed25519 keys from seeds.
//! - [`GenesisBuilder`]: a genesis with funded and bonded accounts.
//! - [`TestReferee`]: a deterministic stand-in for the compute runtime in
//!   which layer `l` maps input `x` to `blake3(model, l, x)`; it can be told
//!   that some inputs or the model are unavailable.
//! - [`Trace`]: honest and cheating traces over that referee's layers, with
//!   Merkle roots and proofs from [`crate::merkle`].
//! - [`TestChain`]: signs transactions with automatic nonces, produces
//!   blocks, and drives stages and dispute games.

use crate::coord::Coord;
use crate::error::TxError;
use crate::leaves::Leaves;
use crate::params::Params;
use crate::referee::{Referee, RefereeError};
use crate::state::{Block, BlockOutcome, Genesis, GenesisAccount, State};
use crate::tx::{
    GenerationSpec, JobSpec, Offer, Requirements, SignedTx, StageResult, StageSpec, Tx, TxBody,
};
use crate::types::{
    Address, Amount, Capabilities, ChainId, DisputeId, Endpoint, Hash, Height, JobId, Region,
    VerificationLevel,
};
use commonware_cryptography::{ed25519::PrivateKey, Signer};
use std::collections::{BTreeMap, BTreeSet};

/// A deterministic private key from a seed (tests and demos only).
pub fn key(seed: u64) -> PrivateKey {
    PrivateKey::from_seed(seed)
}

/// The address of a private key.
pub fn address_of(key: &PrivateKey) -> Address {
    Address::from(&key.public_key())
}

/// Parameters with short windows, so tests and demos run in few blocks.
pub fn fast_params() -> Params {
    Params {
        min_fee: Amount(1),
        unbonding_delay: 10,
        min_provider_stake: Amount(10_000),
        audit_window: 3,
        reveal_window: 5,
        challenge_window: 3,
        challenge_bond: Amount(500),
        dispute_timeout: 3,
        match_timeout: 5,
        voting_period: 5,
        activation_delay: 3,
        ..Params::default()
    }
}

/// A CPU offer in region 1 at the origin coordinate, with no endpoint and
/// unknown speed.
pub fn offer(price: u128, capacity: u32) -> Offer {
    Offer {
        capabilities: Capabilities::CPU,
        price: Amount(price),
        region: Region(1),
        coord: Coord::default(),
        capacity,
        endpoint: Endpoint::NONE,
        speed: 0,
    }
}

/// A job over `stages` = `(layers, ops)` pairs laid end to end from layer 0.
pub fn job_spec(
    model: Hash,
    input: Hash,
    stages: &[(u32, u64)],
    max_price: u128,
    verification: VerificationLevel,
) -> JobSpec {
    let mut first = 0;
    let stages = stages
        .iter()
        .map(|&(layers, ops)| {
            let s = StageSpec {
                first_layer: first,
                layers,
                ops,
                step_units: 0,
                step_ops: 0,
                key_ops: 0,
            };
            first += layers;
            s
        })
        .collect();
    JobSpec {
        mandate: None,
        model,
        input,
        stages,
        max_price: Amount(max_price),
        deadline: 10,
        requirements: Requirements {
            replicas: 1,
            verification,
            ..Requirements::default()
        },
        coord: Coord::default(),
        placement: Vec::new(),
        generation: None,
    }
}

/// Turns `spec` into a generation job of `prompt_tokens` + up to
/// `max_tokens` tokens, every stage metering `step_ops` per decode step and
/// `key_ops` per attended position ([`StageSpec::generation_ops`]).
pub fn generation_job(
    mut spec: JobSpec,
    step_ops: u64,
    key_ops: u64,
    prompt_tokens: u32,
    max_tokens: u32,
) -> JobSpec {
    for s in &mut spec.stages {
        s.step_ops = step_ops;
        s.key_ops = key_ops;
    }
    spec.generation = Some(GenerationSpec {
        prompt_tokens,
        max_tokens,
    });
    spec
}

/// The results of an honest `stages`-stage session of `steps` steps: stage 0
/// starts from the transcript hash, each stage's output is the next one's
/// input, and the last stage's output is the transcript hash again.
pub fn session_results(transcript: Hash, stages: u32, steps: u32) -> Vec<StageResult> {
    let link = |i: u32| {
        if i == 0 || i == stages {
            transcript
        } else {
            Hash::digest(
                "agentic test activations",
                &[&transcript.0, &i.to_be_bytes()],
            )
        }
    };
    (0..stages)
        .map(|i| StageResult {
            input: link(i),
            output: link(i + 1),
            trace_root: Hash::digest("agentic test session root", &[&link(i).0, &i.to_be_bytes()]),
            steps,
        })
        .collect()
}

/// Builds a [`Genesis`].
#[derive(Clone, Debug)]
pub struct GenesisBuilder {
    genesis: Genesis,
}

impl GenesisBuilder {
    /// An empty genesis for `chain_id` with default parameters.
    pub fn new(chain_id: u64) -> Self {
        GenesisBuilder {
            genesis: Genesis {
                chain_id: ChainId(chain_id),
                params: Params::default(),
                accounts: Vec::new(),
                treasury: Address([0xee; 32]),
                providers: Vec::new(),
            },
        }
    }
    /// Sets the parameters.
    pub fn params(mut self, params: Params) -> Self {
        self.genesis.params = params;
        self
    }
    /// Gives `who` a balance and bonded stake.
    pub fn account(mut self, who: Address, balance: u128, bonded: u128) -> Self {
        self.genesis.accounts.push(GenesisAccount {
            address: who,
            balance: Amount(balance),
            bonded: Amount(bonded),
        });
        self
    }
    /// Registers `who` (an account given enough bond) as a provider offering
    /// `offer` from genesis.
    pub fn provider(mut self, who: Address, offer: crate::tx::Offer) -> Self {
        self.genesis.providers.push(crate::state::GenesisProvider {
            address: who,
            offer,
        });
        self
    }
    /// Sets the treasury.
    pub fn treasury(mut self, who: Address) -> Self {
        self.genesis.treasury = who;
        self
    }
    /// The genesis.
    pub fn build(self) -> Genesis {
        self.genesis
    }
}

/// The test model's layer function: `blake3(model, layer, input)`.
pub fn layer_output(model: &Hash, layer: u32, input: &Hash) -> Hash {
    Hash::digest(
        "agentic test layer v1",
        &[&model.0, &layer.to_be_bytes(), &input.0],
    )
}

/// A deterministic referee over [`layer_output`].
#[derive(Clone, Debug, Default)]
pub struct TestReferee {
    /// Inputs the referee cannot fetch.
    pub unavailable_inputs: BTreeSet<Hash>,
    /// Whether the model's weights are missing.
    pub model_missing: bool,
}

impl Referee for TestReferee {
    fn execute_layer(&self, model: &Hash, layer: u32, input: &Hash) -> Result<Hash, RefereeError> {
        if self.model_missing {
            return Err(RefereeError::ModelUnavailable);
        }
        if self.unavailable_inputs.contains(input) {
            return Err(RefereeError::InputUnavailable);
        }
        if layer == crate::referee::AVAILABILITY_PROBE {
            return Ok(Hash::ZERO);
        }
        Ok(layer_output(model, layer, input))
    }
}

/// A stage's execution trace in tests: [`Leaves`] (leaf 0 is the input, leaf `i` the
/// output of the stage's layer `i - 1`) built from [`layer_output`].
pub type Trace = Leaves;

impl Leaves {
    /// The honest trace of layers `first..first + layers` from `input`.
    pub fn honest(model: &Hash, first: u32, layers: u32, input: Hash) -> Leaves {
        Leaves::cheating(model, first, layers, input, u32::MAX)
    }

    /// A trace that is honest up to stage-relative layer `bad` and then
    /// corrupts that layer's output (and everything computed from it).
    pub fn cheating(model: &Hash, first: u32, layers: u32, input: Hash, bad: u32) -> Leaves {
        let mut leaves = Vec::with_capacity(layers as usize + 1);
        leaves.push(input);
        let mut x = input;
        for i in 0..layers {
            x = layer_output(model, first + i, &x);
            if i == bad {
                x = Hash::digest("agentic test corruption", &[&x.0]);
            }
            leaves.push(x);
        }
        Leaves::new(leaves)
    }
}

/// The salt a test provider uses for its commitment.
pub fn salt_for(provider: &Address, job: JobId, stage: u32) -> Hash {
    Hash::digest(
        "agentic test salt",
        &[&provider.0, &job.0.to_be_bytes(), &stage.to_be_bytes()],
    )
}

/// A chain driver for tests, demos and benches.
pub struct TestChain {
    /// The ledger.
    pub state: State,
    /// The referee used for every block.
    pub referee: TestReferee,
    /// Transactions for the next block.
    pub pending: Vec<SignedTx>,
    /// The beacon of the next block (default: a hash of its height).
    pub next_beacon: Option<[u8; 32]>,
    /// Whether [`TestChain::deliver`] lets a drawn auditor whose key this
    /// chain knows commit the honest trace, so replicas can reveal (default
    /// on; turn it off to script an auditor's moves).
    pub auto_audit: bool,
    /// Every key that signed through this chain, by address.
    pub keys: BTreeMap<Address, PrivateKey>,
    /// The trace each auditor committed through [`TestChain::audit_commit`].
    pub audits: BTreeMap<(JobId, u32), Trace>,
    /// Whether every produced block is followed by the supply check and an
    /// incremental-root-equals-full-rebuild check (panics on failure).
    pub check_invariants: bool,
    nonces: BTreeMap<Address, u64>,
}

impl TestChain {
    /// A chain at genesis.
    pub fn new(genesis: &Genesis) -> TestChain {
        TestChain {
            state: State::new(genesis).expect("test genesis is valid"),
            referee: TestReferee::default(),
            pending: Vec::new(),
            next_beacon: None,
            auto_audit: true,
            keys: BTreeMap::new(),
            audits: BTreeMap::new(),
            check_invariants: false,
            nonces: BTreeMap::new(),
        }
    }

    /// Signs `body` from `key` with the next nonce and the fee its work
    /// requires ([`Params::required_fee`]).
    pub fn sign(&mut self, key: &PrivateKey, body: TxBody) -> SignedTx {
        let who = address_of(key);
        self.keys.entry(who).or_insert_with(|| key.clone());
        let fee = self.state.params().required_fee(&body);
        let nonce = *self
            .nonces
            .entry(who)
            .or_insert_with(|| self.state.nonce(&who));
        self.nonces.insert(who, nonce + 1);
        SignedTx::sign(
            key,
            Tx {
                chain_id: self.state.chain_id(),
                nonce,
                fee,
                body,
            },
        )
    }

    /// Queues a transaction for the next block.
    pub fn push(&mut self, key: &PrivateKey, body: TxBody) {
        let tx = self.sign(key, body);
        self.pending.push(tx);
    }

    /// Applies a block with the queued transactions.
    pub fn produce(&mut self) -> BlockOutcome {
        let height = self.state.height().plus(1);
        let beacon = self
            .next_beacon
            .take()
            .unwrap_or_else(|| Hash::digest("agentic test beacon", &[&height.0.to_be_bytes()]).0);
        let block = Block {
            height,
            beacon,
            txs: std::mem::take(&mut self.pending),
        };
        let out = self
            .state
            .apply_block(&block, &self.referee)
            .expect("test block has the next height");
        // Nonces of rejected transactions were not used.
        self.nonces.clear();
        if self.check_invariants {
            let (held, expected) = self.state.supply();
            assert_eq!(held, expected, "supply broken at height {}", height);
            assert_eq!(
                self.state.root(),
                self.state.full_root(),
                "incremental root differs from a rebuild at height {}",
                height
            );
            if let Err(e) = self.state.check_offer_index() {
                panic!("offer index broken at height {height}: {e}");
            }
        }
        out
    }

    /// Applies one transaction in its own block and returns its receipt.
    pub fn step(&mut self, key: &PrivateKey, body: TxBody) -> Result<(), TxError> {
        self.push(key, body);
        let out = self.produce();
        out.receipts.into_iter().next().unwrap_or(Ok(()))
    }

    /// Applies `body` from `key` in its own block, expects it to be
    /// rejected, and checks the rejection changed nothing: the root equals
    /// that of an empty block applied to a copy of the state. Returns the error.
    pub fn reject(&mut self, key: &PrivateKey, body: TxBody) -> TxError {
        let mut copy = self.state.clone();
        let height = self.state.height().plus(1);
        let beacon = Hash::digest("agentic test beacon", &[&height.0.to_be_bytes()]).0;
        self.next_beacon = Some(beacon);
        let empty = copy
            .apply_block(
                &Block {
                    height,
                    beacon,
                    txs: Vec::new(),
                },
                &self.referee,
            )
            .expect("next height");
        let err = match self.step(key, body) {
            Ok(()) => panic!("transaction was accepted"),
            Err(e) => e,
        };
        assert_eq!(
            self.state.root(),
            empty.root,
            "rejected {err:?} changed the state"
        );
        err
    }

    /// Produces `n` empty blocks.
    pub fn advance(&mut self, n: u64) -> Vec<BlockOutcome> {
        (0..n).map(|_| self.produce()).collect()
    }

    /// Produces empty blocks until the chain is at `h`.
    pub fn advance_to(&mut self, h: Height) -> Vec<BlockOutcome> {
        let mut out = Vec::new();
        while self.state.height() < h {
            out.push(self.produce());
        }
        out
    }

    /// The honest trace of a stage from its agreed input (the test model's).
    pub fn honest_trace(&self, job: JobId, stage: u32) -> Option<Trace> {
        let j = self.state.job(job)?;
        let spec = j.spec.stages.get(stage as usize)?;
        let input = if stage == 0 {
            j.spec.input
        } else {
            j.stages.get(stage as usize - 1)?.result?.output
        };
        Some(Trace::honest(
            &j.spec.model,
            spec.first_layer,
            spec.layers,
            input,
        ))
    }

    /// The auditor drawn for a stage (committed or not, or reporting).
    pub fn auditor_of(&self, job: JobId, stage: u32) -> Option<Address> {
        let st = self.state.job(job)?.stages.get(stage as usize)?;
        if let crate::state::StagePhase::Auditing { auditor, .. } = st.phase {
            return Some(auditor);
        }
        st.audit.as_ref().map(|a| a.auditor)
    }

    /// The drawn auditor (whose key this chain must know) commits `trace`
    /// for a stage, in its own block.
    pub fn audit_commit(&mut self, job: JobId, stage: u32, trace: &Trace) -> Result<(), TxError> {
        let auditor = self.auditor_of(job, stage).ok_or(TxError::NotAuditor)?;
        let key = self
            .keys
            .get(&auditor)
            .cloned()
            .ok_or(TxError::NotAuditor)?;
        let salt = salt_for(&auditor, job, stage);
        let commitment = trace.result().commitment(job, stage, &salt, &auditor);
        self.audits.insert((job, stage), trace.clone());
        self.step(
            &key,
            TxBody::AuditCommit {
                job,
                stage,
                commitment,
            },
        )
    }

    /// The auditor opens the commitment it made through
    /// [`TestChain::audit_commit`], in its own block.
    pub fn audit_report(&mut self, job: JobId, stage: u32) -> Result<(), TxError> {
        let auditor = self.auditor_of(job, stage).ok_or(TxError::NotAuditor)?;
        let key = self
            .keys
            .get(&auditor)
            .cloned()
            .ok_or(TxError::NotAuditor)?;
        let trace = self
            .audits
            .get(&(job, stage))
            .cloned()
            .ok_or(TxError::NotAuditor)?;
        let salt = salt_for(&auditor, job, stage);
        self.step(
            &key,
            TxBody::AuditReport {
                job,
                stage,
                result: trace.result(),
                salt,
            },
        )
    }

    /// If a stage waits for its drawn auditor's commitment and
    /// [`TestChain::auto_audit`] is on, the auditor commits the honest trace.
    pub fn commit_pending_audit(&mut self, job: JobId, stage: u32) -> Result<(), TxError> {
        let waiting = self
            .state
            .job(job)
            .and_then(|j| j.stages.get(stage as usize))
            .is_some_and(|st| st.audit.as_ref().is_some_and(|a| a.commitment.is_none()));
        if !waiting || !self.auto_audit {
            return Ok(());
        }
        let honest = self.honest_trace(job, stage).ok_or(TxError::NotAuditor)?;
        self.audit_commit(job, stage, &honest)
    }

    /// Commits `trace` for a stage from `key` (`CommitSession`, with the
    /// trace's input, for a generation stage); lets a drawn auditor commit
    /// (see [`TestChain::auto_audit`]); then reveals (two or three blocks).
    pub fn deliver(
        &mut self,
        key: &PrivateKey,
        job: JobId,
        stage: u32,
        trace: &Trace,
    ) -> Result<(), TxError> {
        let who = address_of(key);
        let result = trace.result();
        let salt = salt_for(&who, job, stage);
        let commitment = result.commitment(job, stage, &salt, &who);
        let generation = self.state.job(job).is_some_and(|j| j.is_generation());
        let body = TxBody::commit(job, stage, commitment, generation.then_some(result.input));
        self.step(key, body)?;
        self.commit_pending_audit(job, stage)?;
        self.step(
            key,
            TxBody::RevealResult {
                job,
                stage,
                result,
                salt,
            },
        )
    }

    /// Plays a dispute to its end: each round both parties open their
    /// trace at the midpoint. Returns the receipts of any failed move.
    pub fn play_dispute(
        &mut self,
        id: DisputeId,
        defendant: (&PrivateKey, &Trace),
        challenger: (&PrivateKey, &Trace),
    ) -> Vec<TxError> {
        let mut errors = Vec::new();
        while let Some(d) = self.state.dispute(id) {
            if d.phase != crate::state::DisputePhase::Bisecting {
                break;
            }
            let Some(mid) = d.game.midpoint() else { break };
            for (k, t) in [defendant, challenger] {
                let Some((leaf, proof)) = t.open(mid) else {
                    return errors;
                };
                self.push(
                    k,
                    TxBody::Bisect {
                        dispute: id,
                        leaf,
                        proof,
                    },
                );
            }
            let out = self.produce();
            errors.extend(out.receipts.into_iter().filter_map(Result::err));
            if !errors.is_empty() {
                break;
            }
        }
        errors
    }
}
