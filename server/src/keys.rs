//! Bearer API keys. A key has a role: `network` (authorization traffic), `app` (one member of
//! one account), `admin` (everything). Tokens are shown once; only their SHA-256 is stored,
//! in `api-keys.json` in the data directory (written atomically, mode 0600).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::Instant;
use tandem_core::{AccountId, MemberId};

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
}

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

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key store I/O at {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key store {path} is not valid: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The keys, the file they live in, and each key's rate-limit bucket.
pub struct KeyStore {
    path: PathBuf,
    keys: RwLock<HashMap<String, (Principal, StoredKey)>>,
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
    pub fn open(data_dir: &Path, rate_per_key: u32) -> Result<Self, KeyError> {
        let path = data_dir.join("api-keys.json");
        let stored: Vec<StoredKey> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| KeyError::Corrupt {
                path: path.display().to_string(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(KeyError::Io {
                    path: path.display().to_string(),
                    source,
                });
            }
        };
        let mut keys = HashMap::new();
        for key in stored {
            let principal = Principal {
                key_id: key.id.clone(),
                role: key.role,
                account: key
                    .account_id
                    .as_deref()
                    .and_then(|a| AccountId::new(a).ok()),
                member: key.member_id.as_deref().and_then(|m| MemberId::new(m).ok()),
            };
            keys.insert(key.token_sha256.clone(), (principal, key));
        }
        Ok(Self {
            path,
            keys: RwLock::new(keys),
            rate_per_key,
            buckets: Mutex::new(HashMap::new()),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Accepts `token` as an admin key for this run (from `TANDEM_ADMIN_TOKEN`); not stored.
    pub fn add_ephemeral_admin(&self, token: &str) {
        let principal = Principal {
            key_id: "env-admin".to_owned(),
            role: KeyRole::Admin,
            account: None,
            member: None,
        };
        let stored = StoredKey {
            id: principal.key_id.clone(),
            role: KeyRole::Admin,
            account_id: None,
            member_id: None,
            token_sha256: sha256_hex(token),
            created_at_ms: tandem_core::Timestamp::now().millis(),
            created_by: "environment".to_owned(),
        };
        self.keys
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stored.token_sha256.clone(), (principal, stored));
    }

    /// The principal a presented token stands for.
    pub fn check(&self, token: &str) -> Option<Principal> {
        self.keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&sha256_hex(token))
            .map(|(principal, _)| principal.clone())
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

    /// Issues a key; answers (id, token). The token is not kept.
    pub fn issue(
        &self,
        role: KeyRole,
        account: Option<AccountId>,
        member: Option<MemberId>,
        created_by: &str,
    ) -> Result<(String, String), KeyError> {
        let io = |source| KeyError::Io {
            path: self.path.display().to_string(),
            source,
        };
        let id = format!("key_{}", random_hex(8).map_err(io)?);
        let token = format!("tdm_{}", random_hex(32).map_err(io)?);
        let stored = StoredKey {
            id: id.clone(),
            role,
            account_id: account.as_ref().map(|a| a.to_string()),
            member_id: member.as_ref().map(|m| m.to_string()),
            token_sha256: sha256_hex(&token),
            created_at_ms: tandem_core::Timestamp::now().millis(),
            created_by: created_by.to_owned(),
        };
        let principal = Principal {
            key_id: id.clone(),
            role,
            account,
            member,
        };
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        keys.insert(stored.token_sha256.clone(), (principal, stored));
        self.persist(&keys)?;
        Ok((id, token))
    }

    /// Revokes a key by id; false when there is no such stored key.
    pub fn revoke(&self, id: &str) -> Result<bool, KeyError> {
        let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
        let before = keys.len();
        keys.retain(|_, (principal, _)| principal.key_id != id || id == "env-admin");
        if keys.len() == before {
            return Ok(false);
        }
        self.persist(&keys)?;
        Ok(true)
    }

    fn persist(&self, keys: &HashMap<String, (Principal, StoredKey)>) -> Result<(), KeyError> {
        let mut stored: Vec<&StoredKey> = keys
            .values()
            .map(|(_, key)| key)
            .filter(|key| key.id != "env-admin")
            .collect();
        stored.sort_by(|a, b| a.id.cmp(&b.id));
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|source| KeyError::Corrupt {
            path: self.path.display().to_string(),
            source,
        })?;
        write_private(&self.path, &bytes).map_err(|source| KeyError::Io {
            path: self.path.display().to_string(),
            source,
        })
    }
}
