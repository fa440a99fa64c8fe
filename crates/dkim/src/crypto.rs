//! Keys: generation, PEM import and export, signing, verification.

use crate::error::KeyError;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, Ed25519KeyPair, KeyPair, RsaKeyPair, UnparsedPublicKey};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use std::fmt;
use std::sync::Arc;

/// The key algorithms DKIM knows (`k=` of a key record).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// RSA, used with `rsa-sha256`.
    Rsa,
    /// Ed25519, used with `ed25519-sha256` (RFC 8463).
    Ed25519,
}

impl KeyAlgorithm {
    /// The name used in `k=` (`rsa` or `ed25519`).
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::Rsa => "rsa",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeyAlgorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa" => Ok(KeyAlgorithm::Rsa),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            _ => Err(KeyError::Unsupported(format!(
                "unknown key algorithm {s:?} (expected rsa or ed25519)"
            ))),
        }
    }
}

#[derive(Debug)]
enum Inner {
    Rsa { pair: RsaKeyPair, bits: usize },
    Ed25519(Ed25519KeyPair),
}

/// A private key that signs: RSA (2048 bits or more) or Ed25519. Cheap to
/// clone. `Debug` never prints key material.
#[derive(Clone)]
pub struct SigningKey(Arc<Inner>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({}, {} bits)", self.algorithm(), self.bits())
    }
}

const PEM_PKCS8: &str = "PRIVATE KEY";
const PEM_PKCS1: &str = "RSA PRIVATE KEY";

fn rejected(e: aws_lc_rs::error::KeyRejected) -> KeyError {
    match e.description_() {
        "TooSmall" => KeyError::TooSmall,
        "TooLarge" => KeyError::Unsupported("RSA key larger than 8192 bits".into()),
        other => KeyError::Decode(other.to_string()),
    }
}

