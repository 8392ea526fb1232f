//! Prefix arithmetic on `u128` for both address families, and the minimal CIDR cover.
//!
//! An IPv4 address is the low 32 bits of a `u128`. A block is an aligned power-of-two range given
//! by its base and its *order* (log2 of its size in addresses): a `/26` in IPv4 has order 6.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::error::CoreError;

/// Address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// Address width in bits.
    pub fn bits(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    /// The family of a prefix.
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }
}

/// An aligned block of `2^order` addresses starting at `base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Block {
    pub base: u128,
    pub order: u8,
}

impl Block {
    /// Number of addresses (saturating at `u128::MAX` for order 128).
    pub fn size(self) -> u128 {
        size_of_order(self.order)
    }

    /// Last address of the block.
    pub fn last(self) -> u128 {
        self.base + (self.size() - 1)
    }

    /// Whether `other` lies inside this block.
    pub fn contains(self, other: Block) -> bool {
        other.order <= self.order && other.base >= self.base && other.last() <= self.last()
    }

    /// Whether an address lies inside this block.
    pub fn contains_addr(self, addr: u128) -> bool {
        addr >= self.base && addr <= self.last()
    }

    /// Whether the two blocks share an address.
    pub fn overlaps(self, other: Block) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }

    /// The block of the given family as a prefix.
    pub fn to_net(self, family: Family) -> IpNet {
        to_net(family, self.base, family.bits() - self.order)
    }
}

/// `2^order`, saturating for order 128.
pub fn size_of_order(order: u8) -> u128 {
    if order >= 128 {
        u128::MAX
    } else {
        1u128 << order
    }
}

/// An address as a `u128`.
pub fn addr_to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

/// A `u128` as an address of the family.
pub fn u128_to_addr(family: Family, v: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(v as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(v)),
    }
}

/// A prefix from its family, base and length.
pub fn to_net(family: Family, base: u128, len: u8) -> IpNet {
    match family {
        Family::V4 => IpNet::V4(
            Ipv4Net::new(Ipv4Addr::from(base as u32), len).expect("prefix length within 0..=32"),
        ),
        Family::V6 => IpNet::V6(
            Ipv6Net::new(Ipv6Addr::from(base), len).expect("prefix length within 0..=128"),
        ),
    }
}

/// The block a prefix covers. Host bits are ignored; see [`require_network`].
pub fn block_of(net: &IpNet) -> Block {
    let family = Family::of(net);
    Block {
        base: addr_to_u128(net.network()),
        order: family.bits() - net.prefix_len(),
    }
}

/// Rejects a prefix with host bits set, naming the network it should have been.
pub fn require_network(net: &IpNet) -> Result<(), CoreError> {
    if net.addr() != net.network() {
        return Err(CoreError::HostBitsSet {
            given: *net,
            network: net.trunc(),
        });
    }
    Ok(())
}

/// The minimal CIDR cover of a set of disjoint aligned blocks: the fewest prefixes whose union is
/// exactly the union of the blocks (buddies merge into their parent, repeatedly).
pub fn min_cover(family: Family, blocks: impl IntoIterator<Item = Block>) -> Vec<IpNet> {
    let mut sorted: Vec<Block> = blocks.into_iter().collect();
    sorted.sort_unstable();
    let mut stack: Vec<Block> = Vec::with_capacity(sorted.len());
    for b in sorted {
        stack.push(b);
        while stack.len() >= 2 {
            let hi = stack[stack.len() - 1];
            let lo = stack[stack.len() - 2];
            let mergeable = lo.order == hi.order
                && lo.order < family.bits()
                && lo.base.is_multiple_of(size_of_order(lo.order + 1))
                && hi.base == lo.base + lo.size();
            if !mergeable {
                break;
            }
            stack.pop();
            let top = stack.len() - 1;
            stack[top] = Block {
                base: lo.base,
                order: lo.order + 1,
            };
        }
    }
    stack.into_iter().map(|b| b.to_net(family)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(v: &[&str]) -> Vec<IpNet> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn cover_merges_buddies_recursively() {
        let blocks = nets(&[
            "10.0.0.64/26",
            "10.0.0.0/26",
            "10.0.0.128/25",
            "10.0.1.0/26",
        ]);
        let got = min_cover(Family::V4, blocks.iter().map(block_of));
        assert_eq!(got, nets(&["10.0.0.0/24", "10.0.1.0/26"]));
    }

    #[test]
    fn cover_does_not_merge_unaligned_neighbours() {
        let blocks = nets(&["10.0.0.64/26", "10.0.0.128/26"]);
        let got = min_cover(Family::V4, blocks.iter().map(block_of));
        assert_eq!(got, blocks);
    }

    #[test]
    fn cover_merges_blocks_of_mixed_sizes() {
        // A /27 and two /28 buddies: one /26, in any order.
        for order in [
            ["10.0.0.0/27", "10.0.0.32/28", "10.0.0.48/28"],
            ["10.0.0.48/28", "10.0.0.0/27", "10.0.0.32/28"],
        ] {
            let got = min_cover(Family::V4, nets(&order).iter().map(block_of));
            assert_eq!(got, nets(&["10.0.0.0/26"]));
        }
        // Two /28 buddies, then a /27: the /28s merge first.
        let blocks = nets(&[
            "10.0.0.0/28",
            "10.0.0.16/28",
            "10.0.0.32/27",
            "10.0.0.64/27",
        ]);
        let got = min_cover(Family::V4, blocks.iter().map(block_of));
        assert_eq!(got, nets(&["10.0.0.0/26", "10.0.0.64/27"]));
        // A /28 and a /27 that are neighbours but not buddies stay apart.
        let blocks = nets(&["10.0.0.16/28", "10.0.0.32/27"]);
        let got = min_cover(Family::V4, blocks.iter().map(block_of));
        assert_eq!(got, blocks);
    }

    #[test]
    fn cover_v6() {
        let blocks = nets(&["fd00::/64", "fd00:0:0:1::/64", "fd00:0:0:3::/64"]);
        let got = min_cover(Family::V6, blocks.iter().map(block_of));
        assert_eq!(got, nets(&["fd00::/63", "fd00:0:0:3::/64"]));
    }

    #[test]
    fn host_bits_are_named() {
        let err = require_network(&"10.0.0.1/8".parse().unwrap()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "prefix 10.0.0.1/8 has host bits set (the network is 10.0.0.0/8)"
        );
    }
}
