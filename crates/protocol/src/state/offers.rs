//! The offer index: the providers matching may pick, ordered so that one slot
//! costs O(k log P) (k = candidates examined) instead of a scan of every
//! registered provider.
//!
//! ```text
//!   Offers
//!     groups:  (region, capabilities) ─▶ Treap over (price, address), weight = bonded stake
//!     entries: address ─▶ (group, price, stake, reputation)     what the treaps hold now
//!     stale:   addresses touched since the last flush          (provider_mut, bond, unbond, slash)
//!     woken:   (group, lowest price) of offers that got better  (wakes waiting jobs)
//! ```
//!
//! An offer is in the index while its provider is not retired and has a free
//! slot. Everything a job's qualification needs beyond the group and the
//! price (reputation, stake, exclusions) is read from the ledger when a
//! candidate is examined, so the index never holds a value that drifts with
//! the height (reputation decays every block).
//!
//! The index is derived state: it is not hashed into the root, and every
//! validator builds the same one because it only changes inside block
//! application. A treap's priorities come from the block's beacon, so nobody
//! can register identities whose keys and priorities line up into a
//! degenerate (linear) tree.
//!
//! Mutations mark an address stale ([`Offers::touch`]); the matcher flushes
//! the stale set before it reads ([`State::flush_offers`]), so a provider
//! changed ten times in a block is re-indexed once.

use super::{Provider, State};
use crate::reputation::Reputation;
use crate::types::Address;
use std::collections::{BTreeMap, BTreeSet};

/// The part of an offer that selects a provider without looking at its price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Group {
    /// Region code.
    pub(crate) region: u16,
    /// Capability bits.
    pub(crate) capabilities: u64,
}

impl Group {
    /// Whether a job asking for `regions` (empty: any) and `capabilities`
    /// accepts offers of this group.
    pub(crate) fn accepts(&self, regions: &[u16], capabilities: u64) -> bool {
        (regions.is_empty() || regions.contains(&self.region))
            && capabilities & !self.capabilities == 0
    }
}

/// What the index holds for one provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Entry {
    group: Group,
    price: u128,
    stake: u128,
    reputation: (u128, u128),
}

/// The offer index (see the module docs).
#[derive(Clone, Debug, Default)]
pub(crate) struct Offers {
    groups: BTreeMap<Group, Treap>,
    entries: BTreeMap<Address, Entry>,
    stale: BTreeSet<Address>,
    /// Per group, the lowest price of an offer that entered or got better
    /// since the matcher last looked.
    woken: BTreeMap<Group, u128>,
    /// The current block's beacon (treap priorities).
    beacon: [u8; 32],
}

impl Offers {
    /// Starts a block: new treap nodes draw their priorities from `beacon`.
    pub(crate) fn begin_block(&mut self, beacon: &[u8; 32]) {
        self.beacon = *beacon;
    }

    /// Marks `a` as changed: it is re-indexed at the next flush.
    #[inline]
    pub(crate) fn touch(&mut self, a: Address) {
        self.stale.insert(a);
    }

    /// Whether anything is waiting to be re-indexed.
    pub(crate) fn has_stale(&self) -> bool {
        !self.stale.is_empty()
    }

    /// Takes the groups (with their lowest price) whose offers got better
    /// since the last call.
    pub(crate) fn take_woken(&mut self) -> BTreeMap<Group, u128> {
        std::mem::take(&mut self.woken)
    }

