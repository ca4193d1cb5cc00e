//! METEOR, as METEOR 1.5 computes it when pycocoevalcap runs it (`-l en -norm`, task `rank`):
//! α = 0.85, β = 0.20, γ = 0.60, δ = 0.75, module weights exact 1.0, stem 0.6, synonym 0.8,
//! paraphrase 0.6. A port of the jar's behaviour, quirks included:
//! * the `-norm` text normalisation (METEOR's port of the Moses tokenizer: symbols split off,
//!   hyphens between letters or digits become spaces, `'s` -> `' s`, `n't` -> `n 't`, acronym
//!   dots removed, sentence-final periods split off) and lower-casing, see [`normalize`];
//! * the matchers, in order: exact matches; Snowball-English stem matches between different
//!   words; words sharing a WordNet synset after the jar's base-form rules ([`Synonyms`]);
//!   phrases of the paraphrase table found in one sentence whose paraphrase occurs in the other
//!   ([`Paraphrases`]);
//! * the aligner: "sure" matches (whose words have no other candidate) fixed first, then the
//!   jar's beam search (width 40) over reference positions ranking partial alignments by matched
//!   words counted as the jar does (integer counts to which a one-word stem or synonym match
//!   adds `(int) 0.6 = 0`, so such a match is only taken when it costs no chunk), then fewer
//!   chunks, then less distance (with the jar's slip of adding a candidate's distance to its
//!   parent alignment, which decides ties);
//! * the score: δ-weighted precision and recall over content and function words (METEOR's
//!   English function-word list), `Fmean = P R / (α P + (1 - α) R)`, fragmentation penalty
//!   `γ (chunks / mean matched words)^β` (0 for a complete single-chunk match), best reference
//!   per image, corpus score from the summed statistics of the best references (a complete
//!   single-chunk match adds no chunk there, as in the jar).
//!
//! The synonym and paraphrase data are large (WordNet 3.7 MB, paraphrase table 61 MB
//! compressed) and are not shipped: [`MeteorResources`] loads them at run time from a METEOR
//! installation such as the one inside pycocoevalcap. Without them, [`meteor`] equals the jar run
//! with `-m "exact stem" -w "1.0 0.6"`, which is about 0.009 below pycocoevalcap's METEOR on
//! captions (see `BENCHMARKS.md`); with both, [`meteor_with`] equals pycocoevalcap's METEOR (both
//! checked to 1e-9 on the goldens).

use std::collections::HashMap;

use rust_stemmers::{Algorithm, Stemmer};

use super::MetricValues;

const ALPHA: f64 = 0.85;
const BETA: f64 = 0.20;
const GAMMA: f64 = 0.60;
const DELTA: f64 = 0.75;
/// Weights of the modules, in matching order: exact, stem, synonym, paraphrase.
const MODULE_WEIGHTS: [f64; MODULES] = [1.0, 0.6, 0.8, 0.6];
const MODULES: usize = 4;
const EXACT: usize = 0;
const STEM: usize = 1;
const SYNONYM: usize = 2;
const PARAPHRASE: usize = 3;

/// METEOR 1.5's English function words (`function/english.words`).
const FUNCTION_WORDS: &[&str] = &[
    "the", ",", ".", "to", "of", "and", "a", "in", "that", "for", "\"", "is", "on", "'s", "it",
    "with", "was", "as", "said", "at", "he", "by", "be", "from", "have", "has", "are", "his",
    "but", "an", "this", "not", "i", "will", "\u{2019}", "they", ")", "-rrb-", "(", "-lrb-", "who",
    "their", "had", "we", "which", "were", "been", "more", "or", "s", "its", "would", "about",
    "new", "one", "after", "you", ":", "also", "up", "when", "there", "than", "$", "all", "out",
    "her", "people", "she", "year", "two", "-", "can", "if", "last", "first", "\u{201C}", "over",
    "other", "\u{201D}", "into", "some", "what", "so", "--", "no", "time", "years", "could", "?",
    "'t", "\u{2014}", "'",
];

/// Sufficient statistics of one (hypothesis, reference) alignment; sums of them score a corpus.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Stats {
    test_len: f64,
    ref_len: f64,
    test_function: f64,
    ref_function: f64,
    /// Matched words per module, content and function, in the hypothesis and the reference.
    test_content: [f64; MODULES],
    test_functional: [f64; MODULES],
    ref_content: [f64; MODULES],
    ref_functional: [f64; MODULES],
    test_matched: f64,
    ref_matched: f64,
    chunks: f64,
}

impl Stats {
    fn add(&mut self, o: &Stats) {
        self.test_len += o.test_len;
        self.ref_len += o.ref_len;
        self.test_function += o.test_function;
        self.ref_function += o.ref_function;
        for m in 0..MODULES {
            self.test_content[m] += o.test_content[m];
            self.test_functional[m] += o.test_functional[m];
            self.ref_content[m] += o.ref_content[m];
            self.ref_functional[m] += o.ref_functional[m];
        }
        self.test_matched += o.test_matched;
        self.ref_matched += o.ref_matched;
        // The jar's corpus aggregation counts no chunk for a complete single-chunk match (the
        // case its segment score gives no fragmentation penalty).
        if !o.is_complete_single_chunk() {
            self.chunks += o.chunks;
        }
    }

