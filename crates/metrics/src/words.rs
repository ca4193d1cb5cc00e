//! Word classes of xl-vlms (`src/datasets/constants.py::WORDS`) for steering targets and caption
//! word rates, shipped as data files (`data/words/*.txt`, one word or phrase a line, duplicates of
//! the original `places` list removed), and whole-word matching.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// A class of words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordClass {
    Colors,
    Places,
    Sentiments,
    PositiveSentiments,
    NegativeSentiments,
}

impl WordClass {
    pub const ALL: [WordClass; 5] = [
        WordClass::Colors,
        WordClass::Places,
        WordClass::Sentiments,
        WordClass::PositiveSentiments,
        WordClass::NegativeSentiments,
    ];

    /// The class name used in experiment files (`colors`, `places`, ...).
    pub fn name(self) -> &'static str {
        match self {
            WordClass::Colors => "colors",
            WordClass::Places => "places",
            WordClass::Sentiments => "sentiments",
            WordClass::PositiveSentiments => "positive_sentiments",
            WordClass::NegativeSentiments => "negative_sentiments",
        }
    }

    /// Parses a class name.
    pub fn from_name(name: &str) -> Option<WordClass> {
        WordClass::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The words and phrases of the class, lower case.
    pub fn words(self) -> &'static [String] {
        static LISTS: [OnceLock<Vec<String>>; 5] = [const { OnceLock::new() }; 5];
        let (index, text) = match self {
            WordClass::Colors => (0, include_str!("../data/words/colors.txt")),
            WordClass::Places => (1, include_str!("../data/words/places.txt")),
            WordClass::Sentiments => (2, include_str!("../data/words/sentiments.txt")),
            WordClass::PositiveSentiments => {
                (3, include_str!("../data/words/positive_sentiments.txt"))
            }
            WordClass::NegativeSentiments => {
                (4, include_str!("../data/words/negative_sentiments.txt"))
            }
        };
        LISTS[index].get_or_init(|| {
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }
}

/// Lower-cased words of `text`: runs of letters and digits (apostrophes separate words too, so
/// `dog's` holds the word `dog`, and a phrase such as `don't` matches itself).
pub fn words_of(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `phrase` (one or more words) occurs as whole consecutive words in `words`: `no` does
/// not match `none`, `snow` or `not`, and `red` does not match `covered`.
pub fn contains_phrase(words: &[String], phrase: &str) -> bool {
    let needle = words_of(phrase);
    !needle.is_empty() && words.windows(needle.len()).any(|w| w == needle.as_slice())
}

/// Whether any of `phrases` occurs in `words`.
pub fn contains_any(words: &[String], phrases: &[String]) -> bool {
    phrases.iter().any(|p| contains_phrase(words, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_have_the_seed_sizes() {
        let sizes: Vec<usize> = WordClass::ALL.iter().map(|c| c.words().len()).collect();
        assert_eq!(sizes, [30, 48, 145, 53, 52]);
    }

    #[test]
    fn whole_word_matching() {
        let w = words_of("Snow covered the bus stop; none, not one. The dog's toy isn't red-ish");
        assert!(!contains_phrase(&w, "no"));
        assert!(!contains_phrase(&w, "covered red"));
        assert!(contains_phrase(&w, "bus stop"));
        assert!(contains_phrase(&w, "NOT"));
        assert!(contains_phrase(&w, "dog"));
        assert!(contains_phrase(&w, "isn't"));
        assert!(contains_phrase(&w, "red"));
    }
}
