//! Caption tokenisation as pycocoevalcap's `PTBTokenizer` does it: Stanford CoreNLP 3.4.1's
//! `PTBTokenizer -preserveLines -lowerCase`, then removal of the tokens in pycocoevalcap's
//! punctuation list (`''`, `'`, ``` `` ```, `` ` ``, `-LRB-`, `-RRB-`, `-LCB-`, `-RCB-`, `.`, `?`,
//! `!`, `,`, `:`, `-`, `--`, `...`, `;`).
//!
//! This is an emulation of the PTB lexer's rules that matter for captions, written from its
//! documented behaviour and checked token by token against the jar on the committed goldens:
//! words, hyphenated and slashed compounds, numbers (`2,000`, `3.14`, `3:30`, `-5`), clitics
//! (`'s`, `'re`, `n't`, `cannot` -> `can not`), abbreviations and acronyms that keep their period
//! (`mr.`, `st.`, `etc.`, `u.s.`, single letters), ellipses, dashes, `?!` runs, quotes,
//! brackets (`-lrb-`: since the output is lower-cased, pycocoevalcap's upper-case `-LRB-` entries
//! never match and bracket tokens stay) and currency/percent symbols.
//!
//! Known differences from the jar (rare in captions): URLs, e-mail addresses, SGML tags, HTML
//! entities, the lexer's full abbreviation lists and its sentence-final acronym rule, some
//! forms glued without spaces (`can'tI'm`, `the10:30`, `no?vol`), and currency normalisation
//! beyond `$`, `¢` and `€`.

/// Tokens of `caption` after PTB tokenisation, lower-casing and punctuation removal.
pub fn ptb_tokenize(caption: &str) -> Vec<String> {
    // pycocoevalcap replaces newlines inside a caption by spaces (one caption per line).
    let line: Vec<char> = caption.replace('\n', " ").chars().collect();
    let mut tokens = Vec::new();
    let mut pos = 0;
    while pos < line.len() {
        if is_space(line[pos]) {
            pos += 1;
            continue;
        }
        let (len, token) = next_token(&line, pos);
        pos += len;
        let token = token.to_lowercase();
        if !REMOVED_PUNCTUATION.contains(&token.as_str()) {
            tokens.push(token);
        }
    }
    tokens
}

/// pycocoevalcap's `PUNCTUATIONS`, as they can appear in lower-cased output.
const REMOVED_PUNCTUATION: [&str; 13] = [
    "''", "'", "``", "`", ".", "?", "!", ",", ":", "-", "--", "...", ";",
];

fn is_space(c: char) -> bool {
    c.is_whitespace() || c == '\u{200B}' || c == '\u{FEFF}'
}

fn is_letter(c: char) -> bool {
    c.is_alphabetic()
}

fn is_alnum(c: char) -> bool {
    c.is_alphabetic() || c.is_numeric()
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '\u{0092}')
}

fn at(line: &[char], i: usize) -> Option<char> {
    line.get(i).copied()
}

fn lower_eq(line: &[char], pos: usize, word: &str) -> bool {
    let mut i = pos;
    for w in word.chars() {
        match at(line, i) {
            Some(c) if c.to_lowercase().eq(w.to_lowercase()) => i += 1,
            _ => return false,
        }
    }
    true
}

/// Length of the run of chars satisfying `pred` from `pos`.
fn run(line: &[char], pos: usize, pred: fn(char) -> bool) -> usize {
    line[pos..].iter().take_while(|&&c| pred(c)).count()
}

