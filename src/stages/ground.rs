//! `ground`: each concept in words (its direction through the model's unembedding, top tokens by
//! logit, decoded and filtered to English content words) and in images (its most-activating
//! samples), plus a concept grid image (one row of sample thumbnails per concept).
//!
//! Outputs: `grounding.json` (everything, per concept), `words.parquet` (concept, rank, token_id,
//! word, score), `samples.parquet` (concept, rank, sample_id, image, activation), and with images
//! `grid.png` (thumbnails), `grid.svg` (thumbnails under each concept's words) and `grid.txt`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Context, bail};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use serde::Serialize;
use xlvlm_dag::{InputArtifact, StageContext, StageOutput};
use xlvlm_metrics::vocabulary::is_grounding_word;
use xlvlm_model::{Checkpoint, LM_HEAD_NAMES, ModelConfig};
use xlvlm_processor::TextTokenizer;
use xlvlm_processor::image_crate::{self, Rgb, RgbImage, imageops};
use xlvlm_spec::GroundParams;
use xlvlm_store::{Column, FeatureTable, read_parquet, read_parquet_columns};

pub fn run(ctx: &StageContext<'_>, p: &GroundParams) -> anyhow::Result<StageOutput> {
    let concepts_in = &ctx.inputs["concepts"];
    let set = p.set.as_deref();
    let concepts = read_decomposition_file(concepts_in, "concepts.parquet", set)?;
    let activations = read_decomposition_file(concepts_in, "activations.parquet", set)?;
    let (dim, concept_values) = super::vectors(&concepts, "vector", &concepts_in.label)?;
    let k = concept_values.len() / dim;
    let sample_ids = super::sample_ids(&activations, &concepts_in.label)?;
    let (act_k, act_values) = super::vectors(&activations, "vector", &concepts_in.label)?;
    if act_k != k {
        bail!(
            "`{}`: activations have {act_k} columns but there are {k} concepts",
            concepts_in.label
        );
    }

    let model = ctx
        .node
        .model
        .as_ref()
        .context("the ground stage needs a model")?;
    let unembedding = Unembedding::load(&model.dir, p.final_norm)?;
    if unembedding.hidden != dim {
        bail!(
            "the concepts of `{}` have {dim} dimensions but model `{}` has hidden size {}; \
             ground concepts with the model whose hidden states were decomposed",
            concepts_in.label,
            model.name,
            unembedding.hidden
        );
    }
    let tokenizer = TextTokenizer::from_dir(&model.dir)
        .with_context(|| format!("loading the tokenizer of model `{}`", model.name))?;

    let images = match (ctx.inputs.get("features"), &ctx.node.data) {
        (Some(features), _) => Some(image_paths(features)?),
        (None, Some(data)) => {
            // The samples as listed; a missing image file becomes a grey tile in the grid.
            let samples = super::dataset::source(&data.spec)?
                .read()
                .with_context(|| format!("reading dataset `{}`", data.name))?;
            Some(
                samples
                    .into_iter()
                    .filter_map(|s| s.image.map(|i| (s.id, i.display().to_string())))
                    .collect(),
            )
        }
        (None, None) => None,
    };

    let mut grounded = Vec::with_capacity(k);
    for (c, concept) in concept_values.chunks_exact(dim).enumerate() {
        let words = ground_words(&unembedding, &tokenizer, concept, p)?;
        let samples = most_activating(act_values, k, c, p.num_most_activating_samples)
            .into_iter()
            .map(|(row, activation)| {
                let sample_id = sample_ids[row].clone();
                let image = images.as_ref().and_then(|m| m.get(&sample_id).cloned());
                GroundedSample {
                    sample_id,
                    image,
                    activation,
                }
            })
            .collect();
        grounded.push(GroundedConcept {
            concept: c,
            words,
            samples,
        });
    }

    write_tables(ctx, &grounded)?;
    let report = serde_json::json!({
        "model": model.name,
        "final_norm": p.final_norm,
        "concepts": grounded,
    });
    ctx.staging
        .write_file("grounding.json", &serde_json::to_vec_pretty(&report)?)?;

    let mut missing_images = 0;
    if images.is_some() {
        missing_images = write_grid(ctx, &grounded, p.thumbnail_size)?;
    }
    let with_words = grounded.iter().filter(|g| !g.words.is_empty()).count();
    Ok(StageOutput {
        rows: Some(k as u64),
        summary: serde_json::json!({
            "concepts": k,
            "concepts_with_words": with_words,
            "grid": images.is_some(),
            "missing_images": missing_images,
            "words": grounded.iter().map(|g| g.words.iter().map(|w| w.word.as_str()).collect::<Vec<_>>().join(" ")).collect::<Vec<_>>(),
        }),
    })
}

