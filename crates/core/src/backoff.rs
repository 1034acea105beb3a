//! Backoff. (skeleton: to be written)
