//! Hook points (where activations are read or changed), position selections, captures and
//! interventions.
//!
//! Stable names: `lm.embed` (input embeddings after image features are scattered in),
//! `lm.layers.{i}` (decoder block output = residual stream), `lm.layers.{i}.attn` (self-attention
//! output before the residual add), `lm.layers.{i}.mlp` (MLP output before the residual add),
//! `lm.norm` (final norm output), `vision.layers.{i}` (CLIP encoder layer output), `projector`
//! (image features that replace the image tokens). The Hugging Face module names are accepted as
//! aliases, e.g. `language_model.model.layers.31`, `model.language_model.layers.3.mlp`,
//! `model.layers.27.self_attn`, `model.norm`, `vision_tower.vision_model.encoder.layers.5`,
//! `multi_modal_projector`; for Idefics3/SmolVLM `model.text_model.layers.30`,
//! `model.vision_model.encoder.layers.5`, `model.connector`; for Qwen2-VL `model.layers.27`,
//! `visual.blocks.5`, `visual.merger`; for Molmo `model.transformer.blocks.27`,
//! `model.transformer.ln_f`, `model.vision_backbone.image_vit.transformer.resblocks.5`,
//! `model.vision_backbone.image_projector`.

use std::fmt;

use crate::error::{ModelError, Result};

/// A place in the model where activations can be captured or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookPoint {
    Embed,
    Layer(usize),
    Attn(usize),
    Mlp(usize),
    Norm,
    VisionLayer(usize),
    Projector,
}

impl HookPoint {
    /// True for hooks on the vision side (one row per image, not per text token).
    pub fn is_vision(self) -> bool {
        matches!(self, Self::VisionLayer(_) | Self::Projector)
    }
}

impl fmt::Display for HookPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Embed => write!(f, "lm.embed"),
            Self::Layer(i) => write!(f, "lm.layers.{i}"),
            Self::Attn(i) => write!(f, "lm.layers.{i}.attn"),
            Self::Mlp(i) => write!(f, "lm.layers.{i}.mlp"),
            Self::Norm => write!(f, "lm.norm"),
            Self::VisionLayer(i) => write!(f, "vision.layers.{i}"),
            Self::Projector => write!(f, "projector"),
        }
    }
}

/// Every hook point of a model with `num_layers` decoder and `num_vision_layers` vision layers.
pub fn hook_points(num_layers: usize, num_vision_layers: usize) -> Vec<HookPoint> {
    let mut points = vec![HookPoint::Embed];
    for i in 0..num_layers {
        points.extend([HookPoint::Layer(i), HookPoint::Attn(i), HookPoint::Mlp(i)]);
    }
    points.push(HookPoint::Norm);
    points.extend((0..num_vision_layers).map(HookPoint::VisionLayer));
    if num_vision_layers > 0 {
        points.push(HookPoint::Projector);
    }
    points
}

const LM_PREFIXES: [&str; 7] = [
    "lm.",
    "language_model.model.",
    "model.language_model.",
    "model.text_model.",
    "language_model.",
    "text_model.",
    "model.",
];
const VISION_PREFIXES: [&str; 9] = [
    "vision.",
    "vision_tower.vision_model.encoder.",
    "vision_tower.encoder.",
    "model.vision_tower.vision_model.encoder.",
    "model.vision_tower.encoder.",
    "model.vision_model.encoder.",
    // Qwen2-VL: `visual.blocks.{i}`
    "visual.",
    "model.visual.",
    "vision_model.encoder.",
];
const PROJECTOR_NAMES: [&str; 7] = [
    "projector",
    "multi_modal_projector",
    "model.multi_modal_projector",
    "connector",
    "model.connector",
    "visual.merger",
    "model.visual.merger",
];

/// Parses a stable hook name or an HF module-name alias. `num_vision_layers` is 0 for text-only
/// models. An unknown name, or a layer index out of range, is an error listing the valid names.
pub fn parse_hook(name: &str, num_layers: usize, num_vision_layers: usize) -> Result<HookPoint> {
    parse_known(name.trim(), num_layers, num_vision_layers).ok_or_else(|| {
        let mut valid = vec!["lm.embed".to_string()];
        if num_layers > 0 {
            let last = num_layers - 1;
            valid.push(format!("lm.layers.{{0..={last}}}"));
            valid.push(format!("lm.layers.{{0..={last}}}.attn"));
            valid.push(format!("lm.layers.{{0..={last}}}.mlp"));
        }
        valid.push("lm.norm".to_string());
        if num_vision_layers > 0 {
            valid.push(format!("vision.layers.{{0..={}}}", num_vision_layers - 1));
            valid.push("projector".to_string());
        }
        valid.push(
            "or the Hugging Face module names (language_model.model.layers.N, model.norm, ...)"
                .to_string(),
        );
        ModelError::UnknownHook {
            name: name.to_string(),
            valid,
        }
    })
}