#[derive(Serialize)]
struct GroundedWord {
    token_id: u32,
    word: String,
    /// The token's logit for the concept.
    score: f32,
}

#[derive(Serialize)]
struct GroundedSample {
    sample_id: String,
    image: Option<String>,
    activation: f32,
}

#[derive(Serialize)]
struct GroundedConcept {
    concept: usize,
    words: Vec<GroundedWord>,
    samples: Vec<GroundedSample>,
}

/// A decomposition table (`concepts.parquet` or `activations.parquet`), restricted to the rows
/// of one `set` when the table has several (a shift stage's original, shifted and fine-tuned
/// concepts).
fn read_decomposition_file(
    input: &InputArtifact,
    file: &str,
    set: Option<&str>,
) -> anyhow::Result<FeatureTable> {
    if input.manifest.file(file).is_none() {
        bail!(
            "`{}` is a {} stage without `{file}`; `concepts` must name a decompose or shift stage",
            input.label,
            input.manifest.kind
        );
    }
    let table = read_parquet(&input.dir.join(file))
        .with_context(|| format!("reading `{}`", input.label))?;
    let Some(sets) = table.strings("set") else {
        if let Some(set) = set {
            bail!(
                "`set = {set:?}` but `{}` has a single set of concepts",
                input.label
            );
        }
        return Ok(table);
    };
    let mut names: Vec<&str> = sets.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    let Some(set) = set.filter(|s| names.contains(s)) else {
        bail!(
            "`{}` holds several sets of concepts ({}); choose one with `set`",
            input.label,
            names.join(", ")
        );
    };
    let rows: Vec<usize> = (0..sets.len()).filter(|&i| sets[i] == set).collect();
    let mut out = FeatureTable::new();
    for (name, column) in &table.columns {
        let filtered = match column {
            Column::Utf8(v) => Column::Utf8(rows.iter().map(|&i| v[i].clone()).collect()),
            Column::Int64(v) => Column::Int64(rows.iter().map(|&i| v[i]).collect()),
            Column::Float64(v) => Column::Float64(rows.iter().map(|&i| v[i]).collect()),
            Column::Bool(v) => Column::Bool(rows.iter().map(|&i| v[i]).collect()),
            Column::Vector { dim, values, half } => Column::Vector {
                dim: *dim,
                values: rows
                    .iter()
                    .flat_map(|&i| values[i * dim..(i + 1) * dim].iter().copied())
                    .collect(),
                half: *half,
            },
        };
        out = out.with_column(name.clone(), filtered);
    }
    Ok(out)
}

/// The unembedding (`vocab × hidden`, row-major) and optionally the final RMSNorm of a checkpoint.
pub(crate) struct Unembedding {
    vocab: usize,
    hidden: usize,
    head: Vec<f32>,
    norm: Option<(Vec<f32>, f32)>,
}

impl Unembedding {
    /// Reads only the LM head (the embedding when tied) and, with `final_norm`, the final norm
    /// weight from the checkpoint's safetensors files, converted to f32.
    pub(crate) fn load(dir: &Path, final_norm: bool) -> anyhow::Result<Unembedding> {
        let config = ModelConfig::from_dir(dir)
            .with_context(|| format!("reading the config of `{}`", dir.display()))?;
        let text = &config.text;
        let files = Checkpoint::open(dir)?;
        let prefix = files.lm_prefix()?;
        let mut head_names: Vec<String> = LM_HEAD_NAMES.map(String::from).to_vec();
        if text.tie_word_embeddings {
            head_names.push(format!("{prefix}embed_tokens.weight"));
        }
        let head_name = files.first_of(&head_names)?;
        let (vocab, hidden) = (text.vocab_size, text.hidden_size);
        let head = files.read_f32(head_name, &[vocab, hidden])?;
        let norm = if final_norm {
            let name = format!("{prefix}norm.weight");
            Some((files.read_f32(&name, &[hidden])?, text.rms_norm_eps as f32))
        } else {
            None
        };
        Ok(Unembedding {
            vocab,
            hidden,
            head,
            norm,
        })
    }

