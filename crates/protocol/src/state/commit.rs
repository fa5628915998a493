//! The incremental state root.
//!
//! The root is a homomorphic set hash ([`crate::root`]) over one entry per
//! state item: `key ‖ value`, both canonical encodings. Adding or removing
//! an entry costs O(1) whatever the state size, so at the end of a block only
//! the items the block changed are updated: the old entry (as it was when
//! the block started) is removed and the new one added.
//!
//! ```text
//!   key = tag ‖ id            tag: 0x01 account  0x02 provider  0x03 mandate
//!                                  0x04 job      0x05 dispute   0x06 proposal
//!                                  0x07 vote     0x08 unbonding 0x09 params
//!                                  0x0a meta (height, next ids, supply counters)
//! ```
//!
//! A job is several entries, so that a commit or a reveal re-hashes the one
//! stage it changed, not the whole job:
//!
//! ```text
//!   0x04 ‖ id ‖ 0x00        requester, payer, spec, submitted_at   (fixed at submit)
//!   0x04 ‖ id ‖ 0x01        escrow, status, excluded, claim
//!   0x04 ‖ id ‖ 0x02 ‖ s    stage s (u32 big-endian)
//! ```
//!
//! Dirty tracking costs nothing on the hot path: each account slot carries
//! the block height it was last touched at; the first touch in a block
//! pushes the account's old value (a 56-byte `Copy`) onto a list. Other
//! entities record their old encoding on first touch in an ordered map.
//! Deadline timers and the matching queue are indexes derived from the
//! committed entities and are not hashed separately.

use super::{Account, AccountSlot, State};
use crate::params::Params;
use crate::root::StateCommitment;
use crate::state::Job;
use crate::state::Meta;
use crate::types::{Address, DisputeId, Hash, Height, JobId, MandateId, ProposalId};
use commonware_codec::{Encode, Write};
use rayon::prelude::*;
use std::collections::BTreeMap;

/// Identifies one committed state item.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum StateKey {
    /// An account.
    Account(Address),
    /// A provider.
    Provider(Address),
    /// A mandate.
    Mandate(MandateId),
    /// A job.
    Job(JobId),
    /// A dispute.
    Dispute(DisputeId),
    /// A proposal.
    Proposal(ProposalId),
    /// A vote.
    Vote(ProposalId, Address),
    /// An unbonding entry.
    Unbonding(Height, Address),
    /// The parameters.
    Params,
    /// Chain-wide counters.
    Meta,
}

impl StateKey {
    /// Canonical key bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(41);
        match self {
            StateKey::Account(a) => {
                out.push(0x01);
                out.extend_from_slice(&a.0);
            }
            StateKey::Provider(a) => {
                out.push(0x02);
                out.extend_from_slice(&a.0);
            }
            StateKey::Mandate(m) => {
                out.push(0x03);
                out.extend_from_slice(&m.0.to_be_bytes());
            }
            StateKey::Job(j) => {
                out.push(0x04);
                out.extend_from_slice(&j.0.to_be_bytes());
            }
            StateKey::Dispute(d) => {
                out.push(0x05);
                out.extend_from_slice(&d.0.to_be_bytes());
            }
            StateKey::Proposal(p) => {
                out.push(0x06);
                out.extend_from_slice(&p.0.to_be_bytes());
            }
            StateKey::Vote(p, a) => {
                out.push(0x07);
                out.extend_from_slice(&p.0.to_be_bytes());
                out.extend_from_slice(&a.0);
            }
            StateKey::Unbonding(h, a) => {
                out.push(0x08);
                out.extend_from_slice(&h.0.to_be_bytes());
                out.extend_from_slice(&a.0);
            }
            StateKey::Params => out.push(0x09),
            StateKey::Meta => out.push(0x0a),
        }
        out
    }
}

fn account_key(a: &Address) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = 0x01;
    k[1..].copy_from_slice(&a.0);
    k
}

fn account_value(acct: &Account) -> [u8; 56] {
    let mut v = [0u8; 56];
    let mut w: &mut [u8] = &mut v;
    acct.write(&mut w);
    v
}

fn encode<T: Encode>(v: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.encode_size());
    v.write(&mut out);
    out
}

/// One entry change: key, old value (if it existed), new value (if it exists).
type Change = (Vec<u8>, Option<Vec<u8>>, Option<Vec<u8>>);

