//! The node's history: the record of every finalized block, every transaction's receipt and
//! the entities the ledger has finished with (jobs, disputes, proposals, mandates), kept on
//! disk so that memory stays bounded however long the chain grows.
//!
//! ```text
//!   <dir>/
//!     history.log   append-only frames: one meta frame, then for each block its receipts
//!                   and its record; archived entities between blocks
//!     heights.idx   one 12-byte slot per height h ≥ 1, at (h − 1)·12:
//!                   log offset u64 LE | frame length u32 LE
//!     keys.idx      64-byte header, then an open-addressing hash table of 16-byte slots:
//!                   key fingerprint u64 LE (0 = empty) | log offset u64 LE
//!
//!   frame = length u32 LE | kind u8 | checksum [8] | payload (length bytes)
//!           checksum = blake3(kind ‖ payload)[..8]
//!   meta    (kind 0) = version u8 | chain id u64 LE | genesis state root [32]
//!   receipt (kind 1) = tx id [32] | JSON {height, index, result, events}
//!   block   (kind 2) = height u64 LE | digest [32] | JSON {view, timestamp_ms, beacon,
//!                      tx_ids, state_root, succeeded, events}
//!   entity  (kind 3) = entity kind u8 | id u64 LE | JSON of the entity
//! ```
//!
//! The JSON bodies are the serde encodings of the protocol's types (hashes as hex), the
//! same the API serves; the binary frame around them carries the keys the indexes need,
//! so recovery never parses JSON. [`FORMAT_VERSION`] in the meta frame names this layout.
//!
//! Rules:
//! 1. **Append-only, blocks in order.** [`History::put_block`] writes a block's receipts
//!    and then its record in one write at the end of the log; a height already stored is
//!    not written again (replay after a restart) but must have the same digest
//!    ([`HistoryError::Conflict`]); a gap is refused.
//! 2. **Indexes are hints, the log is the truth.** Every index hit is checked against the
//!    frame it points to (checksum, kind and key), so a stale or torn index slot costs a
//!    probe, never a wrong answer. Lookup by height is one slot read; by digest, tx id or
//!    entity a hash-table probe; the table doubles at half load (streamed, slot by slot).
//! 3. **Checkpoints.** Every [`CHECKPOINT_BLOCKS`] blocks (and after growing the table or
//!    recovering) the log and indexes are synced and the `keys.idx` header records the
//!    watermark: the log length and height that the indexes fully cover.
//! 4. **Recovery on open.** From the watermark, the log is scanned frame by frame and
//!    indexed again; the first incomplete or corrupt frame ends it, and the log is cut
//!    back to the end of the last whole block (or entity): a torn tail disappears, and
//!    receipts whose block record did not make it are dropped with it. A missing or
//!    corrupt header rebuilds the indexes from the start of the log. Whatever was cut is
//!    written again when consensus replays the block.
//! 5. **Bounded memory.** Only the last [`RECENT_BLOCKS`] block records stay in memory
//!    (the `/v1/events?from=` fast path); everything else is read from disk on demand,
//!    and no index lives in memory.
//!
//! [`History::in_memory`] keeps the same files in memory (tests, and [`Chain::new`]).
//!
//! Why not a commonware-storage archive (what consensus uses): the chain is written by the
//! executor and read by the API synchronously, under one `RwLock`, while commonware's
//! archives are async and bound to a runtime context. This store is small and synchronous
//! and keeps the same discipline: checksummed append-only frames, a torn tail cut on
//! open, indexes that can always be rebuilt from the log. Its durability need is weaker
//! than consensus storage's: everything in it is derived from finalized blocks that
//! marshal stores durably and replays on start.
//!
//! [`Chain::new`]: crate::Chain::new

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use agentic_protocol::{EventRecord, Hash, Height, Receipt};
use serde::{Deserialize, Serialize};

use crate::chain::{BlockRecord, TxReceipt};

/// Block records kept in memory: the most recent ones, served without a disk read.
pub const RECENT_BLOCKS: usize = 256;
/// Blocks between checkpoints (at most this many are re-indexed on open).
pub const CHECKPOINT_BLOCKS: u64 = 256;
/// Largest frame payload read or written; a longer length on disk is corruption.
pub const MAX_RECORD_BYTES: u32 = 64 << 20;
/// Version of the on-disk layout, in the meta frame.
pub const FORMAT_VERSION: u8 = 1;

const LOG: &str = "history.log";
const HEIGHTS: &str = "heights.idx";
const KEYS: &str = "keys.idx";
const KEYS_NEW: &str = "keys.idx.new";

const FRAME_HEADER: usize = 13;
const HEIGHT_SLOT: u64 = 12;
const KEY_SLOT: u64 = 16;
const KEYS_HEADER: u64 = 64;
const KEYS_MAGIC: [u8; 8] = *b"AGHKEYS1";
const INITIAL_CAPACITY: u64 = 1 << 12;

const KIND_META: u8 = 0;
const KIND_RECEIPT: u8 = 1;
const KIND_BLOCK: u8 = 2;
const KIND_ENTITY: u8 = 3;

/// What went wrong with the history.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// Reading or writing a file failed.
    #[error("history {file}: {source}")]
    Io {
        /// Which file.
        file: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// A frame the indexes point to is not what they say.
    #[error("history log is corrupt at offset {offset}: {reason}")]
    Corrupt {
        /// Where in the log.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// The store was written for another chain.
    #[error("history belongs to chain {found_chain} (genesis root {found_root}), not this one")]
    OtherChain {
        /// Chain id on disk.
        found_chain: u64,
        /// Genesis root on disk.
        found_root: Hash,
    },
    /// The store was written in a format this node does not read.
    #[error("history format version {0} is not supported (this node reads {FORMAT_VERSION})")]
    Version(u8),
    /// A block at a stored height differs from the stored one.
    #[error("block {height} has digest {stored} in history but {applied} was applied")]
    Conflict {
        /// The height.
        height: u64,
        /// Digest on disk.
        stored: Hash,
        /// Digest applied.
        applied: Hash,
    },
    /// A block does not follow the stored height.
    #[error("block {height} does not follow the stored history (height {stored})")]
    Gap {
        /// The block.
        height: u64,
        /// The stored height.
        stored: u64,
    },
    /// A record is larger than [`MAX_RECORD_BYTES`].
    #[error("history record of {0} bytes exceeds the limit of {MAX_RECORD_BYTES}")]
    TooLarge(usize),
    /// A record could not be encoded.
    #[error("cannot encode a history record: {0}")]
    Encode(String),
}

type Result<T> = std::result::Result<T, HistoryError>;

/// Where the history lives and how much of it stays in memory.
#[derive(Clone, Debug)]
pub struct HistoryConfig {
    /// The directory (created if missing); `None` keeps the files in memory.
    pub dir: Option<PathBuf>,
    /// Most recent block records kept in memory ([`RECENT_BLOCKS`]).
    pub recent_blocks: usize,
}

impl HistoryConfig {
    /// History in `dir`, with the default memory window.
    pub fn on_disk(dir: impl Into<PathBuf>) -> HistoryConfig {
        HistoryConfig {
            dir: Some(dir.into()),
            recent_blocks: RECENT_BLOCKS,
        }
    }

    /// History in memory (tests).
    pub fn in_memory() -> HistoryConfig {
        HistoryConfig {
            dir: None,
            recent_blocks: RECENT_BLOCKS,
        }
    }
}

/// The kinds of entity the ledger archives when it prunes them from its state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EntityKind {
    /// A job ([`agentic_protocol::JobId`]).
    Job,
    /// A dispute ([`agentic_protocol::DisputeId`]).
    Dispute,
    /// A governance proposal ([`agentic_protocol::ProposalId`]).
    Proposal,
    /// An agent mandate ([`agentic_protocol::MandateId`]).
    Mandate,
}

