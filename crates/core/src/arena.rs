//! A buddy allocator over one aligned block: free space is a set of free blocks per order, so the
//! cost of every operation grows with the number of orders and allocations, never with the size of
//! the space (a /32 IPv6 pool of /64 shards is never enumerated).

use std::collections::BTreeSet;

use crate::prefix::{size_of_order, Block};

/// Free space of one aligned block, handed out in aligned sub-blocks of order >= `min_order`.
#[derive(Clone, Debug)]
pub struct Arena {
    base: u128,
    order: u8,
    min_order: u8,
    /// `free[o - min_order]` = bases of the free blocks of order `o`.
    free: Vec<BTreeSet<u128>>,
}

impl Arena {
    /// An arena whose whole block is free.
    pub fn new(block: Block, min_order: u8) -> Self {
        assert!(min_order <= block.order, "min order above the arena order");
        let mut free = vec![BTreeSet::new(); (block.order - min_order + 1) as usize];
        free[(block.order - min_order) as usize].insert(block.base);
        Arena {
            base: block.base,
            order: block.order,
            min_order,
            free,
        }
    }

    /// The block this arena covers.
    pub fn block(&self) -> Block {
        Block {
            base: self.base,
            order: self.order,
        }
    }

    /// The smallest order handed out.
    pub fn min_order(&self) -> u8 {
        self.min_order
    }

    fn level(&mut self, order: u8) -> &mut BTreeSet<u128> {
        &mut self.free[(order - self.min_order) as usize]
    }

    fn take(&mut self, from_order: u8, base: u128, order: u8) -> u128 {
        self.level(from_order).remove(&base);
        let mut o = from_order;
        while o > order {
            o -= 1;
            let upper = base + size_of_order(o);
            self.level(o).insert(upper);
        }
        base
    }

    /// Best fit, lowest buddy first: the lowest block of the smallest free order that fits, split
    /// down to `order` (the lower half is kept each time).
    pub fn alloc_best_fit(&mut self, order: u8) -> Option<u128> {
        if order < self.min_order || order > self.order {
            return None;
        }
        let (o, base) = (order..=self.order).find_map(|o| {
            self.free[(o - self.min_order) as usize]
                .first()
                .map(|&b| (o, b))
        })?;
        Some(self.take(o, base, order))
    }

    /// Largest fit: the start of the lowest block of the largest free order, leaving the most room
    /// around the new block to grow by claiming its buddies (used to place home blocks).
    pub fn alloc_largest(&mut self, order: u8) -> Option<u128> {
        if order < self.min_order || order > self.order {
            return None;
        }
        let (o, base) = (order..=self.order).rev().find_map(|o| {
            self.free[(o - self.min_order) as usize]
                .first()
                .map(|&b| (o, b))
        })?;
        Some(self.take(o, base, order))
    }

    /// Claims exactly `block`, which must be entirely free; returns whether it was.
    pub fn claim_exact(&mut self, block: Block) -> bool {
        if block.order < self.min_order || !self.block().contains(block) {
            return false;
        }
        for o in block.order..=self.order {
            let container = block.base & !(size_of_order(o) - 1);
            if self.free[(o - self.min_order) as usize].remove(&container) {
                let mut cur = container;
                let mut co = o;
                while co > block.order {
                    co -= 1;
                    let upper = cur + size_of_order(co);
                    if block.base >= upper {
                        self.level(co).insert(cur);
                        cur = upper;
                    } else {
                        self.level(co).insert(upper);
                    }
                }
                return true;
            }
        }
        false
    }

    /// Whether `block` is entirely free.
    pub fn is_free(&self, block: Block) -> bool {
        if block.order < self.min_order || !self.block().contains(block) {
            return false;
        }
        (block.order..=self.order).any(|o| {
            let container = block.base & !(size_of_order(o) - 1);
            self.free[(o - self.min_order) as usize].contains(&container)
        })
    }

    /// Returns an allocated block; it coalesces with its free buddies.
    pub fn free(&mut self, block: Block) {
        debug_assert!(self.block().contains(block));
        let (mut base, mut o) = (block.base, block.order);
        while o < self.order {
            let buddy = base ^ size_of_order(o);
            if self.level(o).remove(&buddy) {
                base = base.min(buddy);
                o += 1;
            } else {
                break;
            }
        }
        let inserted = self.level(o).insert(base);
        debug_assert!(inserted, "double free of {base:#x}/{o}");
    }

    /// Whether nothing is allocated.
    pub fn is_empty(&self) -> bool {
        self.free[(self.order - self.min_order) as usize].contains(&self.base)
    }

