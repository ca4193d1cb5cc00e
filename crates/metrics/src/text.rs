//! Python `str` whitespace semantics, which the reference implementations rely on.

/// Python's `str.isspace()` characters: Unicode White_Space plus the ASCII separators
/// `\x1c`..`\x1f` that Python also treats as whitespace.
pub(crate) fn is_py_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()`.
pub(crate) fn py_strip(text: &str) -> &str {
    text.trim_matches(is_py_whitespace)
}

/// Python's `str.split()` without arguments.
pub(crate) fn py_split_whitespace(text: &str) -> impl Iterator<Item = &str> {
    text.split(is_py_whitespace).filter(|w| !w.is_empty())
}
