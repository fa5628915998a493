//! The provider's journal: what it must remember across a crash.
//!
//! The chain remembers the assignments; the provider must remember what the chain
//! cannot know yet — the result it committed to, so that after a restart it reveals
//! exactly that (a commitment it cannot open would cost it its deadline penalty).
//! A record is written, synced and renamed into place *before* the `CommitResult`
//! (or, for an audit, `AuditCommit`) transaction is sent; the stage's output activation
//! is already in the local blob store by then. The salt is not stored: it is derived
//! from the provider's key and the stage ([`crate::daemon::salt_for`]), secret until
//! revealed.
//!
//! ```text
//!   stage:  computed ──write record──▶ commit sent ──▶ published (output on the node) ──▶ revealed ──▶ paid
//!   audit:  recomputed ──write record──▶ AuditCommit sent ──▶ AuditReport sent (opens it) ──▶ settled
//! ```
//!
//! Every record keeps the full trace of its result — the input's hash and each layer's
//! output hash, the leaves its committed trace root is the Merkle root of — and the
//! misbehaviour (if any) it was computed under. A dispute over the result can come
//! after a restart: the daemon answers each bisection round with a leaf and its Merkle
//! proof from these leaves, and replays the same computation up to the agreed leaf to
//! publish the activation the referee needs. Records written before the leaves were
//! kept read back with none (`serde(default)`); such a result cannot be defended.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentic_protocol::tx::StageResult;
use agentic_protocol::{Amount, Hash, Height, JobId};
use serde::{Deserialize, Serialize};

use crate::misbehave::Misbehaviour;

/// Why this provider computed a stage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// It holds one of the stage's replica slots (commit, reveal, paid `ops × price`).
    #[default]
    Stage,
    /// It was drawn to audit the stage, at this price per mega-op.
    Audit {
        /// Its price when drawn (its fee is `ops × price`).
        price: Amount,
    },
}

/// One stage this provider worked on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The job.
    pub job: JobId,
    /// The stage.
    pub stage: u32,
    /// A stage slot or an audit (records from before audits: a slot).
    #[serde(default)]
    pub role: Role,
    /// The result committed to (an audit: the result reported).
    pub result: StageResult,
    /// Its trace leaves: the input's hash, then each layer's output hash (empty for a
    /// training stage, whose trace is over steps, and for records from before disputes
    /// were played).
    #[serde(default)]
    pub leaves: Vec<Hash>,
    /// The misbehaviour the result was computed under (`None`: honestly). A dispute
    /// replays that computation to publish the activation the referee needs.
    #[serde(default)]
    pub misbehaviour: Option<Misbehaviour>,
    /// The activation pushed to the next stage when it is not `result.output` (only a
    /// colluding upstream's).
    #[serde(default)]
    pub pushed: Option<Hash>,
    /// Metered operations of the run.
    pub ops: u64,
    /// The commitment transaction was finalized (an audit: the `AuditCommit`).
    pub committed: bool,
    /// The reveal transaction was finalized (an audit: the `AuditReport` that opens its
    /// commitment).
    pub revealed: bool,
    /// The output activation was uploaded to the node's blob store.
    pub published: bool,
    /// What the ledger's events say it paid us for this stage so far (`StagePaid`,
    /// `AuditAgreed`, `AuditPaid`, `ProviderCompensated`), read from the node's event
    /// stream — never recomputed from prices here.
    #[serde(default)]
    pub received: Amount,
    /// Set once the stage is settled (final, failed or cancelled, with the events up to
    /// that height read): what it earned in all, `received` at that point.
    pub paid: Option<Amount>,
}

impl StageRecord {
    /// A fresh record of a result computed as `role`, nothing sent yet.
    pub fn new(
        job: JobId,
        stage: u32,
        role: Role,
        result: StageResult,
        leaves: Vec<Hash>,
        ops: u64,
    ) -> StageRecord {
        StageRecord {
            job,
            stage,
            role,
            result,
            leaves,
            misbehaviour: None,
            pushed: None,
            ops,
            committed: false,
            revealed: false,
            published: false,
            received: Amount::ZERO,
            paid: None,
        }
    }

    /// The activation this stage pushes to the next one.
    pub fn pushed_output(&self) -> Hash {
        self.pushed.unwrap_or(self.result.output)
    }
}

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file could not be read or written.
    #[error("journal {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a journal.
    #[error("journal {path} is corrupt: {detail}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// The records, persisted as one JSON file rewritten atomically on every change.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    records: BTreeMap<(JobId, u32), StageRecord>,
    /// The last block whose ledger events were applied to the records (`None`: none
    /// read yet).
    events_height: Option<Height>,
}

/// The file: the records and how far the ledger's events were read. (A journal from
/// before payments were read from events is a bare list of records.)
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum JournalFile {
    Current {
        records: Vec<StageRecord>,
        events_height: Option<Height>,
    },
    Records(Vec<StageRecord>),
}

/// A payment to this provider that a ledger event reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Payment {
    /// The job.
    pub job: JobId,
    /// The stage (`None`: compensation for the whole job's unavailable data).
    pub stage: Option<u32>,
    /// What was paid.
    pub amount: Amount,
}

