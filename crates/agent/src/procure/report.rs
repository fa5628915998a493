//! The report in words: one line per attempt, then one per stage checked here
//! and one per dispute — each saying what happened and what it cost.

use agentic_protocol::state::JobStatus;
use agentic_protocol::{Address, Hash};

use super::agent::Attempt;
use super::generation::{Generation, LocalCheck, TranscriptCheck};
use super::watch::{Check, OpenedBy, Verdict};

fn short(h: impl std::fmt::Display) -> String {
    let s = h.to_string();
    format!("{}…", &s[..s.len().min(8)])
}

fn who(a: &Address) -> String {
    short(a)
}

fn hash(h: &Hash) -> String {
    short(h)
}

impl Attempt {
    /// The attempt in words: what was bought, how it ended and what it cost,
    /// then each stage checked here and each dispute with its amounts.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        let providers = if self.providers.is_empty() {
            "matched by the ledger".to_string()
        } else {
            self.providers
                .iter()
                .map(who)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let refund = self
            .cost
            .refund
            .map(|r| format!(", {r} refunded to the payer"))
            .unwrap_or_default();
        out.push(format!(
            "attempt {} `{}` job {} ({providers}): {:?} — escrow {} locked, {} paid to providers{refund}, fee {}; cost to the goal {}",
            self.attempt, self.plan, self.job, self.status, self.escrow, self.cost.paid, self.fee, self.spent
        ));
        if let Some(g) = &self.generation {
            out.push(generation_line(g));
        }
        for c in &self.checks {
            let s = c.stage;
            out.push(match &c.check {
                Check::Agrees { output } => format!(
                    "  stage {s}: recomputed here, the same output {} — verified, nothing posted",
                    hash(output)
                ),
                Check::Challenged {
                    agreed,
                    ours,
                    dispute,
                } => format!(
                    "  stage {s}: recomputed here, the provider's output {} differs from ours {} — challenged{}",
                    hash(agreed),
                    hash(ours),
                    dispute.map(|d| format!(" (dispute {d})")).unwrap_or_default()
                ),
                Check::DiffersUnchallenged {
                    agreed,
                    ours,
                    reason,
                } => format!(
                    "  stage {s}: recomputed here, the provider's output {} differs from ours {} — not challenged: {reason}; the result is not accepted",
                    hash(agreed),
                    hash(ours)
                ),
                Check::InputDiffers { agreed, ours } => format!(
                    "  stage {s}: its input {} differs from ours {} — an earlier stage diverged",
                    hash(agreed),
                    hash(ours)
                ),
                Check::CannotVerify { reason } => {
                    format!("  stage {s}: not verified here: {reason}")
                }
            });
        }
        for d in &self.disputes {
            let opened = match d.opened_by {
                OpenedBy::ThisAgent => format!(
                    "opened by this agent (bond {}, {} bisection move(s), fees {})",
                    d.bond, d.moves, d.fees
                ),
                OpenedBy::Audit => format!("opened by the auditor {}", who(&d.challenger)),
                OpenedBy::Replica => format!("opened by the replica {}", who(&d.challenger)),
                OpenedBy::Challenger => format!("opened by challenger {}", who(&d.challenger)),
            };
            let verdict = match d.verdict {
                Verdict::Open => "still open".to_string(),
                Verdict::ProviderLost => {
                    let mut v = format!(
                        "the provider {} lost: {} of its stake slashed, {} of it to the payer",
                        who(&d.defendant),
                        d.slashed,
                        d.to_payer
                    );
                    if d.opened_by == OpenedBy::ThisAgent {
                        v.push_str(&format!(
                            ", {} back to this agent (its bond and the winner's share)",
                            d.to_agent
                        ));
                    }
                    if self.status == JobStatus::Failed {
                        v.push_str("; the job failed and the unpaid escrow went back to the payer");
                    }
                    v
                }
                Verdict::ProviderUpheld => {
                    let mut v = format!("the provider {}'s result stood", who(&d.defendant));
                    if d.opened_by == OpenedBy::ThisAgent {
                        v.push_str(&format!(
                            ": this agent's bond {} is lost ({} came back)",
                            d.bond, d.to_agent
                        ));
                    } else if d.slashed.0 > 0 {
                        v.push_str(&format!(
                            ": the challenger lost {}, {} of it to the payer",
                            d.slashed, d.to_payer
                        ));
                    }
                    v
                }
            };
            out.push(format!(
                "  dispute {} on stage {}, {opened}: {verdict}; cost to this agent {}",
                d.dispute,
                d.stage,
                d.agent_cost()
            ));
        }
        out
    }
}

/// A generation in words: the tokens, how they streamed, and how they were checked.
fn generation_line(g: &Generation) -> String {
    let first = g
        .first_token_s
        .map(|s| format!(", first after {s:.2} s"))
        .unwrap_or_default();
    let mut line = format!(
        "  generated {} token(s) in {:.2} s{first}",
        g.tokens.len(),
        g.stream_s
    );
    if let Some(e) = &g.stream_error {
        line.push_str(&format!(" — the stream stopped: {e}"));
    }
    line.push_str(&match &g.transcript {
        TranscriptCheck::Matches { transcript } => format!(
            "; transcript {} = the last stage's revealed output",
            hash(transcript)
        ),
        TranscriptCheck::Differs { reason } => format!("; {reason}"),
        TranscriptCheck::NotRevealed => "; the last stage's output is not revealed".into(),
        TranscriptCheck::Unchecked => String::new(),
    });
    line.push_str(&match &g.local {
        Some(LocalCheck::Agrees) => "; the same tokens as this machine's run".into(),
        Some(LocalCheck::Differs { at, .. }) => {
            format!("; differs from this machine's run at token {at} — not accepted")
        }
        Some(LocalCheck::CannotRun { reason }) => format!("; not run here: {reason}"),
        None => String::new(),
    });
    line
}
