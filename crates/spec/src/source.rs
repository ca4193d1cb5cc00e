//! Spanned TOML values that remember which file and byte range they came from, so that every
//! error after includes, inheritance and sweep expansion can still point at a line and column.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::error::SpecError;

/// Index of a file in a [`SourceMap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FileId(pub u32);

/// A byte range in one file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub range: Range<usize>,
}

/// Every file read while loading an experiment, kept for error messages.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    files: Vec<(PathBuf, String)>,
}

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineCol {
    pub line: usize,
    pub column: usize,
}

impl SourceMap {
    pub fn add(&mut self, path: PathBuf, text: String) -> FileId {
        self.files.push((path, text));
        FileId(self.files.len() as u32 - 1)
    }

    pub fn path(&self, file: FileId) -> &Path {
        &self.files[file.0 as usize].0
    }

    pub fn text(&self, file: FileId) -> &str {
        &self.files[file.0 as usize].1
    }

    pub fn files(&self) -> impl Iterator<Item = &Path> {
        self.files.iter().map(|(p, _)| p.as_path())
    }

    pub fn line_col(&self, span: &Span) -> LineCol {
        let text = self.text(span.file);
        let offset = span.range.start.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        LineCol { line, column }
    }

    /// The source line a span starts on, for the excerpt under an error.
    pub fn line_text(&self, span: &Span) -> &str {
        let text = self.text(span.file);
        let offset = span.range.start.min(text.len());
        let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
        let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        &text[start..end]
    }
}

/// A TOML value with its position.
#[derive(Clone, Debug)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum Value {
    String(String),
    Integer(i64),
    Float(f64),
    Boolean(bool),
    Datetime(String),
    Array(Vec<Node>),
    Table(Table),
}

/// A key as written, with the span of the key itself (errors about a key point at it).
#[derive(Clone, Debug)]
pub struct KeyName {
    pub name: String,
    pub span: Span,
}

/// A TOML table that keeps the order of its keys as written.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub entries: Vec<(KeyName, Node)>,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Node> {
        self.entries
            .iter_mut()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    pub fn key(&self, key: &str) -> Option<&KeyName> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(k, _)| k)
    }

    pub fn remove(&mut self, key: &str) -> Option<(KeyName, Node)> {
        let i = self.entries.iter().position(|(k, _)| k.name == key)?;
        Some(self.entries.remove(i))
    }

    /// Inserts or replaces, keeping the original position of a replaced key.
    pub fn insert(&mut self, key: KeyName, value: Node) {
        match self.entries.iter_mut().find(|(k, _)| k.name == key.name) {
            Some(slot) => *slot = (key, value),
            None => self.entries.push((key, value)),
        }
    }
}

impl Node {
    pub fn as_table(&self) -> Option<&Table> {
        match &self.value {
            Value::Table(t) => Some(t),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The TOML type name, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match &self.value {
            Value::String(_) => "a string",
            Value::Integer(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Boolean(_) => "a boolean",
            Value::Datetime(_) => "a datetime",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
        }
    }

    /// Plain JSON, for handing the value to serde.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::String(s) | Value::Datetime(s) => J::String(s.clone()),
            Value::Integer(i) => J::from(*i),
            // Non-finite floats have no JSON form; they become null and fail typed validation.
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Boolean(b) => J::Bool(*b),
            Value::Array(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Table(t) => J::Object(
                t.entries
                    .iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// A short rendering of a scalar, used in sweep instance labels (`alpha=0.5`).
    pub fn label(&self) -> String {
        match &self.value {
            Value::String(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Float(f) => format!("{f}"),
            Value::Boolean(b) => b.to_string(),
            Value::Datetime(s) => s.clone(),
            other => format!(
                "{:?}",
                Node {
                    value: other.clone(),
                    span: self.span.clone()
                }
                .to_json()
            ),
        }
    }
}

/// Parses one TOML file into spanned nodes.
pub fn parse_file(sources: &SourceMap, file: FileId) -> Result<Table, SpecError> {
    let text = sources.text(file);
    let doc = DeTable::parse(text).map_err(|e| {
        let span = Span {
            file,
            range: e.span().unwrap_or(0..0),
        };
        SpecError::at(
            sources,
            &span,
            format!("invalid TOML: {}", e.message().trim()),
        )
    })?;
    let root = doc.get_ref();
    convert_table(sources, file, root)
}

fn convert_table(
    sources: &SourceMap,
    file: FileId,
    table: &DeTable<'_>,
) -> Result<Table, SpecError> {
    let mut out = Table::default();
    for (key, value) in table.iter() {
        let name = KeyName {
            name: key.get_ref().to_string(),
            span: Span {
                file,
                range: key.span(),
            },
        };
        let node = convert_value(sources, file, value.get_ref(), value.span())?;
        out.entries.push((name, node));
    }
    Ok(out)
}

fn convert_value(
    sources: &SourceMap,
    file: FileId,
    value: &DeValue<'_>,
    range: Range<usize>,
) -> Result<Node, SpecError> {
    let span = Span { file, range };
    let value = match value {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => {
            let digits = i.as_str().replace('_', "");
            match i64::from_str_radix(&digits, i.radix()) {
                Ok(v) => Value::Integer(v),
                Err(_) => {
                    return Err(SpecError::at(
                        sources,
                        &span,
                        "integer out of range for a 64-bit signed integer",
                    ));
                }
            }
        }
        DeValue::Float(f) => {
            let text = f.as_str().replace('_', "");
            let v = match text.as_str() {
                "inf" | "+inf" => f64::INFINITY,
                "-inf" => f64::NEG_INFINITY,
                "nan" | "+nan" | "-nan" => f64::NAN,
                t => t
                    .parse::<f64>()
                    .map_err(|_| SpecError::at(sources, &span, format!("invalid float `{t}`")))?,
            };
            Value::Float(v)
        }
        DeValue::Boolean(b) => Value::Boolean(*b),
        DeValue::Datetime(d) => Value::Datetime(d.to_string()),
        DeValue::Array(items) => Value::Array(
            items
                .iter()
                .map(|item| convert_value(sources, file, item.get_ref(), item.span()))
                .collect::<Result<_, _>>()?,
        ),
        DeValue::Table(t) => Value::Table(convert_table(sources, file, t)?),
    };
    Ok(Node { value, span })
}