fn parse_known(name: &str, num_layers: usize, num_vision_layers: usize) -> Option<HookPoint> {
    if let Some(standard) = crate::families::molmo::hook_alias(name) {
        return parse_known(&standard, num_layers, num_vision_layers);
    }
    if num_vision_layers > 0 {
        if PROJECTOR_NAMES.contains(&name) {
            return Some(HookPoint::Projector);
        }
        for prefix in VISION_PREFIXES {
            if let Some(rest) = name.strip_prefix(prefix)
                && let Some(index) = rest
                    .strip_prefix("layers.")
                    .or_else(|| rest.strip_prefix("blocks."))
                && let Ok(i) = index.parse::<usize>()
                && i < num_vision_layers
            {
                return Some(HookPoint::VisionLayer(i));
            }
        }
    }
    for prefix in LM_PREFIXES {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        match rest {
            "embed" | "embed_tokens" => return Some(HookPoint::Embed),
            "norm" => return Some(HookPoint::Norm),
            _ => {}
        }
        let Some(rest) = rest.strip_prefix("layers.") else {
            continue;
        };
        let (index, sub) = match rest.split_once('.') {
            Some((index, sub)) => (index, Some(sub)),
            None => (rest, None),
        };
        let Ok(i) = index.parse::<usize>() else {
            continue;
        };
        if i >= num_layers {
            continue;
        }
        return match sub {
            None => Some(HookPoint::Layer(i)),
            Some("attn" | "self_attn") => Some(HookPoint::Attn(i)),
            Some("mlp") => Some(HookPoint::Mlp(i)),
            Some(_) => None,
        };
    }
    None
}

/// Which positions of a sequence a capture or intervention touches. Indices count positions in
/// the unpadded sequence (prompt, then generated tokens). On vision hooks the positions are those
/// of the vision sequences of a row's images one after another (LLaVA: class token first at the
/// encoder layers, dropped at the projector; Idefics3: each tile, then the global image).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Positions {
    All,
    /// Image-token positions (on vision hooks: every position).
    Image,
    /// Prompt tokens that are not image tokens.
    Prompt,
    /// Tokens produced by generation.
    Generated,
    /// The last token of the prompt (the one whose logits predict the first generated token).
    LastPromptToken,
    /// One position; negative counts back from the end of the prompt (-1 = last prompt token).
    Index(i64),
    /// Positions `start..end` (end exclusive; `None` = to the end).
    Range {
        start: usize,
        end: Option<usize>,
    },
}

/// The role of one token position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenRole {
    Image,
    Prompt,
    Generated,
}

/// What a captured row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositionMeta {
    /// Index in the unpadded sequence (text hooks) or in the vision sequence (vision hooks).
    pub position: usize,
    pub role: TokenRole,
    /// The token id at that position (`None` on vision hooks).
    pub token_id: Option<u32>,
}

impl Positions {
    /// Whether `meta` is selected, given the prompt length of its sequence.
    pub fn selects(&self, meta: &PositionMeta, prompt_len: usize) -> bool {
        match self {
            Self::All => true,
            Self::Image => meta.role == TokenRole::Image,
            Self::Prompt => meta.role == TokenRole::Prompt,
            Self::Generated => meta.role == TokenRole::Generated,
            Self::LastPromptToken => prompt_len > 0 && meta.position == prompt_len - 1,
            Self::Index(i) if *i >= 0 => meta.position == *i as usize,
            Self::Index(i) => {
                let back = i.unsigned_abs() as usize;
                back <= prompt_len && meta.position == prompt_len - back
            }
            Self::Range { start, end } => {
                meta.position >= *start && end.is_none_or(|e| meta.position < e)
            }
        }
    }

    /// Vision hooks have no prompt/generated roles: only these selections apply there.
    pub fn applies_to_vision(&self) -> bool {
        matches!(
            self,
            Self::All | Self::Image | Self::Index(_) | Self::Range { .. }
        )
    }
}

/// Read the activations at `hook`, at the selected positions.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureSpec {
    pub hook: HookPoint,
    pub positions: Positions,
}

