//! The word filter of concept text grounding (xl-vlms `valid_word`, §6.1 of its inventory): a
//! decoded token is kept when it is an English word of more than two letters that is not a stop
//! word, or a number. Both lists ship with the crate (`data/words/README.md` gives their origin)
//! and are loaded once into hash sets (xl-vlms scanned a 236k-entry Python list per token).

use std::collections::HashSet;
use std::io::Read;
use std::sync::OnceLock;

use flate2::read::GzDecoder;

/// Lower-cased English words (Webster's Second International, the list NLTK's `words` holds).
pub fn english_words() -> &'static HashSet<String> {
    static WORDS: OnceLock<HashSet<String>> = OnceLock::new();
    WORDS.get_or_init(|| {
        let mut text = String::new();
        GzDecoder::new(&include_bytes!("../data/words/english_web2.txt.gz")[..])
            .read_to_string(&mut text)
            .expect("the shipped English word list is valid gzip'd UTF-8");
        lines(&text)
    })
}

/// Lower-cased English stop words.
pub fn stop_words() -> &'static HashSet<String> {
    static WORDS: OnceLock<HashSet<String>> = OnceLock::new();
    WORDS.get_or_init(|| lines(include_str!("../data/words/stopwords_en.txt")))
}

fn lines(text: &str) -> HashSet<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `word` (already lower-cased and trimmed) is kept as a grounding word: an English word
/// longer than two characters and not a stop word, or a finite number (`3`, `2.5`).
pub fn is_grounding_word(word: &str) -> bool {
    let is_number = word.parse::<f64>().is_ok_and(f64::is_finite);
    is_number
        || (word.chars().count() > 2
            && english_words().contains(word)
            && !stop_words().contains(word))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_load_with_their_sizes() {
        assert_eq!(english_words().len(), 234_450);
        assert_eq!(stop_words().len(), 1_333);
    }

    #[test]
    fn filter_keeps_content_words_and_numbers() {
        // `nan` (a word of the list) is kept as a word, not as a number
        for w in ["red", "circle", "dog", "3", "2.5", "triangle", "nan"] {
            assert!(is_grounding_word(w), "{w}");
        }
        // stop words, too short, not English, not finite, not lower-cased
        for w in ["the", "about", "ox", "qzxv", "inf", "Red", "", " dog"] {
            assert!(!is_grounding_word(w), "{w:?}");
        }
    }
}
