//! The consensus block: what validators order.
//!
//! ```text
//! Block
//! ├── context       simplex context it was proposed in: round, leader, (parent view, parent digest)
//! ├── parent        digest of the parent block
//! ├── height        parent height + 1 (the genesis block is height 0)
//! ├── timestamp_ms  proposer clock, strictly above the parent's
//! ├── parent_seed   threshold-VRF seed signature of the parent's round (absent only on genesis' child)
//! ├── txs           ledger transactions, in order
//! └── verdicts      referee verdicts (one layer each) the proposer found and every voter re-checked
//! digest = sha256(canonical encoding)
//! ```
//!
//! The digest is sha256 over the whole canonical encoding (as in alto), so it commits to the
//! embedded consensus context, which [`CertifiableBlock`] requires. Decoding is bounded by
//! [`BlockLimits`]: the transaction count is checked before anything is allocated and the
//! transactions' encoded bytes are summed as they are read, so a hostile peer cannot make a
//! validator allocate more than `max_txs` transactions or read more than `max_bytes` of them.

use agentic_protocol::{SignedTx, Verdict};
use bytes::BufMut;
use commonware_codec::{
    varint::UInt, Buf, EncodeSize, Error as CodecError, FixedSize, MaxEncodeSize, Read, ReadExt,
    Write,
};
use commonware_consensus::{types::Height, BoundedBlock, CertifiableBlock, Heightable};
use commonware_cryptography::{sha256::Sha256, Digestible, Hasher};

use super::{Context, Digest, SeedSignature};

/// Limits on a block's transactions: enforced when decoding, when verifying and when building.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockLimits {
    /// Most transactions in a block.
    pub max_txs: usize,
    /// Most encoded transaction bytes in a block (the sum of each transaction's encoding).
    pub max_bytes: usize,
    /// Most referee verdicts in a block.
    pub max_verdicts: usize,
}

/// The largest encoding of one verdict (model, layer, input, tag, output).
const VERDICT_MAX_SIZE: usize = 32 + 4 + 32 + 1 + 32;

impl Default for BlockLimits {
    fn default() -> Self {
        BlockLimits {
            max_txs: 10_000,
            max_bytes: 4 << 20,
            max_verdicts: 64,
        }
    }
}

/// A block ordered by consensus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The consensus context the block was proposed in.
    pub context: Context,
    /// The parent block's digest.
    pub parent: Digest,
    /// The block's height (genesis is 0).
    pub height: Height,
    /// The proposer's clock when it built the block, milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// The threshold-VRF seed signature of the parent's round (`None` only when the parent is
    /// the genesis block, whose view 0 has no seed). Lets every node learn the seed of a round
    /// whose block was finalized only through a descendant (see `executor`).
    pub parent_seed: Option<SeedSignature>,
    /// The ledger transactions, in order.
    pub txs: Vec<SignedTx>,
    /// Referee verdicts for disputes awaiting one (see `consensus::referee`).
    pub verdicts: Vec<Verdict>,
    digest: Digest,
}

impl Block {
    /// Assembles a block and computes its digest.
    pub fn new(
        context: Context,
        parent: Digest,
        height: Height,
        timestamp_ms: u64,
        parent_seed: Option<SeedSignature>,
        txs: Vec<SignedTx>,
        verdicts: Vec<Verdict>,
    ) -> Block {
        let mut block = Block {
            context,
            parent,
            height,
            timestamp_ms,
            parent_seed,
            txs,
            verdicts,
            digest: commonware_cryptography::sha256::Digest([0u8; 32]),
        };
        block.digest = block.compute_digest();
        block
    }

    fn compute_digest(&self) -> Digest {
        let mut buf = Vec::with_capacity(self.encode_size());
        self.write(&mut buf);
        Sha256::hash(&[&buf])
    }

    /// The sum of the transactions' encoded sizes (what [`BlockLimits::max_bytes`] bounds).
    pub fn tx_bytes(&self) -> usize {
        self.txs.iter().map(EncodeSize::encode_size).sum()
    }

    /// The digest as plain bytes (what [`crate::FinalizedBlock::digest`] holds).
    pub fn digest_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.digest.as_ref());
        out
    }
}

impl Write for Block {
    fn write(&self, buf: &mut impl BufMut) {
        self.context.write(buf);
        self.parent.write(buf);
        self.height.write(buf);
        UInt(self.timestamp_ms).write(buf);
        self.parent_seed.write(buf);
        UInt(self.txs.len() as u32).write(buf);
        for tx in &self.txs {
            tx.write(buf);
        }
        UInt(self.verdicts.len() as u32).write(buf);
        for v in &self.verdicts {
            v.write(buf);
        }
    }
}

impl EncodeSize for Block {
    fn encode_size(&self) -> usize {
        self.context.encode_size()
            + self.parent.encode_size()
            + self.height.encode_size()
            + UInt(self.timestamp_ms).encode_size()
            + self.parent_seed.encode_size()
            + UInt(self.txs.len() as u32).encode_size()
            + self.tx_bytes()
            + UInt(self.verdicts.len() as u32).encode_size()
            + self
                .verdicts
                .iter()
                .map(EncodeSize::encode_size)
                .sum::<usize>()
    }
}

impl Read for Block {
    type Cfg = BlockLimits;

