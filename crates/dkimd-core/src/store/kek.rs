//! The key-encryption key of a shared store: private keys are sealed with
//! AES-256-GCM before they reach PostgreSQL, so that a dump of the
//! database alone holds no signing key.
//!
//! The file (mode 0600) holds one line: `dkimd-kek-1:` and 32 random bytes
//! in base64. Every node of a fleet has a copy. A sealed key is
//! `enc1:ID:BASE64(nonce ‖ ciphertext ‖ tag)`, where ID names the
//! key-encryption key (the first four bytes of its SHA-256, in hex), and
//! the key's public record is the additional data: a sealed private key
//! cannot be passed off as another key's.

use crate::error::{bail, err, Context};
use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use base64::Engine;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const FILE_PREFIX: &str = "dkimd-kek-1:";
const SEALED_PREFIX: &str = "enc1:";

/// A key-encryption key, read from its file.
pub struct Kek {
    key: LessSafeKey,
    id: String,
    path: PathBuf,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({} from {})", self.id, self.path.display())
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Kek {
    /// Makes a new key file at `path` (mode 0600); an existing file is
    /// never overwritten.
    pub fn create(path: &Path) -> crate::Result<Kek> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| err!("no random numbers"))?;
        let text = format!("{FILE_PREFIX}{}\n", b64().encode(bytes));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create key file {}", path.display()))?;
        use std::io::Write;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write key file {}", path.display()))?;
        Kek::from_bytes(&bytes, path)
    }

    /// Reads the key file at `path`, which only its owner may read.
    pub fn load(path: &Path) -> crate::Result<Kek> {
        crate::sys::check_private(path, "store key file")?;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read store key file {}", path.display()))?;
        let line = text.lines().next().unwrap_or("").trim();
        let Some(body) = line.strip_prefix(FILE_PREFIX) else {
            bail!(
                "{}:1: not a dkimd key file (it starts with {FILE_PREFIX}; make one with `dkimd store new-key-file`)",
                path.display()
            );
        };
        let bytes = b64()
            .decode(body)
            .map_err(|e| err!("{}:1: the key is not base64: {e}", path.display()))?;
        if bytes.len() != 32 {
            bail!(
                "{}:1: the key has {} bytes, not 32",
                path.display(),
                bytes.len()
            );
        }
        Kek::from_bytes(&bytes, path)
    }

    fn from_bytes(bytes: &[u8], path: &Path) -> crate::Result<Kek> {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
        let id: String = digest
            .as_ref()
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| err!("bad key length"))?;
        Ok(Kek {
            key: LessSafeKey::new(key),
            id,
            path: path.to_path_buf(),
        })
    }

    /// The key's id (shown in messages, written in every sealed key).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seals a private key (PEM) bound to its public `record`.
    pub fn seal(&self, pem: &str, record: &str) -> crate::Result<String> {
        if pem.is_empty() {
            return Ok(String::new());
        }
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).map_err(|_| err!("no random numbers"))?;
        let mut buf = pem.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(record.as_bytes()),
                &mut buf,
            )
            .map_err(|_| err!("cannot encrypt a private key"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{SEALED_PREFIX}{}:{}", self.id, b64().encode(out)))
    }

    /// Opens what [`Kek::seal`] made; `what` names the key in errors.
    pub fn open(&self, sealed: &str, record: &str, what: &str) -> crate::Result<String> {
        if sealed.is_empty() {
            return Ok(String::new());
        }
        let Some(rest) = sealed.strip_prefix(SEALED_PREFIX) else {
            bail!("{what}: the private key is not encrypted in the store (a plain key in PostgreSQL is refused)");
        };
        let (id, body) = rest
            .split_once(':')
            .ok_or_else(|| err!("{what}: damaged encrypted key"))?;
        if id != self.id {
            bail!(
                "{what}: encrypted with key-encryption key {id}, but {} holds key {}: give this node a copy of the fleet's key file",
                self.path.display(),
                self.id
            );
        }
        let bytes = b64()
            .decode(body)
            .map_err(|_| err!("{what}: damaged encrypted key"))?;
        if bytes.len() < NONCE_LEN + 16 {
            bail!("{what}: damaged encrypted key");
        }
        let (nonce, ct) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| err!("{what}: damaged encrypted key"))?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(record.as_bytes()),
                &mut buf,
            )
            .map_err(|_| {
                err!("{what}: the encrypted key does not open (damaged, or moved to another key)")
            })?;
        String::from_utf8(plain.to_vec()).map_err(|_| err!("{what}: damaged encrypted key"))
    }
}