/// Abbreviations that keep their period anywhere (the lexer's ABBREV1 and ABBREV2 classes, in
/// lower case).
const ABBREVIATIONS: &[&str] = &[
    // months, days
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "mon",
    "tue", "tues", "wed", "thu", "thurs", "fri", // states
    "ala", "ariz", "ark", "calif", "colo", "conn", "dak", "del", "fla", "ga", "ill", "ind", "kan",
    "kans", "ky", "la", "mass", "md", "mich", "minn", "miss", "mo", "mont", "neb", "nev", "okla",
    "ore", "pa", "penn", "tenn", "tex", "va", "vt", "wash", "wis", "wisc", "wyo", // companies
    "inc", "co", "cos", "corp", "pty", "ptys", "ppty", "pptys", "ltd", "plc", "bancorp", "dept",
    "bhd", "assn", "univ", "intl", "sys", "invt", "elec", "natl", "mfg", "mtg", // post titles
    "jr", "sr", "bros", "blvd", "rd", "esq", "etc", "al", "seq", "prop", "ph", "tel", "est", "ext",
    "sq", "ft", // titles
    "mr", "mrs", "ms", "dr", "drs", "prof", "profs", "sen", "sens", "rep", "reps", "atty", "attys",
    "lt", "col", "gen", "messrs", "gov", "govs", "adm", "rev", "maj", "sgt", "cpl", "pvt", "mt",
    "capt", "st", "ste", "ave", "pres", "lieut", "hon", "brig", "cmdr", "comdr", "pfc", "spc",
    "supt", "supts", "det", "vs", "alex", "wm", "jos", "cie", "cf", "treas",
];

/// Abbreviations that keep their period only before a number (`no. 5`, `fig. 2`).
const NUMBER_ABBREVIATIONS: &[&str] =
    &["no", "nos", "fig", "figs", "art", "bldg", "pp", "op", "ca"];

/// The token at `pos` (not a space): (chars consumed, token text before lower-casing).
fn next_token(line: &[char], pos: usize) -> (usize, String) {
    let c = line[pos];
    let text = |len: usize| line[pos..pos + len].iter().collect::<String>();

    if lower_eq(line, pos, "cannot") && !at(line, pos + 6).is_some_and(is_letter) {
        return (3, text(3));
    }
    // The lexer splits these colloquial contractions after their third letter.
    for word in ["gonna", "gotta", "wanna", "lemme", "gimme"] {
        if lower_eq(line, pos, word)
            && !at(line, pos + 5).is_some_and(is_letter)
            && !(pos > 0 && is_letter(line[pos - 1]))
        {
            return (3, text(3));
        }
    }
    if is_alnum(c) || ((c == '-' || c == '+') && at(line, pos + 1).is_some_and(|d| d.is_numeric()))
    {
        return word_like(line, pos);
    }
    if is_apostrophe(c) {
        return apostrophe_token(line, pos);
    }
    let smiley = smiley_len(line, pos);
    if smiley > 0 {
        let token = text(smiley).replace('(', "-LRB-").replace(')', "-RRB-");
        return (smiley, token);
    }
    match c {
        '.' => {
            let dots = run(line, pos, |d| d == '.');
            if dots >= 3 {
                let len = dots.min(5);
                return (len, "...".into());
            }
            if at(line, pos + 1).is_some_and(|d| d.is_ascii_digit()) {
                return word_like(line, pos);
            }
            (1, ".".into())
        }
        '\u{2026}' | '\u{0085}' => (1, "...".into()),
        '-' => {
            let n = run(line, pos, |d| d == '-');
            match n {
                1 => (1, "-".into()),
                2..=4 => (n, "--".into()),
                _ => (n, text(n)),
            }
        }
        '\u{2013}' | '\u{2014}' | '\u{2015}' | '\u{0096}' | '\u{0097}' => (1, "--".into()),
        '?' | '!' => {
            let n = run(line, pos, |d| d == '?' || d == '!');
            (n, text(n))
        }
        '"' | '\u{201C}' | '\u{201D}' | '\u{201E}' | '\u{00AB}' | '\u{00BB}' => (1, "''".into()),
        '`' => {
            let n = run(line, pos, |d| d == '`').min(2);
            (n, text(n))
        }
        '(' => (1, "-LRB-".into()),
        ')' => (1, "-RRB-".into()),
        '[' => (1, "-LSB-".into()),
        ']' => (1, "-RSB-".into()),
        '{' => (1, "-LCB-".into()),
        '}' => (1, "-RCB-".into()),
        '*' => {
            let n = run(line, pos, |d| d == '*');
            (n, text(n))
        }
        '#' | '@' | '_' => {
            let n = line[pos..].iter().take_while(|&&d| d == c).count();
            (n, text(n))
        }
        '\u{00A2}' => (1, "cents".into()),
        '\u{20AC}' | '\u{00A3}' | '\u{00A5}' => (1, "$".into()),
        _ => (1, text(1)),
    }
}