impl SigningKey {
    /// Generates an RSA key of 2048, 3072 or 4096 bits.
    pub fn generate_rsa(bits: usize) -> Result<SigningKey, KeyError> {
        use aws_lc_rs::rsa::KeySize;
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(KeyError::UnsupportedSize(other)),
        };
        let pair =
            RsaKeyPair::generate(size).map_err(|_| KeyError::Crypto("RSA key generation"))?;
        Ok(SigningKey(Arc::new(Inner::Rsa { pair, bits })))
    }

    /// Generates an Ed25519 key.
    pub fn generate_ed25519() -> Result<SigningKey, KeyError> {
        let pair =
            Ed25519KeyPair::generate().map_err(|_| KeyError::Crypto("Ed25519 key generation"))?;
        Ok(SigningKey(Arc::new(Inner::Ed25519(pair))))
    }

    /// An Ed25519 key from its 32-byte seed (the form RFC 8463 prints).
    pub fn ed25519_from_seed(seed: &[u8]) -> Result<SigningKey, KeyError> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed).map_err(rejected)?;
        Ok(SigningKey(Arc::new(Inner::Ed25519(pair))))
    }

    /// Reads a PEM private key: PKCS#8 (`PRIVATE KEY`, RSA or Ed25519, as
    /// `openssl genpkey` writes) or PKCS#1 (`RSA PRIVATE KEY`, as
    /// `openssl genrsa` and opendkim-genkey write).
    pub fn from_pem(pem_text: &[u8]) -> Result<SigningKey, KeyError> {
        let parsed =
            pem::parse(pem_text).map_err(|e| KeyError::Decode(format!("not a PEM file: {e}")))?;
        match parsed.tag() {
            PEM_PKCS8 => Self::from_pkcs8_der(parsed.contents()),
            PEM_PKCS1 => {
                let pair = RsaKeyPair::from_der(parsed.contents()).map_err(rejected)?;
                Ok(Self::rsa(pair))
            }
            "ENCRYPTED PRIVATE KEY" => Err(KeyError::Unsupported(
                "the key is encrypted; decrypt it first (openssl pkey -in FILE -out PLAIN)".into(),
            )),
            other => Err(KeyError::Unsupported(format!(
                "PEM block {other:?} is not a private key (expected PRIVATE KEY or RSA PRIVATE KEY)"
            ))),
        }
    }

    /// Reads a PKCS#8 DER private key (RSA or Ed25519, v1 or v2).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, KeyError> {
        match RsaKeyPair::from_pkcs8(der) {
            Ok(pair) => Ok(Self::rsa(pair)),
            Err(e) if e.description_() == "TooSmall" => Err(KeyError::TooSmall),
            Err(rsa) => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(|_| {
                    // Damaged DER (a truncated copy, say) is not a question
                    // of the algorithm: say what is wrong with it.
                    if der_tlv(der).is_none_or(|(tag, _, rest)| tag != 0x30 || !rest.is_empty()) {
                        KeyError::Decode(
                            "the key's data is damaged or cut short (was the whole PEM block copied?)"
                                .into(),
                        )
                    } else if rsa.description_() == "WrongAlgorithm" {
                        KeyError::Unsupported("PKCS#8 key is neither RSA nor Ed25519".into())
                    } else {
                        KeyError::Decode(format!(
                            "the PKCS#8 key cannot be read ({})",
                            rsa.description_()
                        ))
                    }
                })?;
                Ok(SigningKey(Arc::new(Inner::Ed25519(pair))))
            }
        }
    }

    fn rsa(pair: RsaKeyPair) -> SigningKey {
        let bits = pair.public_modulus_len() * 8;
        SigningKey(Arc::new(Inner::Rsa { pair, bits }))
    }

    /// The key's algorithm.
    pub fn algorithm(&self) -> KeyAlgorithm {
        match &*self.0 {
            Inner::Rsa { .. } => KeyAlgorithm::Rsa,
            Inner::Ed25519(_) => KeyAlgorithm::Ed25519,
        }
    }

    /// Key size in bits (256 for Ed25519).
    pub fn bits(&self) -> usize {
        match &*self.0 {
            Inner::Rsa { bits, .. } => *bits,
            Inner::Ed25519(_) => 256,
        }
    }

    /// The private key as PKCS#8 PEM, readable by `openssl pkey`. Ed25519 keys
    /// are written as PKCS#8 v1, the form OpenSSL 3.0 reads.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let der: Vec<u8> = match &*self.0 {
            Inner::Rsa { pair, .. } => {
                let d: aws_lc_rs::encoding::Pkcs8V1Der<'static> = pair
                    .as_der()
                    .map_err(|_| KeyError::Crypto("PKCS#8 encoding"))?;
                d.as_ref().to_vec()
            }
            Inner::Ed25519(pair) => pair
                .to_pkcs8v1()
                .map_err(|_| KeyError::Crypto("PKCS#8 encoding"))?
                .as_ref()
                .to_vec(),
        };
        Ok(pem::encode_config(
            &pem::Pem::new(PEM_PKCS8, der),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        ))
    }

    /// The public key as DKIM publishes it in `p=`: SubjectPublicKeyInfo DER
    /// for RSA, the 32 raw bytes for Ed25519 (RFC 8463 §4).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &*self.0 {
            Inner::Rsa { pair, .. } => {
                let spki: Result<aws_lc_rs::encoding::PublicKeyX509Der<'static>, _> =
                    pair.public_key().as_der();
                spki.map(|d| d.as_ref().to_vec()).unwrap_or_default()
            }
            Inner::Ed25519(pair) => pair.public_key().as_ref().to_vec(),
        }
    }

    /// The base64 `p=` value.
    pub fn public_key_base64(&self) -> String {
        B64.encode(self.public_key_bytes())
    }

    /// The DNS TXT record text for this key: `v=DKIM1; k=rsa; p=…`.
    pub fn dns_record(&self) -> String {
        format!(
            "v=DKIM1; k={}; p={}",
            self.algorithm(),
            self.public_key_base64()
        )
    }

    /// Signs the canonicalized header data: RSASSA-PKCS1-v1_5 with SHA-256,
    /// or Ed25519 over the SHA-256 digest of the data (RFC 8463 §3).
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &*self.0 {
            Inner::Rsa { pair, .. } => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    data,
                    &mut sig,
                )
                .map_err(|_| KeyError::Crypto("RSA signing"))?;
                Ok(sig)
            }
            Inner::Ed25519(pair) => {
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
                Ok(pair.sign(digest.as_ref()).as_ref().to_vec())
            }
        }
    }
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VerifyError {
    /// The public key is unusable (cannot be decoded).
    BadKey(String),
    /// The RSA key is under 1024 bits (RFC 8301).
    KeyTooSmall(u32),
    /// The signature does not match.
    Mismatch,
}

