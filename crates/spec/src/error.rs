//! Errors that point at a file, line and column, show the offending line and say what to do.

use std::fmt;
use std::path::PathBuf;

use crate::source::{SourceMap, Span};

/// One problem in an experiment file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    /// The offending source line, shown under the message with a caret.
    pub excerpt: Option<String>,
    pub message: String,
    pub help: Option<String>,
}

impl SpecError {
    /// An error at a place in a file.
    pub fn at(sources: &SourceMap, span: &Span, message: impl Into<String>) -> SpecError {
        let pos = sources.line_col(span);
        SpecError {
            file: sources.path(span.file).to_path_buf(),
            line: pos.line,
            column: pos.column,
            excerpt: Some(sources.line_text(span).to_string()),
            message: message.into(),
            help: None,
        }
    }

    /// An error about a whole file (it cannot be read, for instance).
    pub fn file(file: impl Into<PathBuf>, message: impl Into<String>) -> SpecError {
        SpecError {
            file: file.into(),
            line: 0,
            column: 0,
            excerpt: None,
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> SpecError {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)?;
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                self.line,
                self.column,
                self.message
            )?;
        }
        if let Some(line) = &self.excerpt {
            let gutter = self.line.to_string();
            write!(f, "\n {gutter} | {line}")?;
            let pad: String = line
                .chars()
                .take(self.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n {} | {pad}^", " ".repeat(gutter.len()))?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// All problems found in an experiment: validation reports every error it can, not just the first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {e}")?;
        }
        if self.0.len() > 1 {
            write!(f, "{} errors", self.0.len())?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

impl From<SpecError> for SpecErrors {
    fn from(e: SpecError) -> Self {
        SpecErrors(vec![e])
    }
}

/// The closest of `candidates` to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Optimal-string-alignment distance: edits plus swaps of neighbours (`aplha` → `alpha` is 1).
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("aplha", ["alpha", "hooks"]), Some("alpha"));
        assert_eq!(
            did_you_mean("decompse", ["decompose", "shift"]),
            Some("decompose")
        );
        assert_eq!(did_you_mean("zzz", ["alpha", "hooks"]), None);
    }
}
