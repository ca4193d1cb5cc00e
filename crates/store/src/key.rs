//! Artifact keys: the 64-hex-digit blake3 digest the DAG computes from a stage's kind, parameters,
//! inputs and fingerprints.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Length of a key in hex digits (a 256-bit blake3 digest).
pub const KEY_HEX_LEN: usize = 64;
/// Length of the abbreviated key shown to people.
pub const KEY_SHORT_LEN: usize = 12;

/// 64 lowercase hex characters. Validated on construction and on deserialisation, so a `Key`
/// can be used as a path component safely.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Key(String);

impl Key {
    pub fn new(hex: impl Into<String>) -> Result<Key> {
        let hex = hex.into();
        if hex.len() != KEY_HEX_LEN {
            return Err(StoreError::InvalidKey {
                value: hex,
                reason: "expected 64 hex digits",
            });
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(StoreError::InvalidKey {
                value: hex,
                reason: "expected only lowercase hex digits 0-9a-f",
            });
        }
        Ok(Key(hex))
    }

    /// The key of a blake3 digest.
    pub fn from_hash(hash: &blake3::Hash) -> Key {
        Key(hash.to_hex().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, for display.
    pub fn short(&self) -> &str {
        &self.0[..KEY_SHORT_LEN]
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Key {
    type Error = StoreError;
    fn try_from(value: String) -> Result<Key> {
        Key::new(value)
    }
}

impl From<Key> for String {
    fn from(key: Key) -> String {
        key.0
    }
}

impl std::str::FromStr for Key {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Key> {
        Key::new(s)
    }
}
