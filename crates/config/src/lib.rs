//! rouse's configuration.
//!
//! `rouse.toml -> file::FileConfig (serde, spans kept) -> validate -> model::Config`.
//! Every error found is reported, each as `FILE:LINE:COL: message`.
#![forbid(unsafe_code)]

pub mod model;

pub use model::*;