    fn is_complete_single_chunk(&self) -> bool {
        self.test_matched == self.test_len && self.ref_matched == self.ref_len && self.chunks == 1.0
    }

    /// `MeteorScorer.computeMetrics`, in its order of operations.
    fn score(&self) -> f64 {
        let test_weighted_len =
            DELTA * (self.test_len - self.test_function) + (1.0 - DELTA) * self.test_function;
        let ref_weighted_len =
            DELTA * (self.ref_len - self.ref_function) + (1.0 - DELTA) * self.ref_function;
        // Content matches of every module first, then function-word matches (the jar's order
        // of summation).
        let weighted = |content: &[f64; MODULES], function: &[f64; MODULES]| {
            let mut sum = 0.0;
            for (c, w) in content.iter().zip(MODULE_WEIGHTS) {
                sum += c * w * DELTA;
            }
            for (f, w) in function.iter().zip(MODULE_WEIGHTS) {
                sum += f * w * (1.0 - DELTA);
            }
            sum
        };
        let test_weighted = weighted(&self.test_content, &self.test_functional);
        let ref_weighted = weighted(&self.ref_content, &self.ref_functional);
        let precision = test_weighted / test_weighted_len;
        let recall = ref_weighted / ref_weighted_len;
        let fmean = 1.0 / ((1.0 - ALPHA) / precision + ALPHA / recall);
        let frag = if self.is_complete_single_chunk() {
            0.0
        } else {
            self.chunks / ((self.test_matched + self.ref_matched) / 2.0)
        };
        let penalty = GAMMA * frag.powf(BETA);
        let score = fmean * (1.0 - penalty);
        if score.is_nan() { 0.0 } else { score.max(0.0) }
    }
}

/// A candidate match: `test_len` hypothesis words from `test` against `ref_len` reference words
/// from `reference` (one word each except for paraphrases), by `module`.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    test: usize,
    test_len: usize,
    reference: usize,
    ref_len: usize,
    module: usize,
}

/// A partial alignment of the beam search (`PartialAlignment` of the jar).
#[derive(Clone)]
struct Partial {
    /// The chosen match per reference position where it starts.
    matches: Vec<Option<Candidate>>,
    test_used: Vec<bool>,
    ref_used: Vec<bool>,
    /// The jar's `matches1` and `matches2`: each adds `(int)(old + words * weight)` per match,
    /// so a one-word stem or synonym match truncates away and only exact words count fully.
    weighted_test: i64,
    weighted_ref: i64,
    chunks: usize,
    distance: usize,
    /// One past the hypothesis position of the last match of the open chunk, if any.
    last_match_end: Option<usize>,
    /// The next reference position this alignment has not consumed.
    next: usize,
}

impl Partial {
    fn is_used(&self, c: &Candidate) -> bool {
        self.ref_used[c.reference..c.reference + c.ref_len]
            .iter()
            .chain(&self.test_used[c.test..c.test + c.test_len])
            .any(|&u| u)
    }

    fn set_used(&mut self, c: &Candidate) {
        self.ref_used[c.reference..c.reference + c.ref_len].fill(true);
        self.test_used[c.test..c.test + c.test_len].fill(true);
    }

    /// Records match `c` (everything but the distance, see [`resolve`]).
    fn take(&mut self, c: Candidate) {
        let w = MODULE_WEIGHTS[c.module];
        self.weighted_test = (self.weighted_test as f64 + c.test_len as f64 * w) as i64;
        self.weighted_ref = (self.weighted_ref as f64 + c.ref_len as f64 * w) as i64;
        if self.last_match_end.is_some_and(|end| end != c.test) {
            self.chunks += 1;
        }
        self.last_match_end = Some(c.test + c.test_len);
        self.next = c.reference + c.ref_len;
        self.matches[c.reference] = Some(c);
    }

    /// Ordering of the jar's `PARTIAL_COMPARE_TOTAL`: more weighted matches, then fewer chunks,
    /// then less distance.
    fn order(a: &Partial, b: &Partial) -> std::cmp::Ordering {
        (b.weighted_test + b.weighted_ref)
            .cmp(&(a.weighted_test + a.weighted_ref))
            .then(a.chunks.cmp(&b.chunks))
            .then(a.distance.cmp(&b.distance))
    }
}

/// Width of the jar's beam search.
const BEAM_SIZE: usize = 40;