/// Root entries as (key, value) bytes, in key order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

fn job_key(id: JobId, part: u8) -> Vec<u8> {
    let mut k = Vec::with_capacity(14);
    k.push(0x04);
    k.extend_from_slice(&id.0.to_be_bytes());
    k.push(part);
    k
}

/// A job's root entries (module docs); the fixed part only `with_spec`.
fn job_entries(id: JobId, j: &Job, with_spec: bool) -> Entries {
    let mut out = Vec::with_capacity(j.stages.len() + 2);
    if with_spec {
        let mut v = Vec::with_capacity(256);
        j.requester.write(&mut v);
        j.payer.write(&mut v);
        j.spec.write(&mut v);
        j.submitted_at.write(&mut v);
        out.push((job_key(id, 0), v));
    }
    let mut head = Vec::with_capacity(32 + 32 * j.excluded.len());
    j.escrow.write(&mut head);
    j.status.write(&mut head);
    (j.excluded.len() as u32).write(&mut head);
    for a in &j.excluded {
        a.write(&mut head);
    }
    j.claim.write(&mut head);
    out.push((job_key(id, 1), head));
    for (s, st) in j.stages.iter().enumerate() {
        let mut k = job_key(id, 2);
        k.extend_from_slice(&(s as u32).to_be_bytes());
        out.push((k, encode(st)));
    }
    out
}

/// How a job changed in the block (its entries before the block).
#[derive(Clone, Debug)]
enum JobTouch {
    /// Submitted in this block.
    Created,
    /// Changed: its head and stage entries before the block.
    Changed(Entries),
    /// Pruned: every entry it had before the block.
    Removed(Entries),
}

/// Transactions applied between two hand-offs of old account values to the
/// eager remover (see `State::apply_block_preverified`).
pub(crate) const EAGER_CHUNK: usize = 1024;

/// Removes the given pre-block account entries from a partial root and adds
/// it into `into`. Runs on another rayon thread while the block's remaining
/// transactions apply, so the second core computes half of the root update
/// in the time the first spends applying.
pub(crate) fn remove_old_accounts(
    olds: &[(Address, Account)],
    into: &std::sync::Mutex<StateCommitment>,
) {
    if olds.is_empty() {
        return;
    }
    let mut delta = StateCommitment::new();
    for (a, old) in olds {
        delta.remove(&account_key(a), &account_value(old));
    }
    into.lock()
        .unwrap_or_else(|e| e.into_inner())
        .absorb(&delta);
}

/// An account change with its fixed-size encodings on the stack.
type AccountChange = ([u8; 33], Option<[u8; 56]>, Option<[u8; 56]>);

/// The root accumulator plus what the current block has touched.
#[derive(Clone, Default)]
pub(crate) struct Commitment {
    acc: StateCommitment,
    accounts: Vec<(Address, Option<Account>)>,
    /// `accounts[..eager_upto]` had their old values removed eagerly.
    eager_upto: usize,
    others: BTreeMap<StateKey, Option<Vec<u8>>>,
    jobs: BTreeMap<JobId, JobTouch>,
    /// Keys of the non-account entries the last block changed (tests).
    #[cfg(any(test, feature = "test-utils"))]
    last_changed: Vec<Vec<u8>>,
    params_before: Vec<u8>,
    meta_before: Vec<u8>,
}

impl Commitment {
    pub(crate) fn root(&self) -> Hash {
        Hash(self.acc.root())
    }

    pub(crate) fn begin_block(&mut self, params: &Params, meta: &Meta) {
        self.accounts.clear();
        self.eager_upto = 0;
        self.others.clear();
        self.jobs.clear();
        self.params_before = encode(params);
        self.meta_before = encode(meta);
    }

    /// Records an account created in this block.
    #[inline]
    pub(crate) fn new_account(&mut self, who: Address) {
        self.accounts.push((who, None));
    }

    /// Records an existing account's value before its first change this block.
    #[inline]
    pub(crate) fn touch_account(&mut self, who: Address, slot: &mut AccountSlot, epoch: u64) {
        if slot.touched != epoch {
            slot.touched = epoch;
            self.accounts.push((who, Some(slot.acct)));
        }
    }

