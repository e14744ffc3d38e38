//! The key-value store of the redis example. Shared with the tests (`tests/resp.rs` includes
//! this file and `kv.rs`, the command table over it), so they run exactly what the demo runs.
//!
//! Keys live in one [`Store`] shared by every loop: a fixed number of shards, each a
//! `Mutex<HashMap>`, picked by a hash of the key, so loops contend only when they touch the
//! same shard at the same moment. A key is hashed once per command (SipHash with a random
//! key, as std's `HashMap` does): that hash picks the shard and is stored with the key, so
//! the shard's map never hashes again. Expired keys are removed when touched (lazily) and by a
//! sweep that loop 0 runs every 100 ms over the shards that hold keys with a deadline.

#![allow(dead_code)] // the tests use part of this module, the example another

use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Shards swept per tick (a full pass over 64 shards takes 4 ticks).
const SWEEP_SHARDS_PER_TICK: usize = 16;

pub(crate) struct Entry {
    pub(crate) value: Vec<u8>,
    pub(crate) expires: Option<Instant>,
}

impl Entry {
    fn expired(&self, now: &mut Now) -> bool {
        self.expires.is_some_and(|t| t <= now.get())
    }

    /// Replaces the value, reusing the allocation when it fits and is not much larger.
    fn set_value(&mut self, value: &[u8]) {
        let cap = self.value.capacity();
        if value.len() <= cap && cap <= 2 * value.len() + 64 {
            self.value.clear();
            self.value.extend_from_slice(value);
        } else {
            self.value = value.to_vec();
        }
    }
}

/// The clocks, read at most once per command and only if a deadline is involved: the
/// monotonic one the store's deadlines are on, and the wall clock in Unix milliseconds that
/// commands name absolute times on (and that bounds a deadline, as in redis-server).
pub(crate) struct Now(pub(crate) Option<(Instant, i64)>);

impl Now {
    fn read(&mut self) -> (Instant, i64) {
        *self
            .0
            .get_or_insert_with(|| (Instant::now(), crate::expiry::unix_ms()))
    }

    pub(crate) fn get(&mut self) -> Instant {
        self.read().0
    }

    pub(crate) fn unix_ms(&mut self) -> i64 {
        self.read().1
    }
}

/// A key and its hash. The hash (SipHash with the store's random key, as std's `HashMap`
/// uses) is computed once per command and serves both to pick the shard and for the shard's
/// map, which only reads it back ([`PreHashed`]).
struct Key {
    hash: u64,
    bytes: Box<[u8]>,
}

/// A key being looked up: borrowed bytes and their hash.
#[derive(Clone, Copy)]
pub struct KeyRef<'a> {
    hash: u64,
    bytes: &'a [u8],
}

/// What a map key and a looked-up key have in common, so the map can be searched with a
/// borrowed [`KeyRef`] (as `dyn AsKey`) without building an owned [`Key`].
trait AsKey {
    fn hash(&self) -> u64;
    fn bytes(&self) -> &[u8];
}

impl AsKey for Key {
    fn hash(&self) -> u64 {
        self.hash
    }
    fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl AsKey for KeyRef<'_> {
    fn hash(&self) -> u64 {
        self.hash
    }
    fn bytes(&self) -> &[u8] {
        self.bytes
    }
}

impl<'a> Borrow<dyn AsKey + 'a> for Key {
    fn borrow(&self) -> &(dyn AsKey + 'a) {
        self
    }
}

impl Hash for dyn AsKey + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(AsKey::hash(self));
    }
}

impl PartialEq for dyn AsKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        AsKey::hash(self) == AsKey::hash(other) && self.bytes() == other.bytes()
    }
}

impl Eq for dyn AsKey + '_ {}

// `Key` hashes and compares exactly as its `dyn AsKey` view, as `Borrow` requires.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        Hash::hash(self as &dyn AsKey, state);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        (self as &dyn AsKey) == (other as &dyn AsKey)
    }
}

impl Eq for Key {}

/// The hasher of the shards' maps: keys arrive hashed, so it passes the hash through.
#[derive(Default)]
struct PreHashed(u64);

impl Hasher for PreHashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (by `Key` and `dyn AsKey`); fold anything else in anyway.
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = HashMap<Key, Entry, BuildHasherDefault<PreHashed>>;

