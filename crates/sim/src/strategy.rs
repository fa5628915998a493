//! Who does what: a provider's [`Strategy`], what it puts in a replica slot
//! ([`Replica`]), and the coalition strategies ([`CoalitionKind`]).
//!
//! The six single cheats carry the names of the provider daemon's misbehaviour modes
//! (`agentic_provider::misbehave::Misbehaviour`, `agentic provider run --misbehave MODE`):
//! the daemon runs them on the real runtime, the simulator models them on the protocol's
//! test layers. [`Strategy::misbehaviour`] gives the mode's name; [`Strategy::name`] the
//! key the report has always used for it. Where the two differ in what they do is in
//! this crate's README ("The cheats and the provider's misbehaviours").
//!
//! ```text
//!   Strategy                    Replica     report key          --misbehave
//!   Honest, SybilPartner,       Honest      honest, …           —
//!     EchoPartner
//!   WrongOutput                 MadeUp      wrong_output        wrong-output
//!   PerturbUlp                  Perturbed   perturbed_layer     perturb-ulp
//!   SmallerModel                Smaller     smaller_model       smaller-model
//!   Random                      Random      random_output       random
//!   CopyReplica                 Blind       copy_replica        copy-replica
//!   Silent                      MadeUp      silent_in_dispute   silent
//!   SybilWorker, UnbondThenLose,MadeUp      sybil_worker, …     —
//!     RetireWhileDisputed
//!   EchoWithholder              Blind       echo_withholder     —
//! ```

/// How a provider behaves (see the module docs' tables).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Strategy {
    /// Computes every layer and reports it.
    Honest,
    /// `wrong-output`: computes nothing; a made-up output with a consistent made-up trace.
    WrongOutput,
    /// `perturb-ulp`: one layer's output corrupted, the rest computed from it.
    PerturbUlp,
    /// `smaller-model`: the embeddings and head run, the decoder blocks are skipped.
    SmallerModel,
    /// `random`: a random output and root; none of its moves carries a valid proof.
    Random,
    /// `copy-replica`: commits blindly, then tries to reveal the other replica's result.
    CopyReplica,
    /// `silent`: like `wrong-output`, and stops answering once disputed.
    Silent,
    /// `auditor_sybil`'s identity that takes the jobs and lies.
    SybilWorker,
    /// `auditor_sybil`'s identities that hope to audit the worker.
    SybilPartner,
    /// `unbond_then_lose`: reveals made-up results, unbonds what it may once audited.
    UnbondThenLose,
    /// `retire_while_disputed`: reveals made-up results, tries to leave once disputed.
    RetireWhileDisputed,
    /// `echo_replica`'s identity that commits blindly and keeps its reveal back.
    EchoWithholder,
    /// `echo_replica`'s identities that hope to fill the freed slot.
    EchoPartner,
}

/// What a provider puts in a replica slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replica {
    /// Computes every layer.
    Honest,
    /// A made-up output with a consistent made-up trace.
    MadeUp,
    /// One layer corrupted, the rest computed from it.
    Perturbed,
    /// The decoder blocks skipped.
    Smaller,
    /// A random output and root.
    Random,
    /// A blind commitment; nothing to reveal of its own.
    Blind,
}

impl Strategy {
    /// The single cheats, in the report's order.
    pub const CHEATS: [Strategy; 6] = [
        Strategy::WrongOutput,
        Strategy::PerturbUlp,
        Strategy::SmallerModel,
        Strategy::Random,
        Strategy::CopyReplica,
        Strategy::Silent,
    ];

