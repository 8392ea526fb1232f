//! The addresses of one shard: a bitmap of used offsets, dense for small shards and sparse (only
//! non-empty words) for large ones, so a /64 shard costs memory in proportion to its leases.
//!
//! Finding the lowest free offset: a dense bitmap keeps a summary bitmap of its full words (one bit
//! a word), so it scans at most 16 summary words; a sparse one keeps the runs of full words in an
//! interval map, so the first non-full word is one lookup away however many words are full.

use std::collections::BTreeMap;

/// Shards up to this order keep a dense bitmap (2^16 addresses = 8 KiB).
const DENSE_MAX_ORDER: u8 = 16;

#[derive(Clone, Debug)]
enum Words {
    /// The words, and a summary with bit `w` set when word `w` is full.
    Dense { words: Vec<u64>, summary: Vec<u64> },
    /// Non-zero words, and the maximal runs of full words (start -> end, exclusive).
    Sparse {
        words: BTreeMap<u64, u64>,
        full: BTreeMap<u64, u64>,
    },
}

/// The end of the run of full words that contains `w`, if any.
fn run_end(full: &BTreeMap<u64, u64>, w: u64) -> Option<u64> {
    full.range(..=w)
        .next_back()
        .and_then(|(_, &end)| (w < end).then_some(end))
}

fn run_insert(full: &mut BTreeMap<u64, u64>, w: u64) {
    let mut start = w;
    let mut end = w + 1;
    if let Some((&a, &b)) = full.range(..w).next_back() {
        if b == w {
            start = a;
        }
    }
    if let Some(b) = full.remove(&(w + 1)) {
        end = b;
    }
    full.insert(start, end);
}

fn run_remove(full: &mut BTreeMap<u64, u64>, w: u64) {
    let Some((&a, &b)) = full.range(..=w).next_back() else {
        return;
    };
    if w >= b {
        return;
    }
    full.remove(&a);
    if a < w {
        full.insert(a, w);
    }
    if w + 1 < b {
        full.insert(w + 1, b);
    }
}

/// Used offsets of a shard, allocatable in `[lo, hi)`.
#[derive(Clone, Debug)]
pub struct AddrSet {
    words: Words,
    lo: u64,
    hi: u64,
    used: u64,
}