    /// Logits of one direction, after the final norm when one was loaded.
    fn logits(&self, direction: &[f32]) -> Vec<f32> {
        let normed: Vec<f32> = match &self.norm {
            // RMSNorm as Llama computes it: x / sqrt(mean(x²) + eps) * weight.
            Some((weight, eps)) => {
                let mean_sq = direction.iter().map(|v| v * v).sum::<f32>() / self.hidden as f32;
                let scale = 1.0 / (mean_sq + eps).sqrt();
                direction
                    .iter()
                    .zip(weight)
                    .map(|(v, w)| v * scale * w)
                    .collect()
            }
            None => direction.to_vec(),
        };
        self.head
            .chunks_exact(self.hidden)
            .map(|row| row.iter().zip(&normed).map(|(a, b)| a * b).sum())
            .collect()
    }
}

/// The top `pre_num_top_tokens` tokens by logit (ties: lower id first), decoded one by one,
/// lower-cased and trimmed, filtered, the first `num_grounded_text_tokens` kept.
fn ground_words(
    unembedding: &Unembedding,
    tokenizer: &TextTokenizer,
    concept: &[f32],
    p: &GroundParams,
) -> anyhow::Result<Vec<GroundedWord>> {
    let logits = unembedding.logits(concept);
    if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
        bail!("the logit of token {i} is not finite; the concept or the LM head holds NaN or inf");
    }
    let mut order: Vec<u32> = (0..unembedding.vocab as u32).collect();
    let top = p.pre_num_top_tokens.min(order.len());
    let by_logit = |a: &u32, b: &u32| {
        logits[*b as usize]
            .total_cmp(&logits[*a as usize])
            .then(a.cmp(b))
    };
    if top < order.len() {
        order.select_nth_unstable_by(top, by_logit);
        order.truncate(top);
    }
    order.sort_by(by_logit);
    let mut seen = HashSet::new();
    let mut words = Vec::new();
    for id in order {
        let word = tokenizer
            .decode(&[id], true)
            .with_context(|| format!("decoding token {id}"))?
            .trim()
            .to_lowercase();
        if !is_grounding_word(&word) || (p.unique_words && !seen.insert(word.clone())) {
            continue;
        }
        words.push(GroundedWord {
            token_id: id,
            word,
            score: logits[id as usize],
        });
        if words.len() == p.num_grounded_text_tokens {
            break;
        }
    }
    Ok(words)
}

/// Rows of the `m` largest activations of concept `c` (ties: earlier row first).
fn most_activating(activations: &[f32], k: usize, c: usize, m: usize) -> Vec<(usize, f32)> {
    let mut rows: Vec<(usize, f32)> = activations
        .chunks_exact(k)
        .map(|row| row[c])
        .enumerate()
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    rows.truncate(m);
    rows
}

/// `sample_id` → image path from a features or generations table (metadata columns only).
fn image_paths(input: &InputArtifact) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    let files = super::evaluate::table_files(input)?;
    for path in files {
        let table = read_parquet_columns(&path, &["sample_id", "image"]).with_context(|| {
            format!(
                "`features` = `{}` needs `sample_id` and `image` columns",
                input.label
            )
        })?;
        let ids = table
            .strings("sample_id")
            .with_context(|| format!("`{}`: `sample_id` is not a string column", input.label))?;
        let images = table
            .strings("image")
            .with_context(|| format!("`{}`: `image` is not a string column", input.label))?;
        for (id, image) in ids.iter().zip(images) {
            out.entry(id.clone()).or_insert_with(|| image.clone());
        }
    }
    Ok(out)
}

