//! The addresses of one shard: a bitmap of used offsets, dense for small shards and sparse (only
//! non-empty words) for large ones, so a /64 shard costs memory in proportion to its leases.

use std::collections::BTreeMap;

/// Shards up to this order keep a dense bitmap (2^16 addresses = 8 KiB).
const DENSE_MAX_ORDER: u8 = 16;

#[derive(Clone, Debug)]
enum Words {
    Dense(Vec<u64>),
    Sparse(BTreeMap<u64, u64>),
}

/// Used offsets of a shard, allocatable in `[lo, hi)`.
#[derive(Clone, Debug)]
pub struct AddrSet {
    words: Words,
    lo: u64,
    hi: u64,
    used: u64,
    /// Every offset in `[lo, hint * 64)` is used.
    hint: u64,
}

impl AddrSet {
    /// An empty set for a shard of `2^order` addresses (order <= 64) that hands out `[lo, hi)`.
    pub fn new(order: u8, lo: u64, hi: u64) -> Self {
        assert!(order <= 64, "shards above 2^64 addresses are not supported");
        let words = if order <= DENSE_MAX_ORDER {
            Words::Dense(vec![0; (1usize << order).div_ceil(64)])
        } else {
            Words::Sparse(BTreeMap::new())
        };
        AddrSet {
            words,
            lo,
            hi,
            used: 0,
            hint: lo / 64,
        }
    }

    /// Offsets marked used (leased or cooling).
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Offsets that can ever be handed out.
    pub fn capacity(&self) -> u64 {
        self.hi.saturating_sub(self.lo)
    }

    /// Whether every allocatable offset is used.
    pub fn is_full(&self) -> bool {
        self.used >= self.capacity()
    }

    fn raw(&self, w: u64) -> u64 {
        match &self.words {
            Words::Dense(v) => v[w as usize],
            Words::Sparse(m) => m.get(&w).copied().unwrap_or(0),
        }
    }

    /// Bits of word `w` outside `[lo, hi)`, as ones.
    fn outside(&self, w: u64) -> u64 {
        let start = w * 64;
        let mut mask = 0u64;
        if start < self.lo {
            let n = (self.lo - start).min(64);
            mask |= if n == 64 { !0 } else { (1u64 << n) - 1 };
        }
        let end = start.saturating_add(64);
        if end > self.hi {
            let n = (end - self.hi).min(64);
            mask |= if n == 64 { !0 } else { !0u64 << (64 - n) };
        }
        mask
    }

    /// Whether `off` is used.
    pub fn contains(&self, off: u64) -> bool {
        self.raw(off / 64) & (1u64 << (off % 64)) != 0
    }

    /// Marks `off` used; returns false if it already was.
    pub fn insert(&mut self, off: u64) -> bool {
        debug_assert!(off >= self.lo && off < self.hi);
        let (w, bit) = (off / 64, 1u64 << (off % 64));
        let word = match &mut self.words {
            Words::Dense(v) => &mut v[w as usize],
            Words::Sparse(m) => m.entry(w).or_insert(0),
        };
        if *word & bit != 0 {
            return false;
        }
        *word |= bit;
        self.used += 1;
        while self.hint * 64 < self.hi && self.raw(self.hint) | self.outside(self.hint) == !0 {
            self.hint += 1;
        }
        true
    }

    /// Marks `off` free; returns false if it already was.
    pub fn remove(&mut self, off: u64) -> bool {
        let (w, bit) = (off / 64, 1u64 << (off % 64));
        let present = match &mut self.words {
            Words::Dense(v) => {
                let word = &mut v[w as usize];
                let had = *word & bit != 0;
                *word &= !bit;
                had
            }
            Words::Sparse(m) => match m.get_mut(&w) {
                Some(word) if *word & bit != 0 => {
                    *word &= !bit;
                    if *word == 0 {
                        m.remove(&w);
                    }
                    true
                }
                _ => false,
            },
        };
        if present {
            self.used -= 1;
            self.hint = self.hint.min(w);
        }
        present
    }

    /// The lowest free offset in `[lo, hi)`.
    pub fn lowest_free(&self) -> Option<u64> {
        let first_free = |w: u64, raw: u64| -> Option<u64> {
            let eff = raw | self.outside(w);
            (eff != !0).then(|| w * 64 + eff.trailing_ones() as u64)
        };
        let last_word = (self.hi - 1) / 64;
        match &self.words {
            Words::Dense(v) => (self.hint..=last_word).find_map(|w| first_free(w, v[w as usize])),
            Words::Sparse(m) => {
                let mut expected = self.hint;
                for (&w, &raw) in m.range(self.hint..) {
                    if w > expected {
                        break;
                    }
                    if let Some(off) = first_free(w, raw) {
                        return Some(off);
                    }
                    expected = w + 1;
                }
                if expected > last_word {
                    return None;
                }
                first_free(expected, 0)
            }
        }
        .filter(|&off| off < self.hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_lowest_respects_reserved_ends() {
        let mut s = AddrSet::new(6, 2, 63);
        let mut got = vec![];
        while let Some(o) = s.lowest_free() {
            assert!(s.insert(o));
            got.push(o);
        }
        assert_eq!(got, (2..63).collect::<Vec<_>>());
        assert!(s.is_full());
        assert!(s.remove(40));
        assert_eq!(s.lowest_free(), Some(40));
    }

    #[test]
    fn sparse_handles_a_64_bit_shard() {
        let mut s = AddrSet::new(64, 1, u64::MAX);
        for i in 1..200 {
            assert_eq!(s.lowest_free(), Some(i));
            s.insert(i);
        }
        s.remove(70);
        assert_eq!(s.lowest_free(), Some(70));
        s.insert(70);
        assert_eq!(s.lowest_free(), Some(200));
        assert_eq!(s.used(), 199);
    }

    #[test]
    fn sparse_gap_between_words() {
        let mut s = AddrSet::new(20, 0, 1 << 20);
        for i in 0..64 {
            s.insert(i);
        }
        s.insert(200);
        assert_eq!(s.lowest_free(), Some(64));
    }
}
