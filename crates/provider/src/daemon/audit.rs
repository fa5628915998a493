//! The auditor: the stages the ledger drew this provider to audit.
//!
//! ```text
//!  stage.audit = me, not committed ─▶ audit_commit: recompute from the agreed input
//!                                     (always honestly) ─▶ journal (result + trace leaves)
//!                                     ─▶ send_audit_commit (AuditCommit, salted)
//!  Auditing { auditor: me }        ─▶ report (AuditReport: the journaled result + the salt)
//! ```
//!
//! The draw comes in the block where the stage's last replica commits, and no replica
//! may reveal before the auditor committed, so an auditor can never copy what it
//! checks. Only a replica may claim data unavailable: an auditor that cannot fetch it
//! misses its commitment and is replaced.

use agentic_protocol::state::{Job, StagePhase};
use agentic_protocol::{Amount, JobId, TxBody};

use super::register::send_tx;
use super::tasks::{salt_for, Poll};
use super::{Daemon, ProviderError};
use crate::journal::{Role, StageRecord};

impl Daemon {
    /// Audits stage `s` of `job` if this provider was drawn for it. The draw comes when
    /// the stage's last replica commits (`stage.audit`): recompute the stage from its
    /// agreed input (always honestly), journal the result with its trace leaves, and
    /// commit to it (`AuditCommit`, salted like a reveal) — the replicas cannot reveal
    /// before. Once they revealed and agree (`Auditing` with this provider as auditor),
    /// open the commitment (`AuditReport` with the journaled result and the salt).
    pub(super) async fn audit(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        height: u64,
    ) -> Result<(), ProviderError> {
        let st = &job.stages[s as usize];
        if let (
            StagePhase::Running {
                reveal_deadline: None,
            },
            Some(slot),
        ) = (st.phase, &st.audit)
        {
            if slot.auditor != self.me || slot.commitment.is_some() || height > slot.deadline.0 {
                return Ok(());
            }
            return self.audit_commit(id, job, s, slot.price).await;
        }
        let StagePhase::Auditing {
            auditor, deadline, ..
        } = st.phase
        else {
            return Ok(());
        };
        if auditor != self.me || height > deadline.0 {
            return Ok(());
        }
        match self.journal.get(id, s).cloned() {
            Some(rec) if matches!(rec.role, Role::Audit { .. }) => {
                if rec.revealed {
                    return Ok(());
                }
                self.report(rec).await
            }
            _ => Err(ProviderError::AuditNotJournaled { job: id, stage: s }),
        }
    }

    /// The commit half of an audit: compute the stage from its agreed input (the job's
    /// input for stage 0, else the previous stage's agreed output — the ledger draws the
    /// auditor only once that is known), journal the result, send `AuditCommit`.
    async fn audit_commit(
        &mut self,
        id: JobId,
        job: &Job,
        s: u32,
        price: Amount,
    ) -> Result<(), ProviderError> {
        if let Some(rec) = self.journal.get(id, s).cloned() {
            if matches!(rec.role, Role::Audit { .. }) && !rec.committed {
                return self.send_audit_commit(rec).await;
            }
            // Committed (the chain will show it), or a record of another role.
            return Ok(());
        }
        let Some(input) = Daemon::expected_input(job, s) else {
            return Ok(());
        };
        match self.poll_task((id, s)).await? {
            Poll::Running => return Ok(()),
            Poll::Done(c) => {
                if c.result.input != input {
                    return Err(ProviderError::AuditInput {
                        job: id,
                        stage: s,
                        ran_on: c.result.input,
                        agreed: input,
                    });
                }
                let rec = StageRecord::new(id, s, Role::Audit { price }, c.result, c.leaves, c.ops);
                self.journal.put(rec.clone())?;
                return self.send_audit_commit(rec).await;
            }
            Poll::Unavailable { what, detail } => {
                // Only an assigned replica may claim the data unavailable; an auditor
                // that cannot fetch it misses its commitment and is replaced.
                return Err(ProviderError::AuditUnfetchable {
                    job: id,
                    stage: s,
                    what: what.name(),
                    detail,
                });
            }
            Poll::Idle => {}
        }
        self.start_compute(id, job, s, input, None).await;
        Ok(())
    }

    async fn send_audit_commit(&mut self, rec: StageRecord) -> Result<(), ProviderError> {
        let salt = salt_for(&self.salt_secret, rec.job, rec.stage);
        let commitment = rec.result.commitment(rec.job, rec.stage, &salt, &self.me);
        send_tx(
            &self.client,
            &self.config,
            TxBody::AuditCommit {
                job: rec.job,
                stage: rec.stage,
                commitment,
            },
        )
        .await?;
        self.journal
            .update(rec.job, rec.stage, |r| r.committed = true)?;
        self.status().audits_committed += 1;
        tracing::info!(
            job = rec.job.0,
            stage = rec.stage,
            output = %rec.result.output.to_hex(),
            "audit committed"
        );
        Ok(())
    }

    async fn report(&mut self, rec: StageRecord) -> Result<(), ProviderError> {
        let salt = salt_for(&self.salt_secret, rec.job, rec.stage);
        send_tx(
            &self.client,
            &self.config,
            TxBody::AuditReport {
                job: rec.job,
                stage: rec.stage,
                result: rec.result,
                salt,
            },
        )
        .await?;
        self.journal.update(rec.job, rec.stage, |r| {
            r.committed = true;
            r.revealed = true;
        })?;
        self.status().audits_reported += 1;
        tracing::info!(
            job = rec.job.0,
            stage = rec.stage,
            output = %rec.result.output.to_hex(),
            "audit reported"
        );
        Ok(())
    }
}