impl EntityKind {
    fn code(self) -> u8 {
        match self {
            EntityKind::Job => 1,
            EntityKind::Dispute => 2,
            EntityKind::Proposal => 3,
            EntityKind::Mandate => 4,
        }
    }
}

/// Where a segment's bytes are.
enum Backing {
    /// A file, read and written at offsets.
    Disk(File),
    /// A byte vector (an in-memory history).
    Memory(Vec<u8>),
}

/// One of the history's files.
struct Segment {
    /// Its file name (for errors).
    name: &'static str,
    seg: Backing,
}

impl Segment {
    fn open(dir: Option<&Path>, name: &'static str) -> Result<Segment> {
        let seg = match dir {
            None => Backing::Memory(Vec::new()),
            Some(dir) => Backing::Disk(
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(dir.join(name))
                    .map_err(io(name))?,
            ),
        };
        Ok(Segment { name, seg })
    }

    fn len(&self) -> Result<u64> {
        match &self.seg {
            Backing::Disk(f) => f.metadata().map(|m| m.len()).map_err(io(self.name)),
            Backing::Memory(v) => Ok(v.len() as u64),
        }
    }

    /// Fills `buf` from `offset`; `false` if the file ends first.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<bool> {
        match &self.seg {
            Backing::Disk(f) => {
                use std::os::unix::fs::FileExt;
                match f.read_exact_at(buf, offset) {
                    Ok(()) => Ok(true),
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
                    Err(e) => Err(io(self.name)(e)),
                }
            }
            Backing::Memory(v) => {
                let Some(end) = offset.checked_add(buf.len() as u64) else {
                    return Ok(false);
                };
                if end > v.len() as u64 {
                    return Ok(false);
                }
                buf.copy_from_slice(&v[offset as usize..end as usize]);
                Ok(true)
            }
        }
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> Result<()> {
        match &mut self.seg {
            Backing::Disk(f) => {
                use std::os::unix::fs::FileExt;
                f.write_all_at(buf, offset).map_err(io(self.name))
            }
            Backing::Memory(v) => {
                let start = offset as usize;
                let end = start + buf.len();
                if v.len() < end {
                    v.resize(end, 0);
                }
                v[start..end].copy_from_slice(buf);
                Ok(())
            }
        }
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        match &mut self.seg {
            Backing::Disk(f) => f.set_len(len).map_err(io(self.name)),
            Backing::Memory(v) => {
                v.resize(len as usize, 0);
                Ok(())
            }
        }
    }

    fn sync(&self) -> Result<()> {
        match &self.seg {
            Backing::Disk(f) => f.sync_data().map_err(io(self.name)),
            Backing::Memory(_) => Ok(()),
        }
    }
}

fn io(file: &'static str) -> impl Fn(std::io::Error) -> HistoryError {
    move |source| HistoryError::Io { file, source }
}

/// What a key names; its fingerprint places it in the hash table.
#[derive(Clone, Copy)]
enum Key<'a> {
    /// A block, by consensus digest.
    Digest(&'a [u8; 32]),
    /// A receipt, by transaction id.
    Tx(&'a [u8; 32]),
    /// An entity, by kind code and id.
    Entity(u8, u64),
}

impl Key<'_> {
    fn fingerprint(&self) -> u64 {
        let mut h = blake3::Hasher::new();
        match self {
            Key::Digest(d) => h.update(b"d").update(&d[..]),
            Key::Tx(id) => h.update(b"t").update(&id[..]),
            Key::Entity(code, id) => h.update(&[b'e', *code]).update(&id.to_le_bytes()),
        };
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&h.finalize().as_bytes()[..8]);
        // 0 marks an empty slot.
        u64::from_le_bytes(fp).max(1)
    }

    /// Whether the frame `(kind, payload)` stores this key.
    fn stored_in(&self, kind: u8, payload: &[u8]) -> bool {
        match frame_key(kind, payload) {
            Some(Key::Digest(d)) => matches!(self, Key::Digest(k) if *k == d),
            Some(Key::Tx(d)) => matches!(self, Key::Tx(k) if *k == d),
            Some(Key::Entity(c, i)) => matches!(self, Key::Entity(kc, ki) if *kc == c && *ki == i),
            None => false,
        }
    }
}

/// The key a frame is indexed under (`None` for the meta frame or a malformed payload).
fn frame_key(kind: u8, payload: &[u8]) -> Option<Key<'_>> {
    let bytes32 = |from: usize| {
        payload
            .get(from..from + 32)
            .and_then(|d| <&[u8; 32]>::try_from(d).ok())
    };
    match kind {
        KIND_BLOCK => bytes32(8).map(Key::Digest),
        KIND_RECEIPT => bytes32(0).map(Key::Tx),
        KIND_ENTITY => {
            let code = *payload.first()?;
            Some(Key::Entity(code, le_u64(payload.get(1..9)?)?))
        }
        _ => None,
    }
}

