//! The demo's report: one serializable value (`--json`; amounts are exact
//! decimal strings, counts and heights integers) and its readable rendering.

use serde::Serialize;

use super::acts::dispute::DisputeReport;
use super::acts::failover::FailoverReport;
use super::acts::generation::GenerationReport;
use super::acts::governance::GovernanceReport;
use super::acts::ledger::{AccountReport, SupplyReport};
use super::acts::mandate::MandateReport;
use super::acts::open::OpenReport;
use super::acts::pipeline::PipelineReport;
use super::world::{ActLog, Check};
use crate::node_cmds::table;

/// The network the story ran on.
#[derive(Clone, Debug, Serialize)]
pub struct NetworkReport {
    /// Chain id.
    pub chain_id: u64,
    /// Number of validators.
    pub validators: usize,
    /// Least time between blocks (ms).
    pub block_interval_ms: u64,
    /// Validator 0's API.
    pub api: String,
    /// Every validator's API.
    pub validator_apis: Vec<String>,
    /// Where the market's files are (kept with `--dir` or `--serve`).
    pub dir: String,
}

/// Everything the demo showed and checked.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// What this run is.
    pub scenario: &'static str,
    /// The network.
    pub network: NetworkReport,
    /// Wall time of the whole story (s), start-up included.
    pub elapsed_s: f64,
    /// Finalized height at the end.
    pub height: u64,
    /// The acts' narratives, in order.
    pub acts: Vec<ActLog>,
    /// Act 1: validators and providers.
    pub market: OpenReport,
    /// Act 2: the three-stage job.
    pub pipeline_job: PipelineReport,
    /// Act 3: the agent under a mandate.
    pub agent_job: MandateReport,
    /// Act 4: the provider that died mid-job.
    pub failover: FailoverReport,
    /// Act 5: pending (issue #6).
    pub dispute: DisputeReport,
    /// Act 6: the parameter vote.
    pub governance: GovernanceReport,
    /// Act 7: the chat completion from an LLM over three providers.
    pub generation: GenerationReport,
    /// Act 8: the books.
    pub supply: SupplyReport,
    /// Shorthand for `supply.conserved`.
    pub supply_conserved: bool,
    /// Every party's final account.
    pub accounts: Vec<AccountReport>,
    /// Every check, in the order made.
    pub checks: Vec<Check>,
    /// Whether every check held (the exit status says the same).
    pub all_checks_held: bool,
}

/// What this demo is.
pub const SCENARIO: &str = "the whole story on a real network in one process: validators with simplex consensus, p2p and storage on loopback; provider daemons that measure, register, compute and get paid; the requester SDK";

impl Report {
    /// The readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let n = &self.network;
        out.push_str(&format!("Agentic demo — {}\n", self.scenario));
        out.push_str(&format!(
            "network: chain {} · {} validators · blocks every ≥ {} ms · API {}\n",
            n.chain_id, n.validators, n.block_interval_ms, n.api
        ));
        for (i, act) in self.acts.iter().enumerate() {
            out.push_str(&format!("\n== {}. {}\n", i + 1, act.title));
            for line in &act.log {
                out.push_str(&format!("   {line}\n"));
            }
        }
        out.push_str(&format!(
            "\nAccounts at height {} (state root {}):\n",
            self.supply.height, self.supply.state_root
        ));
        let rows: Vec<Vec<String>> = self
            .accounts
            .iter()
            .map(|a| {
                vec![
                    a.name.clone(),
                    a.role.to_string(),
                    a.balance.to_string(),
                    a.bonded.to_string(),
                    a.reputation_ppm
                        .map_or("-".into(), |r| format!("{:.3}", f64::from(r) / 1e6)),
                ]
            })
            .collect();
        for line in table(&["name", "role", "balance", "bonded", "reputation"], &rows).lines() {
            out.push_str(&format!("  {line}\n"));
        }
        out.push_str("\nChecks:\n");
        for c in &self.checks {
            out.push_str(&format!(
                "  {} {} — {}\n",
                if c.held { "✓" } else { "✗ FAILED:" },
                c.name,
                c.detail
            ));
        }
        let failed = self.checks.iter().filter(|c| !c.held).count();
        if failed == 0 {
            out.push_str(&format!(
                "\nAll {} checks held · height {} · {:.1} s\n",
                self.checks.len(),
                self.height,
                self.elapsed_s
            ));
        } else {
            out.push_str(&format!(
                "\n{failed} of {} checks FAILED · height {} · {:.1} s\n",
                self.checks.len(),
                self.height,
                self.elapsed_s
            ));
        }
        out
    }
}