/// The jar's `Aligner.resolve`: a beam search over reference positions in which each partial
/// alignment either takes one of the candidate matches starting at the position or skips it;
/// matches whose words have no other candidate ("sure" matches) are fixed beforehand.
///
/// Reproduced quirk: when a partial alignment is extended by a candidate, the jar adds the
/// candidate's distance `|reference - test|` to the *parent* instead of the new alignment, so an
/// extension inherits the distances of the siblings created before it, and the skipping parent
/// carries the sum of all of them. This decides ties between equally good alignments.
fn resolve(candidates: &[Vec<Candidate>], test_len: usize) -> Vec<Option<Candidate>> {
    let ref_len = candidates.len();
    let mut test_coverage = vec![0usize; test_len];
    let mut ref_coverage = vec![0usize; ref_len];
    for c in candidates.iter().flatten() {
        test_coverage[c.test..c.test + c.test_len]
            .iter_mut()
            .for_each(|n| *n += 1);
        ref_coverage[c.reference..c.reference + c.ref_len]
            .iter_mut()
            .for_each(|n| *n += 1);
    }
    let mut initial = Partial {
        matches: vec![None; ref_len],
        test_used: vec![false; test_len],
        ref_used: vec![false; ref_len],
        weighted_test: 0,
        weighted_ref: 0,
        chunks: 0,
        distance: 0,
        last_match_end: None,
        next: 0,
    };
    for cs in candidates {
        if let [c] = cs.as_slice()
            && ref_coverage[c.reference..c.reference + c.ref_len]
                .iter()
                .chain(&test_coverage[c.test..c.test + c.test_len])
                .all(|&n| n == 1)
        {
            initial.matches[c.reference] = Some(*c);
            initial.set_used(c);
        }
    }
    let mut beam = vec![initial];
    // One step per reference position, plus a last one that closes the open chunks.
    #[allow(clippy::needless_range_loop)]
    for j in 0..=ref_len {
        let mut previous = std::mem::take(&mut beam);
        // Stable, as Java's Collections.sort: ties keep their insertion order.
        previous.sort_by(Partial::order);
        for mut p in previous.into_iter().take(BEAM_SIZE) {
            if j == ref_len {
                if p.last_match_end.is_some() {
                    p.chunks += 1;
                }
                beam.push(p);
                continue;
            }
            if p.ref_used[j] {
                if j < p.next {
                    // Inside a multi-word match already taken.
                    beam.push(p);
                } else if let Some(c) = p.matches[p.next] {
                    // A sure match.
                    p.take(c);
                    p.distance += c.reference.abs_diff(c.test);
                    beam.push(p);
                }
                continue;
            }
            for c in &candidates[j] {
                if p.is_used(c) {
                    continue;
                }
                let mut extended = p.clone();
                extended.set_used(c);
                extended.take(*c);
                p.distance += c.reference.abs_diff(c.test);
                beam.push(extended);
            }
            if p.last_match_end.take().is_some() {
                p.chunks += 1;
            }
            p.next += 1;
            beam.push(p);
        }
    }
    beam.sort_by(Partial::order);
    beam.swap_remove(0).matches
}

/// A normalised word with what the matchers compare.
struct Token<'a> {
    word: &'a str,
    stem: String,
    /// WordNet synsets of the word and of its base forms (sorted), when synonyms are on.
    synsets: Vec<u32>,
    /// The word's id in the paraphrase table's vocabulary, when paraphrases are on.
    phrase_id: Option<u32>,
}

