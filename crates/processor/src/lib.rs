//! Inputs for Hugging Face vision-language checkpoints, exact to transformers' processors.
//!
//! * [`TextTokenizer`]: `tokenizer.json` through the `tokenizers` crate, with the special
//!   tokens and BOS/EOS rules of `tokenizer_config.json` applied as transformers 5 does.
//! * [`ChatTemplate`]: the checkpoint's own Jinja template (from `chat_template.json`,
//!   `chat_template.jinja` or `tokenizer_config.json`, in that order) rendered by minijinja,
//!   configured like transformers' jinja2 environment.
//! * [`ClipImageConfig`]: LLaVA-1.5's CLIP preprocessing with the `image` crate;
//!   [`Idefics3ImageConfig`]: Idefics3/SmolVLM's resize, tiling and global image;
//!   [`Idefics2ImageConfig`]: Idefics2's bounded resize;
//!   [`Qwen2VlImages`]: Qwen2-VL's dynamic-resolution patches ([`smart_resize`], temporal
//!   patch, merge-block order) and `<|image_pad|>` expansion;
//!   [`Molmo2ImageConfig`]: Molmo2's low-res view, overlapping crops, patch pooling and image
//!   token layout.
//! * [`Processor`]: all of the above for one checkpoint folder; [`Processor::encode_batch`]
//!   renders, preprocesses, expands image placeholders and pads ([`Batch`]: ids, attention
//!   mask, [`TokenRole`] per position, stacked pixel values);
//!   [`Processor::render_chat_with_vars`] passes extra template variables.
//! * [`find_word_spans`] / [`StopStrings`]: whole words in token sequences (token-of-interest
//!   extraction) and stop strings (generation).
//!
//! ```no_run
//! use xlvlm_processor::{ImageInput, Message, Padding, Processor, Prompt, Sample};
//! # fn main() -> xlvlm_processor::Result<()> {
//! let processor = Processor::from_dir("checkpoints/llava-1.5-7b-hf")?;
//! let sample = Sample {
//!     prompt: Prompt::Messages {
//!         messages: vec![Message::user_with_image("What is shown in this image?")],
//!         add_generation_prompt: true,
//!     },
//!     images: vec![ImageInput::Path("cat.jpg".as_ref())],
//! };
//! let batch = processor.encode_batch(&[sample], Padding::Left)?;
//! let text = processor.tokenizer().decode(batch.tokens(0), true)?;
//! let no_at = processor.find_word_positions(batch.tokens(0), "no");
//! let stop = processor.stop_strings(&["</s>", "\n"]);
//! let done = stop.matches(batch.tokens(0));
//! # let _ = (text, no_at, done);
//! # Ok(())
//! # }
//! ```
//!
//! A model family is added as one file implementing [`ImagePipeline`] plus one row in the
//! processor's family table (today: LLaVA-1.5, Idefics2, Idefics3, SmolVLM, Qwen2-VL, Molmo2).

mod chat;
mod error;
mod idefics2;
mod idefics3;
mod image;
mod llava;
mod molmo;
mod molmo2;
mod processor;
mod qwen2_vl;
mod strftime;
mod tokenizer;
mod words;

pub use crate::chat::{ChatTemplate, ChatTemplateSource, ContentPart, Message, MessageContent};
pub use crate::error::{ProcessorError, Result};
pub use crate::idefics2::{Idefics2ImageConfig, Idefics2Images};
pub use crate::idefics3::{Idefics3ImageConfig, Idefics3Images, Tiles};
pub use crate::image::{
    ClipImageConfig, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PixelValues, ResizeTo, load_image,
};
pub use crate::llava::LlavaImages;
pub use crate::molmo::{MolmoImage, MolmoImageConfig, MolmoImages, TokenPooling};
pub use crate::molmo2::{Molmo2Image, Molmo2ImageConfig, Molmo2Images};
pub use crate::processor::{
    Batch, CheckpointFiles, ImageInput, ImagePipeline, PixelBatch, ProcessedImage, Processor,
    Prompt, Sample, TokenRole,
};
pub use crate::qwen2_vl::{Qwen2VlImages, Qwen2VlPatches, smart_resize};
pub use crate::tokenizer::{NamedToken, Padding, TextTokenizer};
pub use crate::words::{MatchCase, StopStrings, WordSpan, find_word_spans};

/// The `image` crate, re-exported so callers can pass decoded images without a version clash.
pub use ::image as image_crate;