/// Verifies `sig` over `data` with a public key in the form of a DKIM `p=`.
pub(crate) fn verify(
    alg: KeyAlgorithm,
    public: &[u8],
    data: &[u8],
    sig: &[u8],
) -> Result<(), VerifyError> {
    match alg {
        KeyAlgorithm::Rsa => {
            let pkcs1 = spki_rsa_inner(public).unwrap_or(public);
            let bits = signature::RsaParameters::public_modulus_len(pkcs1)
                .map_err(|_| VerifyError::BadKey("the RSA public key cannot be decoded".into()))?;
            if bits < 1024 {
                return Err(VerifyError::KeyTooSmall(bits));
            }
            UnparsedPublicKey::new(
                &signature::RSA_PKCS1_1024_8192_SHA256_FOR_LEGACY_USE_ONLY,
                pkcs1,
            )
            .verify(data, sig)
            .map_err(|_| VerifyError::Mismatch)
        }
        KeyAlgorithm::Ed25519 => {
            if ed25519_spki_inner(public).is_some() {
                return Err(VerifyError::BadKey(ED25519_SPKI_REASON.into()));
            }
            let raw = ed25519_raw(public).ok_or_else(|| {
                VerifyError::BadKey(format!(
                    "an Ed25519 public key is 32 bytes, this one has {}",
                    public.len()
                ))
            })?;
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
            UnparsedPublicKey::new(&signature::ED25519, raw)
                .verify(digest.as_ref(), sig)
                .map_err(|_| VerifyError::Mismatch)
        }
    }
}

/// Size in bits of an RSA public key given as a DKIM `p=` (SPKI or PKCS#1).
pub(crate) fn rsa_bits(public: &[u8]) -> Option<u32> {
    let pkcs1 = spki_rsa_inner(public).unwrap_or(public);
    signature::RsaParameters::public_modulus_len(pkcs1).ok()
}

/// The SubjectPublicKeyInfo prefix of an Ed25519 key (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Why an Ed25519 key in SubjectPublicKeyInfo form is refused.
pub const ED25519_SPKI_REASON: &str = "Ed25519 key in SubjectPublicKeyInfo form (44 bytes); RFC 8463 requires the bare 32-byte key in p=";

/// The bare key (RFC 8463's form) of a key record.
fn ed25519_raw(public: &[u8]) -> Option<&[u8]> {
    (public.len() == 32).then_some(public)
}

/// When `public` is an Ed25519 key wrapped in SubjectPublicKeyInfo (RFC
/// 8410, 44 bytes), the 32-byte key inside. RFC 8463 puts the bare key in
/// `p=`; dkimpy, Mail::DKIM and OpenDKIM refuse the wrapped form, so
/// dkimd does too, and tells the admin how to fix the record.
pub fn ed25519_spki_inner(public: &[u8]) -> Option<&[u8]> {
    public
        .strip_prefix(&ED25519_SPKI_PREFIX[..])
        .filter(|k| k.len() == 32)
}

/// Reads one DER TLV header at the start of `d`: (tag, content, rest).
fn der_tlv(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = d.split_first()?;
    let (&len0, rest) = rest.split_first()?;
    let (len, rest) = if len0 < 0x80 {
        (usize::from(len0), rest)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (len_bytes, rest) = rest.split_at_checked(n)?;
        let len = len_bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, rest)
    };
    let (content, rest) = rest.split_at_checked(len)?;
    Some((tag, content, rest))
}