fn le_u64(b: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

fn le_u32(b: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

fn checksum(kind: u8, payload: &[u8]) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(&[kind]).update(payload);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    out
}

/// Appends one frame to `out`.
fn encode_frame(out: &mut Vec<u8>, kind: u8, payload: &[u8]) -> Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| *l <= MAX_RECORD_BYTES)
        .ok_or(HistoryError::TooLarge(payload.len()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(&checksum(kind, payload));
    out.extend_from_slice(payload);
    Ok(())
}

#[derive(Serialize)]
struct BlockBodyRef<'a> {
    view: u64,
    timestamp_ms: u64,
    beacon: Hash,
    tx_ids: &'a [Hash],
    state_root: Hash,
    succeeded: u32,
    events: &'a [EventRecord],
}

#[derive(Deserialize)]
struct BlockBody {
    view: u64,
    timestamp_ms: u64,
    beacon: Hash,
    tx_ids: Vec<Hash>,
    state_root: Hash,
    succeeded: u32,
    events: Vec<EventRecord>,
}

#[derive(Serialize)]
struct ReceiptBodyRef<'a> {
    height: u64,
    index: u32,
    result: &'a Receipt,
    events: &'a [EventRecord],
}

#[derive(Deserialize)]
struct ReceiptBody {
    height: u64,
    index: u32,
    result: Receipt,
    events: Vec<EventRecord>,
}

fn json_into(out: &mut Vec<u8>, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer(out, value).map_err(|e| HistoryError::Encode(e.to_string()))
}

fn block_payload(b: &BlockRecord) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&b.height.0.to_le_bytes());
    out.extend_from_slice(&b.digest);
    json_into(
        &mut out,
        &BlockBodyRef {
            view: b.view,
            timestamp_ms: b.timestamp_ms,
            beacon: Hash(b.beacon),
            tx_ids: &b.tx_ids,
            state_root: b.state_root,
            succeeded: b.succeeded,
            events: &b.events,
        },
    )?;
    Ok(out)
}

fn decode_block(offset: u64, payload: &[u8]) -> Result<BlockRecord> {
    let corrupt = |reason: String| HistoryError::Corrupt { offset, reason };
    let (Some(height), Some(Key::Digest(digest))) = (
        payload.get(..8).and_then(le_u64),
        frame_key(KIND_BLOCK, payload),
    ) else {
        return Err(corrupt("block frame too short".into()));
    };
    let body: BlockBody =
        serde_json::from_slice(&payload[40..]).map_err(|e| corrupt(format!("block body: {e}")))?;
    Ok(BlockRecord {
        height: Height(height),
        digest: *digest,
        view: body.view,
        timestamp_ms: body.timestamp_ms,
        beacon: body.beacon.0,
        tx_ids: body.tx_ids,
        state_root: body.state_root,
        succeeded: body.succeeded,
        events: body.events,
    })
}

fn receipt_payload(r: &TxReceipt) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&r.id.0);
    json_into(
        &mut out,
        &ReceiptBodyRef {
            height: r.height.0,
            index: r.index,
            result: &r.result,
            events: &r.events,
        },
    )?;
    Ok(out)
}

fn decode_receipt(offset: u64, payload: &[u8]) -> Result<TxReceipt> {
    let corrupt = |reason: String| HistoryError::Corrupt { offset, reason };
    let Some(Key::Tx(id)) = frame_key(KIND_RECEIPT, payload) else {
        return Err(corrupt("receipt frame too short".into()));
    };
    let body: ReceiptBody = serde_json::from_slice(&payload[32..])
        .map_err(|e| corrupt(format!("receipt body: {e}")))?;
    Ok(TxReceipt {
        id: Hash(*id),
        height: Height(body.height),
        index: body.index,
        result: body.result,
        events: body.events,
    })
}

/// The point up to which the indexes cover the log (recorded at each checkpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watermark {
    log_len: u64,
    height: u64,
}

/// The `keys.idx` header.
struct KeysHeader {
    capacity: u64,
    count: u64,
    watermark: Watermark,
}

impl KeysHeader {
    fn encode(&self) -> [u8; KEYS_HEADER as usize] {
        let mut out = [0u8; KEYS_HEADER as usize];
        out[..8].copy_from_slice(&KEYS_MAGIC);
        out[8..16].copy_from_slice(&self.capacity.to_le_bytes());
        out[16..24].copy_from_slice(&self.count.to_le_bytes());
        out[24..32].copy_from_slice(&self.watermark.log_len.to_le_bytes());
        out[32..40].copy_from_slice(&self.watermark.height.to_le_bytes());
        let sum = checksum(0xff, &out[..56]);
        out[56..].copy_from_slice(&sum);
        out
    }

    fn decode(b: &[u8; KEYS_HEADER as usize]) -> Option<KeysHeader> {
        if b[..8] != KEYS_MAGIC || b[56..] != checksum(0xff, &b[..56]) {
            return None;
        }
        let capacity = le_u64(&b[8..16])?;
        if !capacity.is_power_of_two() || capacity < INITIAL_CAPACITY {
            return None;
        }
        Some(KeysHeader {
            capacity,
            count: le_u64(&b[16..24])?,
            watermark: Watermark {
                log_len: le_u64(&b[24..32])?,
                height: le_u64(&b[32..40])?,
            },
        })
    }
}

/// Blocks, receipts and archived entities on disk (see the module docs).
pub struct History {
    dir: Option<PathBuf>,
    log: Segment,
    heights: Segment,
    keys: Segment,
    /// End of the last whole frame: what readers see, where the next frame goes.
    log_len: u64,
    /// Height of the last stored block.
    height: u64,
    capacity: u64,
    count: u64,
    watermark: Watermark,
    since_checkpoint: u64,
    recent: VecDeque<Arc<BlockRecord>>,
    recent_blocks: usize,
}

