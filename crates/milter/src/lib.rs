//! The milter protocol (version 6), as Postfix and Sendmail speak it.
//!
//! - [`codec`]: frames (4-byte length, command byte, data) read with a
//!   maximum size, and the commands and replies they carry, parsed with
//!   explicit bounds: malformed input is an error, never a panic.
//! - [`server`]: a tokio server over a Unix socket or TCP that negotiates
//!   options and drives a per-connection [`Handler`].
//! - [`client`]: the MTA side, used by tests and by the load tool.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod client;
pub mod codec;
pub mod server;

pub use codec::{Command, MacroList, Reply, Stage};
pub use server::{EomResult, Handler, Macros, Modification, Negotiated, Response, ServerConfig};

/// Protocol step flags (`SMFIP_*`).
pub mod proto {
    /// MTA should not send connect info.
    pub const NOCONNECT: u32 = 0x1;
    /// MTA should not send HELO.
    pub const NOHELO: u32 = 0x2;
    /// MTA should not send MAIL FROM.
    pub const NOMAIL: u32 = 0x4;
    /// MTA should not send RCPT TO.
    pub const NORCPT: u32 = 0x8;
    /// MTA should not send the body.
    pub const NOBODY: u32 = 0x10;
    /// MTA should not send headers.
    pub const NOHDRS: u32 = 0x20;
    /// MTA should not send end of headers.
    pub const NOEOH: u32 = 0x40;
    /// No reply to headers.
    pub const NR_HDR: u32 = 0x80;
    /// MTA should not send unknown commands.
    pub const NOUNKNOWN: u32 = 0x100;
    /// MTA should not send DATA.
    pub const NODATA: u32 = 0x200;
    /// The MTA understands SKIP.
    pub const SKIP: u32 = 0x400;
    /// MTA should also send rejected RCPTs.
    pub const RCPT_REJ: u32 = 0x800;
    /// No reply to connect.
    pub const NR_CONN: u32 = 0x1000;
    /// No reply to HELO.
    pub const NR_HELO: u32 = 0x2000;
    /// No reply to MAIL.
    pub const NR_MAIL: u32 = 0x4000;
    /// No reply to RCPT.
    pub const NR_RCPT: u32 = 0x8000;
    /// No reply to DATA.
    pub const NR_DATA: u32 = 0x10000;
    /// No reply to unknown commands.
    pub const NR_UNKN: u32 = 0x20000;
    /// No reply to end of headers.
    pub const NR_EOH: u32 = 0x40000;
    /// No reply to body chunks.
    pub const NR_BODY: u32 = 0x80000;
    /// Header values keep their leading space.
    pub const HDR_LEADSPC: u32 = 0x100000;
}

/// Action flags (`SMFIF_*`): what the milter may change.
pub mod actions {
    /// Add headers.
    pub const ADDHDRS: u32 = 0x1;
    /// Change the body.
    pub const CHGBODY: u32 = 0x2;
    /// Add recipients.
    pub const ADDRCPT: u32 = 0x4;
    /// Delete recipients.
    pub const DELRCPT: u32 = 0x8;
    /// Change or delete headers.
    pub const CHGHDRS: u32 = 0x10;
    /// Quarantine.
    pub const QUARANTINE: u32 = 0x20;
    /// Change the envelope sender.
    pub const CHGFROM: u32 = 0x40;
    /// Add recipients with ESMTP arguments.
    pub const ADDRCPT_PAR: u32 = 0x80;
    /// Request macros per stage.
    pub const SETSYMLIST: u32 = 0x100;
}
