//! Bearer API keys. A key has a role: `network` (authorization traffic), `app` (one member of
//! one account), `admin` (everything). Tokens are shown once; only their SHA-256 is kept, as
//! the cluster setting `api-key:<id>` (JSON of the stored key) committed through the log, so
//! every node accepts the same keys and a revocation holds everywhere once committed. Data
//! directories from before kept them in `api-keys.json`: imported into the log once at start
//! ([`legacy_keys`], see `serve.rs`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock, RwLock};
use std::time::Instant;
use tandem_actors::{AccountSystem, Derived, Setting, SettingsView};
use tandem_core::{AccountId, MemberId};

/// The settings' names of API keys: this, then the key's id.
pub const KEY_SETTING: &str = "api-key:";

/// The key file of data directories from before keys were committed to the log.
pub const LEGACY_KEY_FILE: &str = "api-keys.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyRole {
    Admin,
    Network,
    App,
}

/// Who is calling, once their key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub role: KeyRole,
    /// For `app` keys: the account and member the key acts as.
    pub account: Option<AccountId>,
    pub member: Option<MemberId>,
    /// What the caller presented, as a leader checks it again for a forwarded request.
    pub credential: Credential,
}

impl Principal {
    /// An ISO 8583 link's traffic: a network's, admitted by the listener.
    pub fn link() -> Self {
        Self {
            key_id: "iso8583-link".to_owned(),
            role: KeyRole::Network,
            account: None,
            member: None,
            credential: Credential::Link,
        }
    }
}

/// What a caller presented to be let in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    /// A bearer API key, by its token's SHA-256 (the token itself goes no further than the
    /// node it reached).
    Token { sha256: String },
    /// An ISO 8583 link: links are admitted by the listener (and the network's sign-on), not
    /// by a key.
    Link,
}

/// A key as committed (and as `api-keys.json` held it).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    id: String,
    role: KeyRole,
    account_id: Option<String>,
    member_id: Option<String>,
    /// Hex SHA-256 of the token.
    token_sha256: String,
    created_at_ms: i64,
    created_by: String,
}

impl StoredKey {
    fn principal(&self) -> Principal {
        Principal {
            key_id: self.id.clone(),
            role: self.role,
            account: self
                .account_id
                .as_deref()
                .and_then(|a| AccountId::new(a).ok()),
            member: self
                .member_id
                .as_deref()
                .and_then(|m| MemberId::new(m).ok()),
            credential: Credential::Token {
                sha256: self.token_sha256.clone(),
            },
        }
    }

