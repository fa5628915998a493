//! The provider's journal: what it must remember across a crash.
//!
//! The chain remembers the assignments; the provider must remember what the chain
//! cannot know yet — the result it committed to, so that after a restart it reveals
//! exactly that (a commitment it cannot open would cost it its deadline penalty).
//! A record is written, synced and renamed into place *before* the `CommitResult`
//! transaction is sent; the stage's output activation is already in the local blob
//! store by then. The salt is not stored: it is derived from the provider's key and
//! the stage ([`crate::daemon::salt_for`]), secret until revealed.
//!
//! ```text
//!   computed ──write record──▶ commit sent ──▶ published (output on the node) ──▶ revealed ──▶ paid
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use agentic_protocol::tx::StageResult;
use agentic_protocol::{Amount, JobId};
use serde::{Deserialize, Serialize};

/// One stage this provider worked on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The job.
    pub job: JobId,
    /// The stage.
    pub stage: u32,
    /// The result committed to.
    pub result: StageResult,
    /// Metered operations of the run.
    pub ops: u64,
    /// The commitment transaction was finalized.
    pub committed: bool,
    /// The reveal transaction was finalized.
    pub revealed: bool,
    /// The output activation was uploaded to the node's blob store.
    pub published: bool,
    /// What the ledger paid for it, once paid.
    pub paid: Option<Amount>,
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
}

impl Journal {
    /// Opens the journal at `path` (empty if the file does not exist).
    pub fn open(path: impl Into<PathBuf>) -> Result<Journal, JournalError> {
        let path = path.into();
        let records = match std::fs::read(&path) {
            Ok(bytes) => {
                let list: Vec<StageRecord> =
                    serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                        path: path.clone(),
                        detail: e.to_string(),
                    })?;
                list.into_iter().map(|r| ((r.job, r.stage), r)).collect()
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(JournalError::Io { path, source }),
        };
        Ok(Journal { path, records })
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
        let list: Vec<&StageRecord> = self.records.values().collect();
        let bytes = serde_json::to_vec_pretty(&list).map_err(|e| JournalError::Corrupt {
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
        let rec = StageRecord {
            job: JobId(7),
            stage: 1,
            result: StageResult {
                input: Hash([1; 32]),
                output: Hash([2; 32]),
                trace_root: Hash([3; 32]),
            },
            ops: 1234,
            committed: false,
            revealed: false,
            published: false,
            paid: None,
        };
        j.put(rec.clone()).unwrap();
        j.update(JobId(7), 1, |r| r.committed = true).unwrap();
        let back = Journal::open(&path).unwrap();
        let got = back.get(JobId(7), 1).unwrap();
        assert!(got.committed);
        assert_eq!(got.result, rec.result);
        std::fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            Journal::open(&path),
            Err(JournalError::Corrupt { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
