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
        match Self::of_data_dir(data_dir)? {
            Some(key) => Ok(key),
            None => {
                let key = Self::generate()?;
                key.keep_in(data_dir)?;
                Ok(key)
            }
        }
    }

    /// Uses `key`, the cluster's, in `data_dir`: kept there on first start (so backups carry
    /// it), and refused if the directory's PANs were hashed with another key.
    pub fn adopt(data_dir: &Path, key: &PanKey) -> io::Result<PanKey> {
        match Self::of_data_dir(data_dir)? {
            Some(own) if own.0 == key.0 => Ok(own),
            Some(own) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "the data directory's PANs were hashed with another key (fingerprint {}, \
                     the given key's is {}): give this node that key, e.g. `tandem keygen \
                     --pan-key FILE --data-dir {}` writes it to FILE",
                    own.fingerprint(),
                    key.fingerprint(),
                    data_dir.display()
                ),
            )),
            None => {
                key.keep_in(data_dir)?;
                Ok(key.clone())
            }
        }
    }

    /// Writes the key into `data_dir` (mode 0600, synced), which must not have one.
    fn keep_in(&self, data_dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(data_dir)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(data_dir.join(PAN_KEY_FILE))?;
        file.write_all(&self.0)?;
        file.sync_all()?;
        std::fs::File::open(data_dir)?.sync_all()
    }

    /// The cluster's key from `path`: 64 hex characters (32 bytes), in a file only its owner
    /// may read or write (mode 0600), as `tandem keygen --pan-key` writes it.
    pub fn from_file(path: &Path) -> Result<PanKey, String> {
        let shown = path.display();
        let metadata = std::fs::metadata(path).map_err(|e| format!("PAN key file {shown}: {e}"))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "PAN key file {shown} is readable by others (mode {mode:o}); make it 0600"
                ));
            }
        }
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("PAN key file {shown}: {e}"))?;
        let hex = text.trim();
        if hex.len() != 2 * PAN_KEY_BYTES || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "PAN key file {shown} must hold {} hex characters ({PAN_KEY_BYTES} bytes), found {} characters",
                2 * PAN_KEY_BYTES,
                hex.len()
            ));
        }
        let mut key = [0u8; PAN_KEY_BYTES];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
        }
        Ok(PanKey(key))
    }

    /// Writes this key to a new file at `path` (mode 0600) as 64 hex characters; refuses to
    /// replace an existing file.
    pub fn write_file(&self, path: &Path) -> io::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(path)?;
        let hex: String = self.0.iter().map(|b| format!("{b:02x}")).collect();
        file.write_all(format!("{hex}\n").as_bytes())?;
        file.sync_all()
    }

    /// A new random key.
    pub fn generate() -> io::Result<PanKey> {
        let mut key = [0u8; PAN_KEY_BYTES];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut key)?;
        Ok(PanKey(key))
    }

    /// The key a data directory holds, if it has one (a single node's own key).
    pub fn of_data_dir(data_dir: &Path) -> io::Result<Option<PanKey>> {
        match std::fs::File::open(data_dir.join(PAN_KEY_FILE)) {
            Ok(mut file) => {
                let mut key = [0u8; PAN_KEY_BYTES];
                file.read_exact(&mut key)?;
                Ok(Some(PanKey(key)))
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// A short, non-secret name of the key, to compare nodes' keys by.
    pub fn fingerprint(&self) -> String {
        self.derive("fingerprint")[..16].to_owned()
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
    fn a_key_file_round_trips_and_a_bad_one_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pan.key");
        let key = PanKey::generate().unwrap();
        key.write_file(&path).unwrap();
        let read = PanKey::from_file(&path).unwrap();
        assert_eq!(read.hash("4111111111111111"), key.hash("4111111111111111"));
        assert_eq!(read.fingerprint(), key.fingerprint());
        assert!(key.write_file(&path).is_err(), "never replaces a key");
        let short = dir.path().join("short.key");
        PanKey::generate().unwrap().write_file(&short).unwrap();
        std::fs::write(&short, "abcd\n").unwrap();
        let error = PanKey::from_file(&short).unwrap_err();
        assert!(error.contains("64 hex characters"), "{error}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let error = PanKey::from_file(&path).unwrap_err();
            assert!(error.contains("0600"), "{error}");
        }
    }

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