    /// The groups accepting `regions` and `capabilities`, in group order.
    pub(crate) fn groups_for<'a>(
        &'a self,
        regions: &'a [u16],
        capabilities: u64,
    ) -> impl Iterator<Item = (&'a Group, &'a Treap)> + 'a {
        self.groups
            .iter()
            .filter(move |(g, t)| !t.is_empty() && g.accepts(regions, capabilities))
    }

    /// Puts `a`'s offer in the index as `next` (or takes it out), recording
    /// whether it got better.
    fn set(&mut self, a: Address, next: Option<Entry>) {
        let prev = self.entries.get(&a).copied();
        if prev == next {
            return;
        }
        if let Some(p) = prev {
            if let Some(t) = self.groups.get_mut(&p.group) {
                t.remove(&(p.price, a));
                if t.is_empty() {
                    self.groups.remove(&p.group);
                }
            }
            self.entries.remove(&a);
        }
        let Some(n) = next else {
            return;
        };
        let better = match prev {
            None => true,
            Some(p) => {
                p.group != n.group
                    || n.price < p.price
                    || n.stake > p.stake
                    || n.reputation.0 > p.reputation.0
                    || n.reputation.1 < p.reputation.1
            }
        };
        if better {
            let w = self.woken.entry(n.group).or_insert(n.price);
            *w = (*w).min(n.price);
        }
        let prio = priority(&self.beacon, &a, n.price);
        self.groups
            .entry(n.group)
            .or_default()
            .insert((n.price, a), n.stake, prio);
        self.entries.insert(a, n);
    }
}

fn entry_of(p: &Provider, stake: u128) -> Option<Entry> {
    if p.retired || p.active >= p.offer.capacity {
        return None;
    }
    let Reputation {
        success, failure, ..
    } = p.reputation;
    Some(Entry {
        group: Group {
            region: p.offer.region.0,
            capabilities: p.offer.capabilities.0,
        },
        price: p.offer.price.0,
        stake,
        reputation: (success, failure),
    })
}

/// A treap node's priority: unpredictable before the block, the same on
/// every validator.
fn priority(beacon: &[u8; 32], a: &Address, price: u128) -> u64 {
    let mut h = blake3::Hasher::new();
    h.update(b"agentic offer priority v1");
    h.update(beacon);
    h.update(&a.0);
    h.update(&price.to_be_bytes());
    let mut b = [0u8; 8];
    b.copy_from_slice(&h.finalize().as_bytes()[..8]);
    u64::from_le_bytes(b)
}

impl State {
    /// Providers matching may pick now (not retired, a free slot), as the
    /// index holds them after its last flush.
    pub fn indexed_offers(&self) -> usize {
        self.offers.entries.len()
    }

    /// Jobs queued for the next block's matching, and jobs waiting (asleep)
    /// for an offer that could serve them.
    pub fn matching_queues(&self) -> (usize, usize) {
        (self.matching.len(), self.waiting.len())
    }

    /// Re-indexes every stale address (see the module docs).
    pub(crate) fn flush_offers(&mut self) {
        if !self.offers.has_stale() {
            return;
        }
        let stale = std::mem::take(&mut self.offers.stale);
        for a in stale {
            let next = self.offer_entry(&a);
            self.offers.set(a, next);
        }
    }

    /// What the index should hold for `a` now.
    fn offer_entry(&self, a: &Address) -> Option<Entry> {
        self.providers
            .get(a)
            .and_then(|p| entry_of(p, self.account(a).bonded.0))
    }

    /// The index rebuilt from the providers, compared with the live one:
    /// `Err` names the first address where they differ (tests and the
    /// property tests call this after every block).
    pub fn check_offer_index(&self) -> Result<(), String> {
        let want: BTreeMap<Address, Entry> = self
            .providers
            .keys()
            .filter_map(|a| Some((*a, self.offer_entry(a)?)))
            .collect();
        let mut live = self.offers.clone();
        let stale = std::mem::take(&mut live.stale);
        for a in stale {
            live.set(a, self.offer_entry(&a));
        }
        if want != live.entries {
            let diff = want
                .keys()
                .chain(live.entries.keys())
                .find(|a| want.get(a) != live.entries.get(a));
            return Err(format!("offer index differs at {diff:?}"));
        }
        let mut count = 0;
        for (g, t) in &live.groups {
            t.check().map_err(|e| format!("group {g:?}: {e}"))?;
            for (k, w) in t.iter() {
                count += 1;
                let e = want.get(&k.1).ok_or("a treap holds a removed offer")?;
                if e.group != *g || e.price != k.0 || e.stake != w {
                    return Err(format!("treap entry of {:?} is stale", k.1));
                }
            }
        }
        if count != want.len() {
            return Err(format!("treaps hold {count} offers, want {}", want.len()));
        }
        Ok(())
    }
}

