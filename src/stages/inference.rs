//! What the model stages (`extract`, `steer`) share: loading a checkpoint once per process,
//! building prompts the way the seed does, encoding left-padded batches, the generations table,
//! and shard bookkeeping.

use std::any::Any;
use std::cell::RefCell;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::rc::Rc;

use anyhow::{Context, bail};
use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use xlvlm_dag::{NodeModel, StageContext};
use xlvlm_data::{Sample, Task};
use xlvlm_model::{BackendTask, DeviceSpec, FinishReason, HookPoint, Vlm, WeightDType, run_on};
use xlvlm_processor::{ContentPart, ImageInput, Message, Padding, Processor, Prompt, load_image};
use xlvlm_spec::{Dtype, PromptParams};
use xlvlm_store::{Column, FeatureTable};

/// A loaded checkpoint: the model and its processor.
pub struct Loaded<B: Backend> {
    pub model: Vlm<B>,
    pub processor: Processor,
}

/// Which checkpoint a cached [`Loaded`] is.
#[derive(Clone, PartialEq)]
struct CacheKey {
    dir: PathBuf,
    dtype: Dtype,
    device: String,
}

thread_local! {
    /// The last model loaded, kept for the next stage that runs the same checkpoint (extract
    /// then steer, or the instances of an alpha sweep). One entry only: two 7B models in memory
    /// at once would not fit most machines.
    static LOADED: RefCell<Option<(CacheKey, Rc<dyn Any>)>> = const { RefCell::new(None) };
}

/// Work a model stage does once the model is loaded, on whichever backend the device selects.
pub trait ModelWork {
    type Output;
    fn run<B: Backend>(self, loaded: &Loaded<B>) -> anyhow::Result<Self::Output>;
}

struct Dispatch<'a, W> {
    model: &'a NodeModel,
    work: W,
}

impl<W: ModelWork> BackendTask for Dispatch<'_, W> {
    type Output = anyhow::Result<W::Output>;

    fn run<B: Backend>(self, device: B::Device) -> xlvlm_model::Result<Self::Output> {
        Ok(load_cached::<B>(self.model, &device).and_then(|loaded| self.work.run(&loaded)))
    }
}

/// Runs `work` with the stage's model, loading it unless the previous stage left it loaded.
pub fn with_model<W: ModelWork>(model: &NodeModel, work: W) -> anyhow::Result<W::Output> {
    let device: DeviceSpec = model
        .spec
        .device
        .parse()
        .with_context(|| format!("model `{}`", model.name))?;
    run_on(device, Dispatch { model, work })
        .with_context(|| format!("model `{}` on {device}", model.name))?
}

fn load_cached<B: Backend>(model: &NodeModel, device: &B::Device) -> anyhow::Result<Rc<Loaded<B>>> {
    let key = CacheKey {
        dir: model.dir.clone(),
        dtype: model.spec.dtype,
        device: model.spec.device.clone(),
    };
    let hit = LOADED.with_borrow(|cached| {
        cached
            .as_ref()
            .filter(|(k, _)| *k == key)
            .and_then(|(_, any)| any.clone().downcast::<Loaded<B>>().ok())
    });
    if let Some(loaded) = hit {
        tracing::debug!("reusing the loaded model `{}`", model.name);
        return Ok(loaded);
    }
    // Drop the previous model before loading the next one.
    LOADED.with_borrow_mut(|cached| *cached = None);
    let dtype = match model.spec.dtype {
        Dtype::F32 => WeightDType::F32,
        Dtype::F16 => WeightDType::F16,
        Dtype::Bf16 => WeightDType::BF16,
    };
    tracing::info!(
        "loading model `{}` from {}",
        model.name,
        model.dir.display()
    );
    let vlm = Vlm::<B>::load_dir(&model.dir, dtype, device)
        .with_context(|| format!("loading the checkpoint {}", model.dir.display()))?;
    let processor = Processor::from_dir(&model.dir)
        .with_context(|| format!("loading the processor of {}", model.dir.display()))?;
    let loaded = Rc::new(Loaded {
        model: vlm,
        processor,
    });
    LOADED.with_borrow_mut(|cached| *cached = Some((key, loaded.clone() as Rc<dyn Any>)));
    Ok(loaded)
}