impl History {
    /// Opens (or creates) the history of the chain `chain_id` with genesis state root
    /// `genesis_root`, recovering from a crash (module docs, rule 4).
    pub fn open(config: &HistoryConfig, chain_id: u64, genesis_root: Hash) -> Result<History> {
        let dir = config.dir.as_deref();
        if let Some(dir) = dir {
            std::fs::create_dir_all(dir).map_err(io(LOG))?;
            match std::fs::remove_file(dir.join(KEYS_NEW)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(KEYS_NEW)(e)),
            }
        }
        let log = Segment::open(dir, LOG)?;
        let mut heights = Segment::open(dir, HEIGHTS)?;
        let mut keys = Segment::open(dir, KEYS)?;
        if let Some(dir) = dir {
            sync_dir(dir)?;
        }
        let file_len = log.len()?;
        let mut raw = [0u8; KEYS_HEADER as usize];
        let header = if keys.read_at(&mut raw, 0)? {
            KeysHeader::decode(&raw)
        } else {
            None
        };
        let header = match header {
            Some(h)
                if h.watermark.log_len <= file_len
                    && heights.len()? >= h.watermark.height.saturating_mul(HEIGHT_SLOT)
                    && keys.len()?
                        >= h.capacity
                            .saturating_mul(KEY_SLOT)
                            .saturating_add(KEYS_HEADER) =>
            {
                h
            }
            _ => {
                // No usable index: rebuild it from the whole log.
                keys.set_len(0)?;
                keys.set_len(KEYS_HEADER + INITIAL_CAPACITY * KEY_SLOT)?;
                KeysHeader {
                    capacity: INITIAL_CAPACITY,
                    count: 0,
                    watermark: Watermark {
                        log_len: 0,
                        height: 0,
                    },
                }
            }
        };
        heights.set_len(header.watermark.height * HEIGHT_SLOT)?;
        let mut history = History {
            dir: config.dir.clone(),
            log,
            heights,
            keys,
            log_len: header.watermark.log_len,
            height: header.watermark.height,
            capacity: header.capacity,
            count: header.count,
            watermark: header.watermark,
            since_checkpoint: 0,
            recent: VecDeque::new(),
            recent_blocks: config.recent_blocks,
        };
        history.recover(file_len)?;
        history.check_meta(chain_id, genesis_root)?;
        history.checkpoint()?;
        Ok(history)
    }

    /// An empty history in memory.
    pub fn in_memory(chain_id: u64, genesis_root: Hash) -> Result<History> {
        History::open(&HistoryConfig::in_memory(), chain_id, genesis_root)
    }

    /// Re-indexes the log from the watermark to `file_len` and cuts a torn tail.
    fn recover(&mut self, file_len: u64) -> Result<()> {
        let mut offset = self.log_len;
        let mut commit = offset;
        let mut pending: Vec<u64> = Vec::new();
        while let Some((kind, payload)) = self.read_frame(offset, file_len)? {
            let end = offset + (FRAME_HEADER + payload.len()) as u64;
            match kind {
                KIND_META if offset == 0 => {
                    commit = end;
                }
                KIND_RECEIPT if frame_key(kind, &payload).is_some() => pending.push(offset),
                KIND_BLOCK => {
                    let height = payload.get(..8).and_then(le_u64);
                    let Some(Key::Digest(digest)) = frame_key(kind, &payload) else {
                        break;
                    };
                    if height != Some(self.height + 1) {
                        break;
                    }
                    let digest = *digest;
                    self.log_len = end;
                    self.height += 1;
                    self.write_height_slot(self.height, offset, payload.len())?;
                    for at in pending.drain(..) {
                        let Some((k, p)) = self.read_frame(at, end)? else {
                            continue;
                        };
                        if let Some(Key::Tx(id)) = frame_key(k, &p) {
                            let id = *id;
                            self.insert(Key::Tx(&id), at)?;
                        }
                    }
                    self.insert(Key::Digest(&digest), offset)?;
                    commit = end;
                }
                KIND_ENTITY if pending.is_empty() => {
                    let Some(Key::Entity(code, id)) = frame_key(kind, &payload) else {
                        break;
                    };
                    self.log_len = end;
                    self.insert(Key::Entity(code, id), offset)?;
                    commit = end;
                }
                _ => break,
            }
            offset = end;
        }
        self.log_len = commit;
        if file_len > commit {
            tracing::warn!(
                cut = file_len - commit,
                at = commit,
                "history: cutting a torn or unfinished tail"
            );
            self.log.set_len(commit)?;
        }
        Ok(())
    }

    /// Writes the meta frame into an empty log, or checks the one there.
    fn check_meta(&mut self, chain_id: u64, genesis_root: Hash) -> Result<()> {
        if self.log_len == 0 {
            let mut payload = Vec::with_capacity(41);
            payload.push(FORMAT_VERSION);
            payload.extend_from_slice(&chain_id.to_le_bytes());
            payload.extend_from_slice(&genesis_root.0);
            let mut frame = Vec::new();
            encode_frame(&mut frame, KIND_META, &payload)?;
            self.log.write_at(&frame, 0)?;
            self.log_len = frame.len() as u64;
            return Ok(());
        }
        let Some((KIND_META, payload)) = self.read_frame(0, self.log_len)? else {
            return Err(HistoryError::Corrupt {
                offset: 0,
                reason: "the log does not start with a meta frame".into(),
            });
        };
        let version = payload.first().copied().unwrap_or(0);
        if version != FORMAT_VERSION {
            return Err(HistoryError::Version(version));
        }
        let found_chain = payload.get(1..9).and_then(le_u64).unwrap_or(0);
        let found_root = payload
            .get(9..41)
            .and_then(|r| <[u8; 32]>::try_from(r).ok())
            .map(Hash)
            .unwrap_or_default();
        if found_chain != chain_id || found_root != genesis_root {
            return Err(HistoryError::OtherChain {
                found_chain,
                found_root,
            });
        }
        Ok(())
    }

    /// The frame at `offset` if it is whole, ends by `limit` and matches its checksum.
    fn read_frame(&self, offset: u64, limit: u64) -> Result<Option<(u8, Vec<u8>)>> {
        let mut header = [0u8; FRAME_HEADER];
        if offset.saturating_add(FRAME_HEADER as u64) > limit
            || !self.log.read_at(&mut header, offset)?
        {
            return Ok(None);
        }
        let Some(len) = le_u32(&header[..4]) else {
            return Ok(None);
        };
        let end = offset + FRAME_HEADER as u64 + u64::from(len);
        if len > MAX_RECORD_BYTES || end > limit {
            return Ok(None);
        }
        let mut payload = vec![0u8; len as usize];
        if !self
            .log
            .read_at(&mut payload, offset + FRAME_HEADER as u64)?
        {
            return Ok(None);
        }
        let kind = header[4];
        if header[5..] != checksum(kind, &payload) {
            return Ok(None);
        }
        Ok(Some((kind, payload)))
    }

    fn write_height_slot(&mut self, height: u64, offset: u64, len: usize) -> Result<()> {
        let mut slot = [0u8; HEIGHT_SLOT as usize];
        slot[..8].copy_from_slice(&offset.to_le_bytes());
        slot[8..].copy_from_slice(&(len as u32).to_le_bytes());
        self.heights.write_at(&slot, (height - 1) * HEIGHT_SLOT)
    }

    fn read_slot(keys: &Segment, slot: u64) -> Result<(u64, u64)> {
        let mut raw = [0u8; KEY_SLOT as usize];
        if !keys.read_at(&mut raw, KEYS_HEADER + slot * KEY_SLOT)? {
            return Ok((0, 0));
        }
        Ok((
            le_u64(&raw[..8]).unwrap_or(0),
            le_u64(&raw[8..]).unwrap_or(0),
        ))
    }

    fn write_slot(keys: &mut Segment, slot: u64, fp: u64, offset: u64) -> Result<()> {
        let mut raw = [0u8; KEY_SLOT as usize];
        raw[..8].copy_from_slice(&fp.to_le_bytes());
        raw[8..].copy_from_slice(&offset.to_le_bytes());
        keys.write_at(&raw, KEYS_HEADER + slot * KEY_SLOT)
    }

    /// The frame stored under `key`, with its offset.
    fn find(&self, key: Key<'_>) -> Result<Option<(u64, u8, Vec<u8>)>> {
        let fp = key.fingerprint();
        let mask = self.capacity - 1;
        let mut slot = fp & mask;
        for _ in 0..self.capacity {
            let (sfp, offset) = Self::read_slot(&self.keys, slot)?;
            if sfp == 0 {
                return Ok(None);
            }
            if sfp == fp {
                if let Some((kind, payload)) = self.read_frame(offset, self.log_len)? {
                    if key.stored_in(kind, &payload) {
                        return Ok(Some((offset, kind, payload)));
                    }
                }
            }
            slot = (slot + 1) & mask;
        }
        Ok(None)
    }

    /// Points `key` at the frame at `offset` (replacing an older frame of the same key).
    fn insert(&mut self, key: Key<'_>, offset: u64) -> Result<()> {
        if (self.count + 1) * 2 > self.capacity {
            self.grow()?;
        }
        let fp = key.fingerprint();
        loop {
            let mask = self.capacity - 1;
            let mut slot = fp & mask;
            for _ in 0..self.capacity {
                let (sfp, at) = Self::read_slot(&self.keys, slot)?;
                if sfp == 0 {
                    Self::write_slot(&mut self.keys, slot, fp, offset)?;
                    self.count += 1;
                    return Ok(());
                }
                if sfp == fp {
                    let same = match self.read_frame(at, self.log_len)? {
                        Some((kind, payload)) => key.stored_in(kind, &payload),
                        None => false,
                    };
                    if same {
                        return Self::write_slot(&mut self.keys, slot, fp, offset);
                    }
                }
                slot = (slot + 1) & mask;
            }
            // Full (slots torn by a crash were not counted): grow and try again.
            self.grow()?;
        }
    }

    /// Doubles the hash table, slot by slot into a new file that then replaces the old.
    fn grow(&mut self) -> Result<()> {
        let capacity = self.capacity * 2;
        let mask = capacity - 1;
        let mut new = Segment::open(self.dir.as_deref(), KEYS_NEW)?;
        new.set_len(0)?;
        new.set_len(KEYS_HEADER + capacity * KEY_SLOT)?;
        let mut count = 0;
        const CHUNK: u64 = 4096;
        let mut buf = vec![0u8; (CHUNK * KEY_SLOT) as usize];
        let mut first = 0;
        while first < self.capacity {
            let n = CHUNK.min(self.capacity - first);
            let chunk = &mut buf[..(n * KEY_SLOT) as usize];
            if !self.keys.read_at(chunk, KEYS_HEADER + first * KEY_SLOT)? {
                chunk.fill(0);
            }
            for raw in chunk.chunks_exact(KEY_SLOT as usize) {
                let fp = le_u64(&raw[..8]).unwrap_or(0);
                if fp == 0 {
                    continue;
                }
                let offset = le_u64(&raw[8..]).unwrap_or(0);
                let mut slot = fp & mask;
                while Self::read_slot(&new, slot)?.0 != 0 {
                    slot = (slot + 1) & mask;
                }
                Self::write_slot(&mut new, slot, fp, offset)?;
                count += 1;
            }
            first += n;
        }
        let header = KeysHeader {
            capacity,
            count,
            // The last checkpoint's: recovery re-indexes whatever came after it.
            watermark: self.watermark,
        };
        new.write_at(&header.encode(), 0)?;
        new.sync()?;
        if let Some(dir) = &self.dir {
            std::fs::rename(dir.join(KEYS_NEW), dir.join(KEYS)).map_err(io(KEYS))?;
            sync_dir(dir)?;
        }
        new.name = KEYS;
        self.keys = new;
        self.capacity = capacity;
        self.count = count;
        Ok(())
    }

    /// Syncs the log and indexes and records the watermark (module docs, rule 3).
    pub fn checkpoint(&mut self) -> Result<()> {
        self.log.sync()?;
        self.heights.sync()?;
        self.keys.sync()?;
        self.watermark = Watermark {
            log_len: self.log_len,
            height: self.height,
        };
        let header = KeysHeader {
            capacity: self.capacity,
            count: self.count,
            watermark: self.watermark,
        };
        self.keys.write_at(&header.encode(), 0)?;
        self.keys.sync()?;
        self.since_checkpoint = 0;
        Ok(())
    }

    /// Height of the last stored block (0: none).
    pub fn height(&self) -> Height {
        Height(self.height)
    }

    /// How many block records are held in memory (at most the configured window).
    pub fn cached_blocks(&self) -> usize {
        self.recent.len()
    }

    /// Stores a finalized block's record and its transactions' receipts (rule 1). A block
    /// already stored is only remembered as recent.
    pub fn put_block(&mut self, record: Arc<BlockRecord>, receipts: &[TxReceipt]) -> Result<()> {
        let h = record.height.0;
        if h == 0 {
            return Err(HistoryError::Gap {
                height: 0,
                stored: self.height,
            });
        }
        if h <= self.height {
            let (offset, payload) = self.block_frame(h)?;
            let Some(Key::Digest(stored)) = frame_key(KIND_BLOCK, &payload) else {
                return Err(HistoryError::Corrupt {
                    offset,
                    reason: format!("block {h}: frame too short"),
                });
            };
            if *stored != record.digest {
                return Err(HistoryError::Conflict {
                    height: h,
                    stored: Hash(*stored),
                    applied: Hash(record.digest),
                });
            }
            self.remember(record);
            return Ok(());
        }
        if h != self.height + 1 {
            return Err(HistoryError::Gap {
                height: h,
                stored: self.height,
            });
        }
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(receipts.len());
        for r in receipts {
            offsets.push(self.log_len + buf.len() as u64);
            encode_frame(&mut buf, KIND_RECEIPT, &receipt_payload(r)?)?;
        }
        let block_at = self.log_len + buf.len() as u64;
        let payload = block_payload(&record)?;
        encode_frame(&mut buf, KIND_BLOCK, &payload)?;
        if let Err(e) = self.log.write_at(&buf, self.log_len) {
            let _ = self.log.set_len(self.log_len);
            return Err(e);
        }
        self.log_len += buf.len() as u64;
        self.height = h;
        self.write_height_slot(h, block_at, payload.len())?;
        for (r, at) in receipts.iter().zip(offsets) {
            self.insert(Key::Tx(&r.id.0), at)?;
        }
        self.insert(Key::Digest(&record.digest), block_at)?;
        self.remember(record);
        self.since_checkpoint += 1;
        if self.since_checkpoint >= CHECKPOINT_BLOCKS {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Keeps `record` in the recent window (contiguous heights, newest last).
    fn remember(&mut self, record: Arc<BlockRecord>) {
        if self.recent_blocks == 0 {
            return;
        }
        if self
            .recent
            .back()
            .is_some_and(|b| b.height.0 + 1 != record.height.0)
        {
            self.recent.clear();
        }
        self.recent.push_back(record);
        while self.recent.len() > self.recent_blocks {
            self.recent.pop_front();
        }
    }

    fn cached(&self, height: u64) -> Option<&Arc<BlockRecord>> {
        let first = self.recent.front()?.height.0;
        let i = height.checked_sub(first)?;
        self.recent.get(usize::try_from(i).ok()?)
    }

    /// The offset and payload of the stored block at `height` (1 ..= the stored height).
    fn block_frame(&self, height: u64) -> Result<(u64, Vec<u8>)> {
        let mut slot = [0u8; HEIGHT_SLOT as usize];
        let at = (height - 1) * HEIGHT_SLOT;
        let corrupt = |reason: &str| HistoryError::Corrupt {
            offset: at,
            reason: format!("{HEIGHTS}: block {height}: {reason}"),
        };
        if !self.heights.read_at(&mut slot, at)? {
            return Err(corrupt("missing slot"));
        }
        let offset = le_u64(&slot[..8]).unwrap_or(u64::MAX);
        match self.read_frame(offset, self.log_len)? {
            Some((KIND_BLOCK, payload)) => {
                if payload.get(..8).and_then(le_u64) != Some(height) {
                    return Err(corrupt("slot points at another block"));
                }
                Ok((offset, payload))
            }
            _ => Err(corrupt("slot points at no block frame")),
        }
    }

    /// The stored block at `height` (1 ..= the stored height), from disk.
    fn read_block(&self, height: u64) -> Result<BlockRecord> {
        let (offset, payload) = self.block_frame(height)?;
        decode_block(offset, &payload)
    }

    /// The block at `height`, from memory if recent.
    pub fn block(&self, height: Height) -> Result<Option<Arc<BlockRecord>>> {
        if height.0 == 0 || height.0 > self.height {
            return Ok(None);
        }
        if let Some(b) = self.cached(height.0) {
            return Ok(Some(b.clone()));
        }
        self.read_block(height.0).map(|b| Some(Arc::new(b)))
    }

    /// Blocks with heights in `from..=to` (clamped to the stored ones), ascending.
    pub fn blocks(&self, from: Height, to: Height) -> Result<Vec<Arc<BlockRecord>>> {
        let from = from.0.max(1);
        let to = to.0.min(self.height);
        (from..=to)
            .map(|h| match self.cached(h) {
                Some(b) => Ok(b.clone()),
                None => self.read_block(h).map(Arc::new),
            })
            .collect()
    }

    /// The block with consensus digest `digest`.
    pub fn block_by_digest(&self, digest: &[u8; 32]) -> Result<Option<Arc<BlockRecord>>> {
        if let Some(b) = self.recent.iter().find(|b| &b.digest == digest) {
            return Ok(Some(b.clone()));
        }
        match self.find(Key::Digest(digest))? {
            Some((offset, _, payload)) => decode_block(offset, &payload).map(|b| Some(Arc::new(b))),
            None => Ok(None),
        }
    }

    /// The receipt of transaction `id`.
    pub fn receipt(&self, id: &Hash) -> Result<Option<TxReceipt>> {
        match self.find(Key::Tx(&id.0))? {
            Some((offset, _, payload)) => decode_receipt(offset, &payload).map(Some),
            None => Ok(None),
        }
    }

    /// Archives an entity the ledger no longer keeps (its encoding, by convention the JSON
    /// the API serves). Archiving the same bytes again is a no-op (replay); other bytes
    /// replace the archived ones.
    pub fn archive_entity(&mut self, kind: EntityKind, id: u64, body: &[u8]) -> Result<()> {
        if self.entity(kind, id)?.as_deref() == Some(body) {
            return Ok(());
        }
        let mut payload = Vec::with_capacity(9 + body.len());
        payload.push(kind.code());
        payload.extend_from_slice(&id.to_le_bytes());
        payload.extend_from_slice(body);
        let mut frame = Vec::new();
        encode_frame(&mut frame, KIND_ENTITY, &payload)?;
        if let Err(e) = self.log.write_at(&frame, self.log_len) {
            let _ = self.log.set_len(self.log_len);
            return Err(e);
        }
        let at = self.log_len;
        self.log_len += frame.len() as u64;
        self.insert(Key::Entity(kind.code(), id), at)
    }

    /// The archived encoding of an entity.
    pub fn entity(&self, kind: EntityKind, id: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .find(Key::Entity(kind.code(), id))?
            .map(|(_, _, payload)| payload[9..].to_vec()))
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(LOG))
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::{Event, TxError};

    const CHAIN: u64 = 9;
    const ROOT: Hash = Hash([3; 32]);

    /// A fresh directory under the system's temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let dir = std::env::temp_dir().join(format!(
                "agentic-history-{name}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            TempDir(dir)
        }
        fn config(&self) -> HistoryConfig {
            HistoryConfig::on_disk(&self.0)
        }
        fn file(&self, name: &str) -> PathBuf {
            self.0.join(name)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tx_id(h: u64, i: u32) -> Hash {
        Hash(*blake3::hash(&[&h.to_le_bytes()[..], &i.to_le_bytes()[..]].concat()).as_bytes())
    }

    fn digest(h: u64) -> [u8; 32] {
        *blake3::hash(&h.to_be_bytes()).as_bytes()
    }

    /// Block `h` with `txs` transactions (every third rejected) and their receipts.
    fn block(h: u64, txs: u32) -> (Arc<BlockRecord>, Vec<TxReceipt>) {
        let receipts: Vec<TxReceipt> = (0..txs)
            .map(|i| TxReceipt {
                id: tx_id(h, i),
                height: Height(h),
                index: i,
                result: if i % 3 == 2 {
                    Err(TxError::BadNonce {
                        expected: h,
                        got: u64::from(i),
                    })
                } else {
                    Ok(())
                },
                events: vec![EventRecord {
                    tx: Some(i),
                    event: Event::Bonded {
                        who: agentic_protocol::Address([i as u8; 32]),
                        amount: agentic_protocol::Amount(u128::from(i) + 1),
                    },
                }],
            })
            .collect();
        let record = BlockRecord {
            height: Height(h),
            digest: digest(h),
            view: h + 10,
            timestamp_ms: 1_700_000_000_000 + h,
            beacon: [h as u8; 32],
            tx_ids: receipts.iter().map(|r| r.id).collect(),
            state_root: Hash([h as u8 ^ 0x55; 32]),
            succeeded: receipts.iter().filter(|r| r.result.is_ok()).count() as u32,
            events: receipts.iter().flat_map(|r| r.events.clone()).collect(),
        };
        (Arc::new(record), receipts)
    }

    fn put(history: &mut History, from: u64, to: u64, txs: u32) {
        for h in from..=to {
            let (record, receipts) = block(h, txs);
            history.put_block(record, &receipts).unwrap();
        }
    }

    /// Every block `1..=to` and its receipts read back as written.
    fn assert_all(history: &History, to: u64, txs: u32) {
        assert_eq!(history.height(), Height(to));
        for h in 1..=to {
            let (record, receipts) = block(h, txs);
            assert_eq!(history.block(Height(h)).unwrap().as_deref(), Some(&*record));
            assert_eq!(
                history.block_by_digest(&digest(h)).unwrap().as_deref(),
                Some(&*record)
            );
            for r in &receipts {
                assert_eq!(history.receipt(&r.id).unwrap().as_ref(), Some(r));
            }
        }
        assert_eq!(history.block(Height(to + 1)).unwrap(), None);
        assert_eq!(history.receipt(&tx_id(to + 1, 0)).unwrap(), None);
        assert_eq!(history.block_by_digest(&digest(to + 1)).unwrap(), None);
    }

    #[test]
    fn blocks_and_receipts_survive_a_restart_with_a_bounded_cache() {
        let dir = TempDir::new("restart");
        let config = HistoryConfig {
            recent_blocks: 8,
            ..dir.config()
        };
        let mut history = History::open(&config, CHAIN, ROOT).unwrap();
        put(&mut history, 1, 40, 3);
        assert!(history.cached_blocks() <= 8);
        assert_all(&history, 40, 3);
        let blocks = history.blocks(Height(5), Height(100)).unwrap();
        assert_eq!(blocks.len(), 36);
        assert_eq!(blocks[0].height, Height(5));
        drop(history);

        let mut history = History::open(&config, CHAIN, ROOT).unwrap();
        assert_eq!(history.cached_blocks(), 0);
        assert_all(&history, 40, 3);
        put(&mut history, 41, 50, 3);
        assert_eq!(history.cached_blocks(), 8);
        assert_all(&history, 50, 3);
    }

    #[test]
    fn replay_does_not_duplicate_and_a_different_block_is_a_conflict() {
        let dir = TempDir::new("replay");
        let mut history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        put(&mut history, 1, 10, 2);
        let len = std::fs::metadata(dir.file(LOG)).unwrap().len();
        drop(history);
        let mut history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        put(&mut history, 1, 10, 2); // what consensus replays after a restart
        assert_eq!(std::fs::metadata(dir.file(LOG)).unwrap().len(), len);
        assert_eq!(history.cached_blocks(), 10);
        let (mut other, receipts) = block(4, 2);
        Arc::make_mut(&mut other).digest = [0xee; 32];
        assert!(matches!(
            history.put_block(other, &receipts),
            Err(HistoryError::Conflict { height: 4, .. })
        ));
        let (twelve, receipts) = block(12, 0);
        assert!(matches!(
            history.put_block(twelve, &receipts),
            Err(HistoryError::Gap {
                height: 12,
                stored: 10
            })
        ));
        assert_all(&history, 10, 2);
    }

    #[test]
    fn a_torn_tail_is_cut_at_every_point_of_the_last_block() {
        let dir = TempDir::new("torn");
        let mut history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        put(&mut history, 1, 5, 3);
        history.checkpoint().unwrap();
        put(&mut history, 6, 9, 3);
        let before = std::fs::metadata(dir.file(LOG)).unwrap().len();
        put(&mut history, 10, 10, 3);
        drop(history); // a crash: no checkpoint since block 5
        let whole = std::fs::read(dir.file(LOG)).unwrap();
        let keys = std::fs::read(dir.file(KEYS)).unwrap();
        let heights = std::fs::read(dir.file(HEIGHTS)).unwrap();
        // Cut the last block's frames at every byte, restoring the indexes as they were
        // (pointing past the cut), then reopen.
        for cut in before..whole.len() as u64 {
            std::fs::write(dir.file(LOG), &whole[..cut as usize]).unwrap();
            std::fs::write(dir.file(KEYS), &keys).unwrap();
            std::fs::write(dir.file(HEIGHTS), &heights).unwrap();
            let mut history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
            assert_eq!(history.height(), Height(9), "cut at {cut}");
            assert_eq!(std::fs::metadata(dir.file(LOG)).unwrap().len(), before);
            assert_eq!(history.receipt(&tx_id(10, 0)).unwrap(), None);
            assert_all(&history, 9, 3);
            put(&mut history, 10, 10, 3); // replay writes it again
            assert_all(&history, 10, 3);
        }
        // Garbage after the last whole block: cut as well.
        let mut torn = whole.clone();
        torn.extend_from_slice(&[0xff; 7]);
        std::fs::write(dir.file(LOG), &torn).unwrap();
        let history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        assert_eq!(
            std::fs::metadata(dir.file(LOG)).unwrap().len(),
            whole.len() as u64
        );
        assert_all(&history, 10, 3);
        // A flipped byte inside a block's frame: cut from there.
        drop(history);
        let mut flipped = whole.clone();
        flipped[before as usize + 20] ^= 1;
        std::fs::write(dir.file(LOG), &flipped).unwrap();
        std::fs::write(dir.file(KEYS), &keys).unwrap();
        let history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        assert_all(&history, 9, 3);
    }

    #[test]
    fn lost_or_corrupt_indexes_are_rebuilt_from_the_log() {
        let dir = TempDir::new("indexes");
        let mut history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        // Enough receipts to grow the table past its first capacity, more than once.
        put(&mut history, 1, 30, 200);
        assert!(history.capacity > INITIAL_CAPACITY);
        assert_all(&history, 30, 200);
        drop(history);
        let history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        assert_all(&history, 30, 200);
        drop(history);

        // A corrupt header: everything re-indexed.
        let mut keys = std::fs::read(dir.file(KEYS)).unwrap();
        keys[9] ^= 0xff;
        std::fs::write(dir.file(KEYS), &keys).unwrap();
        let history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        assert_all(&history, 30, 200);
        drop(history);

        // Both indexes gone.
        std::fs::remove_file(dir.file(KEYS)).unwrap();
        std::fs::remove_file(dir.file(HEIGHTS)).unwrap();
        let history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        assert_all(&history, 30, 200);
        drop(history);

        // Garbage in the table's slots: probes skip it.
        let mut keys = std::fs::read(dir.file(KEYS)).unwrap();
        for (i, b) in keys.iter_mut().enumerate().skip(KEYS_HEADER as usize) {
            if i % 97 == 0 {
                *b ^= 0x5a;
            }
        }
        std::fs::write(dir.file(KEYS), &keys).unwrap();
        let history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        assert_eq!(history.height(), Height(30));
        for h in 1..=30 {
            assert_eq!(history.block(Height(h)).unwrap().unwrap().height, Height(h));
        }
    }

    #[test]
    fn entities_are_archived_replaced_and_not_duplicated() {
        let dir = TempDir::new("entities");
        let mut history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        put(&mut history, 1, 2, 1);
        history
            .archive_entity(EntityKind::Job, 7, br#"{"status":"done"}"#)
            .unwrap();
        history
            .archive_entity(EntityKind::Dispute, 7, br#"{"dispute":7}"#)
            .unwrap();
        let len = std::fs::metadata(dir.file(LOG)).unwrap().len();
        history
            .archive_entity(EntityKind::Job, 7, br#"{"status":"done"}"#)
            .unwrap();
        assert_eq!(std::fs::metadata(dir.file(LOG)).unwrap().len(), len);
        put(&mut history, 3, 3, 1);
        drop(history);

        let mut history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        assert_eq!(
            history.entity(EntityKind::Job, 7).unwrap().as_deref(),
            Some(&br#"{"status":"done"}"#[..])
        );
        assert_eq!(
            history.entity(EntityKind::Dispute, 7).unwrap().as_deref(),
            Some(&br#"{"dispute":7}"#[..])
        );
        assert_eq!(history.entity(EntityKind::Proposal, 7).unwrap(), None);
        assert_eq!(history.entity(EntityKind::Job, 8).unwrap(), None);
        history
            .archive_entity(EntityKind::Job, 7, br#"{"status":"paid"}"#)
            .unwrap();
        drop(history);
        let history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        assert_eq!(
            history.entity(EntityKind::Job, 7).unwrap().as_deref(),
            Some(&br#"{"status":"paid"}"#[..])
        );
        assert_all(&history, 3, 1);
    }

    #[test]
    fn another_chains_history_is_refused() {
        let dir = TempDir::new("other");
        drop(History::open(&dir.config(), CHAIN, ROOT).unwrap());
        assert!(matches!(
            History::open(&dir.config(), CHAIN + 1, ROOT),
            Err(HistoryError::OtherChain {
                found_chain: CHAIN,
                ..
            })
        ));
        assert!(matches!(
            History::open(&dir.config(), CHAIN, Hash([4; 32])),
            Err(HistoryError::OtherChain { .. })
        ));
    }

    #[test]
    fn garbage_files_never_panic() {
        use rand::{Rng, SeedableRng};
        let dir = TempDir::new("garbage");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut history = History::open(&dir.config(), CHAIN, ROOT).unwrap();
        put(&mut history, 1, 5, 2);
        drop(history);
        let files = [LOG, HEIGHTS, KEYS].map(|f| std::fs::read(dir.file(f)).unwrap());
        for round in 0..200 {
            // Flip random bytes of one or more files, or replace one with noise.
            for (name, original) in [LOG, HEIGHTS, KEYS].iter().zip(&files) {
                let mut bytes = original.clone();
                match rng.gen_range(0..4) {
                    0 => {}
                    1 => {
                        for _ in 0..rng.gen_range(1..8) {
                            if !bytes.is_empty() {
                                let i = rng.gen_range(0..bytes.len());
                                bytes[i] = rng.gen();
                            }
                        }
                    }
                    2 => bytes.truncate(rng.gen_range(0..=bytes.len())),
                    _ => {
                        bytes = (0..rng.gen_range(0..512)).map(|_| rng.gen()).collect();
                    }
                }
                std::fs::write(dir.file(name), &bytes).unwrap();
            }
            // Opening either fails with a typed error or gives a history whose reads
            // fail the same way; none panics, and the stored prefix stays readable.
            if let Ok(mut history) = History::open(&dir.config(), CHAIN, ROOT) {
                let h = history.height().0;
                assert!(h <= 5, "round {round}");
                for k in 1..=h {
                    let _ = history.block(Height(k));
                    let _ = history.receipt(&tx_id(k, 0));
                    let _ = history.block_by_digest(&digest(k));
                }
                let _ = history.blocks(Height(0), Height(10));
                if h < 5 {
                    let (record, receipts) = block(h + 1, 2);
                    let _ = history.put_block(record, &receipts);
                }
            }
        }
    }

    #[test]
    fn in_memory_history_behaves_the_same() {
        let mut history = History::in_memory(CHAIN, ROOT).unwrap();
        put(&mut history, 1, 300, 10);
        assert_eq!(history.cached_blocks(), RECENT_BLOCKS);
        assert_all(&history, 300, 10);
        history
            .archive_entity(EntityKind::Mandate, 1, b"{}")
            .unwrap();
        assert_eq!(
            history.entity(EntityKind::Mandate, 1).unwrap().as_deref(),
            Some(&b"{}"[..])
        );
    }
}