/// Tokens starting with an apostrophe: clitics (`'s`, `'re`, ...), `'n'`, `'90s`, `'cause`,
/// `'tis` / `'twas` (as `'t`), or a quote.
fn apostrophe_token(line: &[char], pos: usize) -> (usize, String) {
    let text = |len: usize| line[pos..pos + len].iter().collect::<String>();
    let letters = run(line, pos + 1, is_letter);
    let rest: String = line[pos + 1..pos + 1 + letters]
        .iter()
        .collect::<String>()
        .to_lowercase();
    if matches!(rest.as_str(), "s" | "m" | "d" | "re" | "ve" | "ll") {
        return (1 + letters, text(1 + letters));
    }
    if rest == "n" {
        let len = if at(line, pos + 2).is_some_and(is_apostrophe) {
            3
        } else {
            2
        };
        return (len, text(len));
    }
    if matches!(rest.as_str(), "cause" | "em" | "til" | "till") {
        return (1 + letters, text(1 + letters));
    }
    if rest == "tis" || rest == "twas" {
        return (2, text(2));
    }
    let digits = run(line, pos + 1, |d| d.is_ascii_digit());
    if digits == 2 && lower_eq(line, pos + 3, "s") && !at(line, pos + 4).is_some_and(is_alnum) {
        return (4, text(4));
    }
    if digits == 2 && at(line, pos + 3).is_none_or(is_space) {
        return (3, text(3));
    }
    if at(line, pos + 1).is_some_and(is_apostrophe) {
        return (2, "''".into());
    }
    (1, "'".into())
}

/// Words, numbers and compounds starting at `pos`.
fn word_like(line: &[char], pos: usize) -> (usize, String) {
    let text = |len: usize| line[pos..pos + len].iter().collect::<String>();
    let letters = run(line, pos, is_letter);

    // A word before a clitic: `dog|'s`, `does|n't`.
    if letters > 0 && !at(line, pos + letters).is_some_and(|c| c.is_numeric() || c == '-') {
        let after = pos + letters;
        if at(line, after).is_some_and(is_apostrophe) {
            let clitic_letters = run(line, after + 1, is_letter);
            let clitic: String = line[after + 1..after + 1 + clitic_letters]
                .iter()
                .collect::<String>()
                .to_lowercase();
            if matches!(clitic.as_str(), "s" | "m" | "d" | "re" | "ve" | "ll") {
                return (letters, text(letters));
            }
            if clitic == "t"
                && letters >= 2
                && line[after - 1].eq_ignore_ascii_case(&'n')
                && !line[after - 2].eq_ignore_ascii_case(&'n')
            {
                return (letters - 1, text(letters - 1));
            }
        }
    }
    if letters > 0
        && line[pos + letters - 1].eq_ignore_ascii_case(&'n')
        && at(line, pos + letters).is_some_and(is_apostrophe)
        && lower_eq(line, pos + letters + 1, "t")
        && !at(line, pos + letters + 2).is_some_and(is_letter)
        && letters == 1
    {
        // A bare `n't`.
        return (3, text(3));
    }
    // `y'all` -> `y'`, `all`.
    if letters == 1
        && line[pos].eq_ignore_ascii_case(&'y')
        && at(line, pos + 1).is_some_and(is_apostrophe)
        && at(line, pos + 2).is_some_and(is_letter)
    {
        return (2, text(2));
    }

    let mut best = (0, String::new());
    let mut consider = |len: usize, token: String| {
        if len > best.0 {
            best = (len, token);
        }
    };
    let number = number_len(line, pos);
    consider(number, text(number));
    let thing = thing_len(line, pos);
    consider(thing, text(thing));
    let slashed = slashed_len(line, pos);
    consider(slashed, text(slashed));

    // Words joined by periods stay one token (`dog.the`, `e.g.no`), unless the longer reading
    // is an acronym with its final period (`u.s.a.`).
    let dotted = dotted_len(line, pos);
    if dotted > best.0 {
        let acronym = acronym_len(line, pos).filter(|&a| a > dotted);
        let len = acronym.unwrap_or(dotted);
        return (len, text(len));
    }

    // A period after the word: kept for acronyms and known abbreviations.
    let (len, token) = best;
    if len > 0 && at(line, pos + len) == Some('.') {
        let word = token.to_lowercase();
        if let Some(acronym) = acronym_len(line, pos)
            && acronym >= len
        {
            return (acronym, text(acronym));
        }
        let next_is_digit = line[pos + len + 1..]
            .iter()
            .find(|c| !is_space(**c))
            .is_some_and(|c| c.is_ascii_digit());
        let is_single_letter = len == 1 && is_letter(line[pos]);
        let followed_by_in_sentence_punct =
            matches!(at(line, pos + len + 1), Some(',' | ';' | ':'));
        if is_single_letter
            || ABBREVIATIONS.contains(&word.as_str())
            || (NUMBER_ABBREVIATIONS.contains(&word.as_str()) && next_is_digit)
            || (followed_by_in_sentence_punct && word.chars().all(is_alnum))
        {
            return (len + 1, text(len + 1));
        }
    }
    if len == 0 {
        return (1, text(1));
    }
    (len, token)
}