    /// Records an item's encoding before its first change this block
    /// (`None` if the item is being created).
    /// The pre-block values of the accounts first touched since the last
    /// call (new accounts have none), marking them as handed to the eager
    /// remover: `commit_block` then only adds their new values.
    pub(crate) fn take_old_accounts(&mut self) -> Vec<(Address, Account)> {
        let from = self.eager_upto;
        self.eager_upto = self.accounts.len();
        self.accounts
            .get(from..)
            .unwrap_or_default()
            .iter()
            .filter_map(|(a, old)| old.map(|o| (*a, o)))
            .collect()
    }

    /// Records a job's entries before its first change this block (`None`:
    /// it is being created).
    pub(crate) fn touch_job(&mut self, id: JobId, current: Option<&Job>) {
        self.jobs.entry(id).or_insert_with(|| match current {
            None => JobTouch::Created,
            Some(j) => JobTouch::Changed(job_entries(id, j, false)),
        });
    }

    /// Records that job `id` (as `current`) leaves the state in this block.
    pub(crate) fn remove_job(&mut self, id: JobId, current: &Job) {
        let next = match self.jobs.remove(&id) {
            // Created and removed in one block: it never reached the root.
            Some(JobTouch::Created) => return,
            Some(JobTouch::Changed(mut old)) => {
                // The fixed part never changes after submit.
                old.extend(job_entries(id, current, true).into_iter().take(1));
                old
            }
            Some(JobTouch::Removed(old)) => old,
            None => job_entries(id, current, true),
        };
        self.jobs.insert(id, JobTouch::Removed(next));
    }

    pub(crate) fn touch<T: Encode>(&mut self, key: StateKey, current: Option<&T>) {
        self.others
            .entry(key)
            .or_insert_with(|| current.map(|v| encode(v)));
    }
}

impl State {
    /// Encodes the current value of a committed item.
    fn current_value(&self, key: &StateKey) -> Option<Vec<u8>> {
        match key {
            StateKey::Account(a) => self.accounts.get(a).map(|s| encode(&s.acct)),
            StateKey::Provider(a) => self.providers.get(a).map(encode),
            StateKey::Mandate(m) => self.mandates.get(m).map(encode),
            // Jobs are committed as several entries (`job_entries`).
            StateKey::Job(_) => None,
            StateKey::Dispute(d) => self.disputes.get(d).map(encode),
            StateKey::Proposal(p) => self.proposals.get(p).map(encode),
            StateKey::Vote(p, a) => self.votes.get(&(*p, *a)).map(encode),
            StateKey::Unbonding(h, a) => self.unbonding.get(&(*h, *a)).map(encode),
            StateKey::Params => Some(encode(&self.params)),
            StateKey::Meta => Some(encode(&self.meta)),
        }
    }