/// The key-encryption keys a node holds: the current one seals, and a
/// previous one (while a fleet changes its key) still opens.
#[derive(Debug)]
pub struct KeyRing(Vec<Kek>);

impl KeyRing {
    /// The current key, and the previous one when there is one.
    pub fn new(current: Kek, previous: Option<Kek>) -> KeyRing {
        let mut v = vec![current];
        v.extend(previous);
        KeyRing(v)
    }

    /// Seals with the current key.
    pub fn seal(&self, pem: &str, record: &str) -> crate::Result<String> {
        match self.0.first() {
            Some(k) => k.seal(pem, record),
            None => bail!("no key-encryption key"),
        }
    }

    /// The current key's id.
    pub fn current_id(&self) -> &str {
        self.0.first().map_or("", |k| k.id())
    }

    /// True when `sealed` is sealed with the current key (or is empty).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed.is_empty() || sealed_id(sealed) == Some(self.current_id())
    }

    /// Opens with whichever key sealed it.
    pub fn open(&self, sealed: &str, record: &str, what: &str) -> crate::Result<String> {
        let id = sealed_id(sealed);
        match self.0.iter().find(|k| Some(k.id()) == id) {
            Some(k) => k.open(sealed, record, what),
            None => match self.0.first() {
                Some(k) => k.open(sealed, record, what),
                None => bail!("no key-encryption key"),
            },
        }
    }
}

fn sealed_id(sealed: &str) -> Option<&str> {
    sealed
        .strip_prefix(SEALED_PREFIX)
        .and_then(|r| r.split_once(':'))
        .map(|(id, _)| id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn seal_open_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let k = Kek::create(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(Kek::create(&p).is_err(), "never overwrites");
        let again = Kek::load(&p).unwrap();
        assert_eq!(again.id(), k.id());
        let s = k
            .seal("-----BEGIN PRIVATE KEY-----\nabc\n", "v=DKIM1; p=X")
            .unwrap();
        assert!(!s.contains("BEGIN"));
        assert_eq!(
            again.open(&s, "v=DKIM1; p=X", "key 1").unwrap(),
            "-----BEGIN PRIVATE KEY-----\nabc\n"
        );
        // Bound to its record.
        let e = again.open(&s, "v=DKIM1; p=Y", "key 1").unwrap_err();
        assert!(e.to_string().contains("does not open"), "{e}");
        // Another key file.
        let other = Kek::create(&dir.path().join("k2")).unwrap();
        let e = other.open(&s, "v=DKIM1; p=X", "key 1").unwrap_err();
        assert!(e.to_string().contains("key-encryption key"), "{e}");
        // A plain key is refused.
        let e = k.open("-----BEGIN", "r", "key 2").unwrap_err();
        assert!(e.to_string().contains("not encrypted"), "{e}");
        // A ring opens what either key sealed and seals with the current one.
        let ring = KeyRing::new(other, Some(Kek::load(&p).unwrap()));
        assert_eq!(ring.open(&s, "v=DKIM1; p=X", "key 1").unwrap().len(), 32);
        assert!(!ring.is_current(&s));
        let s2 = ring.seal("pem", "r").unwrap();
        assert!(ring.is_current(&s2));
        // Loose permissions, and a file that is not ours.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Kek::load(&p).is_err());
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "hello\n").unwrap();
        std::fs::set_permissions(&bad, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = Kek::load(&bad).unwrap_err();
        assert!(e.to_string().contains(":1: not a dkimd key file"), "{e}");
    }
}
