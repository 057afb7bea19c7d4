//! The key that turns a PAN into its card's lookup hash. A PAN is never stored or logged in
//! clear: the edge computes `HMAC-SHA256(key, PAN)` and the card directory holds only that.
//!
//! The key is generated at first start from the operating system's random source into
//! `<data dir>/pan-hash.key`, readable and writable by the owner only (mode 0600), and read
//! back on every start. **Losing it orphans every card**: no PAN maps to its card any more,
//! and cards must be re-registered with their PANs. Back it up with the data directory, and
//! keep it out of any copy that leaves the issuer's secure environment.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::io::{self, Read, Write};
use std::path::Path;

/// Bytes of key.
pub const PAN_KEY_BYTES: usize = 32;
/// The key's file name inside the data directory.
pub const PAN_KEY_FILE: &str = "pan-hash.key";

/// The PAN hashing key of one data directory.
#[derive(Clone)]
pub struct PanKey([u8; PAN_KEY_BYTES]);

impl std::fmt::Debug for PanKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PanKey(..)")
    }
}

impl PanKey {
    /// Reads the key from `data_dir`, generating it (mode 0600) on first start.
    pub fn load_or_create(data_dir: &Path) -> io::Result<PanKey> {
        let path = data_dir.join(PAN_KEY_FILE);
        match std::fs::File::open(&path) {
            Ok(mut file) => {
                let mut key = [0u8; PAN_KEY_BYTES];
                file.read_exact(&mut key)?;
                Ok(PanKey(key))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(data_dir)?;
                let mut key = [0u8; PAN_KEY_BYTES];
                std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    options.mode(0o600);
                }
                let mut file = options.open(&path)?;
                file.write_all(&key)?;
                file.sync_all()?;
                std::fs::File::open(data_dir)?.sync_all()?;
                Ok(PanKey(key))
            }
            Err(error) => Err(error),
        }
    }

    /// The hex HMAC-SHA256 of a PAN (digits only; spaces are not part of a PAN).
    pub fn hash(&self, pan: &str) -> String {
        self.hmac_hex(pan.as_bytes())
    }

    /// A value for `purpose` derived from the key, which does not reveal it: the HMAC of the
    /// purpose under a label no PAN can equal (a PAN is digits). A cluster's nodes share the
    /// key, so they derive alike: the peer protocol's token, and the key's fingerprint.
    pub fn derive(&self, purpose: &str) -> String {
        self.hmac_hex(format!("tandem-derived-secret:{purpose}").as_bytes())
    }

    fn hmac_hex(&self, bytes: &[u8]) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(bytes);
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// Shows the last four digits only, for logs and answers (`**** **** **** 1234`).
pub fn mask(pan: &str) -> String {
    let digits: String = pan.chars().filter(char::is_ascii_digit).collect();
    let last = &digits[digits.len().saturating_sub(4)..];
    format!("****{last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_created_once_owner_only_and_hashes_stably() {
        let dir = tempfile::tempdir().unwrap();
        let key = PanKey::load_or_create(dir.path()).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(PAN_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let again = PanKey::load_or_create(dir.path()).unwrap();
        let pan = "4111111111111111";
        assert_eq!(
            key.hash(pan),
            again.hash(pan),
            "the same key after a restart"
        );
        assert_eq!(key.hash(pan).len(), 64);
        assert!(!key.hash(pan).contains(pan));
        let other = PanKey::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_ne!(
            key.hash(pan),
            other.hash(pan),
            "another data directory has another key"
        );
        assert_eq!(mask(pan), "****1111");
        assert_eq!(key.derive("peer"), again.derive("peer"));
        assert_ne!(
            key.derive("peer"),
            key.derive("fingerprint"),
            "one value per purpose"
        );
        assert_ne!(key.derive("peer"), other.derive("peer"));
    }
}