    fn setting(&self) -> Result<Setting, KeyError> {
        Ok(Setting {
            name: format!("{KEY_SETTING}{}", self.id),
            value: Some(serde_json::to_vec(self).map_err(KeyError::Encode)?),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file I/O at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {path} is not valid: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    #[error("generating a key: {0}")]
    Random(std::io::Error),
    #[error("encoding a key: {0}")]
    Encode(serde_json::Error),
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The committed keys, by token hash.
#[derive(Default)]
struct KeyTable {
    by_hash: HashMap<String, Principal>,
}

impl KeyTable {
    /// The keys the settings hold. A value that does not read as a key is reported and
    /// authenticates nothing.
    fn of(settings: &SettingsView) -> Self {
        let mut by_hash = HashMap::new();
        for (name, value) in settings.with_prefix(KEY_SETTING) {
            match serde_json::from_slice::<StoredKey>(value) {
                Ok(key) => {
                    by_hash.insert(key.token_sha256.clone(), key.principal());
                }
                Err(error) => {
                    tracing::error!(%error, setting = name, "a committed API key does not read; it authenticates nothing")
                }
            }
        }
        Self { by_hash }
    }
}

/// A presented token could not be checked yet: the node is still recovering its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotReady;

/// The keys (committed, read through the account system once it is up, and the
/// environment's admin token) and each key's rate-limit bucket.
pub struct KeyStore {
    committed: OnceLock<Derived<KeyTable>>,
    /// `TANDEM_ADMIN_TOKEN`'s key, by token hash: this node's only, never committed.
    ephemeral: RwLock<HashMap<String, Principal>>,
    /// Requests per second per key, 0 for unlimited; bursts of up to one second's worth.
    rate_per_key: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 32 random bytes from the operating system, hex.
fn random_hex(bytes: usize) -> std::io::Result<String> {
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(hex::encode(buffer))
}

/// Writes `bytes` to `path` via a synced temporary file and a rename, readable by the owner
/// only.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temporary = path.with_extension("tmp");
    {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, path)?;
    if let Some(parent) = path.parent() {
        std::fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl KeyStore {
    pub fn new(rate_per_key: u32) -> Self {
        Self {
            committed: OnceLock::new(),
            ephemeral: RwLock::new(HashMap::new()),
            rate_per_key,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Reads the committed keys through `system` from now on (once recovery is done).
    pub fn attach(&self, system: &AccountSystem) {
        let _ = self.committed.set(system.derive(KeyTable::of));
    }

    /// Whether any key is committed (false until attached).
    pub fn any_committed(&self) -> bool {
        self.committed
            .get()
            .is_some_and(|table| !table.get().by_hash.is_empty())
    }

    /// Accepts `token` as an admin key for this run (from `TANDEM_ADMIN_TOKEN`); not stored.
    pub fn add_ephemeral_admin(&self, token: &str) {
        let hash = sha256_hex(token);
        let principal = Principal {
            key_id: "env-admin".to_owned(),
            role: KeyRole::Admin,
            account: None,
            member: None,
            credential: Credential::Token {
                sha256: hash.clone(),
            },
        };
        self.ephemeral
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(hash, principal);
    }

    /// The principal a presented token stands for, if any; [`NotReady`] while the node
    /// recovers (its committed keys are not known yet).
    pub fn check(&self, token: &str) -> Result<Option<Principal>, NotReady> {
        self.check_hash(&sha256_hex(token))
    }

    /// [`KeyStore::check`] by the token's SHA-256 (hex), as a forwarded request carries it.
    pub fn check_hash(&self, hash: &str) -> Result<Option<Principal>, NotReady> {
        if let Some(principal) = self
            .ephemeral
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
        {
            return Ok(Some(principal.clone()));
        }
        let table = self.committed.get().ok_or(NotReady)?.get();
        Ok(table.by_hash.get(hash).cloned())
    }

    /// Takes one request from the key's bucket; false when it is over its rate.
    pub fn admit(&self, key_id: &str) -> bool {
        if self.rate_per_key == 0 {
            return true;
        }
        let rate = f64::from(self.rate_per_key);
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let bucket = buckets.entry(key_id.to_owned()).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        let refill = now.duration_since(bucket.at).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(rate);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// A new key: the setting that commits it, its id and its token (shown once, never
    /// kept).
    pub fn new_key(
        role: KeyRole,
        account: Option<AccountId>,
        member: Option<MemberId>,
        created_by: &str,
    ) -> Result<(Setting, String, String), KeyError> {
        let id = format!("key_{}", random_hex(8).map_err(KeyError::Random)?);
        let token = format!("tdm_{}", random_hex(32).map_err(KeyError::Random)?);
        let stored = StoredKey {
            id: id.clone(),
            role,
            account_id: account.as_ref().map(|a| a.to_string()),
            member_id: member.as_ref().map(|m| m.to_string()),
            token_sha256: sha256_hex(&token),
            created_at_ms: tandem_core::Timestamp::now().millis(),
            created_by: created_by.to_owned(),
        };
        Ok((stored.setting()?, id, token))
    }

    /// The setting that revokes the committed key `id`; `None` when there is no such key
    /// (the environment's admin key is not committed, so not revocable either).
    pub fn revocation(&self, id: &str) -> Option<Setting> {
        let table = self.committed.get()?.get();
        table
            .by_hash
            .values()
            .any(|principal| principal.key_id == id)
            .then(|| Setting {
                name: format!("{KEY_SETTING}{id}"),
                value: None,
            })
    }
}

/// The keys `api-keys.json` in `data_dir` holds, as settings to commit, if the file is there.
pub fn legacy_keys(data_dir: &Path) -> Result<Option<Vec<Setting>>, KeyError> {
    let path = data_dir.join(LEGACY_KEY_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Io {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let stored: Vec<StoredKey> =
        serde_json::from_slice(&bytes).map_err(|source| KeyError::Corrupt {
            path: path.display().to_string(),
            source,
        })?;
    stored
        .iter()
        .map(StoredKey::setting)
        .collect::<Result<_, _>>()
        .map(Some)
}
