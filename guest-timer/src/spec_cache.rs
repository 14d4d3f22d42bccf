//! The component's cache of parsed specs, keyed by spec text (used by `component.rs`, which
//! is built for wasm32 only; the cache itself is plain Rust, tested natively).
//!
//! A `HashMap` with a fixed hasher ([`SpecHasher`]): std's default hasher would ask WASI for
//! a random seed, and a `BTreeMap` compares whole spec texts (which share long prefixes) a
//! dozen times per lookup. It holds at most [`CACHE_LIMIT`] specs; past that it evicts one at
//! a time by "second chance" (the oldest spec not looked up since the hand last passed it), so
//! the specs of rules in use stay parsed. A miss only costs one parse, and a component
//! instance may be thrown away at any time anyway. Everything here is deterministic.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::rc::Rc;

use crate::TimerSpec;

/// The most spec texts kept parsed.
pub const CACHE_LIMIT: usize = 1024;

/// Parsed specs by text, bounded, with second-chance eviction.
pub struct SpecCache {
    map: HashMap<Rc<str>, Entry, BuildHasherDefault<SpecHasher>>,
    /// Every key of `map` once, oldest (the clock hand) first.
    order: VecDeque<Rc<str>>,
}

struct Entry {
    spec: Rc<TimerSpec>,
    /// Looked up since the hand last passed it.
    used: Cell<bool>,
}

impl SpecCache {
    pub const fn new() -> Self {
        SpecCache {
            map: HashMap::with_hasher(BuildHasherDefault::new()),
            order: VecDeque::new(),
        }
    }

    pub fn get(&self, text: &str) -> Option<Rc<TimerSpec>> {
        let entry = self.map.get(text)?;
        entry.used.set(true);
        Some(Rc::clone(&entry.spec))
    }

    /// Keeps `spec` under `text` (an entry already there stays: it is the same schedule).
    pub fn insert(&mut self, text: &str, spec: Rc<TimerSpec>) {
        if self.map.contains_key(text) {
            return;
        }
        while self.map.len() >= CACHE_LIMIT {
            self.evict_one();
        }
        let key: Rc<str> = Rc::from(text);
        self.order.push_back(Rc::clone(&key));
        self.map.insert(
            key,
            Entry {
                spec,
                used: Cell::new(false),
            },
        );
    }

    /// Drops the oldest entry not used since the hand last passed it; used ones passed on
    /// the way lose their mark and go to the back. Ends within one round.
    fn evict_one(&mut self) {
        while let Some(key) = self.order.pop_front() {
            match self.map.get(&*key) {
                Some(entry) if entry.used.replace(false) => self.order.push_back(key),
                _ => {
                    self.map.remove(&*key);
                    return;
                }
            }
        }
    }
}

/// A fixed (unseeded) FxHash-style hasher, 8 bytes a step: cheap in wasm, deterministic, and
/// no WASI random import. Collisions only cost a key comparison.
#[derive(Default)]
struct SpecHasher(u64);

impl SpecHasher {
    /// rustc-hash's multiplier.
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    fn add(&mut self, word: u64) {
        self.0 = self.0.wrapping_add(word).wrapping_mul(Self::K);
    }
}

impl Hasher for SpecHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.add(bytes.len() as u64);
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut last = [0u8; 8];
            last[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(last));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn finish(&self) -> u64 {
        // The multiply leaves its best bits high; the table indexes by the low ones.
        self.0.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    fn spec() -> Rc<TimerSpec> {
        Rc::new(TimerSpec::from_json(r#"{"kind":"interval","interval_seconds":5}"#).unwrap())
    }

    fn key(i: usize) -> String {
        format!(r#"{{"kind":"interval","interval_seconds":{i}}}"#)
    }

    #[test]
    fn hits_give_the_cached_spec_and_a_second_insert_keeps_the_first() {
        let mut cache = SpecCache::new();
        assert!(cache.get("a").is_none());
        let first = spec();
        cache.insert("a", Rc::clone(&first));
        assert!(Rc::ptr_eq(&cache.get("a").unwrap(), &first));
        cache.insert("a", spec());
        assert!(Rc::ptr_eq(&cache.get("a").unwrap(), &first));
        assert!(cache.get("b").is_none());
        assert_eq!((cache.map.len(), cache.order.len()), (1, 1));
    }

    #[test]
    fn stays_bounded_and_keeps_the_specs_in_use() {
        let mut cache = SpecCache::new();
        let spec = spec();
        for i in 0..CACHE_LIMIT {
            cache.insert(&key(i), Rc::clone(&spec));
        }
        assert_eq!(cache.map.len(), CACHE_LIMIT);
        // 0 and 5 are in use; a new spec evicts the oldest unused one, 1.
        cache.get(&key(0)).unwrap();
        cache.get(&key(5)).unwrap();
        cache.insert(&key(CACHE_LIMIT), Rc::clone(&spec));
        assert_eq!(cache.map.len(), CACHE_LIMIT);
        assert!(cache.get(&key(1)).is_none());
        for i in [0, 2, 5, CACHE_LIMIT] {
            assert!(cache.get(&key(i)).is_some(), "{i}");
        }
        // A long run of one-off specs: never more than the limit, every key in `order` once.
        for i in 0..5 * CACHE_LIMIT {
            cache.get(&key(0)).unwrap();
            cache.insert(&key(10 * CACHE_LIMIT + i), Rc::clone(&spec));
            assert!(cache.map.len() <= CACHE_LIMIT);
        }
        assert_eq!(cache.order.len(), cache.map.len());
        assert!(cache.order.iter().all(|k| cache.map.contains_key(k)));
        assert!(cache.get(&key(0)).is_some(), "the spec in use stayed");
        // When everything is in use, the oldest goes.
        let oldest = cache.order.front().unwrap().to_string();
        let keys: Vec<String> = cache.order.iter().map(|k| k.to_string()).collect();
        for k in &keys {
            cache.get(k).unwrap();
        }
        cache.insert("new", Rc::clone(&spec));
        assert!(cache.get(&oldest).is_none());
        assert_eq!(cache.map.len(), CACHE_LIMIT);
    }

    #[test]
    fn the_hasher_is_fixed() {
        let a = BuildHasherDefault::<SpecHasher>::new();
        let b = BuildHasherDefault::<SpecHasher>::new();
        for text in ["", "a", "abcdefgh", "abcdefghi", &key(300)] {
            assert_eq!(a.hash_one(text), b.hash_one(text));
        }
        assert_ne!(a.hash_one("ab"), a.hash_one("ab\0"));
        assert_ne!(a.hash_one(key(1)), a.hash_one(key(2)));
    }
}
