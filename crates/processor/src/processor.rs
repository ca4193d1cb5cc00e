//! The processor of a checkpoint: tokenizer + chat template + the family's image pipeline, and
//! batched encoding with placeholder expansion and padding.

use std::path::{Path, PathBuf};

use image::DynamicImage;

use crate::chat::{ChatTemplate, ChatTemplateSource, Message};
use crate::error::{ProcessorError, Result, read_json};
use crate::idefics2::Idefics2Images;
use crate::idefics3::Idefics3Images;
use crate::image::load_image;
use crate::llava::LlavaImages;
use crate::molmo::{MolmoImages, TokenPooling};
use crate::molmo2::Molmo2Images;
use crate::qwen2_vl::Qwen2VlImages;
use crate::tokenizer::{Padding, TextTokenizer};
use crate::words::{MatchCase, StopStrings, WordSpan, find_word_spans};

/// One preprocessed image and the text that replaces its placeholder in the prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedImage {
    /// Values in the layout the vision tower takes: `[3, H, W]` for one picture (LLaVA), or
    /// `[tiles, 3, H, W]` for an image split into tiles (Idefics3: crops, then the global image).
    pub pixel_values: Vec<f32>,
    pub shape: Vec<usize>,
    /// What one placeholder becomes (for LLaVA: `<image>` repeated once per vision feature).
    pub placeholder: String,
    /// Qwen2-VL: the patch grid `[t, h, w]`; such images have `[patches, patch_dim]` values and
    /// are concatenated along the patches in a batch, whatever their size.
    pub image_grid_thw: Option<[usize; 3]>,
    /// `[tiles, H, W]`, true = real pixel, for tiles of different sizes padded (bottom and
    /// right, with zeros) to the image's largest (Idefics2 image splitting); `None`: no padding.
    pub pixel_mask: Option<Vec<bool>>,
    /// Which patches each image token pools (Molmo2); `None` for families without pooling.
    pub token_pooling: Option<TokenPooling>,
}

impl ProcessedImage {
    /// The shape as `[tiles, channels, height, width]` (one tile for a 3-d shape).
    fn tiles_shape(&self) -> Result<[usize; 4]> {
        match *self.shape.as_slice() {
            [c, h, w] => Ok([1, c, h, w]),
            [t, c, h, w] => Ok([t, c, h, w]),
            _ => Err(ProcessorError::Input(format!(
                "a preprocessed image has shape {:?}; expected [channels, height, width] or [tiles, channels, height, width]",
                self.shape
            ))),
        }
    }
}

/// The image side of a model family's processor. A family (LLaVA, Qwen2-VL, Idefics, Molmo) is
/// one implementation of this trait in its own file.
pub trait ImagePipeline: std::fmt::Debug + Send + Sync {
    /// Short family name (`llava`).
    fn family(&self) -> &'static str;
    /// The placeholder the chat template writes for each image (`<image>`).
    fn image_token(&self) -> &str;
    /// Preprocesses one image.
    fn preprocess(&self, image: &DynamicImage) -> Result<ProcessedImage>;
    /// The token whose positions receive the vision features ([`TokenRole::Image`]); the
    /// placeholder itself unless the expansion uses another token (Molmo2's `<im_patch>`).
    fn feature_token(&self) -> &str {
        self.image_token()
    }
    /// Rewrites a prompt after its placeholders were expanded (Idefics2 merges adjacent image
    /// boundary tokens); the default keeps it.
    fn finish_prompt(&self, text: String) -> String {
        text
    }
    /// A prompt format the family's processor applies itself, as a chat template; it replaces
    /// the checkpoint's template (the original Molmo frames prompts as `" User: ... Assistant:"`
    /// whatever its tokenizer files say). The default: none, the checkpoint's template rules.
    fn prompt_format(&self) -> Option<&'static str> {
        None
    }
    /// Whether the images of a batch may differ in size: they are then padded with zeros to the
    /// batch's largest height and width and the batch gets a `pixel_attention_mask`, as
    /// transformers' Idefics2 processor does. The default: sizes must agree.
    fn pads_to_batch(&self) -> bool {
        false
    }
}

