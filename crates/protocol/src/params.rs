//! Protocol parameters: every number governance can change.
//!
//! A [`ParamChange`] names one parameter ([`ParamKey`]) and its new value
//! (an integer; amounts in base units, windows in blocks, fractions in parts
//! per million). [`Params::with_change`] bounds every value and checks the
//! cross-parameter rules (slash shares sum to at most one whole; a vote
//! cannot outlast the unbonding delay; unbonding outlasts a challenge window
//! plus a dispute round). Stake that voted is also locked until the vote
//! ends whatever later changes say (see the governance module).
//!
//! Fees ([`Params::required_fee`]) grow with the work a transaction makes
//! every validator do: `min_fee + fee_per_slot × slots + fee_per_kib ×
//! ⌊body bytes / 1024⌋`, where `slots` counts the replica and auditor slots a
//! `SubmitJob` asks the ledger to match (zero for other kinds).

use crate::types::{Amount, PPM};
use bytes::BufMut;
use commonware_codec::{Buf, Error as CodecError, FixedSize, Read, ReadExt, Write};

/// Upper bound for any window measured in blocks.
pub const MAX_WINDOW: u64 = 10_000_000;

macro_rules! params {
    ($( $(#[$m:meta])* $field:ident : $ty:ident = $default:expr, tag $tag:expr, key $key:ident, range $lo:expr => $hi:expr; )*) => {
        /// Every governed parameter of the protocol.
        #[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
        pub struct Params {
            $( $(#[$m])* pub $field: params!(@ty $ty), )*
        }

        impl Default for Params {
            fn default() -> Self {
                Self { $( $field: params!(@wrap $ty, $default), )* }
            }
        }

        /// Names one field of [`Params`].
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        pub enum ParamKey {
            $( $(#[$m])* $key, )*
        }

        impl ParamKey {
            /// Every key, in tag order.
            pub const ALL: &'static [ParamKey] = &[$( ParamKey::$key, )*];

            fn tag(self) -> u8 {
                match self { $( ParamKey::$key => $tag, )* }
            }
            fn from_tag(t: u8) -> Option<Self> {
                match t { $( $tag => Some(ParamKey::$key), )* _ => None }
            }
            /// The inclusive range of values this parameter accepts.
            pub fn range(self) -> (u128, u128) {
                match self { $( ParamKey::$key => ($lo as u128, $hi as u128), )* }
            }
            /// The field's name.
            pub fn name(self) -> &'static str {
                match self { $( ParamKey::$key => stringify!($field), )* }
            }
        }

        impl Params {
            /// The current value of one parameter, widened to `u128`.
            pub fn get(&self, key: ParamKey) -> u128 {
                match key { $( ParamKey::$key => params!(@unwrap $ty, self.$field), )* }
            }
            /// Sets one parameter without validation (callers validate first).
            fn set_unchecked(&mut self, key: ParamKey, v: u128) {
                match key { $( ParamKey::$key => self.$field = params!(@wrap $ty, v), )* }
            }
        }

        impl Write for Params {
            fn write(&self, buf: &mut impl BufMut) {
                $( params!(@unwrap $ty, self.$field).write(buf); )*
            }
        }
        impl FixedSize for Params {
            const SIZE: usize = 16 * ParamKey::ALL.len();
        }
        impl Read for Params {
            type Cfg = ();
            fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
                Ok(Self { $( $field: params!(@wrap $ty, u128::read(buf)?), )* })
            }
        }
    };
    (@ty amount) => { Amount };
    (@ty blocks) => { u64 };
    (@ty ppm) => { u32 };
    (@wrap amount, $v:expr) => { Amount(($v) as u128) };
    (@wrap blocks, $v:expr) => { ($v) as u64 };
    (@wrap ppm, $v:expr) => { ($v) as u32 };
    (@unwrap amount, $v:expr) => { ($v).0 };
    (@unwrap blocks, $v:expr) => { ($v) as u128 };
    (@unwrap ppm, $v:expr) => { ($v) as u128 };
}

params! {
    /// Smallest fee a transaction may carry (burned).
    min_fee: amount = 1, tag 0, key MinFee, range 0 => u64::MAX;
    /// Blocks between `Unbond` and the stake becoming withdrawable.
    unbonding_delay: blocks = 100, tag 1, key UnbondingDelay, range 1 => MAX_WINDOW;
    /// Bonded stake a provider must keep while registered.
    min_provider_stake: amount = 10_000, tag 2, key MinProviderStake, range 1 => u64::MAX;
    /// Probability (ppm) that a `Sampled` stage is audited, before the reputation discount.
    audit_ppm: ppm = 100_000, tag 3, key AuditPpm, range 0 => PPM;
    /// Floor (ppm) of the audit probability after the reputation discount.
    audit_min_ppm: ppm = 20_000, tag 4, key AuditMinPpm, range 0 => PPM;
    /// Blocks an auditor has to file its `AuditReport`.
    audit_window: blocks = 20, tag 5, key AuditWindow, range 1 => MAX_WINDOW;
    /// Blocks every replica has to reveal once all replicas of a stage have committed.
    reveal_window: blocks = 10, tag 6, key RevealWindow, range 1 => MAX_WINDOW;
    /// Blocks after verification during which anyone may challenge a stage.
    challenge_window: blocks = 20, tag 7, key ChallengeWindow, range 1 => MAX_WINDOW;
    /// Bond an outside challenger posts (lost if the challenge is frivolous).
    challenge_bond: amount = 1_000, tag 8, key ChallengeBond, range 1 => u64::MAX;
    /// Blocks a dispute party has to make its next `Bisect` move.
    dispute_timeout: blocks = 10, tag 9, key DisputeTimeout, range 1 => MAX_WINDOW;
    /// Share (ppm) of the loser's bonded stake slashed when it loses a dispute.
    slash_ppm: ppm = 500_000, tag 10, key SlashPpm, range 0 => PPM;
    /// Share (ppm) of a slash (or forfeited bond) paid to the dispute winner.
    slash_winner_ppm: ppm = 400_000, tag 11, key SlashWinnerPpm, range 0 => PPM;
    /// Share (ppm) of a slash paid to the job's payer; the rest is burned.
    slash_requester_ppm: ppm = 300_000, tag 12, key SlashRequesterPpm, range 0 => PPM;
    /// Share (ppm) of bonded stake slashed from a provider that misses a deadline.
    miss_penalty_ppm: ppm = 10_000, tag 13, key MissPenaltyPpm, range 0 => PPM;
    /// Blocks a stage may wait for a qualified provider before the job is cancelled.
    match_timeout: blocks = 50, tag 14, key MatchTimeout, range 1 => MAX_WINDOW;
    /// Bonded stake needed to submit a proposal.
    proposal_min_stake: amount = 1, tag 15, key ProposalMinStake, range 1 => u64::MAX;
    /// Blocks a proposal is open for votes.
    voting_period: blocks = 20, tag 16, key VotingPeriod, range 1 => MAX_WINDOW;
    /// Blocks between the end of a passed vote and the change taking effect.
    activation_delay: blocks = 10, tag 17, key ActivationDelay, range 1 => MAX_WINDOW;
    /// Share (ppm) of total bonded stake (at proposal time) that must vote.
    quorum_ppm: ppm = 334_000, tag 18, key QuorumPpm, range 1 => PPM;
    /// A proposal passes when yes-weight exceeds this share (ppm) of the votes cast.
    threshold_ppm: ppm = 500_000, tag 19, key ThresholdPpm, range 0 => PPM - 1;
    /// Tokens minted each block to the treasury account (0 = fixed supply).
    issuance_per_block: amount = 0, tag 20, key IssuancePerBlock, range 0 => u64::MAX;
    /// Blocks for a reputation record to lose half its weight.
    reputation_half_life: blocks = 10_000, tag 21, key ReputationHalfLife, range 1 => MAX_WINDOW;
    /// Base units of bonded stake per unit of job value a provider's reputation may back
    /// (stake bound: reputation above what stake backs is not credited).
    reputation_stake_ratio: ppm = 1_000_000, tag 22, key ReputationStakeRatio, range 1 => PPM;
    /// Longest deadline (blocks) a job may ask for.
    max_deadline: blocks = 10_000, tag 23, key MaxDeadline, range 1 => MAX_WINDOW;
    /// Fee (base units) per replica or auditor slot a `SubmitJob` makes the ledger
    /// match: each slot is a walk of the offer index by every validator.
    fee_per_slot: amount = 1, tag 24, key FeePerSlot, range 0 => u64::MAX;
    /// Fee (base units) per whole KiB of a transaction's body: bytes every
    /// validator receives, verifies and stores.
    fee_per_kib: amount = 1, tag 25, key FeePerKib, range 0 => u64::MAX;
    /// Largest share (ppm) of the stake qualified for an auditor draw that the audit
    /// probability assumes one coalition may hold: a coalition drawn as its own
    /// worker's auditor approves a wrong result, so the value floor discounts the
    /// slash by this share (below one half, like a BFT quorum's `f`).
    audit_collusion_ppm: ppm = 333_333, tag 26, key AuditCollusionPpm, range 0 => PPM / 2 - 1;
    /// Blocks a finished job, a resolved dispute, a closed proposal (with its votes)
    /// or a revoked or expired mandate stays in the state before it is pruned (the
    /// node archives it and still serves it).
    retention: blocks = 100_000, tag 27, key Retention, range 1 => MAX_WINDOW;
    /// Blocks past a dispute's deadline that the validators have to answer its referee
    /// question; a question still unanswered then annuls the dispute (nobody's fault).
    referee_timeout: blocks = 1_000, tag 28, key RefereeTimeout, range 1 => MAX_WINDOW;
}

/// A proposed change of one parameter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParamChange {
    /// The parameter.
    pub key: ParamKey,
    /// Its new value (JSON: a decimal string).
    #[serde(with = "crate::types::decimal_u128")]
    pub value: u128,
}

/// Why a parameter change is refused.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize,
)]
pub enum ParamError {
    /// The value is outside the parameter's range.
    #[error("{key:?} = {value} is outside {lo}..={hi}")]
    OutOfRange {
        /// The parameter.
        key: ParamKey,
        /// The refused value.
        #[serde(with = "crate::types::decimal_u128")]
        value: u128,
        /// Smallest accepted value.
        #[serde(with = "crate::types::decimal_u128")]
        lo: u128,
        /// Largest accepted value.
        #[serde(with = "crate::types::decimal_u128")]
        hi: u128,
    },
    /// The winner's and requester's shares of a slash exceed one whole.
    #[error("slash shares exceed 1,000,000 ppm")]
    SlashSharesExceedWhole,
    /// The voting period would exceed the unbonding delay.
    #[error("voting period must not exceed the unbonding delay")]
    VotingOutlastsUnbonding,
    /// The audit floor would exceed the base audit probability.
    #[error("audit floor exceeds the audit probability")]
    AuditFloorAboveBase,
    /// Unbonding would end before a result's challenge window and a dispute
    /// round could, so stake could leave before its offence is judged.
    #[error("unbonding delay must be at least the challenge window plus the dispute timeout")]
    UnbondingShorterThanChallenge,
}

impl Params {
    /// Checks that every parameter is in range and the cross rules hold.
    pub fn validate(&self) -> Result<(), ParamError> {
        for &key in ParamKey::ALL {
            let (lo, hi) = key.range();
            let value = self.get(key);
            if value < lo || value > hi {
                return Err(ParamError::OutOfRange { key, value, lo, hi });
            }
        }
        if self.slash_winner_ppm as u64 + self.slash_requester_ppm as u64 > PPM as u64 {
            return Err(ParamError::SlashSharesExceedWhole);
        }
        if self.voting_period > self.unbonding_delay {
            return Err(ParamError::VotingOutlastsUnbonding);
        }
        if self.audit_min_ppm > self.audit_ppm {
            return Err(ParamError::AuditFloorAboveBase);
        }
        if (self.unbonding_delay as u128)
            < self.challenge_window as u128 + self.dispute_timeout as u128
        {
            return Err(ParamError::UnbondingShorterThanChallenge);
        }
        Ok(())
    }

    /// The parameters with `change` applied, if they remain valid.
    pub fn with_change(&self, change: ParamChange) -> Result<Params, ParamError> {
        let (lo, hi) = change.key.range();
        if change.value < lo || change.value > hi {
            return Err(ParamError::OutOfRange {
                key: change.key,
                value: change.value,
                lo,
                hi,
            });
        }
        let mut next = self.clone();
        next.set_unchecked(change.key, change.value);
        next.validate()?;
        Ok(next)
    }

    /// The least fee a transaction with this body must carry: `min_fee +
    /// fee_per_slot × slots + fee_per_kib × ⌊bytes / 1024⌋` (saturating), with
    /// `slots` the replica and auditor slots a `SubmitJob` makes the ledger
    /// match (see [`crate::tx::TxBody::match_slots`]) and `bytes` the body's
    /// encoded size.
    pub fn required_fee(&self, body: &crate::tx::TxBody) -> Amount {
        use commonware_codec::EncodeSize;
        let slots = body.match_slots() as u128;
        let kib = (body.encode_size() / 1024) as u128;
        Amount(
            self.min_fee
                .0
                .saturating_add(self.fee_per_slot.0.saturating_mul(slots))
                .saturating_add(self.fee_per_kib.0.saturating_mul(kib)),
        )
    }
}

impl Write for ParamChange {
    fn write(&self, buf: &mut impl BufMut) {
        buf.put_u8(self.key.tag());
        self.value.write(buf);
    }
}
impl FixedSize for ParamChange {
    const SIZE: usize = 1 + 16;
}
impl Read for ParamChange {
    type Cfg = ();
    fn read_cfg(buf: &mut impl Buf, _: &()) -> Result<Self, CodecError> {
        let tag = u8::read(buf)?;
        let key = ParamKey::from_tag(tag).ok_or(CodecError::InvalidEnum(tag))?;
        let value = u128::read(buf)?;
        Ok(ParamChange { key, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commonware_codec::{DecodeExt, Encode};

    #[test]
    fn defaults_are_valid_and_round_trip() {
        let p = Params::default();
        p.validate().unwrap();
        let bytes = p.encode();
        assert_eq!(Params::decode(bytes).unwrap(), p);
        for &k in ParamKey::ALL {
            assert_eq!(ParamKey::from_tag(k.tag()), Some(k));
        }
    }

    #[test]
    fn out_of_range_and_cross_rules_are_refused() {
        let p = Params::default();
        assert!(matches!(
            p.with_change(ParamChange {
                key: ParamKey::AuditPpm,
                value: 2_000_000
            }),
            Err(ParamError::OutOfRange { .. })
        ));
        assert_eq!(
            p.with_change(ParamChange {
                key: ParamKey::SlashWinnerPpm,
                value: 800_000
            }),
            Err(ParamError::SlashSharesExceedWhole)
        );
        assert_eq!(
            p.with_change(ParamChange {
                key: ParamKey::VotingPeriod,
                value: 1_000
            }),
            Err(ParamError::VotingOutlastsUnbonding)
        );
        let next = p
            .with_change(ParamChange {
                key: ParamKey::ChallengeWindow,
                value: 7,
            })
            .unwrap();
        assert_eq!(next.challenge_window, 7);
    }
}
