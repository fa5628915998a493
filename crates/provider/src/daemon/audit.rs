//! The auditor: the stages the ledger drew this provider to audit.
//!
//! ```text
//!  stage.audit = me, not committed ─▶ plan_audit_commit: Compute from the agreed input
//!                                     (always honestly) ─▶ Journal (result + trace leaves)
//!                                     ─▶ AuditCommit (salted)
//!  Auditing { auditor: me }        ─▶ AuditReport (the journaled result + the salt)
//! ```
//!
//! The draw comes in the block where the stage's last replica commits, and no replica
//! may reveal before the auditor committed, so an auditor can never copy what it
//! checks. Only a replica may claim data unavailable: an auditor that cannot fetch it
//! misses its commitment and is replaced.

use agentic_protocol::state::{Job, StagePhase};
use agentic_protocol::{Amount, JobId, TxBody};

use super::plan::{send, Action, Landed, Me, Stuck, TxKey, View};
use super::stage::expected_input;
use super::tasks::salt_for;
use crate::journal::{Role, StageRecord};

/// Audits stage `s` of `job` if this provider was drawn for it. The draw comes when the
/// stage's last replica commits (`stage.audit`): recompute the stage from its agreed
/// input (always honestly), journal the result with its trace leaves, and commit to it
/// (`AuditCommit`, salted like a reveal) — the replicas cannot reveal before. Once they
/// revealed and agree (`Auditing` with this provider as auditor), open the commitment
/// (`AuditReport` with the journaled result and the salt).
pub(crate) fn plan_audit(
    view: &View<'_>,
    me: &Me,
    id: JobId,
    job: &Job,
    s: u32,
    out: &mut Vec<Action>,
) {
    let st = &job.stages[s as usize];
    if let (
        StagePhase::Running {
            reveal_deadline: None,
        },
        Some(slot),
    ) = (st.phase, &st.audit)
    {
        if slot.auditor != me.address || slot.commitment.is_some() || view.height > slot.deadline.0
        {
            return;
        }
        return plan_audit_commit(view, me, id, job, s, slot.price, out);
    }
    let StagePhase::Auditing {
        auditor, deadline, ..
    } = st.phase
    else {
        return;
    };
    if auditor != me.address || view.height > deadline.0 {
        return;
    }
    match view.journal.get(id, s) {
        Some(rec) if matches!(rec.role, Role::Audit { .. }) => {
            if rec.revealed {
                return;
            }
            send(
                view,
                out,
                TxKey::AuditReport(id, s),
                TxBody::AuditReport {
                    job: id,
                    stage: s,
                    result: rec.result,
                    salt: salt_for(&me.salt_secret, id, s),
                },
                Landed::AuditReported(id, s),
            );
        }
        _ => out.push(Action::Stuck(Stuck::AuditNotJournaled {
            job: id,
            stage: s,
        })),
    }
}

/// The commit half of an audit: compute the stage from its agreed input (the job's
/// input for stage 0, else the previous stage's agreed output — the ledger draws the
/// auditor only once that is known), journal the result, send `AuditCommit`.
fn plan_audit_commit(
    view: &View<'_>,
    me: &Me,
    id: JobId,
    job: &Job,
    s: u32,
    price: Amount,
    out: &mut Vec<Action>,
) {
    let key = (id, s);
    let local = view.local;
    if let Some(rec) = view.journal.get(id, s) {
        if matches!(rec.role, Role::Audit { .. }) && !rec.committed {
            send_audit_commit(view, me, rec, out);
        }
        // Committed (the chain will show it), or a record of another role.
        return;
    }
    let Some(input) = expected_input(job, s) else {
        return;
    };
    if local.running.contains(&key) {
        return;
    }
    if let Some(m) = local.missing.get(&key).filter(|m| m.fresh) {
        // Only an assigned replica may claim the data unavailable; an auditor that
        // cannot fetch it misses its commitment and is replaced.
        out.push(Action::Stuck(Stuck::AuditUnfetchable {
            job: id,
            stage: s,
            what: m.what.name(),
        }));
        return;
    }
    if let Some(c) = local.computed.get(&key) {
        // A generation stage's claimed input is a hash over its steps, not the request.
        if c.result.input != input && !super::generation::is_generation(job) {
            out.push(Action::Stuck(Stuck::AuditInput {
                job: id,
                stage: s,
                ran_on: c.result.input,
                agreed: input,
            }));
            out.push(Action::Discard { job: id, stage: s });
            return;
        }
        out.push(Action::Journal {
            job: id,
            stage: s,
            role: Role::Audit { price },
            misbehaviour: None,
        });
        let rec = StageRecord::new(id, s, Role::Audit { price }, c.result, Vec::new(), c.ops);
        return send_audit_commit(view, me, &rec, out);
    }
    out.push(Action::Compute {
        job: id,
        stage: s,
        input,
        mode: None,
    });
}

fn send_audit_commit(view: &View<'_>, me: &Me, rec: &StageRecord, out: &mut Vec<Action>) {
    let salt = salt_for(&me.salt_secret, rec.job, rec.stage);
    let commitment = rec
        .result
        .commitment(rec.job, rec.stage, &salt, &me.address);
    send(
        view,
        out,
        TxKey::AuditCommit(rec.job, rec.stage),
        TxBody::AuditCommit {
            job: rec.job,
            stage: rec.stage,
            commitment,
        },
        Landed::AuditCommitted(rec.job, rec.stage),
    );
}