/// The text of a sample: raw text (tokenized with the tokenizer's special tokens, e.g. BOS), or
/// messages rendered with the checkpoint's chat template.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Text(String),
    Messages {
        messages: Vec<Message>,
        add_generation_prompt: bool,
    },
}

/// An image given by path or already decoded.
#[derive(Debug, Clone, Copy)]
pub enum ImageInput<'a> {
    Path(&'a Path),
    Decoded(&'a DynamicImage),
}

/// One input: a prompt and the images for its placeholders, in order.
#[derive(Debug, Clone)]
pub struct Sample<'a> {
    pub prompt: Prompt,
    pub images: Vec<ImageInput<'a>>,
}

/// What a position of the batch holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRole {
    /// Padding (attention mask 0).
    Pad,
    /// A text or special token of the prompt.
    Prompt,
    /// An image placeholder token, replaced by a vision feature in the model.
    Image,
}

/// Pixel values of all images of a batch, stacked: what the model takes as `pixel_values`.
#[derive(Debug, Clone, PartialEq)]
pub struct PixelBatch {
    pub data: Vec<f32>,
    /// `[entries, 3, H, W]`: one entry per image (LLaVA), or per tile of a split image (Idefics3:
    /// each image's crops, then its global image), images in prompt order, samples in order;
    /// for Qwen2-VL the patches of all images concatenated, `[patches, patch_dim]`.
    pub shape: Vec<usize>,
    /// For each entry, the batch row (sample) it belongs to.
    pub sample_of_image: Vec<usize>,
    /// Qwen2-VL: the patch grid `[t, h, w]` of each image (`image_grid_thw`); empty otherwise.
    pub image_grid_thw: Vec<[usize; 3]>,
    /// Idefics2: `[entries, H, W]`, true = real pixel, for entries padded (bottom and right,
    /// with zeros) to the batch's largest height and width; `None` for families that do not pad.
    pub pixel_attention_mask: Option<Vec<bool>>,
    /// Molmo2: which patches each image token of the batch pools, in token order, indexing the
    /// patches of all entries (what the model's `PatchPooling` takes); `None` otherwise.
    pub token_pooling: Option<TokenPooling>,
}

/// One image or tile of a family that pads entries to the batch's largest size.
struct PaddedEntry {
    data: Vec<f32>,
    /// `[channels, height, width]`
    shape: [usize; 3],
    /// `[height, width]`, true = real pixel
    mask: Vec<bool>,
}

impl PaddedEntry {
    /// The tiles of one preprocessed image, each with its mask (all real without one).
    fn split(img: &ProcessedImage, [tiles, c, h, w]: [usize; 4]) -> Result<Vec<Self>> {
        let plane = h * w;
        if img.pixel_values.len() != tiles * c * plane {
            return Err(ProcessorError::Input(format!(
                "a preprocessed image of shape {:?} holds {} values",
                img.shape,
                img.pixel_values.len()
            )));
        }
        if img
            .pixel_mask
            .as_ref()
            .is_some_and(|m| m.len() != tiles * plane)
        {
            return Err(ProcessorError::Input(format!(
                "a preprocessed image of shape {:?} has a pixel mask of {} values, expected {}",
                img.shape,
                img.pixel_mask.as_ref().map_or(0, Vec::len),
                tiles * plane
            )));
        }
        Ok((0..tiles)
            .map(|t| Self {
                data: img.pixel_values[t * c * plane..(t + 1) * c * plane].to_vec(),
                shape: [c, h, w],
                mask: img.pixel_mask.as_ref().map_or_else(
                    || vec![true; plane],
                    |m| m[t * plane..(t + 1) * plane].to_vec(),
                ),
            })
            .collect())
    }

