//! The small sorted maps an account keeps (members, cards, balances, positions, overdrafts),
//! and inserting into them without spare capacity.

/// The account's small maps (members, cards, balances, positions, overdrafts): a vector sorted
/// by key. An account has a few of each, and a `BTreeMap` allocates a node of 11 slots for
/// one entry (half of a resident account's heap was empty slots); lookups are a binary search,
/// iteration is in key order (deterministic, decision 0002), and serde writes the same map as
/// a `BTreeMap` did, so stored accounts decode unchanged.
pub type SmallMap<K, V> = litemap::LiteMap<K, V>;

/// Inserts into a small map whose storage stays exactly its length. Every resident account
/// holds a few of these maps (members, cards, balances, positions), their keys arrive rarely
/// (a member, a card, a first currency), and a `Vec` grown by doubling would keep up to half
/// of its slots empty for the account's whole life.
pub fn fitted_insert<K: Ord, V>(map: &mut SmallMap<K, V>, key: K, value: V) -> Option<V> {
    if let Some(found) = map.get_mut(&key) {
        return Some(std::mem::replace(found, value));
    }
    let mut entries = std::mem::take(map).into_tuple_vec();
    let at = entries
        .binary_search_by(|(k, _)| k.cmp(&key))
        .expect_err("absent");
    entries.reserve_exact(1);
    entries.insert(at, (key, value));
    *map = SmallMap::from_sorted_store_unchecked(entries);
    None
}

/// The value under `key`, inserted as its default (with [`fitted_insert`]) if absent.
pub fn fitted_entry<'a, K: Ord + Clone, V: Default>(
    map: &'a mut SmallMap<K, V>,
    key: &K,
) -> &'a mut V {
    if !map.contains_key(key) {
        fitted_insert(map, key.clone(), V::default());
    }
    map.get_mut(key).expect("present")
}