fn share_synset(a: &[u32], b: &[u32]) -> bool {
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// Aligns `test` to `reference` and returns the statistics.
fn align(test: &[Token], reference: &[Token], resources: &MeteorResources) -> Stats {
    // The jar runs only the exact module when both sentences are identical.
    let identical =
        test.len() == reference.len() && test.iter().zip(reference).all(|(t, r)| t.word == r.word);
    // Candidates per reference position: each module's matches in turn, each in hypothesis
    // order (the jar's matchers loop over the reference, then over the hypothesis).
    let mut candidates: Vec<Vec<Candidate>> = (0..reference.len())
        .map(|j| {
            let r = &reference[j];
            let matching = |module: usize, keep: &dyn Fn(&Token) -> bool| -> Vec<Candidate> {
                (0..test.len())
                    .filter(|&i| keep(&test[i]))
                    .map(|i| Candidate {
                        test: i,
                        test_len: 1,
                        reference: j,
                        ref_len: 1,
                        module,
                    })
                    .collect()
            };
            let mut c = matching(EXACT, &|t| t.word == r.word);
            if !identical {
                c.extend(matching(STEM, &|t| t.word != r.word && t.stem == r.stem));
                if resources.synonyms.is_some() {
                    c.extend(matching(SYNONYM, &|t| {
                        t.word != r.word && share_synset(&t.synsets, &r.synsets)
                    }));
                }
            }
            c
        })
        .collect();
    if let (Some(table), false) = (&resources.paraphrases, identical) {
        let test_ids: Vec<Option<u32>> = test.iter().map(|t| t.phrase_id).collect();
        let ref_ids: Vec<Option<u32>> = reference.iter().map(|t| t.phrase_id).collect();
        // Reference phrases whose paraphrase occurs in the hypothesis...
        for (j, at_j) in candidates.iter_mut().enumerate() {
            for (len, para) in table.paths(&ref_ids, j) {
                for i in occurrences(&test_ids, para) {
                    at_j.push(Candidate {
                        test: i,
                        test_len: para.len(),
                        reference: j,
                        ref_len: len,
                        module: PARAPHRASE,
                    });
                }
            }
        }
        // ...then hypothesis phrases whose paraphrase occurs in the reference.
        for i in 0..test.len() {
            for (len, para) in table.paths(&test_ids, i) {
                for j in occurrences(&ref_ids, para) {
                    candidates[j].push(Candidate {
                        test: i,
                        test_len: len,
                        reference: j,
                        ref_len: para.len(),
                        module: PARAPHRASE,
                    });
                }
            }
        }
    }
    let alignment = resolve(&candidates, test.len());

    let is_function = |t: &Token| FUNCTION_WORDS.contains(&t.word);
    let mut stats = Stats {
        test_len: test.len() as f64,
        ref_len: reference.len() as f64,
        test_function: test.iter().filter(|t| is_function(t)).count() as f64,
        ref_function: reference.iter().filter(|t| is_function(t)).count() as f64,
        ..Stats::default()
    };
    // getCountAndChunks: chunks end at skipped reference words and at jumps in the hypothesis.
    let mut last_end: Option<usize> = None;
    let mut j = 0;
    while j < alignment.len() {
        let Some(c) = alignment[j] else {
            if last_end.take().is_some() {
                stats.chunks += 1.0;
            }
            j += 1;
            continue;
        };
        stats.test_matched += c.test_len as f64;
        stats.ref_matched += c.ref_len as f64;
        if last_end.is_some_and(|e| e != c.test) {
            stats.chunks += 1.0;
        }
        last_end = Some(c.test + c.test_len);
        for t in &test[c.test..c.test + c.test_len] {
            if is_function(t) {
                stats.test_functional[c.module] += 1.0;
            } else {
                stats.test_content[c.module] += 1.0;
            }
        }
        for r in &reference[c.reference..c.reference + c.ref_len] {
            if is_function(r) {
                stats.ref_functional[c.module] += 1.0;
            } else {
                stats.ref_content[c.module] += 1.0;
            }
        }
        j = c.reference + c.ref_len;
    }
    if last_end.is_some() {
        stats.chunks += 1.0;
    }
    stats
}

/// Tokens as Java's `StringTokenizer` splits them (on space, tab, newline, carriage return and
/// form feed only).
fn java_tokens(line: &str) -> impl Iterator<Item = &str> {
    line.split([' ', '\t', '\n', '\r', '\u{0C}'])
        .filter(|t| !t.is_empty())
}

/// Start positions of `phrase` in `words`.
fn occurrences<'a>(
    words: &'a [Option<u32>],
    phrase: &'a [u32],
) -> impl Iterator<Item = usize> + 'a {
    (0..words.len()).filter(move |&i| {
        i + phrase.len() <= words.len()
            && words[i..i + phrase.len()]
                .iter()
                .zip(phrase)
                .all(|(w, p)| *w == Some(*p))
    })
}

/// Stems words with a per-corpus cache (the Snowball stemmer dominates the cost otherwise) and
/// looks up their synsets and paraphrase-vocabulary ids.
struct TokenMaker<'s> {
    stemmer: Stemmer,
    stems: HashMap<String, String>,
    resources: &'s MeteorResources,
    synsets: HashMap<String, Vec<u32>>,
}

impl TokenMaker<'_> {
    fn tokens<'a>(&mut self, line: &'a str) -> Vec<Token<'a>> {
        line.split(' ')
            .filter(|w| !w.is_empty())
            .map(|word| {
                let stem = match self.stems.get(word) {
                    Some(s) => s.clone(),
                    None => {
                        let s = self.stemmer.stem(word).into_owned();
                        self.stems.insert(word.to_owned(), s.clone());
                        s
                    }
                };
                let synsets = match &self.resources.synonyms {
                    None => Vec::new(),
                    Some(dictionary) => self
                        .synsets
                        .entry(word.to_owned())
                        .or_insert_with(|| dictionary.synsets_with_bases(word))
                        .clone(),
                };
                let phrase_id = self
                    .resources
                    .paraphrases
                    .as_ref()
                    .and_then(|table| table.vocabulary.get(word).copied());
                Token {
                    word,
                    stem,
                    synsets,
                    phrase_id,
                }
            })
            .collect()
    }
}

/// Optional METEOR data, loaded at run time from a METEOR 1.5 installation (for example the
/// one inside pycocoevalcap): with both, scores equal pycocoevalcap's METEOR.
#[derive(Debug, Default)]
pub struct MeteorResources {
    pub synonyms: Option<Synonyms>,
    pub paraphrases: Option<Paraphrases>,
}

impl MeteorResources {
    /// Loads both data sets of a METEOR 1.5 installation: `synonym_dir` holds
    /// `english.synsets` and `english.exceptions` (`unzip meteor-1.5.jar 'synonym/*'`), and
    /// `paraphrase_table` is `data/paraphrase-en.gz` (both ship inside pycocoevalcap's `meteor/`
    /// folder).
    pub fn load(
        synonym_dir: &std::path::Path,
        paraphrase_table: &std::path::Path,
    ) -> crate::Result<MeteorResources> {
        Ok(MeteorResources {
            synonyms: Some(Synonyms::load(synonym_dir)?),
            paraphrases: Some(Paraphrases::load(paraphrase_table)?),
        })
    }
}

