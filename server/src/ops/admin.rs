//! The platform's own settings, for admin keys only: API keys, FX rates, and the fault
//! switches a node started with `--fault-injection` offers to tests and drills.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tandem_core::{AccountId, Currency, MemberId, RateTable};

use super::OpError;
use super::forward::Forwarded;
use super::route::Route;
use crate::app::App;
use crate::keys::{KeyRole, KeyStore, Principal};
use tandem_actors::{AccountSystem, Setting};

/// A key just issued. `token` is shown once, here; only its hash is stored.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedKey {
    pub id: String,
    pub token: String,
    pub role: KeyRole,
    pub account_id: Option<AccountId>,
    pub member_id: Option<MemberId>,
}

/// A currency named in the rates: its ISO 4217 alphabetic code.
pub(crate) fn currency(field: &str, code: &str) -> Result<tandem_core::Currency, OpError> {
    tandem_core::Currency::from_alpha(code).map_err(|e| OpError::invalid(field, e))
}

/// The FX rate file of data directories from before rates were committed to the log.
pub const LEGACY_RATES_FILE: &str = "fx-rates.json";

/// The FX rates as data directories from before kept them (`fx-rates.json`, imported into
/// the log once at start): the base currency and, per currency, how many units of it one
/// unit of the base buys, as decimal text; the `SetRatesRequest` body's shape.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedRates {
    pub base: String,
    pub rates: BTreeMap<String, String>,
}

impl SavedRates {
    /// The table these rates describe, checked.
    pub fn table(&self) -> Result<RateTable, OpError> {
        let base = currency("base", &self.base)?;
        let mut rates: BTreeMap<Currency, rust_decimal::Decimal> = BTreeMap::new();
        for (code, text) in &self.rates {
            let currency = currency("rates", code)?;
            let rate: rust_decimal::Decimal = text.parse().map_err(|_| {
                OpError::invalid("rates", format!("{code}: {text:?} is not a decimal"))
            })?;
            rates.insert(currency, rate);
        }
        RateTable::new(base, rates).map_err(|e| OpError::invalid("rates", e))
    }

    #[cfg(test)]
    fn of(table: &RateTable) -> Self {
        Self {
            base: table.base().alpha().to_owned(),
            rates: table
                .rates()
                .iter()
                .map(|(currency, rate)| (currency.alpha().to_owned(), rate.to_string()))
                .collect(),
        }
    }

    /// The rates saved at `path`, if any were.
    pub fn load(path: &Path) -> Result<Option<RateTable>, String> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let saved: SavedRates = serde_json::from_slice(&bytes)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                saved
                    .table()
                    .map(Some)
                    .map_err(|e| format!("{}: {}", path.display(), e.message()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }
}

impl App {
    pub(crate) fn admin_only(&self, principal: &Principal, what: &str) -> Result<(), OpError> {
        if principal.role == KeyRole::Admin {
            Ok(())
        } else {
            Err(OpError::forbidden(format!("{what} needs an admin key")))
        }
    }

    /// Issues an API key. App keys act for one member of one account and must name both;
    /// admin and network keys name neither.
    pub async fn issue_key(
        &self,
        principal: &Principal,
        role: KeyRole,
        account: Option<AccountId>,
        member: Option<MemberId>,
    ) -> Result<IssuedKey, OpError> {
        self.admin_only(principal, "issuing API keys")?;
        match (role, &account, &member) {
            (KeyRole::App, None, _) => {
                return Err(OpError::invalid(
                    "account_id",
                    "an app key names its account",
                ));
            }
            (KeyRole::App, _, None) => {
                return Err(OpError::invalid("member_id", "an app key names its member"));
            }
            (KeyRole::Admin | KeyRole::Network, Some(_), _)
            | (KeyRole::Admin | KeyRole::Network, _, Some(_)) => {
                return Err(OpError::invalid(
                    "account_id",
                    "only app keys are scoped to an account and member",
                ));
            }
            _ => {}
        }
        self.audit(
            principal,
            "issue_key",
            serde_json::json!({
                "role": role,
                "account_id": account.as_ref().map(|a| a.as_str()),
                "member_id": member.as_ref().map(|m| m.as_str()),
            }),
        )?;
        let (setting, id, token) =
            KeyStore::new_key(role, account.clone(), member.clone(), &principal.key_id)
                .map_err(|e| OpError::internal(e.to_string()))?;
        self.put_settings(principal, vec![setting]).await?;
        tracing::info!(key_id = %principal.key_id, issued = %id, role = ?role, "API key issued");
        Ok(IssuedKey {
            id,
            token,
            role,
            account_id: account,
            member_id: member,
        })
    }