    fn read_cfg(buf: &mut impl Buf, limits: &BlockLimits) -> Result<Self, CodecError> {
        let context = Context::read(buf)?;
        let parent = Digest::read(buf)?;
        let height = Height::read(buf)?;
        let timestamp_ms = UInt::<u64>::read(buf)?.0;
        let parent_seed = Option::<SeedSignature>::read(buf)?;
        let count = UInt::<u32>::read(buf)?.0 as usize;
        if count > limits.max_txs {
            return Err(CodecError::Invalid("Block", "too many transactions"));
        }
        let mut txs = Vec::with_capacity(count);
        let mut bytes = 0usize;
        for _ in 0..count {
            let before = buf.remaining();
            let tx = SignedTx::read(buf)?;
            bytes += before - buf.remaining();
            if bytes > limits.max_bytes {
                return Err(CodecError::Invalid(
                    "Block",
                    "transactions exceed the byte limit",
                ));
            }
            txs.push(tx);
        }
        let count = UInt::<u32>::read(buf)?.0 as usize;
        if count > limits.max_verdicts {
            return Err(CodecError::Invalid("Block", "too many verdicts"));
        }
        let mut verdicts = Vec::with_capacity(count);
        for _ in 0..count {
            verdicts.push(Verdict::read(buf)?);
        }
        Ok(Block::new(
            context,
            parent,
            height,
            timestamp_ms,
            parent_seed,
            txs,
            verdicts,
        ))
    }
}

impl Digestible for Block {
    type Digest = Digest;

    fn digest(&self) -> Digest {
        self.digest
    }
}

impl Heightable for Block {
    fn height(&self) -> Height {
        self.height
    }
}

impl commonware_consensus::Block for Block {
    fn parent(&self) -> Digest {
        self.parent
    }
}

impl CertifiableBlock for Block {
    type Context = Context;

    fn context(&self) -> Context {
        self.context.clone()
    }
}

impl BoundedBlock for Block {
    fn max_encode_size(limits: &BlockLimits) -> usize {
        Context::MAX_ENCODE_SIZE
            + Digest::SIZE
            + Height::MAX_ENCODE_SIZE
            + UInt::<u64>::MAX_ENCODE_SIZE
            + 1
            + SeedSignature::SIZE
            + UInt::<u32>::MAX_ENCODE_SIZE
            + limits.max_bytes
            + UInt::<u32>::MAX_ENCODE_SIZE
            + limits.max_verdicts * VERDICT_MAX_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::test_utils::key;
    use agentic_protocol::{Address, Amount, ChainId, Tx, TxBody};
    use commonware_codec::{Copying, Decode, Encode};
    use commonware_consensus::types::{Epoch, Round, View};
    use commonware_cryptography::Signer;

    fn block(txs: usize) -> Block {
        let context = Context {
            round: Round::new(Epoch::zero(), View::new(3)),
            leader: commonware_cryptography::ed25519::PrivateKey::from_seed(1).public_key(),
            parent: (View::new(2), Sha256::hash(&[b"parent"])),
        };
        let txs = (0..txs as u64)
            .map(|n| {
                SignedTx::sign(
                    &key(9),
                    Tx {
                        chain_id: ChainId(1),
                        nonce: n,
                        fee: Amount(1),
                        body: TxBody::Transfer {
                            to: Address([1; 32]),
                            amount: Amount(5),
                        },
                    },
                )
            })
            .collect();
        Block::new(
            context,
            Sha256::hash(&[b"parent"]),
            Height::new(7),
            1_000,
            None,
            txs,
            vec![agentic_protocol::Verdict {
                model: agentic_protocol::Hash([3; 32]),
                layer: 2,
                input: agentic_protocol::Hash([4; 32]),
                finding: agentic_protocol::Finding::Output(agentic_protocol::Hash([5; 32])),
            }],
        )
    }

    #[test]
    fn round_trips_and_digest_commits_to_everything() {
        let b = block(3);
        let bytes = b.encode();
        assert_eq!(bytes.len(), b.encode_size());
        assert!(bytes.len() <= Block::max_encode_size(&BlockLimits::default()));
        let back = Block::decode_cfg(bytes.clone(), &BlockLimits::default()).unwrap();
        assert_eq!(back, b);
        assert_eq!(back.digest(), b.digest());
        let mut other = b.clone();
        other.timestamp_ms += 1;
        let other = Block::new(
            other.context,
            other.parent,
            other.height,
            other.timestamp_ms,
            other.parent_seed,
            other.txs,
            other.verdicts,
        );
        assert_ne!(other.digest(), b.digest());
    }

    #[test]
    fn decoding_is_bounded_and_never_panics() {
        let b = block(4);
        let bytes = b.encode();
        let few = BlockLimits {
            max_txs: 3,
            max_bytes: 1 << 20,
            max_verdicts: 1,
        };
        assert!(Block::decode_cfg(bytes.clone(), &few).is_err());
        let small = BlockLimits {
            max_txs: 100,
            max_bytes: b.tx_bytes() - 1,
            max_verdicts: 1,
        };
        assert!(Block::decode_cfg(bytes.clone(), &small).is_err());
        let no_verdicts = BlockLimits {
            max_verdicts: 0,
            ..BlockLimits::default()
        };
        assert!(Block::decode_cfg(bytes.clone(), &no_verdicts).is_err());
        // Every truncation and a byte flip at every position: an error or a different block,
        // never a panic.
        for cut in 0..bytes.len() {
            assert!(Block::decode_cfg(Copying(&bytes[..cut]), &BlockLimits::default()).is_err());
        }
        for i in 0..bytes.len() {
            let mut corrupt = bytes.to_vec();
            corrupt[i] ^= 0x5a;
            if let Ok(decoded) =
                Block::decode_cfg(Copying(corrupt.as_slice()), &BlockLimits::default())
            {
                assert_ne!(decoded.digest(), b.digest());
            }
        }
    }
}
