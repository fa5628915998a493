//! `smaller-model`: a cheaper model in place of the one paid for.
//!
//! Precisely: of the stage's layers `[first, first + n)` it runs only the first and
//! the last, and treats every layer between them as the identity (the activation
//! passes through unchanged, and its hash is claimed as that layer's output). The
//! output has the right kind and shape (the last layer really ran), the metered ops
//! are two layers' worth, and the trace is consistent with what was run. A stage of
//! one or two layers is therefore computed honestly; the cheat needs three or more.
//!
//! Caught by bisection: the traces agree on the first layer's output and differ from
//! the second layer's output on, so the game ends at layer `first + 1`, whose referee
//! re-run yields the real layer's output, not the identity.

/// Whether the stage's `j`-th of `n` layers really runs.
pub fn runs(j: usize, n: usize) -> bool {
    j == 0 || j + 1 == n
}