/// When `public` is an RSA SubjectPublicKeyInfo, the PKCS#1 RSAPublicKey inside.
fn spki_rsa_inner(public: &[u8]) -> Option<&[u8]> {
    const RSA_OID: [u8; 9] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let (0x30, spki, _) = der_tlv(public)? else {
        return None;
    };
    let (0x30, alg, rest) = der_tlv(spki)? else {
        return None;
    };
    let (0x06, oid, _) = der_tlv(alg)? else {
        return None;
    };
    if oid != RSA_OID {
        return None;
    }
    let (0x03, bits, _) = der_tlv(rest)? else {
        return None;
    };
    let (0, inner) = bits.split_first()? else {
        return None;
    };
    Some(inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_round_trip_and_pem() {
        let k = SigningKey::generate_ed25519().unwrap();
        let sig = k.sign(b"data").unwrap();
        verify(KeyAlgorithm::Ed25519, &k.public_key_bytes(), b"data", &sig).unwrap();
        assert_eq!(
            verify(KeyAlgorithm::Ed25519, &k.public_key_bytes(), b"datA", &sig),
            Err(VerifyError::Mismatch)
        );
        let pem = k.to_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let k2 = SigningKey::from_pem(pem.as_bytes()).unwrap();
        assert_eq!(k2.public_key_bytes(), k.public_key_bytes());
    }

    #[test]
    fn rsa_round_trip_and_pem() {
        let k = SigningKey::generate_rsa(2048).unwrap();
        assert_eq!(k.bits(), 2048);
        let sig = k.sign(b"data").unwrap();
        verify(KeyAlgorithm::Rsa, &k.public_key_bytes(), b"data", &sig).unwrap();
        assert_eq!(
            verify(KeyAlgorithm::Rsa, &k.public_key_bytes(), b"data2", &sig),
            Err(VerifyError::Mismatch)
        );
        let k2 = SigningKey::from_pem(k.to_pem().unwrap().as_bytes()).unwrap();
        assert_eq!(k2.public_key_bytes(), k.public_key_bytes());
        assert!(k.dns_record().starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"));
    }

    #[test]
    fn a_truncated_pem_says_so() {
        let pem = SigningKey::generate_rsa(2048).unwrap().to_pem().unwrap();
        let lines: Vec<&str> = pem.lines().collect();
        // Drop four whole base64 lines from the middle: still base64, but
        // the DER inside is cut short.
        let mut cut: Vec<&str> = lines.iter().take(5).copied().collect();
        cut.extend(lines.iter().skip(9));
        let e = SigningKey::from_pem(cut.join("\n").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("damaged or cut short"), "{e}");
        assert!(!e.to_string().contains("neither RSA nor Ed25519"), "{e}");
    }

    #[test]
    fn unsupported_sizes_and_garbage() {
        assert_eq!(
            SigningKey::generate_rsa(1024).unwrap_err(),
            KeyError::UnsupportedSize(1024)
        );
        assert!(matches!(
            SigningKey::from_pem(b"hello"),
            Err(KeyError::Decode(_))
        ));
        let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            SigningKey::from_pem(cert.as_bytes()),
            Err(KeyError::Unsupported(_))
        ));
        let junk = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(SigningKey::from_pem(junk.as_bytes()).is_err());
    }

    #[test]
    fn bad_public_keys() {
        assert!(matches!(
            verify(KeyAlgorithm::Rsa, b"garbage", b"d", b"s"),
            Err(VerifyError::BadKey(_))
        ));
        assert!(matches!(
            verify(KeyAlgorithm::Ed25519, &[0u8; 31], b"d", b"s"),
            Err(VerifyError::BadKey(_))
        ));
        // The SubjectPublicKeyInfo form of a good key, with a good
        // signature: refused with a reason that names the form.
        let key = SigningKey::generate_ed25519().unwrap();
        let raw = key.public_key_bytes();
        let sig = key.sign(b"data").unwrap();
        assert_eq!(verify(KeyAlgorithm::Ed25519, &raw, b"data", &sig), Ok(()));
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(&raw);
        assert_eq!(ed25519_spki_inner(&spki), Some(&raw[..]));
        assert_eq!(
            verify(KeyAlgorithm::Ed25519, &spki, b"data", &sig),
            Err(VerifyError::BadKey(ED25519_SPKI_REASON.into()))
        );
        assert_eq!(der_tlv(&[0x30, 0x85, 1, 1, 1, 1, 1]), None);
        assert_eq!(der_tlv(&[0x30, 0x05, 1]), None);
    }
}
