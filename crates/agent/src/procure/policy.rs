//! What the agent refuses to do, before it costs anything.
//!
//! The ledger enforces the mandate anyway (caps, price, verification, expiry,
//! revocation); the agent checks the same rules first, plus its own goal's budget,
//! so that a purchase that would be refused, or that the goal does not allow, is
//! never signed — and the refusal names the rule and the numbers.

use agentic_protocol::state::Mandate;
use agentic_protocol::types::VerificationLevel;
use agentic_protocol::{Address, Amount};

/// A purchase the agent will not make, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The goal's budget cannot cover the escrow.
    #[error(
        "over budget: the job locks {escrow} but only {remaining} of the goal's budget is left"
    )]
    OverBudget {
        /// Escrow the job locks.
        escrow: Amount,
        /// Budget not yet spent or locked.
        remaining: Amount,
    },
    /// The payer's balance cannot cover the escrow plus the fee.
    #[error("cannot pay: the job locks {escrow} (+ fee {fee}) but the payer holds {balance}")]
    CannotPay {
        /// Escrow the job locks.
        escrow: Amount,
        /// The transaction fee.
        fee: Amount,
        /// The payer's balance.
        balance: Amount,
    },
    /// The signer is not the mandate's agent.
    #[error("mandate: it authorizes agent {agent}, not this key ({me})")]
    NotTheAgent {
        /// The mandate's agent.
        agent: Address,
        /// This key.
        me: Address,
    },
    /// The principal revoked the mandate.
    #[error("mandate: revoked by its principal")]
    Revoked,
    /// The mandate has expired.
    #[error("mandate: expired at height {expiry} (the chain is at {height})")]
    Expired {
        /// First height it no longer authorizes.
        expiry: u64,
        /// The chain's height.
        height: u64,
    },
    /// The escrow exceeds the mandate's per-job cap.
    #[error("mandate: the job locks {escrow}, above the per-job cap of {cap}")]
    OverPerJobCap {
        /// Escrow the job locks.
        escrow: Amount,
        /// The cap.
        cap: Amount,
    },
    /// The escrow exceeds what is left of the mandate's total cap.
    #[error("mandate: the job locks {escrow}, but only {room} of the total cap {cap} is left")]
    OverTotalCap {
        /// Escrow the job locks.
        escrow: Amount,
        /// Room left under the cap.
        room: Amount,
        /// The cap.
        cap: Amount,
    },
    /// The job's price cap exceeds the mandate's.
    #[error("mandate: max price {price} per mega-op is above the mandate's {cap}")]
    PriceAboveCap {
        /// The job's max price.
        price: Amount,
        /// The mandate's max unit price.
        cap: Amount,
    },
    /// The job asks for weaker verification than the mandate requires.
    #[error("mandate: verification {asked:?} is weaker than the required {min:?}")]
    WeakVerification {
        /// The job's level.
        asked: VerificationLevel,
        /// The mandate's minimum.
        min: VerificationLevel,
    },
}

/// What a purchase would be.
#[derive(Clone, Copy, Debug)]
pub struct Purchase {
    /// Escrow the job locks.
    pub escrow: Amount,
    /// The job's max price per mega-op.
    pub max_price: Amount,
    /// The job's verification level.
    pub verification: VerificationLevel,
    /// The submission's fee.
    pub fee: Amount,
}

/// What the agent knows about its means at the time.
#[derive(Clone, Debug)]
pub struct Means<'a> {
    /// The signing key's address.
    pub me: Address,
    /// The chain's height.
    pub height: u64,
    /// The goal's budget not yet spent or locked.
    pub budget_left: Amount,
    /// The payer's balance (the principal's under a mandate).
    pub payer_balance: Amount,
    /// The signer's balance (it pays the fee).
    pub signer_balance: Amount,
    /// The mandate, if spending under one.
    pub mandate: Option<&'a Mandate>,
}

