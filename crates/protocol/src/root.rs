//! Placeholder: written by the protocol pure-modules work.