/// Alphanumeric segments joined by single periods, the first and every later one starting with
/// a letter (`dog.the`, `a1.b2`, `e.g.no`), without a final period; 0 when there is no inner
/// period.
fn dotted_len(line: &[char], pos: usize) -> usize {
    if !is_letter(line[pos]) {
        return 0;
    }
    // A segment may be hyphenated (`corp.black-and-white`).
    let segment_end = |start: usize| {
        let mut e = start + run(line, start, is_alnum);
        while at(line, e) == Some('-') && at(line, e + 1).is_some_and(is_alnum) {
            e += 1 + run(line, e + 1, is_alnum);
        }
        e
    };
    let mut end = segment_end(pos);
    let mut joined = false;
    while at(line, end) == Some('.') && at(line, end + 1).is_some_and(is_letter) {
        end = segment_end(end + 1);
        joined = true;
    }
    if joined { end - pos } else { 0 }
}

/// Emoticons the lexer keeps as one token (`:)` -> `:-RRB-`, `;-)`, `:D`, `:'(`): a length, or
/// 0. Not when a letter follows (`x:(y` is three tokens).
fn smiley_len(line: &[char], pos: usize) -> usize {
    if !matches!(line[pos], ':' | ';' | '=') {
        return 0;
    }
    let mut i = pos + 1;
    if matches!(at(line, i), Some('-' | '\'')) {
        i += 1;
    }
    if !matches!(
        at(line, i),
        Some(')' | '(' | 'D' | 'P' | 'p' | 'O' | '|' | '\\' | ']' | '[')
    ) {
        return 0;
    }
    if at(line, i + 1).is_some_and(is_letter) {
        return 0;
    }
    i + 1 - pos
}

/// `letter(.letter)+.`: acronyms such as `u.s.`, `p.m.`, `e.g.` (length including the final
/// period).
fn acronym_len(line: &[char], pos: usize) -> Option<usize> {
    let mut i = pos;
    let mut letters = 0;
    while at(line, i).is_some_and(|c| c.is_ascii_alphabetic()) && at(line, i + 1) == Some('.') {
        letters += 1;
        i += 2;
        if at(line, i).is_some_and(|c| c.is_ascii_alphabetic())
            && at(line, i + 1) != Some('.')
            && letters >= 1
        {
            // `u.s` with no final period, or `man.the`: not an acronym ending here.
            break;
        }
    }
    (letters >= 2).then_some(i - pos)
}

