//! The checkpoint's tokenizer: `tokenizer.json` through the `tokenizers` crate, with the special
//! tokens and BOS/EOS rules of `tokenizer_config.json` applied the way transformers 5 applies them.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{ProcessorError, Result, read_json};

/// Names of the special tokens transformers exposes to chat templates (`special_tokens_map`).
const NAMED_SPECIAL_TOKENS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// A special token with its text and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedToken {
    pub text: String,
    pub id: u32,
}

/// Which side `encode_batch` pads on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Padding {
    /// Pads before the tokens (what batched generation needs).
    Left,
    /// Pads after the tokens.
    Right,
}

/// How a token's vocabulary string maps to the text it produces; needed to find whole words in
/// a token sequence without decoding every prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PieceStyle {
    /// SentencePiece-like: `▁` stands for a space, `<0xNN>` tokens are raw bytes.
    Metaspace,
    /// GPT-2 byte-level: every character stands for one byte.
    ByteLevel,
    /// Word-level vocabulary: each token is a whole word, decoded with a space before it.
    WordLevel,
}

/// The text one token produces, as bytes (a byte-fallback token produces part of a character).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TokenSurface {
    Text(Vec<u8>),
    /// A special token (BOS, `<image>`, `<|im_end|>`, ...): produces no words.
    Special,
}

/// Tokenizer of one checkpoint.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    named: BTreeMap<String, NamedToken>,
    special_ids: HashMap<u32, String>,
    clean_up_tokenization_spaces: bool,
    padding_side: Padding,
    piece_style: PieceStyle,
    byte_of_char: HashMap<char, u8>,
    source: PathBuf,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("source", &self.source)
            .field("vocab_size", &self.vocab_size())
            .field("named_special_tokens", &self.named)
            .finish()
    }
}

/// A token in `tokenizer_config.json` is either a string or an AddedToken object.
fn token_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => {
            o.get("content").and_then(|c| c.as_str()).map(str::to_owned)
        }
        _ => None,
    }
}

fn tok_err(context: &Path, e: impl std::fmt::Display) -> ProcessorError {
    ProcessorError::Tokenizer {
        context: context.display().to_string(),
        detail: e.to_string(),
    }
}

/// GPT-2's byte-to-character table, inverted: printable bytes stand for themselves, the others
/// were shifted to U+0100 and up.
fn byte_level_table() -> HashMap<char, u8> {
    let mut table = HashMap::with_capacity(256);
    let mut shifted = 0u32;
    for b in 0..=255u8 {
        let printable = (b'!'..=b'~').contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
        let c = if printable {
            char::from(b)
        } else {
            shifted += 1;
            char::from_u32(255 + shifted).expect("U+0100..U+0143 are valid chars")
        };
        table.insert(c, b);
    }
    table
}

fn json_has_type(value: &serde_json::Value, wanted: &str) -> bool {
    match value {
        serde_json::Value::Object(o) => {
            o.get("type").and_then(|t| t.as_str()) == Some(wanted)
                || o.values().any(|v| json_has_type(v, wanted))
        }
        serde_json::Value::Array(a) => a.iter().any(|v| json_has_type(v, wanted)),
        _ => false,
    }
}

