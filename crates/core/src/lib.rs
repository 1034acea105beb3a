//! rouse's pure core: decisions over plain data, with time passed in.
//!
//! Nothing here does I/O, spawns, sleeps or reads a clock; the shell (data plane and reconciler)
//! feeds observations in and applies the answers.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod balance;
pub mod lifecycle;
pub mod policy;
pub mod reason;
pub mod slow_start;
pub mod state;
pub mod time;
pub mod transition;