    /// Doubles the arena by absorbing its buddy, which the caller has claimed from the container.
    pub fn grow(&mut self) {
        let buddy = Block {
            base: self.base ^ size_of_order(self.order),
            order: self.order,
        };
        self.base = self.base.min(buddy.base);
        self.order += 1;
        self.free.push(BTreeSet::new());
        self.free(buddy);
    }

    /// Halves the arena when one half is entirely free and the arena is above `floor`; returns the
    /// freed half for the caller to give back to the container.
    pub fn halve(&mut self, floor: u8) -> Option<Block> {
        if self.order <= floor || self.order <= self.min_order {
            return None;
        }
        let half = self.order - 1;
        let lower = Block {
            base: self.base,
            order: half,
        };
        let upper = Block {
            base: self.base + size_of_order(half),
            order: half,
        };
        if self.is_empty() {
            self.take(self.order, self.base, half);
        }
        let (freed, kept) = if self.level(half).contains(&upper.base) {
            (upper, lower)
        } else if self.level(half).contains(&lower.base) {
            (lower, upper)
        } else {
            return None;
        };
        self.level(half).remove(&freed.base);
        self.free.pop();
        self.base = kept.base;
        self.order = half;
        Some(freed)
    }

    /// Free addresses (saturating).
    pub fn free_addresses(&self) -> u128 {
        self.free.iter().enumerate().fold(0u128, |acc, (i, set)| {
            acc.saturating_add(
                size_of_order(self.min_order + i as u8).saturating_mul(set.len() as u128),
            )
        })
    }

    /// The free blocks, lowest first (for invariant checks and diagnostics).
    pub fn free_blocks(&self) -> Vec<Block> {
        let mut v: Vec<Block> = self
            .free
            .iter()
            .enumerate()
            .flat_map(|(i, set)| {
                set.iter().map(move |&base| Block {
                    base,
                    order: self.min_order + i as u8,
                })
            })
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blk(base: u128, order: u8) -> Block {
        Block { base, order }
    }

    #[test]
    fn best_fit_takes_lowest_and_coalesces_back() {
        let mut a = Arena::new(blk(0, 4), 2);
        assert_eq!(a.alloc_best_fit(2), Some(0));
        assert_eq!(a.alloc_best_fit(2), Some(4));
        assert_eq!(a.alloc_best_fit(3), Some(8));
        assert_eq!(a.alloc_best_fit(2), None);
        a.free(blk(4, 2));
        a.free(blk(0, 2));
        a.free(blk(8, 3));
        assert!(a.is_empty());
    }

    #[test]
    fn best_fit_prefers_small_holes() {
        let mut a = Arena::new(blk(0, 4), 2);
        let x = a.alloc_best_fit(2).unwrap(); // 0
        a.alloc_best_fit(2).unwrap(); // 4
        a.free(blk(x, 2)); // hole at 0, big block at 8
        assert_eq!(a.alloc_best_fit(2), Some(0));
    }

    #[test]
    fn largest_fit_spreads() {
        let mut a = Arena::new(blk(0, 8), 2);
        assert_eq!(a.alloc_largest(4), Some(0));
        assert_eq!(a.alloc_largest(4), Some(128));
        assert_eq!(a.alloc_largest(4), Some(64));
        assert_eq!(a.alloc_largest(4), Some(192));
    }

    #[test]
    fn claim_exact_splits_around() {
        let mut a = Arena::new(blk(0, 4), 2);
        assert!(a.claim_exact(blk(8, 2)));
        assert!(!a.claim_exact(blk(8, 2)));
        assert!(!a.is_free(blk(8, 3)));
        assert!(a.is_free(blk(12, 2)));
        assert!(a.is_free(blk(0, 3)));
        assert_eq!(a.free_addresses(), 12);
        a.free(blk(8, 2));
        assert!(a.is_empty());
    }

    #[test]
    fn grow_and_halve() {
        let mut a = Arena::new(blk(16, 4), 2);
        a.alloc_best_fit(2).unwrap();
        a.grow();
        assert_eq!(a.block(), blk(0, 5));
        assert_eq!(a.free_addresses(), 28);
        assert_eq!(a.halve(4), Some(blk(0, 4)));
        assert_eq!(a.block(), blk(16, 4));
        assert_eq!(a.halve(4), None);
    }

    #[test]
    fn ipv6_scale_is_not_enumerated() {
        // a /32 of /64 shards: 2^32 shards, instant.
        let mut a = Arena::new(blk(0, 96), 64);
        for i in 0..1000u128 {
            assert_eq!(a.alloc_best_fit(64), Some(i << 64));
        }
        assert_eq!(a.free_addresses(), ((1u128 << 32) - 1000) << 64);
        // 1000..1008, 1008..1024, then one block per order 10..=31
        assert_eq!(a.free_blocks().len(), 2 + 22);
    }
}