impl TextTokenizer {
    /// Loads `tokenizer.json` and, when present, `tokenizer_config.json` from a checkpoint folder.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let tokenizer_json = dir.join("tokenizer.json");
        if !tokenizer_json.is_file() {
            return Err(ProcessorError::Missing {
                dir: dir.to_path_buf(),
                what: "tokenizer",
                looked_for: "tokenizer.json".into(),
            });
        }
        let config_path = dir.join("tokenizer_config.json");
        let config = if config_path.is_file() {
            read_json(&config_path)?
        } else {
            serde_json::Value::Object(Default::default())
        };
        Self::from_files(&tokenizer_json, &config, &config_path)
    }

    /// Builds the tokenizer from `tokenizer.json` and the parsed `tokenizer_config.json`
    /// (`config_path` is only used in messages).
    pub fn from_files(
        tokenizer_json: &Path,
        config: &serde_json::Value,
        config_path: &Path,
    ) -> Result<Self> {
        let mut inner =
            Tokenizer::from_file(tokenizer_json).map_err(|e| tok_err(tokenizer_json, e))?;
        let config = config.as_object().ok_or_else(|| ProcessorError::BadFile {
            path: config_path.to_path_buf(),
            detail: "expected a JSON object".into(),
        })?;

        // Named special tokens, plus model-specific ones (`extra_special_tokens` as a map, e.g.
        // `image_token`): transformers adds any that the vocabulary lacks as special tokens.
        let mut named_text: BTreeMap<String, String> = BTreeMap::new();
        for name in NAMED_SPECIAL_TOKENS {
            if let Some(text) = config.get(name).and_then(token_text) {
                named_text.insert(name.to_owned(), text);
            }
        }
        if let Some(serde_json::Value::Object(extra)) = config.get("extra_special_tokens") {
            for (name, value) in extra {
                if let Some(text) = token_text(value) {
                    named_text.insert(name.clone(), text);
                }
            }
        }
        let missing: Vec<AddedToken> = named_text
            .values()
            .filter(|t| inner.token_to_id(t).is_none())
            .map(|t| AddedToken::from(t.clone(), true))
            .collect();
        if !missing.is_empty() {
            inner
                .add_special_tokens(missing)
                .map_err(|e| tok_err(config_path, e))?;
        }
        let mut named = BTreeMap::new();
        for (name, text) in named_text {
            let id = inner
                .token_to_id(&text)
                .ok_or_else(|| ProcessorError::BadFile {
                    path: config_path.to_path_buf(),
                    detail: format!("{name} {text:?} is not in the vocabulary"),
                })?;
            named.insert(name, NamedToken { text, id });
        }

        // transformers 5 (TokenizersBackend) rebuilds the post-processor from add_bos_token /
        // add_eos_token when the config names either, or when tokenizer.json has none.
        let explicit = config.contains_key("add_bos_token") || config.contains_key("add_eos_token");
        if explicit || inner.get_post_processor().is_none() {
            let flag = |k: &str| config.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
            let bos = named.get("bos_token").filter(|_| flag("add_bos_token"));
            let eos = named.get("eos_token").filter(|_| flag("add_eos_token"));
            let mut single = String::new();
            let mut special = Vec::new();
            if let Some(b) = bos {
                single.push_str(&format!("{}:0 ", b.text));
                special.push((b.text.clone(), b.id));
            }
            single.push_str("$A:0");
            if let Some(e) = eos {
                single.push_str(&format!(" {}:0", e.text));
                special.push((e.text.clone(), e.id));
            }
            let mut pair = single.clone();
            if let Some(b) = bos {
                pair.push_str(&format!(" {}:1", b.text));
            }
            pair.push_str(" $B:1");
            if let Some(e) = eos {
                pair.push_str(&format!(" {}:1", e.text));
            }
            let template = TemplateProcessing::builder()
                .try_single(single.as_str())
                .and_then(|b| b.try_pair(pair.as_str()))
                .map_err(|e| tok_err(config_path, e))?
                .special_tokens(special)
                .build()
                .map_err(|e| tok_err(config_path, e))?;
            inner.with_post_processor(Some(template));
        }

        let special_ids = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, t)| (id, t.content))
            .collect();

        let decoder_json = inner
            .get_decoder()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| tok_err(tokenizer_json, e))?;
        let pre_tokenizer_json = inner
            .get_pre_tokenizer()
            .map(serde_json::to_value)
            .transpose()
            .map_err(|e| tok_err(tokenizer_json, e))?;
        let byte_level = [decoder_json, pre_tokenizer_json]
            .iter()
            .flatten()
            .any(|v| json_has_type(v, "ByteLevel"));
        let model_json =
            serde_json::to_value(inner.get_model()).map_err(|e| tok_err(tokenizer_json, e))?;
        let word_level = json_has_type(&model_json, "WordLevel");
        let padding_side = match config.get("padding_side").and_then(|v| v.as_str()) {
            Some("left") => Padding::Left,
            _ => Padding::Right,
        };
        Ok(Self {
            inner,
            named,
            special_ids,
            clean_up_tokenization_spaces: config
                .get("clean_up_tokenization_spaces")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            padding_side,
            piece_style: if byte_level {
                PieceStyle::ByteLevel
            } else if word_level {
                PieceStyle::WordLevel
            } else {
                PieceStyle::Metaspace
            },
            byte_of_char: if byte_level {
                byte_level_table()
            } else {
                HashMap::new()
            },
            source: tokenizer_json.to_path_buf(),
        })
    }

    /// Token ids of `text`; `add_special_tokens` applies the post-processor (e.g. the BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|e| tok_err(&self.source, format!("encoding {text:?}: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Text of `ids`, as transformers' `decode(ids, skip_special_tokens=...)` gives it.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        let text = self
            .inner
            .decode(ids, skip_special_tokens)
            .map_err(|e| tok_err(&self.source, e))?;
        Ok(if self.clean_up_tokenization_spaces {
            clean_up_tokenization(&text)
        } else {
            text
        })
    }

    /// Id of a token string (a vocabulary entry or an added token).
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Vocabulary string of an id (`▁no`, `Ġno`, `<0x0A>`, `<image>`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// A named special token (`bos_token`, `eos_token`, `pad_token`, `unk_token`, or a
    /// model-specific one such as `image_token`) from `tokenizer_config.json`.
    pub fn special_token(&self, name: &str) -> Option<&NamedToken> {
        self.named.get(name)
    }

    /// BOS token, if the checkpoint has one.
    pub fn bos(&self) -> Option<&NamedToken> {
        self.special_token("bos_token")
    }

    /// EOS token, if the checkpoint has one.
    pub fn eos(&self) -> Option<&NamedToken> {
        self.special_token("eos_token")
    }

    /// Padding token id: `pad_token`, else `eos_token` (what generation falls back to), else 0.
    pub fn pad_id(&self) -> u32 {
        self.special_token("pad_token")
            .or_else(|| self.eos())
            .map_or(0, |t| t.id)
    }

    /// The padding side `tokenizer_config.json` asks for (right when unset).
    pub fn default_padding(&self) -> Padding {
        self.padding_side
    }

    /// All named special tokens, name → text: the variables chat templates see.
    pub fn special_tokens_map(&self) -> impl Iterator<Item = (&str, &str)> {
        self.named
            .iter()
            .map(|(k, v)| (k.as_str(), v.text.as_str()))
    }

    /// Whether `id` is a special added token (skipped by `decode(.., true)`).
    pub fn is_special(&self, id: u32) -> bool {
        self.special_ids.contains_key(&id)
    }

    /// The bytes token `id` contributes to the decoded text, without the decoder's
    /// sequence-level clean-ups (leading-space strip).
    pub(crate) fn surface(&self, id: u32) -> TokenSurface {
        let Some(piece) = self.inner.id_to_token(id) else {
            return TokenSurface::Special;
        };
        // A byte-fallback piece is a byte even when registered as a special token (some
        // converted tokenizers add `<0xNN>` that way); the ByteFallback decoder still decodes it.
        if self.piece_style == PieceStyle::Metaspace
            && let Some(byte) = byte_fallback_value(&piece)
        {
            return TokenSurface::Text(vec![byte]);
        }
        if self.special_ids.contains_key(&id) {
            return TokenSurface::Special;
        }
        match self.piece_style {
            PieceStyle::ByteLevel => {
                let bytes = piece
                    .chars()
                    .map(|c| self.byte_of_char.get(&c).copied().unwrap_or(b'?'))
                    .collect();
                TokenSurface::Text(bytes)
            }
            PieceStyle::Metaspace => {
                TokenSurface::Text(piece.replace('\u{2581}', " ").into_bytes())
            }
            // without a decoder, tokenizers joins word-level tokens with single spaces
            PieceStyle::WordLevel => TokenSurface::Text(format!(" {piece}").into_bytes()),
        }
    }
}