impl Journal {
    /// Opens the journal at `path` (empty if the file does not exist).
    pub fn open(path: impl Into<PathBuf>) -> Result<Journal, JournalError> {
        let path = path.into();
        let records = match std::fs::read(&path) {
            Ok(bytes) => {
                let file: JournalFile =
                    serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                match file {
                    JournalFile::Current {
                        records,
                        events_height,
                    } => (records, events_height),
                    JournalFile::Records(records) => (records, None),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), None),
            Err(source) => return Err(JournalError::Io { path, source }),
        };
        let (list, events_height) = records;
        Ok(Journal {
            path,
            records: list.into_iter().map(|r| ((r.job, r.stage), r)).collect(),
            events_height,
        })
    }

    /// The last block whose ledger events were applied ([`Journal::apply_payments`]).
    pub fn events_height(&self) -> Option<Height> {
        self.events_height
    }

    /// Adds `payments` (read from the ledger's events up to block `height`) to the
    /// records they name and persists them with `height` at once, so a restart neither
    /// loses nor counts twice a payment. A payment naming a stage without a record
    /// (or a whole job) is credited to no record. Returns their sum.
    pub fn apply_payments(
        &mut self,
        payments: &[Payment],
        height: Height,
    ) -> Result<Amount, JournalError> {
        let mut total = Amount::ZERO;
        for p in payments {
            total = total.saturating_add(p.amount);
            if let Some(r) = p.stage.and_then(|s| self.records.get_mut(&(p.job, s))) {
                r.received = r.received.saturating_add(p.amount);
            }
        }
        self.events_height = Some(height);
        self.save()?;
        Ok(total)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The record of a stage.
    pub fn get(&self, job: JobId, stage: u32) -> Option<&StageRecord> {
        self.records.get(&(job, stage))
    }

    /// Every record, by job and stage.
    pub fn records(&self) -> impl Iterator<Item = &StageRecord> {
        self.records.values()
    }

    /// Inserts or replaces a record and persists the journal.
    pub fn put(&mut self, record: StageRecord) -> Result<(), JournalError> {
        self.records.insert((record.job, record.stage), record);
        self.save()
    }

    /// Changes a record with `f` and persists the journal (no-op if absent).
    pub fn update(
        &mut self,
        job: JobId,
        stage: u32,
        f: impl FnOnce(&mut StageRecord),
    ) -> Result<(), JournalError> {
        match self.records.get_mut(&(job, stage)) {
            Some(r) => {
                f(r);
                self.save()
            }
            None => Ok(()),
        }
    }

    fn save(&self) -> Result<(), JournalError> {
        use std::io::Write as _;
        let io = |source| JournalError::Io {
            path: self.path.clone(),
            source,
        };
        let file = JournalFile::Current {
            records: self.records.values().cloned().collect(),
            events_height: self.events_height,
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| JournalError::Corrupt {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        let tmp = self.path.with_extension("tmp");
        {
            let mut f = std::fs::File::create(&tmp).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
            f.sync_all().map_err(io)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use agentic_protocol::Hash;

    #[test]
    fn records_survive_reopening() {
        let dir = std::env::temp_dir().join(format!("agentic-journal-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("journal.json");
        let _ = std::fs::remove_file(&path);
        let mut j = Journal::open(&path).unwrap();
        let rec = StageRecord::new(
            JobId(7),
            1,
            Role::Audit { price: Amount(9) },
            StageResult {
                input: Hash([1; 32]),
                output: Hash([2; 32]),
                trace_root: Hash([3; 32]),
                steps: 0,
            },
            vec![Hash([1; 32]), Hash([4; 32]), Hash([2; 32])],
            1234,
        );
        j.put(rec.clone()).unwrap();
        j.update(JobId(7), 1, |r| r.committed = true).unwrap();
        let back = Journal::open(&path).unwrap();
        let got = back.get(JobId(7), 1).unwrap();
        assert!(got.committed);
        assert_eq!(got.result, rec.result);
        assert_eq!(got.leaves, rec.leaves);
        assert_eq!(got.role, rec.role);
        // A record written before roles, leaves and misbehaviours were kept reads back
        // as an honest stage slot without leaves.
        std::fs::write(
            &path,
            br#"[{"job":3,"stage":0,"result":{"input":"0101010101010101010101010101010101010101010101010101010101010101","output":"0202020202020202020202020202020202020202020202020202020202020202","trace_root":"0303030303030303030303030303030303030303030303030303030303030303"},"ops":5,"committed":true,"revealed":false,"published":false,"paid":null}]"#,
        )
        .unwrap();
        let old = Journal::open(&path).unwrap();
        let r = old.get(JobId(3), 0).unwrap();
        assert_eq!(
            (r.role, r.leaves.len(), r.misbehaviour, r.pushed),
            (Role::Stage, 0, None, None)
        );
        assert_eq!(r.pushed_output(), Hash([2; 32]));
        // Payments from events land on their records and survive with the height.
        let mut j = Journal::open(&path).unwrap();
        let pays = [
            Payment {
                job: JobId(3),
                stage: Some(0),
                amount: Amount(40),
            },
            Payment {
                job: JobId(3),
                stage: Some(0),
                amount: Amount(2),
            },
            Payment {
                job: JobId(9),
                stage: None,
                amount: Amount(5),
            },
        ];
        assert_eq!(j.apply_payments(&pays, Height(12)).unwrap(), Amount(47));
        let back = Journal::open(&path).unwrap();
        assert_eq!(back.events_height(), Some(Height(12)));
        assert_eq!(back.get(JobId(3), 0).unwrap().received, Amount(42));
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            Journal::open(&path),
            Err(JournalError::Corrupt { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
