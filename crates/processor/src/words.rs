//! Finding whole words in token sequences, and stop strings.
//!
//! Token-of-interest extraction needs "where does the word `no` appear in this output", where a
//! word may be one token (`▁no`, `Ġno`), several (`▁gir` `affe`), or hide inside a longer word
//! (`snow`, `not`) that must not count. The matcher rebuilds the text from each token's surface
//! bytes (SentencePiece `▁`, byte-level `Ġ`, byte-fallback `<0xNN>` all handled) and maps
//! character matches back to token positions.

use crate::tokenizer::{TextTokenizer, TokenSurface};

/// Whether case matters when matching a word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchCase {
    /// `no` matches `no`, `No` and `NO`.
    Insensitive,
    /// `no` matches `no` only.
    Sensitive,
}

/// One occurrence of a word: the tokens that produce it (inclusive range of positions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WordSpan {
    /// Position of the token that produces the word's first character.
    pub first: usize,
    /// Position of the token that produces the word's last character.
    pub last: usize,
}

impl WordSpan {
    /// Position of the token whose next-token prediction is the word's first token (the hidden
    /// state there "predicts" the word); `None` when the word starts the sequence.
    pub fn predicted_at(&self) -> Option<usize> {
        self.first.checked_sub(1)
    }
}

/// A character of the rebuilt text and the tokens its bytes came from.
struct TracedChar {
    ch: char,
    first_token: usize,
    last_token: usize,
}

/// Rebuilds the text of `ids`, keeping for each character the tokens it came from. A special
/// token or an invalid byte becomes a `\0` boundary (never part of a word).
fn traced_text(tokenizer: &TextTokenizer, ids: &[u32]) -> Vec<TracedChar> {
    let mut out = Vec::new();
    let mut bytes: Vec<u8> = Vec::new();
    let mut byte_token: Vec<usize> = Vec::new();
    let flush = |bytes: &mut Vec<u8>, byte_token: &mut Vec<usize>, out: &mut Vec<TracedChar>| {
        let mut offset = 0;
        for chunk in bytes.utf8_chunks() {
            for (i, ch) in chunk.valid().char_indices() {
                let start = offset + i;
                let end = start + ch.len_utf8() - 1;
                out.push(TracedChar {
                    ch,
                    first_token: byte_token[start],
                    last_token: byte_token[end],
                });
            }
            offset += chunk.valid().len();
            for _ in chunk.invalid() {
                out.push(TracedChar {
                    ch: '\0',
                    first_token: byte_token[offset],
                    last_token: byte_token[offset],
                });
                offset += 1;
            }
        }
        bytes.clear();
        byte_token.clear();
    };
    for (pos, &id) in ids.iter().enumerate() {
        match tokenizer.surface(id) {
            TokenSurface::Text(b) => {
                byte_token.extend(std::iter::repeat_n(pos, b.len()));
                bytes.extend_from_slice(&b);
            }
            TokenSurface::Special => {
                flush(&mut bytes, &mut byte_token, &mut out);
                out.push(TracedChar {
                    ch: '\0',
                    first_token: pos,
                    last_token: pos,
                });
            }
        }
    }
    flush(&mut bytes, &mut byte_token, &mut out);
    out
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
}

fn chars_equal(a: char, b: char, case: MatchCase) -> bool {
    a == b || (case == MatchCase::Insensitive && a.to_lowercase().eq(b.to_lowercase()))
}

/// Every occurrence of `word` as a whole word in the text of `ids` (not inside a longer word:
/// `no` is found in `No, it is not.` once, and never in `snow` or `not`).
pub fn find_word_spans(
    tokenizer: &TextTokenizer,
    ids: &[u32],
    word: &str,
    case: MatchCase,
) -> Vec<WordSpan> {
    let target: Vec<char> = word.trim().chars().collect();
    if target.is_empty() {
        return Vec::new();
    }
    let text = traced_text(tokenizer, ids);
    let n = target.len();
    let mut spans = Vec::new();
    if text.len() < n {
        return spans;
    }
    for start in 0..=text.len() - n {
        let window = &text[start..start + n];
        if !window
            .iter()
            .zip(&target)
            .all(|(t, &w)| chars_equal(t.ch, w, case))
        {
            continue;
        }
        let boundary_before =
            start == 0 || !is_word_char(text[start - 1].ch) || !is_word_char(target[0]);
        let boundary_after = start + n == text.len()
            || !is_word_char(text[start + n].ch)
            || !is_word_char(target[n - 1]);
        if boundary_before && boundary_after {
            spans.push(WordSpan {
                first: window[0].first_token,
                last: window[n - 1].last_token,
            });
        }
    }
    spans
}

/// Stop strings for generation: generation stops once a stop string ends inside the newest
/// token (a token that runs past the stop string, like `Paris.` for `Paris`, also stops it).
#[derive(Debug, Clone)]
pub struct StopStrings<'t> {
    tokenizer: &'t TextTokenizer,
    strings: Vec<String>,
    longest: usize,
}

impl<'t> StopStrings<'t> {
    /// Stop strings to watch for in text produced by `tokenizer`; empty strings are ignored.
    pub fn new<S: AsRef<str>>(tokenizer: &'t TextTokenizer, strings: &[S]) -> Self {
        let strings: Vec<String> = strings
            .iter()
            .map(|s| s.as_ref().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let longest = strings.iter().map(|s| s.len()).max().unwrap_or(0);
        Self {
            tokenizer,
            strings,
            longest,
        }
    }

    /// Whether the generated `ids` (so far) end with a stop string.
    pub fn matches(&self, ids: &[u32]) -> bool {
        let Some((&last, before)) = ids.split_last() else {
            return false;
        };
        if self.strings.is_empty() {
            return false;
        }
        let TokenSurface::Text(last_bytes) = self.tokenizer.surface(last) else {
            // A special token's text is its content (e.g. `<|im_end|>` as a stop string).
            let content = self.tokenizer.id_to_token(last).unwrap_or_default();
            return self.strings.iter().any(|s| content.contains(s.as_str()));
        };
        // Collect just enough earlier bytes for the longest stop string to end in `last`.
        let mut window: Vec<u8> = Vec::new();
        for &id in before.iter().rev() {
            if window.len() >= self.longest {
                break;
            }
            match self.tokenizer.surface(id) {
                TokenSurface::Text(b) => {
                    let mut joined = b;
                    joined.extend_from_slice(&window);
                    window = joined;
                }
                TokenSurface::Special => break,
            }
        }
        let tail_start = window.len();
        window.extend_from_slice(&last_bytes);
        self.strings.iter().any(|s| {
            let s = s.as_bytes();
            window
                .windows(s.len())
                .enumerate()
                .any(|(i, w)| w == s && i + s.len() > tail_start)
        })
    }
}
