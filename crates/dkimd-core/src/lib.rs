//! dkimd's core: everything that more than one face of dkimd uses (the
//! command line, the milter daemon, the web page).
//!
//! It prints nothing: a manager's steps go to a [`manager::StepSink`] that
//! the command line prints and the page renders. Its layers import only
//! downwards: `error`, `clock`, `sys`, `steps` ← `model` ← `config` ← `store` ←
//! `dns` ← `publish` ← `manager`; `postfix` and `migrate` (the importers)
//! sit beside `publish`.
#![forbid(unsafe_code)]

pub mod clock;
pub mod config;
pub mod dns;
pub mod error;
pub mod manager;
pub mod migrate;
pub mod model;
pub mod postfix;
pub mod publish;
pub mod steps;
pub mod store;
pub mod sys;

pub use error::{usage, Error, Field, Result};
