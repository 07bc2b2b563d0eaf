//! A specified hash (64-bit FNV-1a) for everything where a hash picks a shard or a bucket.
//!
//! `std`'s `DefaultHasher` is unspecified across Rust releases, so a shard chosen with it
//! could differ after a toolchain update and a simulation seed replay differently. FNV-1a is
//! fixed by its definition. Not for anything an attacker could aim at to degrade a map (the
//! keys hashed here are session ids into a fixed number of shards, and rate-limit clients).

use std::hash::{BuildHasherDefault, Hasher};

const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// 64-bit FNV-1a.
#[derive(Debug, Clone, Copy)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Self(OFFSET)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// For hash maps whose bucket order must not depend on the process or the toolchain.
pub(crate) type FixedState = BuildHasherDefault<Fnv1a>;

/// The hash of `value` (through its `Hash`), the same in every process and release.
pub(crate) fn of<T: std::hash::Hash + ?Sized>(value: &T) -> u64 {
    let mut h = Fnv1a::default();
    value.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_definition() {
        let mut h = Fnv1a::default();
        h.write(b"");
        assert_eq!(h.finish(), 0xcbf2_9ce4_8422_2325);
        let mut h = Fnv1a::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
        let mut h = Fnv1a::default();
        h.write(b"foobar");
        assert_eq!(h.finish(), 0x8594_4171_f739_67e8);
    }
}