    /// All entries zero-padded (bottom and right) to the largest height and width:
    /// the values `[entries, channels, H, W]`, `[channels, H, W]`, the mask `[entries, H, W]`.
    fn pad_all(entries: &[Self]) -> Result<(Vec<f32>, [usize; 3], Vec<bool>)> {
        let channels = entries[0].shape[0];
        if let Some(e) = entries.iter().find(|e| e.shape[0] != channels) {
            return Err(ProcessorError::Input(format!(
                "images of {} and {channels} channels in one batch",
                e.shape[0]
            )));
        }
        let height = entries.iter().map(|e| e.shape[1]).max().unwrap_or(0);
        let width = entries.iter().map(|e| e.shape[2]).max().unwrap_or(0);
        let mut data = vec![0.0; entries.len() * channels * height * width];
        let mut mask = vec![false; entries.len() * height * width];
        for (k, entry) in entries.iter().enumerate() {
            let [_, h, w] = entry.shape;
            for y in 0..h {
                let to = (k * height + y) * width;
                mask[to..to + w].copy_from_slice(&entry.mask[y * w..(y + 1) * w]);
                for ch in 0..channels {
                    let to = ((k * channels + ch) * height + y) * width;
                    let from = (ch * h + y) * w;
                    data[to..to + w].copy_from_slice(&entry.data[from..from + w]);
                }
            }
        }
        Ok((data, [channels, height, width], mask))
    }
}

/// A padded batch, row-major `[batch_size, seq_len]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub input_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u32>,
    pub token_roles: Vec<TokenRole>,
    pub batch_size: usize,
    pub seq_len: usize,
    /// Number of real tokens of each row.
    pub lengths: Vec<usize>,
    /// Side the padding went on.
    pub padding: Padding,
    /// The prompt text of each row before placeholder expansion (the rendered template).
    pub prompts: Vec<String>,
    pub pixel_values: Option<PixelBatch>,
}

impl Batch {
    /// Ids of row `i`, padding included.
    pub fn row(&self, i: usize) -> &[u32] {
        &self.input_ids[i * self.seq_len..(i + 1) * self.seq_len]
    }

    /// Ids of row `i` without padding.
    pub fn tokens(&self, i: usize) -> &[u32] {
        let row = self.row(i);
        match self.padding {
            Padding::Left => &row[self.seq_len - self.lengths[i]..],
            Padding::Right => &row[..self.lengths[i]],
        }
    }

    /// Index in row `i` of its first real token (non-zero with left padding).
    pub fn first_token_index(&self, i: usize) -> usize {
        match self.padding {
            Padding::Left => self.seq_len - self.lengths[i],
            Padding::Right => 0,
        }
    }
}

/// Processor of one checkpoint.
#[derive(Debug)]
pub struct Processor {
    tokenizer: TextTokenizer,
    chat_template: Option<ChatTemplate>,
    /// (file, message) of a template that failed to compile: reported when a chat is rendered,
    /// so raw-text prompts still work with such a checkpoint.
    chat_template_error: Option<(String, String)>,
    images: Option<Box<dyn ImagePipeline>>,
    image_token_id: Option<u32>,
    dir: PathBuf,
}

/// What a family's image pipeline is built from: the checkpoint's parsed processor files.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointFiles<'a> {
    pub dir: &'a Path,
    pub tokenizer: &'a TextTokenizer,
    /// `processor_config.json` (top level), when present.
    pub processor_config: Option<&'a serde_json::Value>,
    pub processor_config_path: &'a Path,
    /// The image-processor settings: the `image_processor` entry of a transformers-5
    /// `processor_config.json`, or the Hub's `preprocessor_config.json`.
    pub image_settings: &'a serde_json::Value,
    pub image_settings_path: &'a Path,
    /// `config.json`, when present.
    pub model_config: Option<&'a serde_json::Value>,
}

impl<'a> CheckpointFiles<'a> {
    /// A processor setting: `processor_config.json`'s top level, else the image settings.
    pub(crate) fn setting(&self, key: &str) -> Option<&'a serde_json::Value> {
        self.processor_config
            .and_then(|c| c.get(key))
            .or_else(|| self.image_settings.get(key))
    }

    /// The text of the tokenizer's special token `name` (`image_token`, ...), else `default`.
    pub(crate) fn special_token_or(&self, name: &str, default: &str) -> String {
        self.tokenizer
            .special_token(name)
            .map_or_else(|| default.to_owned(), |t| t.text.clone())
    }

    /// An error naming `tokenizer.json` unless every token is in the vocabulary.
    pub(crate) fn require_tokens(&self, family: &str, tokens: &[&str]) -> Result<()> {
        match tokens
            .iter()
            .find(|t| self.tokenizer.token_to_id(t).is_none())
        {
            Some(t) => Err(ProcessorError::BadFile {
                path: self.dir.join("tokenizer.json"),
                detail: format!("the {family} image token {t:?} is not in the vocabulary"),
            }),
            None => Ok(()),
        }
    }
}

