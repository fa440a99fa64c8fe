//! The milter protocol (version 6), as Postfix and Sendmail speak it.
//!
//! This crate is a placeholder in the workspace: the bounded frame codec,
//! option negotiation, the tokio server and the test client arrive with the
//! milter daemon work (see `ARCHITECTURE.md`).
#![forbid(unsafe_code)]