/// How an intervention changes the hidden state `h` at a selected position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InterventionMode {
    /// `h' = h + alpha * v`
    Add,
    /// `h' = h - (h . u) u + alpha * u` with `u = v / |v|`: the component of `h` along `v` is
    /// replaced by `alpha` (in units of `|u| = 1`).
    Projected,
}

/// Change the activations at `hook` (at the selected positions) before the model goes on.
#[derive(Debug, Clone, PartialEq)]
pub struct Intervention {
    pub hook: HookPoint,
    /// A vector of the hook's hidden size.
    pub vector: Vec<f32>,
    pub alpha: f32,
    pub positions: Positions,
    pub mode: InterventionMode,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_names_and_aliases_parse() {
        let cases = [
            ("lm.embed", HookPoint::Embed),
            ("lm.layers.3", HookPoint::Layer(3)),
            ("lm.layers.0.attn", HookPoint::Attn(0)),
            ("lm.layers.31.mlp", HookPoint::Mlp(31)),
            ("lm.norm", HookPoint::Norm),
            ("vision.layers.23", HookPoint::VisionLayer(23)),
            ("projector", HookPoint::Projector),
            ("language_model.model.layers.31", HookPoint::Layer(31)),
            ("model.language_model.layers.2.mlp", HookPoint::Mlp(2)),
            ("model.layers.27.self_attn", HookPoint::Attn(27)),
            ("model.norm", HookPoint::Norm),
            ("language_model.model.embed_tokens", HookPoint::Embed),
            (
                "vision_tower.vision_model.encoder.layers.5",
                HookPoint::VisionLayer(5),
            ),
            ("vision_tower.encoder.layers.0", HookPoint::VisionLayer(0)),
            ("multi_modal_projector", HookPoint::Projector),
            ("model.text_model.layers.30", HookPoint::Layer(30)),
            ("model.text_model.norm", HookPoint::Norm),
            ("model.text_model.layers.4.mlp", HookPoint::Mlp(4)),
            (
                "model.vision_model.encoder.layers.11",
                HookPoint::VisionLayer(11),
            ),
            ("model.connector", HookPoint::Projector),
            ("visual.blocks.7", HookPoint::VisionLayer(7)),
            ("model.visual.blocks.0", HookPoint::VisionLayer(0)),
            ("visual.merger", HookPoint::Projector),
        ];
        for (name, want) in cases {
            assert_eq!(parse_hook(name, 32, 24).unwrap(), want, "{name}");
        }
        for point in hook_points(32, 24) {
            assert_eq!(parse_hook(&point.to_string(), 32, 24).unwrap(), point);
        }
    }

    #[test]
    fn unknown_or_out_of_range_names_list_the_valid_ones() {
        for bad in [
            "lm.layers.32",
            "vision.layers.0",
            "lm.layer.1",
            "lm.layers.1.foo",
            "projector",
            "",
        ] {
            let err = parse_hook(bad, 32, 0).unwrap_err().to_string();
            assert!(
                err.contains("lm.layers.{0..=31}") && err.contains("lm.norm"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn position_selection() {
        let meta = |position, role| PositionMeta {
            position,
            role,
            token_id: Some(1),
        };
        let prompt_len = 5;
        assert!(Positions::LastPromptToken.selects(&meta(4, TokenRole::Prompt), prompt_len));
        assert!(!Positions::LastPromptToken.selects(&meta(5, TokenRole::Generated), prompt_len));
        assert!(Positions::Index(-1).selects(&meta(4, TokenRole::Prompt), prompt_len));
        assert!(Positions::Index(-5).selects(&meta(0, TokenRole::Prompt), prompt_len));
        assert!(!Positions::Index(-6).selects(&meta(0, TokenRole::Prompt), prompt_len));
        assert!(Positions::Index(2).selects(&meta(2, TokenRole::Image), prompt_len));
        let range = Positions::Range {
            start: 1,
            end: Some(3),
        };
        assert!(!range.selects(&meta(0, TokenRole::Prompt), prompt_len));
        assert!(range.selects(&meta(2, TokenRole::Prompt), prompt_len));
        assert!(!range.selects(&meta(3, TokenRole::Prompt), prompt_len));
        assert!(Positions::Generated.selects(&meta(7, TokenRole::Generated), prompt_len));
        assert!(!Positions::Prompt.selects(&meta(1, TokenRole::Image), prompt_len));
    }
}