/// Hook names resolved against the model (aliases accepted) and their canonical names; two names
/// for the same hook point are an error.
pub fn parse_hooks<B: Backend>(
    model: &Vlm<B>,
    names: &[String],
) -> anyhow::Result<(Vec<HookPoint>, Vec<String>)> {
    let hooks: Vec<HookPoint> = names
        .iter()
        .map(|h| model.parse_hook(h).with_context(|| format!("hook `{h}`")))
        .collect::<anyhow::Result<_>>()?;
    for (i, h) in hooks.iter().enumerate() {
        if hooks[..i].contains(h) {
            bail!("hooks `{}` and another name both mean `{h}`", names[i]);
        }
    }
    let canonical = hooks.iter().map(HookPoint::to_string).collect();
    Ok((hooks, canonical))
}

/// The samples a model stage runs on.
pub fn samples(ctx: &StageContext<'_>) -> anyhow::Result<Vec<Sample>> {
    let data = ctx
        .node
        .data
        .as_ref()
        .context("the stage names no dataset")?;
    let loaded = super::dataset::load(&data.name, &data.spec)?;
    if loaded.samples.is_empty() {
        bail!("dataset `{}` selects no sample", data.name);
    }
    Ok(loaded.samples)
}

/// The instruction of a sample, as the seed's `llava` prompt template builds it: the caption
/// prompt, the question followed by the short-answer suffix, or the user's own prompt.
pub fn instruction(sample: &Sample, prompt: &PromptParams) -> String {
    match sample.task {
        Task::Captioning => prompt.caption.clone(),
        Task::Vqa => format!(
            "{}{}",
            sample.prompt.as_deref().unwrap_or_default().trim(),
            prompt.vqa_suffix
        ),
        Task::Custom => sample.prompt.clone().unwrap_or_default(),
    }
}

/// One encoded batch: the model's input and, per row, the unpadded prompt ids and where the
/// answer starts (the prompt length in generation; the first response token in teacher forcing).
pub struct Encoded {
    pub batch: xlvlm_model::Batch,
    pub ids: Vec<Vec<u32>>,
    pub answer_start: Vec<usize>,
}

fn prompt_of(
    processor: &Processor,
    sample: &Sample,
    prompt: &PromptParams,
    response: Option<&str>,
) -> Prompt {
    let text = instruction(sample, prompt);
    if prompt.chat_template {
        let mut parts = Vec::new();
        if sample.image.is_some() {
            parts.push(ContentPart::Image);
        }
        parts.push(ContentPart::Text { text });
        let mut messages = vec![Message::new("user", parts)];
        if let Some(r) = response {
            messages.push(Message::new(
                "assistant",
                vec![ContentPart::Text {
                    text: r.to_string(),
                }],
            ));
        }
        Prompt::Messages {
            messages,
            add_generation_prompt: response.is_none(),
        }
    } else {
        let image = match (sample.image.is_some(), processor.images()) {
            (true, Some(p)) => format!("{}\n", p.image_token()),
            _ => String::new(),
        };
        let answer = response.map(|r| format!(" {r}")).unwrap_or_default();
        Prompt::Text(format!("{image}{text}{answer}"))
    }
}

