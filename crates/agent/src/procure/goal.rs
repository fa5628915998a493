//! A procurement goal: what to buy, by when, for how much, checked how, and
//! what matters most. Read from TOML (`agentic agent run --goal goal.toml`):
//!
//! ```toml
//! model = "tiny-gpt"                  # registry name or model directory
//! texts = ["The Fox and the Crow"]    # or: input_file = "lines.txt"
//! stages = 2                          # pipeline stages (default: 1)
//! replicas = 1
//! budget = 200000                     # most this goal may spend, base units (all attempts)
//! max_price = 2000                    # highest price per mega-op
//! deadline_secs = 120                 # wall-clock time for the whole goal
//! deadline_blocks = 100               # each stage's delivery deadline on chain
//! min_verification = "optimistic"     # optimistic | sampled | audited
//! attempts = 3                        # submissions before giving up
//! mandate = 0                         # spend under this mandate (optional)
//! verify_locally = true               # recompute every stage here; challenge a wrong one
//!                                     # (the agent's key posts the bond; default false)
//!
//! [preferences]                       # relative weights, any non-negative numbers
//! cost = 1.0
//! latency = 1.0
//! reputation = 0.5
//! ```
//!
//! Amounts are integers or decimal strings (for values beyond 2^63). Unknown
//! keys are refused, so a typo cannot silently drop a limit.

use std::path::{Path, PathBuf};

use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Amount, MandateId};
use serde::{Deserialize, Deserializer, Serialize};

use crate::requester::{JobInput, JobRequest};

/// Why a goal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum GoalError {
    /// The file could not be read.
    #[error("cannot read goal file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong type, or an unknown key.
    #[error("goal: {0}")]
    Parse(String),
    /// Valid TOML, but not a usable goal.
    #[error("goal: {0}")]
    Invalid(String),
}

/// Relative weights of what the agent optimizes (lower score wins).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Preferences {
    /// Weight of the expected bill.
    pub cost: f64,
    /// Weight of the expected latency.
    pub latency: f64,
    /// Weight of the providers' reputation (the weakest provider counts).
    pub reputation: f64,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            cost: 1.0,
            latency: 1.0,
            reputation: 0.5,
        }
    }
}

/// What the agent is asked to buy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    /// Registry name (`tiny-gpt`, `minilm`) or a model directory.
    pub model: String,
    /// Input texts, one sequence each.
    #[serde(default)]
    pub texts: Vec<String>,
    /// Or a file of input texts, one per line (relative to the goal file).
    #[serde(default)]
    pub input_file: Option<PathBuf>,
    /// Pipeline stages.
    #[serde(default = "one")]
    pub stages: usize,
    /// Providers per stage.
    #[serde(default = "one_u8")]
    pub replicas: u8,
    /// Most the goal may spend, all attempts together (escrow locked counts until
    /// it comes back).
    #[serde(deserialize_with = "amount")]
    pub budget: Amount,
    /// Highest price per mega-op.
    #[serde(deserialize_with = "amount")]
    pub max_price: Amount,
    /// Wall-clock seconds for the whole goal.
    #[serde(default = "default_deadline_secs")]
    pub deadline_secs: u64,
    /// Each stage's delivery deadline in blocks.
    #[serde(default = "default_deadline_blocks")]
    pub deadline_blocks: u64,
    /// Weakest verification accepted.
    #[serde(default = "optimistic", deserialize_with = "verification")]
    pub min_verification: VerificationLevel,
    /// Submissions before giving up.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Spend under this mandate.
    #[serde(default)]
    pub mandate: Option<u64>,
    /// Recompute every stage on this machine once it has an agreed result, and
    /// challenge (bond from the agent's key, within the budget) one whose output
    /// differs while its challenge window is open. A result found wrong is never
    /// accepted.
    #[serde(default)]
    pub verify_locally: bool,
    /// What matters most.
    #[serde(default)]
    pub preferences: Preferences,
}

fn one() -> usize {
    1
}
fn one_u8() -> u8 {
    1
}
fn default_deadline_secs() -> u64 {
    300
}
fn default_deadline_blocks() -> u64 {
    JobRequest::DEFAULT_DEADLINE
}
fn default_attempts() -> u32 {
    3
}
fn optimistic() -> VerificationLevel {
    VerificationLevel::Optimistic
}

fn amount<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Int(n) if n >= 0 => Ok(Amount(n as u128)),
        Raw::Int(n) => Err(serde::de::Error::custom(format!(
            "amounts cannot be negative ({n})"
        ))),
        Raw::Text(s) => s.trim().parse::<u128>().map(Amount).map_err(|_| {
            serde::de::Error::custom(format!("`{s}` is not an amount (base units, digits only)"))
        }),
    }
}

/// Parses a verification level by name.
pub fn parse_verification(s: &str) -> Option<VerificationLevel> {
    match s.to_ascii_lowercase().as_str() {
        "optimistic" => Some(VerificationLevel::Optimistic),
        "sampled" => Some(VerificationLevel::Sampled),
        "audited" => Some(VerificationLevel::Audited),
        _ => None,
    }
}

