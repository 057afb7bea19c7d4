//! The cluster's settings: named values every node must hold alike to decide alike (API key
//! hashes, FX rates). They are written through the log like account records
//! ([`crate::types::Setting`] in a [`crate::types::LogBatch`]), applied on every node, kept
//! in the state under `s:<name>` (so checkpoints, snapshots and backups carry them) and held
//! whole in memory here: they are few and small, and read on every request.
//!
//! Storage only keeps the bytes; their owners say what they mean (the server its API keys,
//! the actors their FX rates) and read them through a [`Derived`] value, rebuilt only when a
//! setting changed.

use arc_swap::ArcSwap;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::types::Setting;

/// The settings at one point of the log.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SettingsView {
    /// Counts changes since this process opened the state: equal generations, equal views.
    generation: u64,
    values: BTreeMap<String, Vec<u8>>,
}

impl SettingsView {
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.values.get(name).map(Vec::as_slice)
    }

    /// Every setting whose name starts with `prefix`, in name order.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = (&'a str, &'a [u8])> {
        self.values
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(name, _)| name.starts_with(prefix))
            .map(|(name, value)| (name.as_str(), value.as_slice()))
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// The applied settings, shared by the state machine (which changes them) and readers.
#[derive(Debug, Default)]
pub struct Settings {
    current: ArcSwap<SettingsView>,
}

impl Settings {
    pub fn current(&self) -> Arc<SettingsView> {
        self.current.load_full()
    }

    /// Applies committed changes, in log order (the state machine's task only).
    pub(crate) fn apply<'a>(&self, changes: impl IntoIterator<Item = &'a Setting>) {
        let mut next = SettingsView::clone(&self.current.load());
        for change in changes {
            match &change.value {
                Some(value) => next.values.insert(change.name.clone(), value.clone()),
                None => next.values.remove(&change.name),
            };
        }
        next.generation += 1;
        self.current.store(Arc::new(next));
    }

    /// Replaces every setting (at open, and when a snapshot is installed).
    pub(crate) fn replace(&self, values: BTreeMap<String, Vec<u8>>) {
        let generation = self.current.load().generation + 1;
        self.current
            .store(Arc::new(SettingsView { generation, values }));
    }
}

/// A value derived from the settings (the API key table, the FX rate table), rebuilt only
/// when they changed since it was last built. Reading it costs two atomic loads.
pub struct Derived<T> {
    settings: Arc<Settings>,
    derive: Box<dyn Fn(&SettingsView) -> T + Send + Sync>,
    cached: ArcSwap<(u64, Arc<T>)>,
}

impl<T> Derived<T> {
    pub fn new(
        settings: Arc<Settings>,
        derive: impl Fn(&SettingsView) -> T + Send + Sync + 'static,
    ) -> Self {
        let view = settings.current();
        let first = Arc::new(derive(&view));
        Self {
            settings,
            derive: Box::new(derive),
            cached: ArcSwap::from_pointee((view.generation, first)),
        }
    }

    /// The value for the settings as they are now.
    pub fn get(&self) -> Arc<T> {
        let view = self.settings.current();
        let cached = self.cached.load();
        if cached.0 == view.generation {
            return cached.1.clone();
        }
        let fresh = Arc::new((self.derive)(&view));
        // Two readers may both rebuild after a change; either's result is the same value.
        self.cached
            .store(Arc::new((view.generation, fresh.clone())));
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(name: &str, value: Option<&[u8]>) -> Setting {
        Setting {
            name: name.to_owned(),
            value: value.map(<[u8]>::to_vec),
        }
    }

    #[test]
    fn changes_apply_in_order_and_removals_remove() {
        let settings = Settings::default();
        settings.apply(&[
            set("api-key:a", Some(b"1")),
            set("api-key:b", Some(b"2")),
            set("fx-rates", Some(b"r")),
        ]);
        settings.apply(&[set("api-key:a", None), set("api-key:b", Some(b"3"))]);
        let view = settings.current();
        assert_eq!(view.get("api-key:a"), None);
        assert_eq!(view.get("api-key:b"), Some(b"3".as_slice()));
        let keys: Vec<&str> = view.with_prefix("api-key:").map(|(n, _)| n).collect();
        assert_eq!(keys, vec!["api-key:b"], "only the prefix's names");
    }

    #[test]
    fn a_derived_value_is_rebuilt_only_after_a_change() {
        let settings = Arc::new(Settings::default());
        let builds = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = builds.clone();
        let derived = Derived::new(settings.clone(), move |view| {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            view.with_prefix("k:").count()
        });
        assert_eq!(*derived.get(), 0);
        assert_eq!(*derived.get(), 0);
        assert_eq!(builds.load(std::sync::atomic::Ordering::Relaxed), 1);
        settings.apply(&[set("k:1", Some(b"x"))]);
        assert_eq!(*derived.get(), 1, "sees the change at once");
        assert_eq!(*derived.get(), 1);
        assert_eq!(builds.load(std::sync::atomic::Ordering::Relaxed), 2);
        settings.replace(BTreeMap::new());
        assert_eq!(*derived.get(), 0, "a replaced view is a change too");
    }
}