/// Encodes samples into a left-padded batch. With `teacher_forcing`, each sample's response
/// follows as the assistant's turn and `answer_start` marks its first token.
pub fn encode(
    processor: &Processor,
    samples: &[Sample],
    prompt: &PromptParams,
    teacher_forcing: bool,
) -> anyhow::Result<Encoded> {
    if prompt.chat_template
        && processor.chat_template().is_none()
        && processor.chat_template_error().is_none()
    {
        bail!(
            "the checkpoint has no chat template (chat_template.json, chat_template.jinja or tokenizer_config.json); set `prompt = {{ chat_template = false }}` to send `<image>\\n{{instruction}}` as raw text"
        );
    }
    // Teacher forcing encodes every sample twice (with and without its response): decode each
    // image once.
    let decoded: Vec<Option<xlvlm_processor::image_crate::DynamicImage>> = if teacher_forcing {
        samples
            .iter()
            .map(|s| {
                s.image
                    .as_deref()
                    .map(|path| {
                        load_image(path)
                            .with_context(|| format!("sample `{}`: reading its image", s.id))
                    })
                    .transpose()
            })
            .collect::<anyhow::Result<_>>()?
    } else {
        Vec::new()
    };
    let inputs = |with_response: bool| -> Vec<xlvlm_processor::Sample<'_>> {
        samples
            .iter()
            .enumerate()
            .map(|(i, s)| xlvlm_processor::Sample {
                prompt: prompt_of(
                    processor,
                    s,
                    prompt,
                    s.response.as_deref().filter(|_| with_response),
                ),
                images: match decoded.get(i) {
                    Some(image) => image.as_ref().map(ImageInput::Decoded),
                    None => s.image.as_deref().map(ImageInput::Path),
                }
                .into_iter()
                .collect(),
            })
            .collect()
    };
    let ids_of = |b: &xlvlm_processor::Batch| -> Vec<Vec<u32>> {
        (0..b.batch_size).map(|i| b.tokens(i).to_vec()).collect()
    };
    let first = |s: &[Sample]| s.first().map_or(String::new(), |s| s.id.clone());
    let full = processor
        .encode_batch(&inputs(teacher_forcing), Padding::Left)
        .with_context(|| {
            format!(
                "encoding the batch that starts at sample `{}`",
                first(samples)
            )
        })?;
    let ids = ids_of(&full);
    let answer_start = if teacher_forcing {
        let prefix = processor
            .encode_batch(&inputs(false), Padding::Left)
            .context("encoding the prompts without responses")?;
        ids_of(&prefix)
            .iter()
            .zip(&ids)
            .zip(samples)
            .map(|((p, f), s)| {
                if s.response.is_none() {
                    return f.len();
                }
                // The generation prompt may tokenize differently where the response is glued
                // on; the answer starts where the two sequences part.
                p.iter().zip(f).take_while(|(a, b)| a == b).count()
            })
            .collect()
    } else {
        ids.iter().map(Vec::len).collect()
    };
    let rows: Vec<Vec<u32>> = (0..full.batch_size).map(|i| full.row(i).to_vec()).collect();
    let mask: Vec<Vec<i64>> = full
        .attention_mask
        .chunks(full.seq_len)
        .map(|m| m.iter().map(|&v| i64::from(v)).collect())
        .collect();
    let mut batch = xlvlm_model::Batch::from_padded(rows, mask);
    match full.pixel_values {
        // Qwen2-VL: flattened patches of every image with each image's patch grid
        Some(px) if !px.image_grid_thw.is_empty() => {
            let patch_dim = *px.shape.get(1).with_context(|| {
                format!(
                    "expected image patches of shape [patches, patch_dim], got {:?}",
                    px.shape
                )
            })?;
            batch = batch.with_image_patches(xlvlm_model::ImagePatches {
                data: px.data,
                patch_dim,
                grid_thw: px.image_grid_thw,
            });
        }
        Some(px) => {
            let shape: [usize; 4] = px.shape.as_slice().try_into().with_context(|| {
                format!(
                    "expected pixel values of shape [images, channels, height, width], got {:?}",
                    px.shape
                )
            })?;
            batch = batch.with_pixel_values(xlvlm_model::PixelValues {
                data: px.data,
                shape,
            });
            // Idefics2: images padded to the batch's largest size
            if let Some(mask) = px.pixel_attention_mask {
                batch = batch.with_pixel_attention_mask(mask);
            }
            // Molmo: which patches each image token pools, `window` at a time
            if let Some(pooling) = px.token_pooling {
                let tokens = pooling.index.len() / pooling.window.max(1);
                batch = batch.with_patch_pooling(xlvlm_model::PatchPooling {
                    index: pooling.index,
                    shape: [tokens, pooling.window],
                    image_masks: pooling.patch_masks,
                });
            }
        }
        None => {}
    }
    Ok(Encoded {
        batch,
        ids,
        answer_start,
    })
}