type PipelineBuilder = fn(&CheckpointFiles<'_>) -> Result<Box<dyn ImagePipeline>>;

/// The families this crate implements: (`processor_class`, `model_type`, builder). A family is
/// recognised by the processor class in the processor files, or by `config.json`'s model type
/// when no class is named.
const FAMILIES: &[(&str, &str, PipelineBuilder)] = &[
    ("LlavaProcessor", "llava", |files| {
        Ok(Box::new(LlavaImages::from_checkpoint(files)?))
    }),
    ("Idefics2Processor", "idefics2", |files| {
        Ok(Box::new(Idefics2Images::from_checkpoint(files)?))
    }),
    ("Idefics3Processor", "idefics3", |files| {
        Ok(Box::new(Idefics3Images::from_checkpoint(files)?))
    }),
    ("SmolVLMProcessor", "smolvlm", |files| {
        Ok(Box::new(Idefics3Images::from_checkpoint(files)?))
    }),
    ("Qwen2VLProcessor", "qwen2_vl", |files| {
        Ok(Box::new(Qwen2VlImages::from_checkpoint(files)?))
    }),
    ("MolmoProcessor", "molmo", |files| {
        Ok(Box::new(MolmoImages::from_checkpoint(files)?))
    }),
    ("Molmo2Processor", "molmo2", |files| {
        Ok(Box::new(Molmo2Images::from_checkpoint(files)?))
    }),
];

fn image_pipeline_for(files: &CheckpointFiles<'_>) -> Result<Box<dyn ImagePipeline>> {
    let class = files
        .processor_config
        .and_then(|c| c.get("processor_class"))
        .or_else(|| files.image_settings.get("processor_class"))
        .and_then(|v| v.as_str());
    let model_type = files
        .model_config
        .and_then(|c| c.get("model_type"))
        .and_then(|v| v.as_str());
    let family = FAMILIES.iter().find(|(c, m, _)| match class {
        Some(class) => class == *c,
        None => model_type == Some(*m),
    });
    match family {
        Some((_, _, build)) => build(files),
        None => Err(ProcessorError::BadFile {
            path: files.image_settings_path.to_path_buf(),
            detail: format!(
                "processor class {} (model_type {}) is not supported; supported: {}",
                class.unwrap_or("(none)"),
                model_type.unwrap_or("(none)"),
                FAMILIES
                    .iter()
                    .map(|(c, _, _)| *c)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

impl Processor {
    /// Loads everything from an HF checkpoint folder: `tokenizer.json` (+ `tokenizer_config.json`),
    /// the chat template, and the image processor (`processor_config.json` of transformers 5 with
    /// the settings nested under `image_processor`, or the Hub's `preprocessor_config.json`). A
    /// folder without image-processor files gives a text-only processor.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        if !dir.is_dir() {
            return Err(ProcessorError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let tokenizer = TextTokenizer::from_dir(dir)?;
        let (chat_template, chat_template_error) = match ChatTemplate::find_in_dir(dir) {
            Ok(template) => (template, None),
            Err(ProcessorError::ChatTemplate {
                source_file,
                detail,
            }) => (None, Some((source_file, detail))),
            Err(other) => return Err(other),
        };

        let processor_path = dir.join("processor_config.json");
        let preprocessor_path = dir.join("preprocessor_config.json");
        let processor_config = if processor_path.is_file() {
            Some(read_json(&processor_path)?)
        } else {
            None
        };
        let nested = processor_config
            .as_ref()
            .and_then(|c| c.get("image_processor"))
            .cloned();
        let (image_settings, settings_path) = match nested {
            Some(v) => (Some(v), processor_path.clone()),
            None if preprocessor_path.is_file() => (
                Some(read_json(&preprocessor_path)?),
                preprocessor_path.clone(),
            ),
            None => (None, processor_path.clone()),
        };
        let model_config_path = dir.join("config.json");
        let model_config = if model_config_path.is_file() {
            Some(read_json(&model_config_path)?)
        } else {
            None
        };

        let images = match image_settings {
            None => None,
            Some(image_settings) => {
                let files = CheckpointFiles {
                    dir,
                    tokenizer: &tokenizer,
                    processor_config: processor_config.as_ref(),
                    processor_config_path: &processor_path,
                    image_settings: &image_settings,
                    image_settings_path: &settings_path,
                    model_config: model_config.as_ref(),
                };
                Some(image_pipeline_for(&files)?)
            }
        };
        let (chat_template, chat_template_error) =
            match images.as_deref().and_then(|p| p.prompt_format()) {
                Some(format) => (
                    Some(ChatTemplate::new(
                        format.to_owned(),
                        ChatTemplateSource::Processor,
                    )?),
                    None,
                ),
                None => (chat_template, chat_template_error),
            };
        let image_token_id = match &images {
            Some(p) => Some(tokenizer.token_to_id(p.feature_token()).ok_or_else(|| {
                ProcessorError::BadFile {
                    path: dir.join("tokenizer.json"),
                    detail: format!(
                        "image token {:?} is not in the vocabulary",
                        p.feature_token()
                    ),
                }
            })?),
            None => None,
        };
        Ok(Self {
            tokenizer,
            chat_template,
            chat_template_error,
            images,
            image_token_id,
            dir: dir.to_path_buf(),
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Why the checkpoint's chat template could not be compiled, if it could not.
    pub fn chat_template_error(&self) -> Option<String> {
        self.chat_template_error
            .as_ref()
            .map(|(file, detail)| format!("chat template from {file}: {detail}"))
    }

    /// The chat template, if the checkpoint has one that compiled (its `source()` says which
    /// file won).
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// The image pipeline, `None` for a text-only checkpoint.
    pub fn images(&self) -> Option<&dyn ImagePipeline> {
        self.images.as_deref()
    }

    /// Id of the image placeholder token.
    pub fn image_token_id(&self) -> Option<u32> {
        self.image_token_id
    }

    /// Renders messages with the checkpoint's chat template, like
    /// `processor.apply_chat_template(messages, add_generation_prompt=..., tokenize=False)`.
    pub fn render_chat(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        self.render_chat_with_vars(messages, add_generation_prompt, &Default::default())
    }

    /// [`render_chat`](Self::render_chat) with extra template variables (`add_vision_id`, ...).
    pub fn render_chat_with_vars(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String> {
        if let Some((source_file, detail)) = &self.chat_template_error {
            return Err(ProcessorError::ChatTemplate {
                source_file: format!("{}", self.dir.join(source_file).display()),
                detail: detail.clone(),
            });
        }
        let template =
            self.chat_template
                .as_ref()
                .ok_or_else(|| ProcessorError::NoChatTemplate {
                    dir: self.dir.clone(),
                    looked_for: "chat_template.json, chat_template.jinja, tokenizer_config.json"
                        .into(),
                })?;
        template.render_with_vars(
            messages,
            add_generation_prompt,
            self.tokenizer.special_tokens_map(),
            vars,
        )
    }

    /// Preprocesses one image with the family's pipeline.
    pub fn preprocess_image(&self, image: &DynamicImage) -> Result<ProcessedImage> {
        self.image_pipeline()?.preprocess(image)
    }

    fn image_pipeline(&self) -> Result<&dyn ImagePipeline> {
        self.images.as_deref().ok_or_else(|| {
            ProcessorError::Input(format!(
                "{}: the checkpoint has no image processor (no processor_config.json or preprocessor_config.json) but images were given",
                self.dir.display()
            ))
        })
    }

    /// Encodes samples into a padded batch: renders messages, preprocesses images, expands each
    /// image placeholder, tokenizes, pads with the tokenizer's pad id on `padding`'s side.
    pub fn encode_batch(&self, samples: &[Sample<'_>], padding: Padding) -> Result<Batch> {
        if samples.is_empty() {
            return Err(ProcessorError::Input("encode_batch: no samples".into()));
        }
        let mut rows: Vec<Vec<u32>> = Vec::with_capacity(samples.len());
        let mut prompts = Vec::with_capacity(samples.len());
        let mut pixel_data = Vec::new();
        // [channels, height, width] of every entry (image or tile)
        let mut entry_shape: Option<[usize; 3]> = None;
        // families that pad: every entry with its shape and mask, padded once all are known
        let pads = self.images.as_deref().is_some_and(|p| p.pads_to_batch());
        let mut padded_entries: Vec<PaddedEntry> = Vec::new();
        let mut sample_of_image = Vec::new();
        let mut pooling: Option<TokenPooling> = None;
        // Qwen2-VL: grid of every image, patch width, and patches of all images so far
        let mut image_grid_thw = Vec::new();
        let mut patch_dim: Option<usize> = None;
        let mut concatenated_rows = 0;
        for (index, sample) in samples.iter().enumerate() {
            let (text, add_special) = match &sample.prompt {
                Prompt::Text(t) => (t.clone(), true),
                Prompt::Messages {
                    messages,
                    add_generation_prompt,
                } => {
                    let text = self.render_chat(messages, *add_generation_prompt)?;
                    // transformers' processor skips the tokenizer's special tokens when the
                    // rendered template already starts with the BOS.
                    let has_bos = self
                        .tokenizer
                        .bos()
                        .is_some_and(|b| text.starts_with(b.text.as_str()));
                    (text, !has_bos)
                }
            };
            let expanded = self.expand_placeholders(index, &text, &sample.images, |img| {
                if let Some(grid) = img.image_grid_thw {
                    // Qwen2-VL: any number of patches per image, concatenated
                    let &[patches, dim] = img.shape.as_slice() else {
                        return Err(ProcessorError::Input(format!(
                            "sample {index}: image patches have shape {:?}, expected [patches, patch_dim]",
                            img.shape
                        )));
                    };
                    if patch_dim.is_some_and(|d| d != dim) {
                        return Err(ProcessorError::Input(format!(
                            "sample {index}: patches of {dim} values differ from earlier images'"
                        )));
                    }
                    patch_dim = Some(dim);
                    image_grid_thw.push(grid);
                    concatenated_rows += patches;
                    pixel_data.extend_from_slice(&img.pixel_values);
                    sample_of_image.push(index);
                    return Ok(());
                }
                let [tiles, c, h, w] = img.tiles_shape()?;
                if pads {
                    padded_entries.extend(PaddedEntry::split(img, [tiles, c, h, w])?);
                    sample_of_image.extend(std::iter::repeat_n(index, tiles));
                    return Ok(());
                }
                match &entry_shape {
                    Some(s) if *s != [c, h, w] => {
                        return Err(ProcessorError::Input(format!(
                            "sample {index}: image shape {:?} differs from {:?} of earlier images",
                            img.shape, s
                        )));
                    }
                    Some(_) => {}
                    None => entry_shape = Some([c, h, w]),
                }
                if let Some(own) = &img.token_pooling {
                    // the image's patch indices count from its first entry
                    let offset = (sample_of_image.len() * own.patches_per_entry) as i64;
                    let all = pooling.get_or_insert_with(|| TokenPooling {
                        index: Vec::new(),
                        window: own.window,
                        patches_per_entry: own.patches_per_entry,
                        patch_masks: own.patch_masks.as_ref().map(|_| Vec::new()),
                    });
                    all.index.extend(
                        own.index
                            .iter()
                            .map(|&i| if i >= 0 { i + offset } else { i }),
                    );
                    if let (Some(all), Some(own)) = (&mut all.patch_masks, &own.patch_masks) {
                        all.extend_from_slice(own);
                    }
                }
                pixel_data.extend_from_slice(&img.pixel_values);
                sample_of_image.extend(std::iter::repeat_n(index, tiles));
                Ok(())
            })?;
            rows.push(self.tokenizer.encode(&expanded, add_special)?);
            prompts.push(text);
        }
        let seq_len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let batch_size = rows.len();
        let pad_id = self.tokenizer.pad_id();
        let mut input_ids = Vec::with_capacity(batch_size * seq_len);
        let mut attention_mask = Vec::with_capacity(batch_size * seq_len);
        let mut token_roles = Vec::with_capacity(batch_size * seq_len);
        let mut lengths = Vec::with_capacity(batch_size);
        for row in &rows {
            let pad = seq_len - row.len();
            let push_pad = |ids: &mut Vec<u32>, mask: &mut Vec<u32>, roles: &mut Vec<TokenRole>| {
                ids.extend(std::iter::repeat_n(pad_id, pad));
                mask.extend(std::iter::repeat_n(0, pad));
                roles.extend(std::iter::repeat_n(TokenRole::Pad, pad));
            };
            if padding == Padding::Left {
                push_pad(&mut input_ids, &mut attention_mask, &mut token_roles);
            }
            input_ids.extend_from_slice(row);
            attention_mask.extend(std::iter::repeat_n(1, row.len()));
            token_roles.extend(row.iter().map(|&id| {
                if Some(id) == self.image_token_id {
                    TokenRole::Image
                } else {
                    TokenRole::Prompt
                }
            }));
            if padding == Padding::Right {
                push_pad(&mut input_ids, &mut attention_mask, &mut token_roles);
            }
            lengths.push(row.len());
        }
        let mut pixel_attention_mask = None;
        if !padded_entries.is_empty() {
            let (data, shape, mask) = PaddedEntry::pad_all(&padded_entries)?;
            pixel_data = data;
            entry_shape = Some(shape);
            pixel_attention_mask = Some(mask);
        }
        let stacked = entry_shape.map(|shape| {
            let mut full = vec![sample_of_image.len()];
            full.extend(shape);
            full
        });
        let concatenated = patch_dim.map(|dim| vec![concatenated_rows, dim]);
        let pixel_values = stacked.or(concatenated).map(|full| PixelBatch {
            data: pixel_data,
            shape: full,
            sample_of_image,
            image_grid_thw,
            pixel_attention_mask,
            token_pooling: pooling,
        });
        Ok(Batch {
            input_ids,
            attention_mask,
            token_roles,
            batch_size,
            seq_len,
            lengths,
            padding,
            prompts,
            pixel_values,
        })
    }

    /// Replaces each image placeholder of `text` by the expansion of the matching image; the
    /// number of placeholders must equal the number of images.
    fn expand_placeholders(
        &self,
        index: usize,
        text: &str,
        images: &[ImageInput<'_>],
        mut on_image: impl FnMut(&ProcessedImage) -> Result<()>,
    ) -> Result<String> {
        let Some(pipeline) = self.images.as_deref() else {
            if !images.is_empty() {
                self.image_pipeline()?;
            }
            return Ok(text.to_owned());
        };
        let token = pipeline.image_token();
        let pieces: Vec<&str> = text.split(token).collect();
        let placeholders = pieces.len() - 1;
        if placeholders != images.len() {
            return Err(ProcessorError::Input(format!(
                "sample {index}: the prompt has {placeholders} {token} placeholder(s) but {} image(s) were given",
                images.len()
            )));
        }
        let mut out = String::with_capacity(text.len());
        out.push_str(pieces[0]);
        for (image, piece) in images.iter().zip(&pieces[1..]) {
            let decoded;
            let image = match image {
                ImageInput::Decoded(img) => *img,
                ImageInput::Path(path) => {
                    decoded = load_image(path)?;
                    &decoded
                }
            };
            let processed = pipeline.preprocess(image)?;
            out.push_str(&processed.placeholder);
            on_image(&processed)?;
            out.push_str(piece);
        }
        Ok(pipeline.finish_prompt(out))
    }

    /// Every whole-word occurrence of `word` in `ids` (see [`find_word_spans`]).
    pub fn find_word(&self, ids: &[u32], word: &str, case: MatchCase) -> Vec<WordSpan> {
        find_word_spans(&self.tokenizer, ids, word, case)
    }

    /// Positions where `word` starts as a whole word (case-insensitive).
    pub fn find_word_positions(&self, ids: &[u32], word: &str) -> Vec<usize> {
        self.find_word(ids, word, MatchCase::Insensitive)
            .iter()
            .map(|s| s.first)
            .collect()
    }

    /// Stop strings over this checkpoint's tokens (`matches(&generated_ids)`).
    pub fn stop_strings<S: AsRef<str>>(&self, strings: &[S]) -> StopStrings<'_> {
        StopStrings::new(&self.tokenizer, strings)
    }
}