impl AddrSet {
    /// An empty set for a shard of `2^order` addresses (order <= 64) that hands out `[lo, hi)`.
    pub fn new(order: u8, lo: u64, hi: u64) -> Self {
        assert!(order <= 64, "shards above 2^64 addresses are not supported");
        let words = if order <= DENSE_MAX_ORDER {
            let n = (1usize << order).div_ceil(64);
            Words::Dense {
                words: vec![0; n],
                summary: vec![0; n.div_ceil(64)],
            }
        } else {
            Words::Sparse {
                words: BTreeMap::new(),
                full: BTreeMap::new(),
            }
        };
        AddrSet {
            words,
            lo,
            hi,
            used: 0,
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

    /// Whether `off` can be handed out (lies in `[lo, hi)`: not a reserved address of the shard).
    pub fn allocatable(&self, off: u64) -> bool {
        off >= self.lo && off < self.hi
    }

    /// Whether every allocatable offset is used.
    pub fn is_full(&self) -> bool {
        self.used >= self.capacity()
    }

    fn raw(&self, w: u64) -> u64 {
        match &self.words {
            Words::Dense { words, .. } => words[w as usize],
            Words::Sparse { words, .. } => words.get(&w).copied().unwrap_or(0),
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
        let outside = self.outside(w);
        match &mut self.words {
            Words::Dense { words, summary } => {
                let word = &mut words[w as usize];
                if *word & bit != 0 {
                    return false;
                }
                *word |= bit;
                if *word | outside == !0 {
                    summary[(w / 64) as usize] |= 1u64 << (w % 64);
                }
            }
            Words::Sparse { words, full } => {
                let word = words.entry(w).or_insert(0);
                if *word & bit != 0 {
                    return false;
                }
                *word |= bit;
                if *word | outside == !0 {
                    run_insert(full, w);
                }
            }
        }
        self.used += 1;
        true
    }

    /// Marks `off` free; returns false if it already was.
    pub fn remove(&mut self, off: u64) -> bool {
        let (w, bit) = (off / 64, 1u64 << (off % 64));
        let outside = self.outside(w);
        let present = match &mut self.words {
            Words::Dense { words, summary } => {
                let word = &mut words[w as usize];
                let had = *word & bit != 0;
                *word &= !bit;
                if had {
                    summary[(w / 64) as usize] &= !(1u64 << (w % 64));
                }
                had
            }
            Words::Sparse { words, full } => match words.get_mut(&w) {
                Some(word) if *word & bit != 0 => {
                    if *word | outside == !0 {
                        run_remove(full, w);
                    }
                    *word &= !bit;
                    if *word == 0 {
                        words.remove(&w);
                    }
                    true
                }
                _ => false,
            },
        };
        if present {
            self.used -= 1;
        }
        present
    }

    /// The first free offset at or after `lo + hint % (hi - lo)`, wrapping around to the lowest
    /// one: where allocators sharing a store start to look, so that they rarely pick the same
    /// address (hint 0 = [`AddrSet::lowest_free`]). Shards over 2^16 addresses ignore the hint.
    pub fn free_from_hint(&self, hint: u64) -> Option<u64> {
        let span = self.hi.saturating_sub(self.lo);
        let Words::Dense { words, .. } = &self.words else {
            return self.lowest_free();
        };
        if hint == 0 || span == 0 {
            return self.lowest_free();
        }
        let start = self.lo + hint % span;
        let last_word = (self.hi - 1) / 64;
        for w in start / 64..=last_word {
            let mut eff = words[w as usize] | self.outside(w);
            if w == start / 64 {
                let below = start - w * 64;
                eff |= if below == 0 { 0 } else { (1u64 << below) - 1 };
            }
            if eff != !0 {
                return Some(w * 64 + u64::from(eff.trailing_ones())).filter(|&o| o < self.hi);
            }
        }
        self.lowest_free()
    }

    /// The lowest free offset in `[lo, hi)`.
    pub fn lowest_free(&self) -> Option<u64> {
        let first_free = |w: u64, raw: u64| -> Option<u64> {
            let eff = raw | self.outside(w);
            (eff != !0).then(|| w * 64 + eff.trailing_ones() as u64)
        };
        let last_word = (self.hi - 1) / 64;
        match &self.words {
            Words::Dense { words, summary } => {
                let start = self.lo / 64;
                let mut w = None;
                for (i, &sum) in summary.iter().enumerate().skip((start / 64) as usize) {
                    let base = i as u64 * 64;
                    let below = if base < start {
                        (1u64 << (start - base)) - 1
                    } else {
                        0
                    };
                    let bits = sum | below;
                    if bits != !0 {
                        w = Some(base + u64::from(bits.trailing_ones()));
                        break;
                    }
                }
                let w = w.filter(|&w| w <= last_word)?;
                first_free(w, words[w as usize])
            }
            Words::Sparse { words, full } => {
                let start = self.lo / 64;
                let w = run_end(full, start).unwrap_or(start);
                if w > last_word {
                    return None;
                }
                first_free(w, words.get(&w).copied().unwrap_or(0))
            }
        }
        .filter(|&off| off < self.hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hint_starts_the_search_and_wraps() {
        let mut s = AddrSet::new(6, 2, 63);
        // Offset 2 + 40 % 61 = 42 first, then upwards, then around from the lowest.
        assert_eq!(s.free_from_hint(40), Some(42));
        assert!(s.insert(42));
        assert_eq!(s.free_from_hint(40), Some(43));
        for o in 43..63 {
            assert!(s.insert(o));
        }
        assert_eq!(s.free_from_hint(40), Some(2), "wraps to the lowest");
        assert_eq!(s.free_from_hint(0), s.lowest_free());
        for o in 2..42 {
            assert!(s.insert(o));
        }
        assert_eq!(s.free_from_hint(40), None);
    }

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

    /// The sparse and dense forms agree with a plain set on random insert/remove sequences.
    #[test]
    fn sparse_and_dense_agree_with_a_model() {
        let mut state = 0x9e3779b97f4a7c15u64;
        let mut rnd = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for (order, lo, hi) in [(12u8, 3u64, 4090u64), (20, 5, 4000), (64, 1, 5000)] {
            let mut s = AddrSet::new(order, lo, hi);
            let mut model = std::collections::BTreeSet::new();
            for _ in 0..4_000 {
                if rnd() % 3 == 0 && !model.is_empty() {
                    let k = *model.iter().nth((rnd() as usize) % model.len()).unwrap();
                    assert!(s.remove(k));
                    model.remove(&k);
                } else if let Some(off) = s.lowest_free() {
                    let expect = (lo..hi).find(|o| !model.contains(o));
                    assert_eq!(Some(off), expect, "order {order}");
                    assert!(s.insert(off));
                    model.insert(off);
                }
                assert_eq!(s.used(), model.len() as u64);
            }
        }
    }
}