/// One generated answer.
pub struct GenerationRow {
    pub ids: Vec<u32>,
    pub finish: FinishReason,
}

pub fn finish_name(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Eos => "eos",
        FinishReason::Stop => "stop",
        FinishReason::Length => "length",
    }
}

pub fn task_name(t: Task) -> &'static str {
    match t {
        Task::Captioning => "caption",
        Task::Vqa => "vqa",
        Task::Custom => "custom",
    }
}

pub fn image_name(sample: &Sample) -> String {
    sample
        .image
        .as_ref()
        .map_or(String::new(), |p| p.display().to_string())
}

/// The generations table: one row per sample.
pub fn generations_table(
    processor: &Processor,
    samples: &[Sample],
    rows: &[GenerationRow],
) -> anyhow::Result<FeatureTable> {
    let mut text = Vec::with_capacity(rows.len());
    for (s, r) in samples.iter().zip(rows) {
        let decoded = processor
            .tokenizer()
            .decode(&r.ids, true)
            .with_context(|| format!("decoding the generation of sample `{}`", s.id))?;
        text.push(decoded.trim().to_string());
    }
    let strings = |f: &dyn Fn(&Sample) -> String| Column::Utf8(samples.iter().map(f).collect());
    Ok(FeatureTable::new()
        .with_column("sample_id", strings(&|s| s.id.clone()))
        .with_column("image", strings(&image_name))
        .with_column("task", strings(&|s| task_name(s.task).to_string()))
        .with_column(
            "prompt",
            strings(&|s| match s.task {
                Task::Captioning => String::new(),
                _ => s.prompt.clone().unwrap_or_default(),
            }),
        )
        .with_column("generation", Column::Utf8(text))
        .with_column(
            "num_tokens",
            Column::Int64(rows.iter().map(|r| r.ids.len() as i64).collect()),
        )
        .with_column(
            "finish_reason",
            Column::Utf8(
                rows.iter()
                    .map(|r| finish_name(r.finish).to_string())
                    .collect(),
            ),
        )
        .with_column(
            "response",
            strings(&|s| s.response.clone().unwrap_or_default()),
        )
        .with_column(
            "references",
            strings(&|s| serde_json::to_string(&s.references).expect("strings serialise")),
        )
        .with_column(
            "answer_type",
            strings(&|s| s.meta.answer_type.clone().unwrap_or_default()),
        )
        .with_column(
            "question_type",
            strings(&|s| s.meta.question_type.clone().unwrap_or_default()),
        ))
}

/// `generations-00003.parquet`.
pub fn generations_file(shard: usize) -> String {
    format!("generations-{shard:05}.parquet")
}

/// Sample ranges of the shards: `shard_samples` each, the last one shorter.
pub fn shard_ranges(samples: usize, shard_samples: usize) -> Vec<std::ops::Range<usize>> {
    (0..samples.div_ceil(shard_samples))
        .map(|s| s * shard_samples..((s + 1) * shard_samples).min(samples))
        .collect()
}

/// A progress bar over samples, drawn only on a terminal.
pub fn progress(total: usize, label: &str) -> ProgressBar {
    let bar = if std::io::stderr().is_terminal() {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("  {msg} {bar:30} {pos}/{len} samples ({per_sec}, eta {eta})")
            .expect("valid template"),
    );
    bar.set_message(label.to_string());
    bar
}
