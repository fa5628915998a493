//! Placeholder: the partitioner (written by the partitioner work).
