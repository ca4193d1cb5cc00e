//! Chat templates: the checkpoint's own Jinja template rendered with minijinja, configured the
//! way transformers configures jinja2 (`trim_blocks`, `lstrip_blocks`, loop controls,
//! `raise_exception`, a `tojson` that does not HTML-escape, Python string methods).

use std::fmt::Write as _;
use std::path::Path;

use minijinja::value::{Kwargs, Serde, Value, ValueKind};
use minijinja::{Environment, ErrorKind};
use serde::Serialize;

use crate::error::{ProcessorError, Result, read_json, read_text};

/// Who speaks a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Message {
    pub role: String,
    pub content: MessageContent,
}

/// A message's content: plain text, or typed parts (what multimodal templates expect).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

/// One part of a message: `{"type": "image"}` or `{"type": "text", "text": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ContentPart {
    Image,
    Text { text: String },
}

impl Message {
    /// A message with typed parts.
    pub fn new(role: impl Into<String>, parts: Vec<ContentPart>) -> Self {
        Self {
            role: role.into(),
            content: MessageContent::Parts(parts),
        }
    }

    /// A user turn with one image followed by text (the usual VQA / captioning prompt).
    pub fn user_with_image(text: impl Into<String>) -> Self {
        Self::new(
            "user",
            vec![ContentPart::Image, ContentPart::Text { text: text.into() }],
        )
    }

    /// A message whose content is a plain string.
    pub fn text(role: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: MessageContent::Text(text.into()),
        }
    }
}

/// Where a checkpoint's chat template was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatTemplateSource {
    /// `chat_template.json` (`{"chat_template": "..."}`; llava-hf on the Hub).
    ChatTemplateJson,
    /// `chat_template.jinja` (what transformers 5 writes).
    ChatTemplateJinja,
    /// The `chat_template` entry of `tokenizer_config.json` (older text checkpoints).
    TokenizerConfig,
    /// The prompt format of a family whose processor frames prompts itself (the original
    /// Molmo), which takes precedence over the checkpoint's files.
    Processor,
}

impl ChatTemplateSource {
    /// The file name the template came from.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::ChatTemplateJson => "chat_template.json",
            Self::ChatTemplateJinja => "chat_template.jinja",
            Self::TokenizerConfig => "tokenizer_config.json",
            Self::Processor => "the processor's built-in prompt format",
        }
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: ChatTemplateSource,
    text: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("len", &self.text.len())
            .finish()
    }
}

const TEMPLATE_NAME: &str = "chat_template";

/// The template inside a `chat_template` value: a string, or a list of named templates of which
/// transformers uses `default`.
fn template_from_json(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => items
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(str::to_owned),
        _ => None,
    }
}

impl ChatTemplate {
    /// Finds the checkpoint's template: `chat_template.json`, then `chat_template.jinja`, then
    /// `tokenizer_config.json`; `Ok(None)` when none has one.
    pub fn find_in_dir(dir: &Path) -> Result<Option<Self>> {
        let json_path = dir.join(ChatTemplateSource::ChatTemplateJson.file_name());
        if json_path.is_file() {
            let value = read_json(&json_path)?;
            let text = value
                .get("chat_template")
                .and_then(template_from_json)
                .ok_or_else(|| ProcessorError::BadFile {
                    path: json_path.clone(),
                    detail: "expected a \"chat_template\" string".into(),
                })?;
            return Self::new(text, ChatTemplateSource::ChatTemplateJson).map(Some);
        }
        let jinja_path = dir.join(ChatTemplateSource::ChatTemplateJinja.file_name());
        if jinja_path.is_file() {
            return Self::new(
                read_text(&jinja_path)?,
                ChatTemplateSource::ChatTemplateJinja,
            )
            .map(Some);
        }
        let config_path = dir.join(ChatTemplateSource::TokenizerConfig.file_name());
        if config_path.is_file()
            && let Some(text) = read_json(&config_path)?
                .get("chat_template")
                .and_then(template_from_json)
        {
            return Self::new(text, ChatTemplateSource::TokenizerConfig).map(Some);
        }
        Ok(None)
    }