fn write_tables(ctx: &StageContext<'_>, grounded: &[GroundedConcept]) -> anyhow::Result<()> {
    let (mut concept, mut rank, mut token, mut word, mut score) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for g in grounded {
        for (r, w) in g.words.iter().enumerate() {
            concept.push(g.concept as i64);
            rank.push(r as i64);
            token.push(i64::from(w.token_id));
            word.push(w.word.clone());
            score.push(f64::from(w.score));
        }
    }
    let words = FeatureTable::new()
        .with_column("concept", Column::Int64(concept))
        .with_column("rank", Column::Int64(rank))
        .with_column("token_id", Column::Int64(token))
        .with_column("word", Column::Utf8(word))
        .with_column("score", Column::Float64(score));
    ctx.staging.write_table("words.parquet", &words)?;

    let (mut concept, mut rank, mut ids, mut images, mut acts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for g in grounded {
        for (r, s) in g.samples.iter().enumerate() {
            concept.push(g.concept as i64);
            rank.push(r as i64);
            ids.push(s.sample_id.clone());
            images.push(s.image.clone().unwrap_or_default());
            acts.push(f64::from(s.activation));
        }
    }
    let samples = FeatureTable::new()
        .with_column("concept", Column::Int64(concept))
        .with_column("rank", Column::Int64(rank))
        .with_column("sample_id", Column::Utf8(ids))
        .with_column("image", Column::Utf8(images))
        .with_column("activation", Column::Float64(acts));
    ctx.staging.write_table("samples.parquet", &samples)?;
    Ok(())
}

/// Draws one row per concept of its most-activating images (a grey tile where an image is
/// missing or unreadable), with 4-pixel white gutters, as `grid.png` (images only) and
/// `grid.svg` (each row under a line naming the concept and its words, the tiles embedded as
/// PNG); `grid.txt` lists the words of each row. Returns how many tiles are grey.
fn write_grid(
    ctx: &StageContext<'_>,
    grounded: &[GroundedConcept],
    size: u32,
) -> anyhow::Result<usize> {
    const GAP: u32 = 4;
    const TEXT: u32 = 18;
    let cols = grounded.iter().map(|g| g.samples.len()).max().unwrap_or(0) as u32;
    let rows = grounded.len() as u32;
    let width = GAP + cols.max(1) * (size + GAP);
    let mut grid = RgbImage::from_pixel(
        width,
        GAP + rows.max(1) * (size + GAP),
        Rgb([255, 255, 255]),
    );
    let svg_height = GAP + rows.max(1) * (TEXT + size + GAP);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{svg_height}\" \
         viewBox=\"0 0 {width} {svg_height}\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let mut missing = 0;
    for (r, g) in grounded.iter().enumerate() {
        let words: Vec<&str> = g.words.iter().map(|w| w.word.as_str()).collect();
        let row_y = GAP + r as u32 * (TEXT + size + GAP);
        svg.push_str(&format!(
            "<text x=\"{GAP}\" y=\"{}\" font-family=\"sans-serif\" font-size=\"13\">{}</text>\n",
            row_y + TEXT - 5,
            xml_escape(&format!("concept {}: {}", g.concept, words.join(", ")))
        ));
        for (c, s) in g.samples.iter().enumerate() {
            let tile = s
                .image
                .as_ref()
                .and_then(|path| image_crate::open(path).ok())
                .map(|img| {
                    img.resize_to_fill(size, size, imageops::FilterType::Triangle)
                        .to_rgb8()
                });
            let tile = tile.unwrap_or_else(|| {
                missing += 1;
                RgbImage::from_pixel(size, size, Rgb([160, 160, 160]))
            });
            let x = GAP + c as u32 * (size + GAP);
            let y = GAP + r as u32 * (size + GAP);
            imageops::replace(&mut grid, &tile, i64::from(x), i64::from(y));
            svg.push_str(&format!(
                "<image x=\"{x}\" y=\"{}\" width=\"{size}\" height=\"{size}\" href=\"data:image/png;base64,{}\"><title>{}</title></image>\n",
                row_y + TEXT,
                BASE64_STANDARD.encode(super::png_bytes(&tile)?),
                xml_escape(&s.sample_id)
            ));
        }
    }
    svg.push_str("</svg>\n");
    ctx.staging
        .write_file("grid.png", &super::png_bytes(&grid)?)?;
    ctx.staging.write_file("grid.svg", svg.as_bytes())?;
    let text: String = grounded
        .iter()
        .map(|g| {
            let words: Vec<&str> = g.words.iter().map(|w| w.word.as_str()).collect();
            format!("concept {}: {}\n", g.concept, words.join(", "))
        })
        .collect();
    ctx.staging.write_file("grid.txt", text.as_bytes())?;
    Ok(missing)
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