/// `<0xNN>` → `NN`.
fn byte_fallback_value(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// transformers' `clean_up_tokenization`: removes the spaces the old BERT-style decoders left
/// before punctuation and contractions.
fn clean_up_tokenization(text: &str) -> String {
    [
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ]
    .iter()
    .fold(text.to_owned(), |t, (from, to)| t.replace(from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_is_a_bijection_over_bytes() {
        let table = byte_level_table();
        assert_eq!(table.len(), 256);
        assert_eq!(table[&'Ġ'], b' ');
        assert_eq!(table[&'Ċ'], b'\n');
        assert_eq!(table[&'a'], b'a');
        let mut bytes: Vec<u8> = table.values().copied().collect();
        bytes.sort_unstable();
        bytes.dedup();
        assert_eq!(bytes.len(), 256);
    }

    #[test]
    fn byte_fallback_pieces() {
        assert_eq!(byte_fallback_value("<0x0A>"), Some(b'\n'));
        assert_eq!(byte_fallback_value("<0xF0>"), Some(0xF0));
        assert_eq!(byte_fallback_value("<0x0>"), None);
        assert_eq!(byte_fallback_value("<s>"), None);
    }

    #[test]
    fn word_level_tokens_are_words_after_a_space() {
        let json = r#"{"version":"1.0","truncation":null,"padding":null,
            "added_tokens":[{"id":0,"content":"<unk>","single_word":false,"lstrip":false,
              "rstrip":false,"normalized":false,"special":true}],
            "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,
            "decoder":null,"model":{"type":"WordLevel",
              "vocab":{"<unk>":0,"a":1,"red":2,"circle":3,",":4},"unk_token":"<unk>"}}"#;
        let dir = std::env::temp_dir().join(format!("xlvlm-wordlevel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokenizer.json");
        std::fs::write(&path, json).unwrap();
        let config = serde_json::json!({"unk_token": "<unk>"});
        let tok =
            TextTokenizer::from_files(&path, &config, &dir.join("tokenizer_config.json")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let ids = tok.encode("a red circle, a", false).unwrap();
        assert_eq!(ids, vec![1, 2, 3, 4, 1]);
        assert_eq!(tok.decode(&ids, true).unwrap(), "a red circle , a");
        assert_eq!(tok.surface(2), TokenSurface::Text(b" red".to_vec()));
        assert_eq!(tok.surface(0), TokenSurface::Special);
    }

    #[test]
    fn clean_up_matches_transformers_rules() {
        assert_eq!(
            clean_up_tokenization("yes . I do n't , ok"),
            "yes. I don't, ok"
        );
    }
}