    /// Compiles template text.
    pub fn new(text: String, source: ChatTemplateSource) -> Result<Self> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| template_err(source, e))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        // jinja2 prints Python's str(): `True`, `False`, `None` (minijinja: `true`, `none`).
        env.set_formatter(|out, state, value| match value.kind() {
            ValueKind::Bool => out
                .write_str(if value.is_true() { "True" } else { "False" })
                .map_err(minijinja::Error::from),
            ValueKind::None => out.write_str("None").map_err(minijinja::Error::from),
            _ => minijinja::escape_formatter(out, state, value),
        });
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |format: String| {
            crate::strftime::CivilTime::now()
                .format(&format)
                .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, e))
        });
        env.add_filter("tojson", python_tojson);
        env.add_template_owned(TEMPLATE_NAME, without_generation_tags(&text))
            .map_err(|e| template_err(source, e))?;
        Ok(Self { env, source, text })
    }

    /// Which file the template came from.
    pub fn source(&self) -> ChatTemplateSource {
        self.source
    }

    /// The template text as stored in the checkpoint.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Renders `messages`, with the special tokens (`bos_token`, `eos_token`, ...) as variables,
    /// like transformers' `apply_chat_template(..., tokenize=False)`.
    pub fn render<'a>(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        special_tokens: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<String> {
        self.render_with_vars(
            messages,
            add_generation_prompt,
            special_tokens,
            &Default::default(),
        )
    }

    /// [`render`](Self::render) with extra template variables (the `**kwargs` of
    /// `apply_chat_template`, e.g. Qwen2-VL's `add_vision_id`); like there, they override the
    /// special tokens of the same name.
    pub fn render_with_vars<'a>(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        special_tokens: impl IntoIterator<Item = (&'a str, &'a str)>,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        let mut ctx: std::collections::BTreeMap<String, Value> = special_tokens
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::from(v)))
            .collect();
        for (k, v) in vars {
            ctx.insert(k.clone(), Value::from(Serde(v)));
        }
        ctx.insert("messages".into(), Value::from(Serde(messages)));
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        ctx.entry("tools".into()).or_insert(Value::from(()));
        ctx.entry("documents".into()).or_insert(Value::from(()));
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| template_err(self.source, e))?;
        template
            .render(Value::from(ctx))
            .map_err(|e| template_err(self.source, e))
    }
}

fn template_err(source: ChatTemplateSource, e: minijinja::Error) -> ProcessorError {
    let mut detail = e.to_string();
    // minijinja keeps the cause chain in `source()`; it names the failing construct.
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        let _ = write!(detail, ": {c}");
        cause = c.source();
    }
    ProcessorError::ChatTemplate {
        source_file: source.file_name().into(),
        detail,
    }
}

fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// transformers' AssistantTracker extension adds `{% generation %}...{% endgeneration %}`, which
/// renders its body unchanged. minijinja has no such tag, so each one is rewritten into an
/// always-true `if` block with the same whitespace-control markers (so trim/lstrip behave alike).
fn without_generation_tags(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{%") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("%}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let inner = &after[..close];
        let (left_ctl, body) = match inner.chars().next() {
            Some(c @ ('-' | '+')) => (c.to_string(), &inner[1..]),
            _ => (String::new(), inner),
        };
        let (body, right_ctl) = match body.chars().last() {
            Some(c @ ('-' | '+')) => (&body[..body.len() - 1], c.to_string()),
            _ => (body, String::new()),
        };
        match body.trim() {
            "generation" => out.push_str(&format!("{{%{left_ctl} if true {right_ctl}%}}")),
            "endgeneration" => out.push_str(&format!("{{%{left_ctl} endif {right_ctl}%}}")),
            _ => out.push_str(&rest[open..open + 2 + close + 2]),
        }
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

/// transformers replaces jinja's `tojson` with `json.dumps(x, ensure_ascii=False, indent=None,
/// separators=None, sort_keys=False)`: no HTML escaping, Python's separators.
fn python_tojson(
    value: Value,
    ensure_ascii: Option<bool>,
    kwargs: Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let ensure_ascii = match ensure_ascii {
        Some(v) => v,
        None => kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false),
    };
    let indent: Option<Value> = kwargs.get("indent")?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => Some(v.as_str().unwrap_or_default().to_owned()),
        },
    };
    let separators: Option<Vec<String>> = kwargs.get("separators")?;
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) = match separators {
        Some(s) if s.len() == 2 => (s[0].clone(), s[1].clone()),
        Some(_) => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                "tojson: separators must be a pair",
            ));
        }
        None if indent.is_some() => (",".into(), ": ".into()),
        None => (", ".into(), ": ".into()),
    };
    let style = JsonStyle {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    style.write(&value, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonStyle {
    fn newline(&self, level: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..level {
                out.push_str(indent);
            }
        }
    }

    fn write(
        &self,
        value: &Value,
        level: usize,
        out: &mut String,
    ) -> std::result::Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                if let Some(i) = value.as_i64().filter(|_| value.is_integer()) {
                    let _ = write!(out, "{i}");
                } else {
                    let f = f64::try_from(value.clone())?;
                    out.push_str(&python_float_repr(f));
                }
            }
            ValueKind::String => self.write_str(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.write(item, level + 1, out)?;
                }
                self.newline(level, out);
                out.push(']');
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if keys.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                if self.sort_keys {
                    keys.sort_by_key(|k| k.to_string());
                }
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(level + 1, out);
                    self.write_str(&key.to_string(), out);
                    out.push_str(&self.key_sep);
                    self.write(&value.get_item(key)?, level + 1, out)?;
                }
                self.newline(level, out);
                out.push('}');
            }
            _ => self.write_str(&value.to_string(), out),
        }
        Ok(())
    }

    fn write_str(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && (c as u32) > 0x7e) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)`: shortest round-trip digits, `1.0` not `1`, exponent form outside
/// `1e-4 <= |x| < 1e16`, `NaN`/`Infinity` as `json.dumps` writes them.
fn python_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let abs = f.abs();
    if abs != 0.0 && !(1e-4..1e16).contains(&abs) {
        // Rust's `{:e}` gives `1e16` / `1.5e-7`; Python writes `1e+16` / `1.5e-07`.
        let s = format!("{f:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let exp: i32 = exp.parse().unwrap_or(0);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    let s = format!("{f}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_tags_become_if_blocks_with_same_whitespace_control() {
        assert_eq!(
            without_generation_tags(
                "a{% generation %}b{%- endgeneration -%}c{% if x %}d{% endif %}"
            ),
            "a{% if true %}b{%- endif -%}c{% if x %}d{% endif %}"
        );
    }

    #[test]
    fn python_float_reprs() {
        assert_eq!(python_float_repr(1.0), "1.0");
        assert_eq!(python_float_repr(0.5), "0.5");
        assert_eq!(python_float_repr(1e16), "1e+16");
        assert_eq!(python_float_repr(1.5e-7), "1.5e-07");
        assert_eq!(python_float_repr(-0.0001), "-0.0001");
    }

    #[test]
    fn tojson_uses_python_separators_and_no_html_escaping() {
        let t = ChatTemplate::new(
            "{{ x | tojson }}|{{ x | tojson(indent=2) }}|{{ s | tojson }}".into(),
            ChatTemplateSource::ChatTemplateJinja,
        )
        .unwrap();
        let ctx = Value::from_pairs([
            (
                "x",
                Value::from_pairs([("a", Value::from(1)), ("b", Value::from(vec![1.5, 2.0]))]),
            ),
            ("s", Value::from("<tag> 'q' \"d\" é")),
        ]);
        let out = t
            .env
            .get_template(TEMPLATE_NAME)
            .unwrap()
            .render(ctx)
            .unwrap();
        assert_eq!(
            out,
            "{\"a\": 1, \"b\": [1.5, 2.0]}|{\n  \"a\": 1,\n  \"b\": [\n    1.5,\n    2.0\n  ]\n}|\"<tag> 'q' \\\"d\\\" é\""
        );
    }

    #[test]
    fn strftime_now_is_defined_and_formats_the_current_date() {
        let t = ChatTemplate::new(
            "{% if strftime_now is defined %}{{ strftime_now('%Y|%d %b %Y') }}{% endif %}".into(),
            ChatTemplateSource::ChatTemplateJinja,
        )
        .unwrap();
        let out = t.render(&[], false, []).unwrap();
        let (year, date) = out.split_once('|').unwrap();
        assert!(
            year.len() == 4 && year.chars().all(|c| c.is_ascii_digit()),
            "{out}"
        );
        assert!(date.ends_with(year) && date.len() == 11, "{out}");
    }

    #[test]
    fn raise_exception_is_a_render_error() {
        let t = ChatTemplate::new(
            "{{ raise_exception('roles must alternate') }}".into(),
            ChatTemplateSource::ChatTemplateJinja,
        )
        .unwrap();
        let err = t.render(&[], false, []).unwrap_err().to_string();
        assert!(err.contains("roles must alternate"), "{err}");
        assert!(err.contains("chat_template.jinja"), "{err}");
    }
}