/// METEOR (exact and stem modules) of tokenised hypotheses against their references.
pub fn meteor(hyps: &[&str], refs: &[Vec<&str>]) -> MetricValues {
    meteor_with(hyps, refs, &MeteorResources::default())
}

/// METEOR with the exact and stem modules plus the synonym and paraphrase modules whose data
/// `resources` holds.
pub fn meteor_with(hyps: &[&str], refs: &[Vec<&str>], resources: &MeteorResources) -> MetricValues {
    let mut maker = TokenMaker {
        stemmer: Stemmer::create(Algorithm::English),
        stems: HashMap::new(),
        resources,
        synsets: HashMap::new(),
    };
    let mut total = Stats::default();
    let mut per_image = Vec::with_capacity(hyps.len());
    for (hyp, rs) in hyps.iter().zip(refs) {
        let test_line = normalize(hyp);
        let test = maker.tokens(&test_line);
        let mut best: Option<(f64, Stats)> = None;
        for r in rs {
            let ref_line = normalize(r);
            let reference = maker.tokens(&ref_line);
            let stats = align(&test, &reference, resources);
            let score = stats.score();
            if best.as_ref().is_none_or(|(s, _)| score > *s) {
                best = Some((score, stats));
            }
        }
        let (score, stats) = best.expect("callers guarantee at least one reference");
        per_image.push(score);
        total.add(&stats);
    }
    MetricValues {
        corpus: total.score(),
        per_image,
    }
}

/// METEOR 1.5's English paraphrase table (`data/paraphrase-en.gz` next to `meteor-1.5.jar`),
/// loaded at run time: it is not shipped with xlvlm. Entries are three lines: a probability
/// (unused), a phrase, and its paraphrase; phrases are looked up in the first direction only,
/// as the jar's `ParaphraseTransducer` does, and the matcher tries both sentences.
#[derive(Debug, Default)]
pub struct Paraphrases {
    vocabulary: HashMap<String, u32>,
    /// Trie over first phrases: (node, word) -> child node; node 0 is the root.
    transitions: HashMap<(u32, u32), u32>,
    /// Paraphrase indices emitted at a node, in file order.
    emits: HashMap<u32, Vec<u32>>,
    nodes: u32,
    /// Second phrases, concatenated, with their start offsets.
    words: Vec<u32>,
    offsets: Vec<usize>,
}

impl Paraphrases {
    /// Reads a paraphrase table, gzip-compressed when the file name ends in `.gz`.
    pub fn load(path: &std::path::Path) -> crate::Result<Paraphrases> {
        let error = |e: std::io::Error| crate::MetricsError::InvalidInput {
            what: "METEOR paraphrases",
            detail: format!("cannot read {}: {e}", path.display()),
        };
        let file = std::io::BufReader::new(std::fs::File::open(path).map_err(error)?);
        if path.extension().is_some_and(|e| e == "gz") {
            let decoder = flate2::read::GzDecoder::new(file);
            Paraphrases::from_reader(std::io::BufReader::new(decoder)).map_err(error)
        } else {
            Paraphrases::from_reader(file).map_err(error)
        }
    }

    /// Parses the table's text.
    pub fn parse(text: &str) -> Paraphrases {
        Paraphrases::from_reader(text.as_bytes()).expect("reading from memory cannot fail")
    }

    /// Reads the table line by line (the full English table is 272 MB of text).
    pub fn from_reader(mut reader: impl std::io::BufRead) -> std::io::Result<Paraphrases> {
        let mut table = Paraphrases {
            nodes: 1,
            offsets: vec![0],
            ..Paraphrases::default()
        };
        let (mut probability, mut first, mut second) =
            (String::new(), String::new(), String::new());
        let mut next_index = 0u32;
        loop {
            probability.clear();
            if reader.read_line(&mut probability)? == 0 {
                break;
            }
            first.clear();
            second.clear();
            reader.read_line(&mut first)?;
            reader.read_line(&mut second)?;
            let first_ids: Vec<u32> = java_tokens(&first).map(|w| table.word_id(w)).collect();
            let second_ids: Vec<u32> = java_tokens(&second).map(|w| table.word_id(w)).collect();
            let mut node = 0u32;
            for &w in &first_ids {
                node = match table.transitions.get(&(node, w)) {
                    Some(&child) => child,
                    None => {
                        let child = table.nodes;
                        table.nodes += 1;
                        table.transitions.insert((node, w), child);
                        child
                    }
                };
            }
            table.emits.entry(node).or_default().push(next_index);
            next_index += 1;
            table.words.extend_from_slice(&second_ids);
            table.offsets.push(table.words.len());
        }
        Ok(table)
    }

    fn word_id(&mut self, word: &str) -> u32 {
        let next = self.vocabulary.len() as u32;
        *self.vocabulary.entry(word.to_owned()).or_insert(next)
    }