/// Checks a purchase against the goal's budget, the payer's balance and the
/// mandate; the first rule broken is the refusal.
pub fn check(p: &Purchase, m: &Means<'_>) -> Result<(), Refusal> {
    if p.escrow > m.budget_left {
        return Err(Refusal::OverBudget {
            escrow: p.escrow,
            remaining: m.budget_left,
        });
    }
    if let Some(md) = m.mandate {
        let t = &md.terms;
        if t.agent != m.me {
            return Err(Refusal::NotTheAgent {
                agent: t.agent,
                me: m.me,
            });
        }
        if md.revoked {
            return Err(Refusal::Revoked);
        }
        if m.height >= t.expiry.0 {
            return Err(Refusal::Expired {
                expiry: t.expiry.0,
                height: m.height,
            });
        }
        if p.escrow > t.per_job_cap {
            return Err(Refusal::OverPerJobCap {
                escrow: p.escrow,
                cap: t.per_job_cap,
            });
        }
        let room = t.total_cap.saturating_sub(md.spent);
        if p.escrow > room {
            return Err(Refusal::OverTotalCap {
                escrow: p.escrow,
                room,
                cap: t.total_cap,
            });
        }
        if p.max_price > t.max_unit_price {
            return Err(Refusal::PriceAboveCap {
                price: p.max_price,
                cap: t.max_unit_price,
            });
        }
        if p.verification < t.min_verification {
            return Err(Refusal::WeakVerification {
                asked: p.verification,
                min: t.min_verification,
            });
        }
        if p.escrow > m.payer_balance || p.fee > m.signer_balance {
            return Err(Refusal::CannotPay {
                escrow: p.escrow,
                fee: p.fee,
                balance: m.payer_balance,
            });
        }
    } else if p.escrow.0.saturating_add(p.fee.0) > m.payer_balance.0 {
        return Err(Refusal::CannotPay {
            escrow: p.escrow,
            fee: p.fee,
            balance: m.payer_balance,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::tx::MandateTerms;
    use agentic_protocol::Height;

    fn mandate(agent: Address) -> Mandate {
        Mandate {
            principal: Address([1; 32]),
            terms: MandateTerms {
                agent,
                total_cap: Amount(1_000),
                per_job_cap: Amount(400),
                max_unit_price: Amount(50),
                expiry: Height(100),
                min_verification: VerificationLevel::Sampled,
            },
            spent: Amount(700),
            revoked: false,
        }
    }

    #[test]
    fn every_rule_refuses_with_its_numbers() {
        let me = Address([2; 32]);
        let md = mandate(me);
        let ok = Purchase {
            escrow: Amount(300),
            max_price: Amount(50),
            verification: VerificationLevel::Sampled,
            fee: Amount(1),
        };
        let means = Means {
            me,
            height: 10,
            budget_left: Amount(10_000),
            payer_balance: Amount(10_000),
            signer_balance: Amount(5),
            mandate: Some(&md),
        };
        assert_eq!(check(&ok, &means), Ok(()));
        let over = Purchase {
            escrow: Amount(301),
            ..ok
        };
        assert_eq!(
            check(&over, &means),
            Err(Refusal::OverTotalCap {
                escrow: Amount(301),
                room: Amount(300),
                cap: Amount(1_000)
            })
        );
        let big = Purchase {
            escrow: Amount(401),
            ..ok
        };
        assert!(matches!(
            check(&big, &means),
            Err(Refusal::OverPerJobCap { .. })
        ));
        let pricey = Purchase {
            max_price: Amount(51),
            ..ok
        };
        assert!(matches!(
            check(&pricey, &means),
            Err(Refusal::PriceAboveCap { .. })
        ));
        let weak = Purchase {
            verification: VerificationLevel::Optimistic,
            ..ok
        };
        assert!(matches!(
            check(&weak, &means),
            Err(Refusal::WeakVerification { .. })
        ));
        let late = Means {
            height: 100,
            ..means.clone()
        };
        assert_eq!(
            check(&ok, &late),
            Err(Refusal::Expired {
                expiry: 100,
                height: 100
            })
        );
        let poor = Means {
            budget_left: Amount(299),
            ..means.clone()
        };
        assert!(matches!(check(&ok, &poor), Err(Refusal::OverBudget { .. })));
        let other = Means {
            me: Address([3; 32]),
            ..means.clone()
        };
        assert!(matches!(
            check(&ok, &other),
            Err(Refusal::NotTheAgent { .. })
        ));
        let mut revoked = md.clone();
        revoked.revoked = true;
        let r = Means {
            mandate: Some(&revoked),
            ..means.clone()
        };
        assert_eq!(check(&ok, &r), Err(Refusal::Revoked));
        // Without a mandate the payer's own balance bounds the purchase.
        let own = Means {
            mandate: None,
            payer_balance: Amount(300),
            ..means
        };
        assert!(matches!(check(&ok, &own), Err(Refusal::CannotPay { .. })));
    }
}