const NIL: u32 = u32::MAX;

type Key = (u128, Address);

#[derive(Clone, Debug)]
struct Node {
    key: Key,
    weight: u128,
    sum: u128,
    prio: u64,
    left: u32,
    right: u32,
}

/// A treap over (price, address) with subtree sums of the weights (stake):
/// insert, remove, the weight of a price prefix and the key at a weight
/// offset, each in O(log n) expected; in-order iteration.
#[derive(Clone, Debug)]
pub(crate) struct Treap {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    len: usize,
}

impl Default for Treap {
    fn default() -> Self {
        Treap {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            len: 0,
        }
    }
}

impl Treap {
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn sum(&self, t: u32) -> u128 {
        if t == NIL {
            0
        } else {
            self.nodes[t as usize].sum
        }
    }

    fn pull(&mut self, t: u32) {
        let n = &self.nodes[t as usize];
        let s = self
            .sum(n.left)
            .saturating_add(n.weight)
            .saturating_add(self.sum(n.right));
        self.nodes[t as usize].sum = s;
    }

    /// Splits `t` into (keys for which `left(key)`, the rest); `left` must be
    /// monotone (true on a prefix of the order).
    fn split(&mut self, t: u32, left: &impl Fn(&Key) -> bool) -> (u32, u32) {
        if t == NIL {
            return (NIL, NIL);
        }
        if left(&self.nodes[t as usize].key) {
            let r = self.nodes[t as usize].right;
            let (a, b) = self.split(r, left);
            self.nodes[t as usize].right = a;
            self.pull(t);
            (t, b)
        } else {
            let l = self.nodes[t as usize].left;
            let (a, b) = self.split(l, left);
            self.nodes[t as usize].left = b;
            self.pull(t);
            (a, t)
        }
    }

    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        if self.nodes[a as usize].prio >= self.nodes[b as usize].prio {
            let r = self.nodes[a as usize].right;
            let m = self.merge(r, b);
            self.nodes[a as usize].right = m;
            self.pull(a);
            a
        } else {
            let l = self.nodes[b as usize].left;
            let m = self.merge(a, l);
            self.nodes[b as usize].left = m;
            self.pull(b);
            b
        }
    }

    /// Inserts `key` (absent) with `weight`.
    fn insert(&mut self, key: Key, weight: u128, prio: u64) {
        let node = Node {
            key,
            weight,
            sum: weight,
            prio,
            left: NIL,
            right: NIL,
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        let (a, b) = self.split(self.root, &|k| *k < key);
        let a = self.merge(a, id);
        self.root = self.merge(a, b);
        self.len += 1;
    }

    /// Removes `key` if present.
    fn remove(&mut self, key: &Key) {
        let (a, b) = self.split(self.root, &|k| k < key);
        let (m, c) = self.split(b, &|k| k <= key);
        if m != NIL {
            // Keys are unique: `m` is the one node.
            self.free.push(m);
            self.len -= 1;
        }
        self.root = self.merge(a, c);
        if self.len == 0 {
            self.nodes.clear();
            self.free.clear();
            self.root = NIL;
        }
    }

    /// Total weight of the keys priced at most `max_price`.
    pub(crate) fn weight_up_to(&self, max_price: u128) -> u128 {
        let mut t = self.root;
        let mut acc = 0u128;
        while t != NIL {
            let n = &self.nodes[t as usize];
            if n.key.0 <= max_price {
                acc = acc
                    .saturating_add(self.sum(n.left))
                    .saturating_add(n.weight);
                t = n.right;
            } else {
                t = n.left;
            }
        }
        acc
    }

    /// The key at weight offset `point` in key order (`point` below the
    /// total weight; zero-weight keys are never picked).
    pub(crate) fn at_weight(&self, mut point: u128) -> Option<Address> {
        let mut t = self.root;
        while t != NIL {
            let n = &self.nodes[t as usize];
            let l = self.sum(n.left);
            if point < l {
                t = n.left;
                continue;
            }
            point -= l;
            if point < n.weight {
                return Some(n.key.1);
            }
            point -= n.weight;
            t = n.right;
        }
        None
    }

    /// Keys and weights in key order (cheapest first).
    pub(crate) fn iter(&self) -> TreapIter<'_> {
        let mut it = TreapIter {
            treap: self,
            stack: Vec::new(),
        };
        it.descend(self.root);
        it
    }

    /// Checks the heap order, the key order and the sums.
    fn check(&self) -> Result<(), String> {
        fn walk(
            t: &Treap,
            i: u32,
            lo: Option<Key>,
            hi: Option<Key>,
        ) -> Result<(u128, usize), String> {
            if i == NIL {
                return Ok((0, 0));
            }
            let n = &t.nodes[i as usize];
            if lo.is_some_and(|l| n.key <= l) || hi.is_some_and(|h| n.key >= h) {
                return Err("key order broken".into());
            }
            for c in [n.left, n.right] {
                if c != NIL && t.nodes[c as usize].prio > n.prio {
                    return Err("heap order broken".into());
                }
            }
            let (ls, lc) = walk(t, n.left, lo, Some(n.key))?;
            let (rs, rc) = walk(t, n.right, Some(n.key), hi)?;
            let s = ls.saturating_add(n.weight).saturating_add(rs);
            if s != n.sum {
                return Err("subtree sum broken".into());
            }
            Ok((s, lc + rc + 1))
        }
        let (_, count) = walk(self, self.root, None, None)?;
        if count != self.len {
            return Err(format!("{count} nodes reachable, len {}", self.len));
        }
        Ok(())
    }
}

