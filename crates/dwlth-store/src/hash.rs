//! Content keys: SHA-256 over canonical JSON or raw bytes, shortened to 16 hex digits (64 bits —
//! a collision among a million keys has odds of one in 3·10⁷). And FNV-1a, the small stable
//! hash that seeds and parameter ids are derived from (names, paths), stable across platforms
//! and versions, unlike `std`'s hasher.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// FNV-1a over `bytes` (streamed: large inputs need not be collected first).
pub fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A streaming fingerprint of bytes (weights, images, labels).
#[derive(Debug, Clone, Default)]
pub struct Fingerprint(Sha256);

impl Fingerprint {
    /// An empty fingerprint.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `bytes`.
    pub fn update(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(bytes);
        self
    }

    /// Adds the little-endian bytes of `values`.
    pub fn update_f32(&mut self, values: &[f32]) -> &mut Self {
        for chunk in values.chunks(4096) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            self.0.update(&bytes);
        }
        self
    }

    /// The first 16 hex digits of the digest.
    pub fn finish(self) -> String {
        let digest = self.0.finalize();
        digest[..8].iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The key of a serialisable value: its JSON (objects with sorted keys) fingerprinted.
pub fn key_of(value: &impl Serialize) -> String {
    let json = serde_json::to_value(value)
        .map(|v| canonical(&v))
        .unwrap_or_default();
    let mut f = Fingerprint::new();
    f.update(json.as_bytes());
    f.finish()
}

/// JSON with every object's keys sorted, whatever map type serde_json was built with.
pub(crate) fn canonical(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sha256_prefix_of_a_published_vector() {
        // SHA-256("abc") = ba7816bf 8f01cfea ...
        let mut f = Fingerprint::new();
        f.update(b"abc");
        assert_eq!(f.finish(), "ba7816bf8f01cfea");
    }

    #[test]
    fn fnv1a_published_test_vectors() {
        // From the FNV reference (draft-eastlake-fnv): "" and "a" and "foobar".
        assert_eq!(fnv1a(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(*b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_ignore_field_order_and_see_every_value() {
        assert_eq!(
            key_of(&json!({"a": 1, "b": 2})),
            key_of(&json!({"b": 2, "a": 1}))
        );
        assert_ne!(key_of(&json!({"a": 1})), key_of(&json!({"a": 1.5})));
        assert_ne!(key_of(&json!({"a": [1, 2]})), key_of(&json!({"a": [2, 1]})));
    }
}