/// `[-+]?(digit+ | digit*([.:,]digit+)+)`.
fn number_len(line: &[char], pos: usize) -> usize {
    let mut i = pos;
    if matches!(at(line, i), Some('-' | '+')) {
        i += 1;
    }
    let start = i;
    i += run(line, i, |c| c.is_numeric());
    loop {
        if matches!(at(line, i), Some('.' | ':' | ','))
            && at(line, i + 1).is_some_and(|c| c.is_numeric())
        {
            i += 1 + run(line, i + 1, |c| c.is_numeric());
        } else {
            break;
        }
    }
    if i == start { 0 } else { i - pos }
}

/// Alphanumeric runs joined by single hyphens or underscores (`t-shirt`, `10-year-old`,
/// `x-ray`), with the lexer's `d'`, `o'`, `l'` prefixes (`o'clock`).
fn thing_len(line: &[char], pos: usize) -> usize {
    let segment = |i: usize| -> usize {
        let mut j = i;
        if at(line, j).is_some_and(|c| matches!(c.to_ascii_lowercase(), 'd' | 'o' | 'l'))
            && at(line, j + 1).is_some_and(is_apostrophe)
            && at(line, j + 2).is_some_and(is_alnum)
        {
            j += 2;
        }
        let n = run(line, j, is_alnum);
        if n == 0 { 0 } else { j + n - i }
    };
    let first = segment(pos);
    if first == 0 {
        return 0;
    }
    let mut end = pos + first;
    while matches!(at(line, end), Some('-' | '_')) {
        let next = segment(end + 1);
        if next == 0 {
            break;
        }
        end += 1 + next;
    }
    // Hyphenated compounds may start with a number holding periods or commas (`1.5-inch`).
    if end == pos + first {
        let number = number_len(line, pos);
        if number > first && at(line, pos + number) == Some('-') {
            let mut e = pos + number;
            while at(line, e) == Some('-') && at(line, e + 1).is_some_and(is_alnum) {
                e += 1 + run(line, e + 1, is_alnum);
            }
            if e > pos + number {
                return e - pos;
            }
        }
    }
    end - pos
}

/// ASCII compounds joined by slashes: `t-shirt/jeans`, `1/2`, `1/2/2015`.
fn slashed_len(line: &[char], pos: usize) -> usize {
    let part = |i: usize| -> usize {
        let n = run(line, i, |c| c.is_ascii_alphanumeric());
        if n == 0 {
            return 0;
        }
        let mut e = i + n;
        for _ in 0..2 {
            if at(line, e) == Some('-') {
                let m = run(line, e + 1, |c| c.is_ascii_alphabetic());
                if m > 0 {
                    e += 1 + m;
                    continue;
                }
            }
            break;
        }
        e - i
    };
    let first = part(pos);
    if first == 0 {
        return 0;
    }
    let mut end = pos + first;
    let mut slashes = 0;
    while slashes < 2 && at(line, end) == Some('/') {
        let next = part(end + 1);
        if next == 0 {
            break;
        }
        end += 1 + next;
        slashes += 1;
    }
    if slashes == 0 { 0 } else { end - pos }
}

#[cfg(test)]
mod tests {
    use super::ptb_tokenize;

    fn tok(s: &str) -> String {
        ptb_tokenize(s).join(" ")
    }

    #[test]
    fn common_caption_forms() {
        assert_eq!(
            tok("A man's dog doesn't like it."),
            "a man 's dog does n't like it"
        );
        assert_eq!(
            tok("I cannot see the U.S. flag"),
            "i can not see the u.s. flag"
        );
        assert_eq!(
            tok("A t-shirt, 2,000 people (approx)"),
            "a t-shirt 2,000 people -lrb- approx -rrb-"
        );
        assert_eq!(
            tok("Mr. Smith at 3:30 p.m. -- wow..."),
            "mr. smith at 3:30 p.m. wow"
        );
        assert_eq!(tok("\"Hello,\" she said?!"), "hello she said ?!");
    }
}
