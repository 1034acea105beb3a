//! Test harness (skeleton)
