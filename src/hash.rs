//! FNV-1a, the one stable 64-bit hash the crate uses: names of runs and models, fingerprints of
//! weights and images, seeds derived from names. Stable across platforms and versions, unlike
//! `std`'s hasher.

/// FNV-1a over `bytes` (streamed: large inputs need not be collected first).
pub(crate) fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// FNV-1a over the little-endian bytes of `values`.
pub(crate) fn fnv1a_f32<'a>(values: impl IntoIterator<Item = &'a f32>) -> u64 {
    fnv1a(values.into_iter().flat_map(|v| v.to_le_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_test_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "" and "a" and "foobar".
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
        assert_eq!(fnv1a_f32(&[1.0f32]), fnv1a(1.0f32.to_le_bytes()));
    }
}
