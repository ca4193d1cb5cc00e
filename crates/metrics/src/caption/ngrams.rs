//! n-gram counting shared by BLEU and CIDEr-D: tokens are interned to ids from 1 and an n-gram
//! of up to four tokens is packed into one `u128` (unused slots are 0), so counting hashes
//! integers instead of strings.

use std::collections::HashMap;

pub(crate) const MAX_N: usize = 4;

/// Maps tokens to ids (from 1) for one corpus.
#[derive(Default)]
pub(crate) struct Interner<'a> {
    ids: HashMap<&'a str, u32>,
}

impl<'a> Interner<'a> {
    /// Python's `str.split()` followed by interning.
    pub(crate) fn words(&mut self, sentence: &'a str) -> Vec<u32> {
        crate::text::py_split_whitespace(sentence)
            .map(|w| {
                let next = self.ids.len() as u32 + 1;
                *self.ids.entry(w).or_insert(next)
            })
            .collect()
    }
}

/// Packs `words` (1 to 4 ids) into a key.
pub(crate) fn key(words: &[u32]) -> u128 {
    words
        .iter()
        .fold(0u128, |acc, &w| (acc << 32) | u128::from(w))
}

/// Number of tokens of a packed n-gram.
pub(crate) fn order(key: u128) -> usize {
    (128 - key.leading_zeros() as usize).div_ceil(32)
}

/// Counts of all 1..=4-grams, in first-occurrence order by n then position (the iteration order
/// of the Python `defaultdict` the reference fills), with their counts.
pub(crate) fn count(words: &[u32]) -> Vec<(u128, u32)> {
    let mut index: HashMap<u128, usize> = HashMap::new();
    let mut counts: Vec<(u128, u32)> = Vec::new();
    for n in 1..=MAX_N {
        for window in words.windows(n) {
            let k = key(window);
            match index.get(&k) {
                Some(&i) => counts[i].1 += 1,
                None => {
                    index.insert(k, counts.len());
                    counts.push((k, 1));
                }
            }
        }
    }
    counts
}