    /// Revokes a key on every node, once the revocation is committed.
    pub async fn revoke_key(&self, principal: &Principal, id: &str) -> Result<(), OpError> {
        self.admin_only(principal, "revoking API keys")?;
        let revocation = self
            .keys
            .revocation(id)
            .ok_or_else(|| OpError::not_found(format!("no API key {id}")))?;
        self.audit(principal, "revoke_key", serde_json::json!({"revoked": id}))?;
        self.put_settings(principal, vec![revocation]).await
    }

    /// Sets the FX rates every account converts with from now on, on every node: answered
    /// once committed.
    pub async fn set_rates(&self, principal: &Principal, table: RateTable) -> Result<(), OpError> {
        self.admin_only(principal, "setting FX rates")?;
        let setting = AccountSystem::rates_setting(&table)?;
        self.audit(
            principal,
            "set_rates",
            serde_json::json!({"base": table.base().alpha(), "rates": table.rates().len()}),
        )?;
        self.put_settings(principal, vec![setting]).await
    }

    /// Commits `settings` (for an admin, checked by the caller): here, or at the leader.
    async fn put_settings(
        &self,
        principal: &Principal,
        settings: Vec<Setting>,
    ) -> Result<(), OpError> {
        match self.route()? {
            Route::Here => self.put_settings_here(settings).await,
            Route::AtLeader { id, address } => self
                .forward(principal, id, &address, Forwarded::Settings(settings))
                .await
                .map(|_| ()),
        }
    }

    /// Commits `settings` through this node's log, answered once applied here.
    pub(crate) async fn put_settings_here(&self, settings: Vec<Setting>) -> Result<(), OpError> {
        self.system()?.put_settings(settings).await?;
        Ok(())
    }

    /// Sets the faults in force, when enabled at start: log writes fail as on a full disk,
    /// each waits `commit_delay_ms` first (a slow disk), and each apply of committed entries
    /// waits `apply_delay_ms` (a node applying far behind what it knows committed).
    pub fn set_faults(
        &self,
        principal: &Principal,
        full: bool,
        commit_delay_ms: u64,
        apply_delay_ms: u64,
    ) -> Result<(), OpError> {
        self.admin_only(principal, "fault injection")?;
        let faults = self.faults.get().ok_or_else(|| {
            OpError::forbidden("fault injection is not enabled on this node (--fault-injection)")
        })?;
        self.audit(
            principal,
            "set_faults",
            serde_json::json!({"disk_full": full, "commit_delay_ms": commit_delay_ms, "apply_delay_ms": apply_delay_ms}),
        )?;
        faults.fail_with_no_space(full);
        faults.delay_writes(std::time::Duration::from_millis(commit_delay_ms));
        faults.delay_applies(std::time::Duration::from_millis(apply_delay_ms));
        tracing::warn!(key_id = %principal.key_id, full, commit_delay_ms, apply_delay_ms, "faults set");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_rates_read_back_as_the_same_table_in_the_set_rates_shape() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fx-rates.json");
        // A file written by an earlier version: the SetRatesRequest body as JSON.
        std::fs::write(
            &path,
            br#"{"base": "EUR", "rates": {"GBP": "0.8571", "USD": "1.08"}}"#,
        )
        .unwrap();
        let table = SavedRates::load(&path).unwrap().expect("rates were saved");
        assert_eq!(table.base().alpha(), "EUR");
        assert_eq!(table.rates().len(), 2);
        // Saved again, the file reads back as the same table, and as a SetRatesRequest.
        std::fs::write(&path, serde_json::to_vec(&SavedRates::of(&table)).unwrap()).unwrap();
        assert_eq!(SavedRates::load(&path).unwrap(), Some(table.clone()));
        let request: tandem_proto::v1::SetRatesRequest =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(request.base, "EUR");
        assert_eq!(request.rates.get("GBP").map(String::as_str), Some("0.8571"));
    }

    #[test]
    fn no_saved_rates_is_none_and_a_bad_file_names_itself() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fx-rates.json");
        assert_eq!(SavedRates::load(&path).unwrap(), None);
        std::fs::write(&path, br#"{"base": "EUR", "rates": {"GBP": "lots"}}"#).unwrap();
        let error = SavedRates::load(&path).unwrap_err();
        assert!(
            error.contains("fx-rates.json") && error.contains("GBP"),
            "{error}"
        );
    }
}