    /// Phrases of the table starting at `start` in `words`: (phrase length, its paraphrase), by
    /// increasing length then in file order (`State.getPaths`).
    fn paths<'a>(&'a self, words: &[Option<u32>], start: usize) -> Vec<(usize, &'a [u32])> {
        let mut found = Vec::new();
        let mut node = 0u32;
        for (k, w) in words[start..].iter().enumerate() {
            let Some(next) = w.and_then(|w| self.transitions.get(&(node, w)).copied()) else {
                break;
            };
            node = next;
            for &index in self.emits.get(&node).map_or(&[][..], Vec::as_slice) {
                let i = index as usize;
                found.push((k + 1, &self.words[self.offsets[i]..self.offsets[i + 1]]));
            }
        }
        found
    }
}

/// METEOR 1.5's English WordNet synonym data (`synonym/english.synsets` and
/// `synonym/english.exceptions` inside `meteor-1.5.jar`, WordNet 3.0 under the WordNet license),
/// loaded at run time: it is not shipped with xlvlm.
#[derive(Debug, Default)]
pub struct Synonyms {
    synsets: HashMap<String, Vec<u32>>,
    /// Irregular forms to their base forms (`geese` -> `goose`).
    bases: HashMap<String, Vec<String>>,
}

/// WordNet's detachment rules as the jar's `SynonymDictionary.morph` applies them (nouns, verbs,
/// adjectives in one list): a suffix and its replacement.
const DETACHMENTS: [(&str, &str); 20] = [
    ("s", ""),
    ("ses", "s"),
    ("xes", "x"),
    ("zes", "z"),
    ("ches", "ch"),
    ("shes", "sh"),
    ("men", "man"),
    ("ies", "y"),
    ("s", ""),
    ("ies", "y"),
    ("es", "e"),
    ("es", ""),
    ("ed", "e"),
    ("ed", ""),
    ("ing", "e"),
    ("ing", ""),
    ("er", ""),
    ("est", ""),
    ("er", "e"),
    ("est", "e"),
];

impl Synonyms {
    /// Reads `english.synsets` and `english.exceptions` from `dir` (for example the `synonym/`
    /// folder of `unzip meteor-1.5.jar 'synonym/*'`).
    pub fn load(dir: &std::path::Path) -> crate::Result<Synonyms> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|e| crate::MetricsError::InvalidInput {
                what: "METEOR synonyms",
                detail: format!("cannot read {}: {e}", path.display()),
            })
        };
        Synonyms::parse(&read("english.synsets")?, &read("english.exceptions")?)
    }

    /// Parses the two files: `synsets` holds a word line then a line of synset numbers, and
    /// `exceptions` a base-form line then a line of its irregular forms.
    pub fn parse(synsets: &str, exceptions: &str) -> crate::Result<Synonyms> {
        let mut dictionary = Synonyms::default();
        let mut lines = synsets.lines();
        let mut line_no = 0;
        while let Some(word) = lines.next() {
            line_no += 2;
            let ids = lines.next().unwrap_or("");
            let mut set = java_tokens(ids)
                .map(|id| {
                    id.parse::<u32>().map_err(|_| crate::MetricsError::InvalidInput {
                        what: "METEOR synonyms",
                        detail: format!(
                            "english.synsets line {line_no}: expected synset numbers, got {id:?}"
                        ),
                    })
                })
                .collect::<crate::Result<Vec<u32>>>()?;
            set.sort_unstable();
            set.dedup();
            // Later entries replace earlier ones, as Hashtable.put does.
            dictionary.synsets.insert(word.to_owned(), set);
        }
        let mut lines = exceptions.lines();
        while let Some(base) = lines.next() {
            for form in java_tokens(lines.next().unwrap_or("")) {
                dictionary
                    .bases
                    .entry(form.to_owned())
                    .or_default()
                    .push(base.to_owned());
            }
        }
        Ok(dictionary)
    }

    fn synsets_of(&self, word: &str) -> &[u32] {
        self.synsets.get(word).map_or(&[], Vec::as_slice)
    }

    /// `getSynSets(word) ∪ getStemSynSets(word)` of the jar, sorted.
    fn synsets_with_bases(&self, word: &str) -> Vec<u32> {
        let mut all = self.synsets_of(word).to_vec();
        match self.bases.get(word) {
            Some(bases) => {
                for b in bases {
                    all.extend_from_slice(self.synsets_of(b));
                }
            }
            None => all.extend_from_slice(self.synsets_of(&self.morph(word))),
        }
        all.sort_unstable();
        all.dedup();
        all
    }

    /// The jar's `morph`: the first detachment giving a word with synsets. (Its `-ful` handling
    /// is reproduced as written: the suffix is appended back to any base found.)
    fn morph(&self, word: &str) -> String {
        let tail = if word.ends_with("ful") { "ful" } else { "" };
        if word.ends_with("ss") || word.encode_utf16().count() <= 2 {
            return word.to_owned();
        }
        for (suffix, replacement) in DETACHMENTS {
            if let Some(stem) = word.strip_suffix(suffix) {
                let candidate = format!("{stem}{replacement}");
                if self.synsets.contains_key(&candidate) {
                    return candidate + tail;
                }
            }
        }
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identical_sentences_score_fmean_without_penalty() {
        let v = meteor(&["a dog runs"], &[vec!["a dog runs"]]);
        assert!((v.per_image[0] - 1.0).abs() < 1e-12);
    }

    #[test]
    fn stems_match_with_lower_weight() {
        let exact = meteor(&["dogs run"], &[vec!["dogs run"]]).per_image[0];
        let stem = meteor(&["dog running"], &[vec!["dogs run"]]).per_image[0];
        assert!(stem > 0.0 && stem < exact);
    }
}