#[derive(Default)]
pub(crate) struct Shard {
    map: Map,
    /// Keys with a deadline: the sweep skips shards that have none.
    volatile: usize,
}

impl Shard {
    /// The live entry for `key`; an expired one is removed.
    pub(crate) fn live(&mut self, key: KeyRef<'_>, now: &mut Now) -> Option<&mut Entry> {
        let k = &key as &dyn AsKey;
        if self.volatile == 0 {
            return self.map.get_mut(k); // no key here has a deadline: one lookup
        }
        if self.map.get(k)?.expired(now) {
            self.remove(key);
            return None;
        }
        self.map.get_mut(k)
    }

    /// Sets `key` to `value` with the deadline `expires`.
    pub(crate) fn insert(&mut self, key: KeyRef<'_>, value: &[u8], expires: Option<Instant>) {
        let adds = usize::from(expires.is_some());
        match self.map.get_mut(&key as &dyn AsKey) {
            Some(old) => {
                self.volatile -= usize::from(old.expires.is_some());
                old.set_value(value);
                old.expires = expires;
            }
            None => {
                self.map.insert(
                    Key {
                        hash: key.hash,
                        bytes: key.bytes.into(),
                    },
                    Entry {
                        value: value.to_vec(),
                        expires,
                    },
                );
            }
        }
        self.volatile += adds;
    }

    pub(crate) fn remove(&mut self, key: KeyRef<'_>) -> Option<Entry> {
        let old = self.map.remove(&key as &dyn AsKey)?;
        self.volatile -= usize::from(old.expires.is_some());
        Some(old)
    }

    pub(crate) fn set_deadline(&mut self, key: KeyRef<'_>, at: Option<Instant>) {
        if let Some(e) = self.map.get_mut(&key as &dyn AsKey) {
            self.volatile -= usize::from(e.expires.is_some());
            self.volatile += usize::from(at.is_some());
            e.expires = at;
        }
    }

    fn sweep(&mut self, now: Instant) {
        if self.volatile == 0 {
            return;
        }
        let mut removed = 0;
        self.map.retain(|_, e| {
            let keep = !matches!(e.expires, Some(t) if t <= now);
            removed += usize::from(!keep);
            keep
        });
        self.volatile -= removed;
    }
}

/// The keyspace, shared by every loop.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    cursor: AtomicUsize,
}

impl Store {
    /// A store with `shards` shards (at least 1).
    pub fn new(shards: usize) -> Arc<Store> {
        Arc::new(Store {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            cursor: AtomicUsize::new(0),
        })
    }

    /// `bytes` with its hash, ready for [`shard`](Store::shard) and the shard's map.
    pub(crate) fn key<'a>(&self, bytes: &'a [u8]) -> KeyRef<'a> {
        // The bytes alone (no length prefix, unlike `hash_one`): keys are compared whole
        // anyway, and this saves a round of SipHash per command.
        let mut h = self.hasher.build_hasher();
        h.write(bytes);
        KeyRef {
            hash: h.finish(),
            bytes,
        }
    }

    pub(crate) fn index(&self, key: KeyRef<'_>) -> usize {
        // Bits the map does not lean on (it takes the low bits for the bucket and the top
        // seven as a tag).
        (key.hash >> 32) as u32 as usize % self.shards.len()
    }

    pub(crate) fn lock(&self, i: usize) -> MutexGuard<'_, Shard> {
        // A panic never happens while a shard is locked; if one did, the data is still sound.
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn shard(&self, key: KeyRef<'_>) -> MutexGuard<'_, Shard> {
        self.lock(self.index(key))
    }

    /// Number of keys (expired ones not yet removed included, as in Redis).
    pub fn len(&self) -> usize {
        (0..self.shards.len()).map(|i| self.lock(i).map.len()).sum()
    }

    /// Removes every key.
    pub fn clear(&self) {
        for i in 0..self.shards.len() {
            *self.lock(i) = Shard::default();
        }
    }

    /// Removes expired keys from the next few shards that hold keys with a deadline.
    pub fn sweep(&self) {
        let now = Instant::now();
        let n = self.shards.len();
        let start = self
            .cursor
            .fetch_add(SWEEP_SHARDS_PER_TICK, Ordering::Relaxed);
        for k in 0..SWEEP_SHARDS_PER_TICK.min(n) {
            self.lock((start + k) % n).sweep(now);
        }
    }
}
