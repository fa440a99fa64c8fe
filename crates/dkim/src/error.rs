//! Error types.

use thiserror::Error;

/// Malformed input: a tag list, a signature, a key record, a name or a
/// message that does not follow its grammar. The message says what is wrong
/// in words an administrator can act on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A tag list (RFC 6376 §3.2) is malformed.
    #[error("malformed tag list: {0}")]
    TagList(String),
    /// A tag that must be present is missing.
    #[error("missing required tag {0}=")]
    MissingTag(&'static str),
    /// A tag has a value that its grammar does not allow.
    #[error("invalid value for tag {tag}=: {reason}")]
    InvalidTag {
        /// The tag name.
        tag: String,
        /// What is wrong with the value.
        reason: String,
    },
    /// A domain name is not valid.
    #[error("invalid domain name {0:?}")]
    Domain(String),
    /// A selector is not valid.
    #[error("invalid selector {0:?}")]
    Selector(String),
    /// A header field name is not valid.
    #[error("invalid header field name {0:?}")]
    FieldName(String),
    /// The input is not a mail message.
    #[error("not a mail message: {0}")]
    Message(String),
}

/// A key could not be read, generated or used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The PEM or DER data could not be decoded.
    #[error("cannot decode key: {0}")]
    Decode(String),
    /// The key decoded but is not an RSA or Ed25519 private key the engine can use.
    #[error("unsupported key: {0}")]
    Unsupported(String),
    /// The RSA key is smaller than the engine signs with (2048 bits).
    #[error("RSA key is too small for signing: at least 2048 bits are required (RFC 8301)")]
    TooSmall,
    /// The requested key size cannot be generated.
    #[error("cannot generate an RSA key of {0} bits (supported: 2048, 3072, 4096)")]
    UnsupportedSize(usize),
    /// The cryptographic library failed.
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
}

/// Errors of the signing and verification API.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum Error {
    /// Input did not parse.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A key problem.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The message has no From header field, which every signature must cover.
    #[error("the message has no From header field")]
    NoFrom,
    /// The message has more than one From header field (RFC 5322 allows one).
    #[error("the message has {0} From header fields")]
    MultipleFrom(usize),
    /// No signing configuration was given.
    #[error("no signing key configured")]
    NoSigners,
}