/// Characters of METEOR's `alpha` class (ASCII letters, Latin-1 and Latin Extended-A letters,
/// Cyrillic, phonetic extensions).
fn is_meteor_alpha(c: char) -> bool {
    c.is_ascii_alphabetic()
        || matches!(c, 'Š' | 'Ž' | 'š' | 'ž' | 'Ÿ')
        || ('À'..='Ö').contains(&c)
        || ('Ø'..='ö').contains(&c)
        || ('ø'..='ž').contains(&c)
        || ('\u{0400}'..='\u{04FF}').contains(&c)
        || ('\u{0500}'..='\u{0527}').contains(&c)
        || ('\u{A640}'..='\u{A66E}').contains(&c)
        || ('\u{A67E}'..='\u{A697}').contains(&c)
        || ('\u{1D00}'..='\u{1D7F}').contains(&c)
}

fn is_meteor_alnum(c: char) -> bool {
    c.is_ascii_digit() || is_meteor_alpha(c)
}

/// Java's `\s`.
fn is_java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

/// `Pattern.compile("(a)X(b)").matcher(s).replaceAll(...)` for a one-character `X` between two
/// one-character classes: scans left to right, and a match consumes its right neighbour, which
/// therefore cannot start the next match (Java's semantics for non-overlapping matches).
fn replace_between(
    chars: &[char],
    middle: char,
    left: impl Fn(char) -> bool,
    right: impl Fn(char) -> bool,
    replacement: &str,
) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + 8);
    let mut i = 0;
    while i < chars.len() {
        if i + 2 < chars.len() && left(chars[i]) && chars[i + 1] == middle && right(chars[i + 2]) {
            out.push(chars[i]);
            out.extend(replacement.chars());
            out.push(chars[i + 2]);
            i += 3;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// METEOR 1.5's `-norm` for English (`Normalizer.normalizeLine`), followed by lower-casing;
/// returns tokens separated by single spaces.
pub fn normalize(line: &str) -> String {
    // Separate every symbol other than . ' ` , - and quotes.
    let mut chars: Vec<char> = Vec::with_capacity(line.len() + 8);
    chars.push(' ');
    for c in line.chars() {
        if is_meteor_alnum(c)
            || is_java_space(c)
            || matches!(c, '.' | '\'' | '`' | ',' | '-' | '\u{2018}' | '\u{2019}')
        {
            chars.push(c);
        } else {
            chars.extend([' ', c, ' ']);
        }
    }
    chars.push(' ');
    // Runs of two or more periods become a token of their own.
    let mut dotted = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '.' && chars.get(i + 1) == Some(&'.') {
            dotted.push(' ');
            while i < chars.len() && chars[i] == '.' {
                dotted.push('.');
                i += 1;
            }
        } else {
            dotted.push(chars[i]);
            i += 1;
        }
    }
    let digit = |c: char| c.is_ascii_digit();
    let mut chars = replace_between(&dotted, ',', |c| !digit(c), |c| !digit(c), " , ");
    chars = replace_between(&chars, ',', digit, |c| !digit(c), " , ");
    chars = replace_between(&chars, ',', |c| !digit(c), digit, " , ");
    let mut text: String = chars.into_iter().collect();
    text = text.replace(['`', '\u{2018}', '\u{2019}'], "'");
    text = text
        .replace(['\u{201C}', '\u{201D}'], " \"")
        .replace("''", " \"");
    text = text.replace('\u{2013}', "-").replace("--", "-");
    let chars: Vec<char> = text.chars().collect();
    let chars = replace_between(
        &chars,
        '-',
        |c| is_meteor_alnum(c) || c == '.',
        is_meteor_alnum,
        " ",
    );
    let alpha = is_meteor_alpha;
    let chars = replace_between(&chars, '\'', |c| !alpha(c), |c| !alpha(c), " ' ");
    let chars = replace_between(&chars, '\'', |c| !alpha(c) && !digit(c), alpha, " ' ");
    let chars = replace_between(&chars, '\'', alpha, |c| !alpha(c), " ' ");
    let chars = replace_between(&chars, '\'', alpha, alpha, " '");
    let chars = replace_between(&chars, '\'', digit, |c| c == 's', " '");
    let text: String = chars.into_iter().collect();

    // Periods ending a token: kept before a lower-case word or for known prefixes, removed
    // inside acronyms, split off otherwise.
    let tokens: Vec<&str> = text
        .split(is_java_space)
        .filter(|t| !t.is_empty())
        .collect();
    let mut out = String::with_capacity(text.len());
    for (i, token) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1);
        if token.chars().count() > 1 && token.ends_with('.') {
            let prefix = &token[..token.len() - 1];
            let kind = NONBREAKING_PREFIXES
                .iter()
                .find(|(p, _)| *p == prefix)
                .map(|(_, k)| *k);
            if prefix.contains('.') && prefix.chars().any(is_meteor_alpha) {
                out.push_str(&token.replace('.', ""));
            } else if kind == Some(Prefix::Always)
                // Java's \p{Lower} is ASCII.
                || next.is_some_and(|n| n.starts_with(|c: char| c.is_ascii_lowercase()))
                || (kind == Some(Prefix::BeforeNumber)
                    && next.is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())))
            {
                out.push_str(token);
            } else {
                out.push_str(prefix);
                out.push_str(" .");
            }
        } else {
            out.push_str(token);
        }
        out.push(' ');
    }
    out.split(' ')
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[derive(Clone, Copy, PartialEq)]
enum Prefix {
    Always,
    BeforeNumber,
}