    /// Folds every change of the block into the root and returns it.
    ///
    /// `eager` already holds the removal of the old values of the accounts
    /// handed out by [`Commitment::take_old_accounts`]; only their new values
    /// remain to add.
    pub(crate) fn commit_block(&mut self, eager: StateCommitment) -> Hash {
        let mut commit = std::mem::take(&mut self.commit);
        commit.acc.absorb(&eager);
        let eager_upto = commit.eager_upto;
        // Accounts: fixed-size encodings on the stack.
        let accounts = std::mem::take(&mut commit.accounts);
        let account_changes: Vec<AccountChange> = accounts
            .iter()
            .enumerate()
            .filter_map(|(i, (a, old))| {
                let new = self.accounts.get(a).map(|s| s.acct);
                if i < eager_upto {
                    // Old value already removed: add the new one back even if unchanged.
                    return new.map(|n| (account_key(a), None, Some(account_value(&n))));
                }
                if *old == new {
                    return None;
                }
                Some((
                    account_key(a),
                    old.as_ref().map(account_value),
                    new.as_ref().map(account_value),
                ))
            })
            .collect();
        // Everything else: encodings on the heap (rare).
        let mut changes: Vec<Change> = Vec::with_capacity(commit.others.len() + 2);
        for (key, old) in std::mem::take(&mut commit.others) {
            let new = self.current_value(&key);
            if old != new {
                changes.push((key.to_bytes(), old, new));
            }
        }
        for (id, touch) in std::mem::take(&mut commit.jobs) {
            match touch {
                JobTouch::Created => {
                    if let Some(j) = self.jobs.get(&id) {
                        for (k, v) in job_entries(id, j, true) {
                            changes.push((k, None, Some(v)));
                        }
                    }
                }
                JobTouch::Removed(old) => {
                    for (k, v) in old {
                        changes.push((k, Some(v), None));
                    }
                }
                JobTouch::Changed(old) => {
                    let new = self
                        .jobs
                        .get(&id)
                        .map(|j| job_entries(id, j, false))
                        .unwrap_or_default();
                    let mut old: BTreeMap<Vec<u8>, Vec<u8>> = old.into_iter().collect();
                    for (k, v) in new {
                        match old.remove(&k) {
                            Some(o) if o == v => {}
                            o => changes.push((k, o, Some(v))),
                        }
                    }
                    for (k, o) in old {
                        changes.push((k, Some(o), None));
                    }
                }
            }
        }
        let params_now = encode(&self.params);
        if params_now != commit.params_before {
            changes.push((
                StateKey::Params.to_bytes(),
                Some(std::mem::take(&mut commit.params_before)),
                Some(params_now),
            ));
        }
        let meta_now = encode(&self.meta);
        if meta_now != commit.meta_before {
            changes.push((
                StateKey::Meta.to_bytes(),
                Some(std::mem::take(&mut commit.meta_before)),
                Some(meta_now),
            ));
        }
        #[cfg(any(test, feature = "test-utils"))]
        {
            commit.last_changed = changes.iter().map(|c| c.0.clone()).collect();
        }
        // Each change is independent and the accumulator is commutative, so
        // the work is spread over rayon threads and the partial sums combined.
        let delta = account_changes
            .par_iter()
            .fold(StateCommitment::new, |mut acc, (k, old, new)| {
                acc.update(
                    k,
                    old.as_ref().map(|v| &v[..]),
                    new.as_ref().map(|v| &v[..]),
                );
                acc
            })
            .chain(
                changes
                    .par_iter()
                    .fold(StateCommitment::new, |mut acc, (k, old, new)| {
                        acc.update(k, old.as_deref(), new.as_deref());
                        acc
                    }),
            )
            .reduce(StateCommitment::new, |mut a, b| {
                a.absorb(&b);
                a
            });
        commit.acc.absorb(&delta);
        self.commit = commit;
        self.commit.root()
    }

    /// Recomputes the root from scratch (genesis, and tests that check the
    /// incremental root against a full rebuild).
    pub(crate) fn rebuild_root(&mut self) {
        let mut acc = StateCommitment::new();
        for (a, s) in &self.accounts {
            acc.insert(&account_key(a), &account_value(&s.acct));
        }
        let mut add = |k: StateKey, v: Vec<u8>| acc.insert(&k.to_bytes(), &v);
        for (a, p) in &self.providers {
            add(StateKey::Provider(*a), encode(p));
        }
        for (id, m) in &self.mandates {
            add(StateKey::Mandate(*id), encode(m));
        }
        let mut job_parts = Vec::new();
        for (id, j) in &self.jobs {
            job_parts.extend(job_entries(*id, j, true));
        }
        for (id, d) in &self.disputes {
            add(StateKey::Dispute(*id), encode(d));
        }
        for (id, p) in &self.proposals {
            add(StateKey::Proposal(*id), encode(p));
        }
        for ((p, a), v) in &self.votes {
            add(StateKey::Vote(*p, *a), encode(v));
        }
        for ((h, a), v) in &self.unbonding {
            add(StateKey::Unbonding(*h, *a), encode(v));
        }
        add(StateKey::Params, encode(&self.params));
        add(StateKey::Meta, encode(&self.meta));
        for (k, v) in &job_parts {
            acc.insert(k, v);
        }
        self.commit.acc = acc;
    }

    /// Keys of the root entries (other than accounts) the last block
    /// changed, in no particular order (tests: what a transaction re-hashes).
    #[cfg(any(test, feature = "test-utils"))]
    pub fn last_changed_keys(&self) -> Vec<Vec<u8>> {
        self.commit.last_changed.clone()
    }

    /// The root recomputed from every item (slow; for tests and audits of
    /// the incremental root).
    pub fn full_root(&self) -> Hash {
        let mut copy = self.clone();
        copy.rebuild_root();
        copy.commit.root()
    }
}