fn verification<'de, D: Deserializer<'de>>(d: D) -> Result<VerificationLevel, D::Error> {
    let s = String::deserialize(d)?;
    parse_verification(&s).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown verification `{s}` (optimistic, sampled, audited)"
        ))
    })
}

impl Goal {
    /// Reads and checks a goal file; a relative `input_file` is read from the
    /// goal file's directory.
    pub fn load(path: &Path) -> Result<Goal, GoalError> {
        let text = std::fs::read_to_string(path).map_err(|source| GoalError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut goal = Goal::parse(&text)?;
        if let Some(f) = goal.input_file.take() {
            let f = if f.is_relative() {
                path.parent().unwrap_or(Path::new(".")).join(f)
            } else {
                f
            };
            let lines = std::fs::read_to_string(&f).map_err(|source| GoalError::Read {
                path: f.clone(),
                source,
            })?;
            goal.texts.extend(
                lines
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
        goal.check()?;
        Ok(goal)
    }

    /// Parses a goal from TOML text and checks it (`input_file` is not read).
    pub fn parse(text: &str) -> Result<Goal, GoalError> {
        let goal: Goal = toml::from_str(text).map_err(|e| GoalError::Parse(e.to_string()))?;
        if goal.input_file.is_none() {
            goal.check()?;
        }
        Ok(goal)
    }

    /// The limits that make a goal meaningless when broken.
    pub fn check(&self) -> Result<(), GoalError> {
        let bad = |m: &str| Err(GoalError::Invalid(m.to_string()));
        if self.texts.is_empty() {
            return bad("no input: give `texts` or `input_file`");
        }
        if self.budget.0 == 0 {
            return bad("the budget must be positive");
        }
        if self.max_price.0 == 0 {
            return bad("max_price must be positive");
        }
        if self.stages == 0 {
            return bad("stages must be at least 1");
        }
        if self.attempts == 0 {
            return bad("attempts must be at least 1");
        }
        if self.deadline_secs == 0 || self.deadline_blocks == 0 {
            return bad("deadlines must be positive");
        }
        let p = self.preferences;
        for (name, w) in [
            ("cost", p.cost),
            ("latency", p.latency),
            ("reputation", p.reputation),
        ] {
            if !w.is_finite() || w < 0.0 {
                return Err(GoalError::Invalid(format!(
                    "preference `{name}` must be a non-negative number"
                )));
            }
        }
        if p.cost + p.latency + p.reputation == 0.0 {
            return bad("at least one preference weight must be positive");
        }
        Ok(())
    }

    /// The job request this goal asks for (placement and mandate set by the agent).
    pub fn request(&self) -> JobRequest {
        let mut r = JobRequest::new(self.model.clone(), JobInput::Texts(self.texts.clone()));
        r.stages = self.stages;
        r.replicas = self.replicas;
        r.max_price = self.max_price;
        r.deadline = self.deadline_blocks;
        r.verification = self.min_verification;
        r.mandate = self.mandate.map(MandateId);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOAL: &str = r#"
        model = "tiny-gpt"
        texts = ["The Fox and the Crow"]
        stages = 2
        budget = 200000
        max_price = "2000"
        min_verification = "sampled"
        [preferences]
        cost = 2.0
        latency = 0.0
        reputation = 1
    "#;

    #[test]
    fn a_goal_reads_with_defaults() {
        let g = Goal::parse(GOAL).unwrap();
        assert_eq!(g.budget, Amount(200_000));
        assert_eq!(g.max_price, Amount(2_000));
        assert_eq!(g.min_verification, VerificationLevel::Sampled);
        assert_eq!(g.attempts, 3);
        assert!(!g.verify_locally);
        assert!(
            Goal::parse(&format!("verify_locally = true\n{GOAL}"))
                .unwrap()
                .verify_locally
        );
        assert_eq!(g.preferences.cost, 2.0);
        let r = g.request();
        assert_eq!(r.stages, 2);
        assert_eq!(r.verification, VerificationLevel::Sampled);
    }

    #[test]
    fn bad_goals_say_why() {
        let cases = [
            (GOAL.replace("budget = 200000", "budget = -5"), "negative"),
            (
                GOAL.replace("budget = 200000", "budget = \"lots\""),
                "not an amount",
            ),
            (GOAL.replace("stages = 2", "stagez = 2"), "unknown field"),
            (
                GOAL.replace("\"sampled\"", "\"trust me\""),
                "unknown verification",
            ),
            (GOAL.replace("cost = 2.0", "cost = -1.0"), "non-negative"),
            (
                GOAL.replace("texts = [\"The Fox and the Crow\"]", ""),
                "no input",
            ),
            (GOAL.replace("budget = 200000", "budget = 0"), "budget"),
        ];
        for (text, why) in cases {
            let e = Goal::parse(&text).unwrap_err().to_string();
            assert!(e.contains(why), "{why}: {e}");
        }
    }
}