/// METEOR's English non-breaking prefixes (`nonbreaking/english.prefixes`, from Moses): a token
/// `prefix.` keeps its period.
const NONBREAKING_PREFIXES: &[(&str, Prefix)] = &[
    ("A", Prefix::Always),
    ("B", Prefix::Always),
    ("C", Prefix::Always),
    ("D", Prefix::Always),
    ("E", Prefix::Always),
    ("F", Prefix::Always),
    ("G", Prefix::Always),
    ("H", Prefix::Always),
    ("I", Prefix::Always),
    ("J", Prefix::Always),
    ("K", Prefix::Always),
    ("L", Prefix::Always),
    ("M", Prefix::Always),
    ("N", Prefix::Always),
    ("O", Prefix::Always),
    ("P", Prefix::Always),
    ("Q", Prefix::Always),
    ("R", Prefix::Always),
    ("S", Prefix::Always),
    ("T", Prefix::Always),
    ("U", Prefix::Always),
    ("V", Prefix::Always),
    ("W", Prefix::Always),
    ("X", Prefix::Always),
    ("Y", Prefix::Always),
    ("Z", Prefix::Always),
    ("Adj", Prefix::Always),
    ("Adm", Prefix::Always),
    ("Adv", Prefix::Always),
    ("Asst", Prefix::Always),
    ("Bart", Prefix::Always),
    ("Bldg", Prefix::Always),
    ("Brig", Prefix::Always),
    ("Bros", Prefix::Always),
    ("Capt", Prefix::Always),
    ("Cmdr", Prefix::Always),
    ("Col", Prefix::Always),
    ("Comdr", Prefix::Always),
    ("Con", Prefix::Always),
    ("Corp", Prefix::Always),
    ("Cpl", Prefix::Always),
    ("DR", Prefix::Always),
    ("Dr", Prefix::Always),
    ("Drs", Prefix::Always),
    ("Ens", Prefix::Always),
    ("Gen", Prefix::Always),
    ("Gov", Prefix::Always),
    ("Hon", Prefix::Always),
    ("Hr", Prefix::Always),
    ("Hosp", Prefix::Always),
    ("Insp", Prefix::Always),
    ("Lt", Prefix::Always),
    ("MM", Prefix::Always),
    ("MR", Prefix::Always),
    ("MRS", Prefix::Always),
    ("MS", Prefix::Always),
    ("Maj", Prefix::Always),
    ("Messrs", Prefix::Always),
    ("Mlle", Prefix::Always),
    ("Mme", Prefix::Always),
    ("Mr", Prefix::Always),
    ("Mrs", Prefix::Always),
    ("Ms", Prefix::Always),
    ("Msgr", Prefix::Always),
    ("Op", Prefix::Always),
    ("Ord", Prefix::Always),
    ("Pfc", Prefix::Always),
    ("Ph", Prefix::Always),
    ("Prof", Prefix::Always),
    ("Pvt", Prefix::Always),
    ("Rep", Prefix::Always),
    ("Reps", Prefix::Always),
    ("Res", Prefix::Always),
    ("Rev", Prefix::Always),
    ("Rt", Prefix::Always),
    ("Sen", Prefix::Always),
    ("Sens", Prefix::Always),
    ("Sfc", Prefix::Always),
    ("Sgt", Prefix::Always),
    ("Sr", Prefix::Always),
    ("St", Prefix::Always),
    ("Supt", Prefix::Always),
    ("Surg", Prefix::Always),
    ("v", Prefix::Always),
    ("vs", Prefix::Always),
    ("i.e", Prefix::Always),
    ("rev", Prefix::Always),
    ("e.g", Prefix::Always),
    ("No", Prefix::BeforeNumber),
    ("Nos", Prefix::Always),
    ("Art", Prefix::BeforeNumber),
    ("Nr", Prefix::Always),
    ("pp", Prefix::BeforeNumber),
];