    /// The strategy's key in the report (`perturbed_layer`, …).
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Honest => "honest",
            Strategy::WrongOutput => "wrong_output",
            Strategy::PerturbUlp => "perturbed_layer",
            Strategy::SmallerModel => "smaller_model",
            Strategy::Random => "random_output",
            Strategy::CopyReplica => "copy_replica",
            Strategy::Silent => "silent_in_dispute",
            Strategy::SybilWorker => "sybil_worker",
            Strategy::SybilPartner => "sybil_partner",
            Strategy::UnbondThenLose => "unbond_then_lose",
            Strategy::RetireWhileDisputed => "retire_while_disputed",
            Strategy::EchoWithholder => "echo_withholder",
            Strategy::EchoPartner => "echo_partner",
        }
    }

    /// The provider daemon's misbehaviour mode of the same name
    /// (`agentic provider run --misbehave MODE`), for the six single cheats.
    pub fn misbehaviour(self) -> Option<&'static str> {
        match self {
            Strategy::WrongOutput => Some("wrong-output"),
            Strategy::PerturbUlp => Some("perturb-ulp"),
            Strategy::SmallerModel => Some("smaller-model"),
            Strategy::Random => Some("random"),
            Strategy::CopyReplica => Some("copy-replica"),
            Strategy::Silent => Some("silent"),
            _ => None,
        }
    }

    /// What it does, in a sentence (the report's `what`).
    pub fn what(self) -> &'static str {
        match self {
            Strategy::WrongOutput => {
                "computes nothing; reveals a made-up output with a consistent made-up trace and plays the dispute with it"
            }
            Strategy::PerturbUlp => {
                "computes every layer, corrupts one layer's output and computes the rest from it"
            }
            Strategy::SmallerModel => {
                "runs a smaller model: embeddings and head only, decoder blocks skipped"
            }
            Strategy::Random => {
                "computes nothing; reveals a random output and root, so none of its dispute moves carries a valid proof"
            }
            Strategy::CopyReplica => {
                "on 2-replica jobs: computes nothing, commits blindly, then tries to reveal the other replica's result"
            }
            Strategy::Silent => {
                "computes nothing, reveals a made-up output, and stops answering once disputed"
            }
            _ => "computes every layer and reports it",
        }
    }

    /// What it puts in a replica slot it holds.
    pub fn replica(self) -> Replica {
        match self {
            Strategy::Honest | Strategy::SybilPartner | Strategy::EchoPartner => Replica::Honest,
            Strategy::WrongOutput
            | Strategy::Silent
            | Strategy::SybilWorker
            | Strategy::UnbondThenLose
            | Strategy::RetireWhileDisputed => Replica::MadeUp,
            Strategy::PerturbUlp => Replica::Perturbed,
            Strategy::SmallerModel => Replica::Smaller,
            Strategy::Random => Replica::Random,
            Strategy::CopyReplica | Strategy::EchoWithholder => Replica::Blind,
        }
    }

    /// Whether it answers dispute rounds with its trace.
    pub fn plays(self) -> bool {
        self != Strategy::Silent
            && matches!(
                self.replica(),
                Replica::Honest | Replica::MadeUp | Replica::Perturbed | Replica::Smaller
            )
    }

    /// Whether its jobs ask for two replicas (it needs another replica's reveal).
    pub fn needs_two_replicas(self) -> bool {
        self.replica() == Replica::Blind
    }
}

/// The coalition strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CoalitionKind {
    /// A worker and partners that hope to be drawn as its auditor and approve it.
    AuditorSybil,
    /// One provider that unbonds what it may once audited.
    UnbondThenLose,
    /// A blind committer and partners that hope to echo the other replica's reveal.
    EchoReplica,
    /// A requester whose jobs' input nobody can fetch, hoping for miss penalties.
    PenaltyFarming,
    /// One provider that tries to retire, withdraw and unbond once disputed.
    RetireWhileDisputed,
}

impl CoalitionKind {
    /// Every coalition strategy, in the report's order.
    pub const ALL: [CoalitionKind; 5] = [
        CoalitionKind::AuditorSybil,
        CoalitionKind::UnbondThenLose,
        CoalitionKind::EchoReplica,
        CoalitionKind::PenaltyFarming,
        CoalitionKind::RetireWhileDisputed,
    ];

    /// Its key in the report.
    pub fn name(self) -> &'static str {
        match self {
            CoalitionKind::AuditorSybil => "auditor_sybil",
            CoalitionKind::UnbondThenLose => "unbond_then_lose",
            CoalitionKind::EchoReplica => "echo_replica",
            CoalitionKind::PenaltyFarming => "penalty_farming",
            CoalitionKind::RetireWhileDisputed => "retire_while_disputed",
        }
    }

    /// What it tries, and what the ledger does (the report's `what`).
    pub fn what(self) -> &'static str {
        match self {
            CoalitionKind::AuditorSybil => {
                "k identities with the cheapest offers: one takes jobs and reveals made-up results, the others hope to be drawn as its auditor and approve them; the auditor is drawn by stake among qualified providers, so their odds are their share of the qualified stake"
            }
            CoalitionKind::UnbondThenLose => {
                "reveals made-up results; once an audit is drawn on it, unbonds everything it may before losing the dispute (the ledger keeps the minimum bonded and slashes unbonding stake too)"
            }
            CoalitionKind::EchoReplica => {
                "on 2-replica jobs one identity commits blindly and withholds its reveal after the other replica revealed, so that a partner drawn for the freed slot could echo the public result; the ledger never refills a slot once a replica revealed"
            }
            CoalitionKind::PenaltyFarming => {
                "a requester posts jobs whose input nobody can fetch, to collect miss penalties; the assigned provider claims the data unavailable and, once the validators cannot fetch it either, the requester compensates it from the escrow"
            }
            CoalitionKind::RetireWhileDisputed => {
                "reveals made-up results with withdrawable stake waiting; once disputed, tries to retire, withdraw and unbond (refused while the dispute is open)"
            }
        }
    }
}