/// In-order iteration over a [`Treap`].
pub(crate) struct TreapIter<'a> {
    treap: &'a Treap,
    stack: Vec<u32>,
}

impl TreapIter<'_> {
    fn descend(&mut self, mut t: u32) {
        while t != NIL {
            self.stack.push(t);
            t = self.treap.nodes[t as usize].left;
        }
    }
}

impl Iterator for TreapIter<'_> {
    type Item = ((u128, Address), u128);

    fn next(&mut self) -> Option<Self::Item> {
        let t = self.stack.pop()?;
        let n = &self.treap.nodes[t as usize];
        let out = (n.key, n.weight);
        self.descend(n.right);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn addr(i: u64) -> Address {
        let mut a = [0u8; 32];
        a[..8].copy_from_slice(&i.to_be_bytes());
        Address(a)
    }

    #[test]
    fn treap_matches_a_sorted_map_under_random_edits() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut t = Treap::default();
        let mut model: BTreeMap<Key, u128> = BTreeMap::new();
        for step in 0..4_000u64 {
            let key = (rng.gen_range(1..50u128), addr(rng.gen_range(0..300)));
            let remove = rng.gen_bool(0.5);
            match model.entry(key) {
                std::collections::btree_map::Entry::Occupied(e) if remove => {
                    t.remove(&key);
                    e.remove();
                }
                std::collections::btree_map::Entry::Occupied(_) => {}
                std::collections::btree_map::Entry::Vacant(e) => {
                    let w = rng.gen_range(0..1_000u128);
                    t.insert(key, w, rng.gen());
                    e.insert(w);
                }
            }
            if step % 97 == 0 {
                t.check().unwrap();
                let got: Vec<_> = t.iter().collect();
                let want: Vec<_> = model.iter().map(|(k, w)| (*k, *w)).collect();
                assert_eq!(got, want);
                let max = rng.gen_range(0..55u128);
                let prefix: u128 = model
                    .iter()
                    .filter(|(k, _)| k.0 <= max)
                    .map(|(_, w)| w)
                    .sum();
                assert_eq!(t.weight_up_to(max), prefix);
                if prefix > 0 {
                    let point = rng.gen_range(0..prefix);
                    let mut p = point;
                    let want = model
                        .iter()
                        .find(|(_, w)| {
                            if p < **w {
                                true
                            } else {
                                p -= **w;
                                false
                            }
                        })
                        .map(|(k, _)| k.1);
                    assert_eq!(t.at_weight(point), want);
                }
            }
        }
        for k in model.keys() {
            t.remove(k);
        }
        assert!(t.is_empty());
        assert_eq!(t.iter().count(), 0);
    }
}
