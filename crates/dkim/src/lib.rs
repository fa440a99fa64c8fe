//! The DKIM engine of dkimd: signing and verification of mail messages
//! according to RFC 6376 (DKIM), RFC 8463 (Ed25519-SHA256) and RFC 8301
//! (cryptographic algorithm and key usage update), with Authentication-Results
//! formatting per RFC 8601.
//!
//! The crate does no I/O: the caller feeds the header fields and then the body
//! in chunks of any size, and takes header fields back. Keys for verification
//! come through the [`KeyLookup`] trait and the time through an explicit
//! argument, so that the same code serves the milter daemon, the command line
//! and tests with fixed vectors.
//!
//! ```
//! use dkim::{Message, SigningKey, Signer, SignerConfig, Selector, DomainName};
//! use dkim::{Verifier, VerifierConfig, DkimResult};
//! use std::collections::HashMap;
//!
//! let key = SigningKey::generate_ed25519().unwrap();
//! let domain: DomainName = "example.com".parse().unwrap();
//! let selector: Selector = "202611".parse().unwrap();
//! let cfg = SignerConfig::new(domain, selector, key.clone());
//! let raw = b"From: a@example.com\r\nSubject: hi\r\n\r\nHello\r\n";
//! let msg = Message::parse(raw).unwrap();
//!
//! let mut signing = Signer::new(vec![cfg], 1_700_000_000).start(msg.headers()).unwrap();
//! signing.body(msg.body());
//! let sigs = signing.finish().unwrap();
//!
//! let mut dns = HashMap::new();
//! dns.insert("202611._domainkey.example.com".to_string(), vec![key.dns_record()]);
//! let mut signed = sigs[0].to_field().into_bytes();
//! signed.extend_from_slice(b"\r\n");
//! signed.extend_from_slice(raw);
//! let msg = Message::parse(&signed).unwrap();
//! let mut verifying = Verifier::new(VerifierConfig::default()).start(msg.headers(), 1_700_000_000);
//! verifying.body(msg.body());
//! let results = verifying.finish(&dns);
//! assert_eq!(results[0].result, DkimResult::Pass);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth_results;
mod body;
mod canon;
mod crypto;
mod error;
mod header;
mod name;
mod record;
mod signature;
mod signer;
mod tag;
mod verifier;

pub use auth_results::authentication_results;
pub use canon::{canonicalize_header_relaxed, canonicalize_header_simple, BodyCanonicalizer};
pub use canon::{Canonicalization, CanonicalizationPair};
pub use crypto::{ed25519_spki_inner, KeyAlgorithm, SigningKey, ED25519_SPKI_REASON};
pub use error::{Error, KeyError, ParseError};
pub use header::{HeaderField, Message};
pub use name::{key_record_name, DomainName, FieldName, Selector};
pub use record::{split_txt_strings, KeyRecord, KeyType, ServiceType};
pub use signature::{Algorithm, DkimSignature};
pub use signer::{default_signed_headers, SignedHeader, Signer, SignerConfig, Signing};
pub use tag::{parse_tag_list, Tag};
pub use verifier::{signed_header_data, Verifier, VerifierConfig};
pub use verifier::{DkimResult, KeyLookup, LookupError, Verification, VerificationResult};
