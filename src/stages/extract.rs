//! `extract`: run a model over a dataset (greedy generation or teacher forcing), capture hidden
//! states at hook points and keep the selected token positions.
//!
//! Output: `shard-NNNNN.parquet` feature shards (`sample_id`, `image`, `hook`, `position`,
//! `token_role`, `token_id`, `token`, `vector`, `toi_found`) and, in generate mode,
//! `generations-NNNNN.parquet` (one row per sample). Every sample has at least one row per hook:
//! when the selection finds nothing (no token of interest, an index past the end) the row has
//! `toi_found = false`, `position = -1` and a zero vector.
//!
//! Row semantics: `position` is the index in the unpadded sequence (prompt, then generated
//! tokens) of the hidden state kept; `token_role`/`token_id`/`token` describe the token at that
//! position (`token` is the vocabulary entry, as transformers' `convert_ids_to_tokens`: `▁yes`,
//! `<0x4E>`). For a word or token-id selection the kept state is the one *before* the word: its
//! next-token prediction is the word's first token (the seed's alignment). A `mean_before` row
//! has `position = -1`, `token_id = -1` and `token = ""`.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::backend::Backend;
use xlvlm_dag::{StageContext, StageOutput};
use xlvlm_data::Sample;
use xlvlm_metrics::words::{contains_phrase, words_of};
use xlvlm_model::{CaptureSpec, GenerateOptions, Logits, Positions};
use xlvlm_processor::{MatchCase, Processor, find_word_spans};
use xlvlm_spec::{Among, ExtractMode, ExtractParams, SampleField, Selector, VectorDtype};
use xlvlm_store::{Column, FeatureTable, read_parquet_columns};

use super::inference::{self, GenerationRow, Loaded, ModelWork};

pub fn run(ctx: &StageContext<'_>, p: &ExtractParams) -> anyhow::Result<StageOutput> {
    let model = ctx
        .node
        .model
        .as_ref()
        .context("the extract stage names no model")?;
    let mut samples = inference::samples(ctx)?;
    let read = samples.len();
    if let (Some(field), Some(words)) = (p.require_word_in, p.tokens.words()) {
        samples.retain(|s| {
            let texts: Vec<&str> = match field {
                SampleField::Response => s.response.iter().map(String::as_str).collect(),
                SampleField::References => s.references.iter().map(String::as_str).collect(),
                SampleField::Prompt => s.prompt.iter().map(String::as_str).collect(),
            };
            texts
                .iter()
                .any(|t| words.iter().any(|w| contains_word(t, w)))
        });
    }
    if let Some(max) = p.max_samples {
        samples.truncate(max);
    }
    if samples.is_empty() {
        bail!(
            "none of the {read} samples of dataset `{}` has the selection's word(s) in its {}",
            ctx.node.data.as_ref().map_or("", |d| d.name.as_str()),
            match p.require_word_in {
                Some(SampleField::Response) => "response",
                Some(SampleField::References) => "references",
                Some(SampleField::Prompt) => "prompt",
                None => "samples",
            }
        );
    }
    inference::with_model(
        model,
        Extract {
            ctx,
            p,
            samples: &samples,
            model_name: &model.name,
        },
    )
}

/// Whether `word` (or phrase) occurs in `text` as whole words, ignoring case.
fn contains_word(text: &str, word: &str) -> bool {
    contains_phrase(&words_of(text), word)
}

struct Extract<'a> {
    ctx: &'a StageContext<'a>,
    p: &'a ExtractParams,
    samples: &'a [Sample],
    model_name: &'a str,
}

/// One feature row before it joins its shard's columns.
struct Row {
    sample: usize,
    hook: usize,
    position: i64,
    role: &'static str,
    token_id: i64,
    values: Option<Vec<f32>>,
    found: bool,
}

/// The captured states of one hook and batch row: positions and `[positions, width]` values.
struct States {
    positions: Vec<usize>,
    values: Vec<f32>,
}

impl States {
    fn at(&self, position: usize, width: usize) -> anyhow::Result<&[f32]> {
        // Captures come in position order; the linear scan only guards that assumption.
        let i = match self.positions.binary_search(&position) {
            Ok(i) => i,
            Err(_) => self
                .positions
                .iter()
                .position(|&q| q == position)
                .with_context(|| format!("position {position} was not captured"))?,
        };
        Ok(&self.values[i * width..(i + 1) * width])
    }
}

const IMAGE: &str = "image";
const PROMPT: &str = "prompt";
const GENERATED: &str = "generated";

impl ModelWork for Extract<'_> {
    type Output = StageOutput;

    fn run<B: Backend>(self, loaded: &Loaded<B>) -> anyhow::Result<StageOutput> {
        let Extract {
            ctx,
            p,
            samples,
            model_name,
        } = self;
        let model = &loaded.model;
        let processor = &loaded.processor;
        let (hooks, names) = inference::parse_hooks(model, &p.hooks)?;
        let width = model.hook_width(hooks[0]);
        if let Some(h) = hooks.iter().find(|h| model.hook_width(**h) != width) {
            bail!(
                "hook `{h}` has width {} but `{}` has {width}; one extract stage stores one vector width (make another stage for it)",
                model.hook_width(*h),
                hooks[0]
            );
        }
        let selector = p.tokens.selector();
        let among = p.tokens.among.expect("filled by the spec");
        let teacher_forcing = p.mode == Some(ExtractMode::TeacherForcing);
        for h in hooks.iter().filter(|h| h.is_vision()) {
            if !matches!(
                selector,
                Selector::All | Selector::Index(_) | Selector::Range(..)
            ) || !matches!(among, Among::All | Among::Image)
            {
                bail!(
                    "hook `{h}` is on the vision side, which has no tokens: use `tokens = {{}}`, `index` or `range` with `among = \"all\"` or `\"image\"`"
                );
            }
        }
        let end_ids: Vec<u32> = match &selector {
            Selector::MeanBefore([]) => model.config().eos_token_ids.clone(),
            Selector::MeanBefore(ends) => ends
                .iter()
                .map(|s| {
                    processor.tokenizer().token_to_id(s).with_context(|| {
                        format!("tokens.mean_before: `{s}` is not one token of this checkpoint's tokenizer")
                    })
                })
                .collect::<anyhow::Result<_>>()?,
            _ => Vec::new(),
        };
        let prompt = p.prompt.as_ref().expect("filled by the spec");
        let generate = p.generate.as_ref();
        let stop = generate.map(|g| processor.stop_strings(&g.stop));
        let stop_fn = |ids: &[u32]| stop.as_ref().is_some_and(|s| s.matches(ids));
        let has_stop = generate.is_some_and(|g| !g.stop.is_empty());
        let options = GenerateOptions {
            max_new_tokens: generate.map_or(1, |g| g.max_new_tokens),
            eos_token_ids: None,
            stop: has_stop.then_some(&stop_fn as &dyn Fn(&[u32]) -> bool),
            keep_logits: false,
        };
        let captures: Vec<CaptureSpec> = hooks
            .iter()
            .flat_map(|&hook| {
                let positions = if hook.is_vision() {
                    vec![Positions::All]
                } else {
                    match among {
                        Among::Generated if !teacher_forcing => {
                            vec![Positions::LastPromptToken, Positions::Generated]
                        }
                        Among::Image => vec![Positions::Image],
                        _ => vec![Positions::All],
                    }
                };
                positions
                    .into_iter()
                    .map(move |positions| CaptureSpec { hook, positions })
            })
            .collect();
        let image_token = processor.image_token_id();
        let half = p.vector_dtype == Some(VectorDtype::F16);
        let mode_name = if teacher_forcing {
            "teacher_forcing"
        } else {
            "generate"
        };
        let batch_size = p.batch_size.expect("filled by the spec");
        let shard_samples = p.shard_samples.expect("filled by the spec");

        let shards = inference::shard_ranges(samples.len(), shard_samples);
        let done = ctx.staging.done_shards()?;
        let bar = inference::progress(samples.len(), &ctx.node.label);
        let clock = Instant::now();
        let (mut rows_total, mut found_total, mut ran) = (0u64, 0u64, 0usize);
        for (s, range) in shards.iter().enumerate() {
            if done.contains(&(s as u32)) {
                tracing::debug!("{}: shard {s} already written", ctx.node.label);
                let t = read_parquet_columns(&ctx.staging.shard_path(s as u32), &["toi_found"])?;
                let found = t.bools("toi_found").context("toi_found column")?;
                rows_total += found.len() as u64;
                found_total += found.iter().filter(|&&f| f).count() as u64;
                bar.inc(range.len() as u64);
                continue;
            }
            let shard = &samples[range.clone()];
            let mut rows: Vec<Row> = Vec::new();
            let mut generations: Vec<GenerationRow> = Vec::new();
            for (b, chunk) in shard.chunks(batch_size).enumerate() {
                let offset = b * batch_size;
                if hooks.iter().any(|h| h.is_vision()) && chunk.iter().any(|s| s.image.is_none()) {
                    bail!("vision hooks need an image in every sample");
                }
                let enc = inference::encode(processor, chunk, prompt, teacher_forcing)?;
                let (captured, generated) = if teacher_forcing {
                    let out = model.forward(&enc.batch, &captures, &[], Logits::None)?;
                    (out.captures, vec![Vec::new(); chunk.len()])
                } else {
                    let out = model.generate(&enc.batch, &options, &captures, &[])?;
                    generations.extend(out.ids.iter().zip(&out.finish).map(|(ids, f)| {
                        GenerationRow {
                            ids: ids.clone(),
                            finish: *f,
                        }
                    }));
                    (out.captures, out.ids)
                };
                // States per hook and row, captures of one hook merged in position order.
                let mut states: Vec<Vec<States>> = hooks
                    .iter()
                    .map(|_| {
                        (0..chunk.len())
                            .map(|_| States {
                                positions: Vec::new(),
                                values: Vec::new(),
                            })
                            .collect()
                    })
                    .collect();
                for c in &captured {
                    let h = hooks
                        .iter()
                        .position(|h| *h == c.spec.hook)
                        .expect("own hook");
                    for (r, row) in c.rows.iter().enumerate() {
                        states[h][r]
                            .positions
                            .extend(row.positions.iter().map(|m| m.position));
                        states[h][r].values.extend(row.to_f32());
                    }
                }
                for r in 0..chunk.len() {
                    let mut full = enc.ids[r].clone();
                    full.extend(&generated[r]);
                    let fed = if teacher_forcing {
                        full.len()
                    } else {
                        enc.ids[r].len() + generated[r].len().saturating_sub(1)
                    };
                    let seq = Sequence {
                        ids: &full,
                        answer_start: enc.answer_start[r],
                        fed,
                        image_token,
                    };
                    for (h, hook) in hooks.iter().enumerate() {
                        let st = &states[h][r];
                        let picked = if hook.is_vision() {
                            select_plain(&st.positions, &selector)
                        } else {
                            select(
                                processor,
                                &seq,
                                among,
                                &selector,
                                &end_ids,
                                p.tokens.search_from,
                            )
                        };
                        let sample = offset + r;
                        match picked {
                            Picked::Positions(ps) if !ps.is_empty() => {
                                for q in ps {
                                    let (role, token_id) = if hook.is_vision() {
                                        (IMAGE, -1)
                                    } else {
                                        (seq.role(q), i64::from(full[q]))
                                    };
                                    rows.push(Row {
                                        sample,
                                        hook: h,
                                        position: q as i64,
                                        role,
                                        token_id,
                                        values: Some(st.at(q, width)?.to_vec()),
                                        found: true,
                                    });
                                }
                            }
                            Picked::Mean(ps) if !ps.is_empty() => {
                                let mut acc = vec![0f64; width];
                                for &q in &ps {
                                    for (a, v) in acc.iter_mut().zip(st.at(q, width)?) {
                                        *a += f64::from(*v);
                                    }
                                }
                                let n = ps.len() as f64;
                                rows.push(Row {
                                    sample,
                                    hook: h,
                                    position: -1,
                                    role: among_role(among),
                                    token_id: -1,
                                    values: Some(acc.iter().map(|a| (a / n) as f32).collect()),
                                    found: true,
                                });
                            }
                            _ => rows.push(Row {
                                sample,
                                hook: h,
                                position: -1,
                                role: if hook.is_vision() {
                                    IMAGE
                                } else {
                                    among_role(among)
                                },
                                token_id: -1,
                                values: None,
                                found: false,
                            }),
                        }
                    }
                }
                bar.inc(chunk.len() as u64);
            }
            ran += shard.len();
            rows_total += rows.len() as u64;
            found_total += rows.iter().filter(|r| r.found).count() as u64;
            if !teacher_forcing {
                let table = inference::generations_table(processor, shard, &generations)?
                    .with_metadata("xlvlm.model", model_name);
                ctx.staging
                    .write_table(&inference::generations_file(s), &table)
                    .with_context(|| format!("writing the generations of shard {s}"))?;
            }
            let table = features_table(processor, shard, &rows, &names, width, half)?
                .with_metadata("xlvlm.model", model_name)
                .with_metadata("xlvlm.hooks", names.join(","))
                .with_metadata("xlvlm.dim", width.to_string())
                .with_metadata("xlvlm.model_dtype", format!("{:?}", model.dtype()))
                .with_metadata("xlvlm.mode", mode_name);
            ctx.staging
                .write_shard(s as u32, &table)
                .with_context(|| format!("writing shard {s}"))?;
            super::shard_pause();
        }
        bar.finish_and_clear();
        let seconds = clock.elapsed().as_secs_f64();
        Ok(StageOutput {
            rows: Some(rows_total),
            summary: serde_json::json!({
                "model": model_name,
                "checkpoint": model.dir().display().to_string(),
                "hooks": names,
                "mode": mode_name,
                "dim": width,
                "samples": samples.len(),
                "shards": shards.len(),
                "rows": rows_total,
                "rows_found": found_total,
                "rows_not_found": rows_total - found_total,
                "samples_this_run": ran,
                "samples_per_second": if seconds > 0.0 { ran as f64 / seconds } else { 0.0 },
            }),
        })
    }
}

/// The role recorded on rows that stand for no single position (a mean, or nothing found).
fn among_role(among: Among) -> &'static str {
    match among {
        Among::Image => IMAGE,
        Among::Prompt => PROMPT,
        Among::All | Among::Generated => GENERATED,
    }
}

/// One sample's token sequence: prompt (and forced response or generated tokens).
struct Sequence<'a> {
    ids: &'a [u32],
    /// First answer token (generated or forced response).
    answer_start: usize,
    /// Positions the model ran (in generation the last generated token is never fed back).
    fed: usize,
    image_token: Option<u32>,
}

impl Sequence<'_> {
    fn role(&self, q: usize) -> &'static str {
        if q >= self.answer_start {
            GENERATED
        } else if Some(self.ids[q]) == self.image_token {
            IMAGE
        } else {
            PROMPT
        }
    }

    /// Candidate positions of `among`, in order.
    fn window(&self, among: Among) -> Vec<usize> {
        match among {
            Among::All => (0..self.fed).collect(),
            Among::Image => (0..self.fed).filter(|&q| self.role(q) == IMAGE).collect(),
            Among::Prompt => (0..self.fed).filter(|&q| self.role(q) == PROMPT).collect(),
            Among::Generated => {
                let end = self.fed.min(self.ids.len().saturating_sub(1));
                (self.answer_start.saturating_sub(1)..end).collect()
            }
        }
    }

    /// The tokens searched for words and ids, and the position of the first of them.
    fn region(&self, among: Among) -> (usize, &[u32]) {
        match among {
            Among::All => (0, self.ids),
            Among::Generated => (self.answer_start, &self.ids[self.answer_start..]),
            Among::Image | Among::Prompt => (0, &self.ids[..self.answer_start]),
        }
    }
}

enum Picked {
    Positions(Vec<usize>),
    Mean(Vec<usize>),
}

fn slice_index(len: usize, i: i64) -> i64 {
    if i < 0 { len as i64 + i } else { i }
}

/// Index and range selections over a list of positions (Python indexing and slicing).
fn select_plain(window: &[usize], selector: &Selector<'_>) -> Picked {
    let len = window.len();
    Picked::Positions(match *selector {
        Selector::Index(i) => {
            let k = slice_index(len, i);
            if (0..len as i64).contains(&k) {
                vec![window[k as usize]]
            } else {
                Vec::new()
            }
        }
        Selector::Range(start, end) => {
            let clamp = |i: i64| slice_index(len, i).clamp(0, len as i64) as usize;
            let (a, b) = (clamp(start), clamp(end));
            if a < b {
                window[a..b].to_vec()
            } else {
                Vec::new()
            }
        }
        _ => window.to_vec(),
    })
}

fn select(
    processor: &Processor,
    seq: &Sequence<'_>,
    among: Among,
    selector: &Selector<'_>,
    end_ids: &[u32],
    search_from: Option<i64>,
) -> Picked {
    let window = seq.window(among);
    let from = match search_from {
        Some(s) if s < 0 => seq.fed.saturating_sub(s.unsigned_abs() as usize),
        Some(s) => s as usize,
        None => 0,
    };
    // The state that predicts the token at absolute position `a`.
    let predicting =
        |a: usize| -> Option<usize> { a.checked_sub(1).filter(|&q| q < seq.fed && q >= from) };
    match selector {
        Selector::All | Selector::Index(_) | Selector::Range(..) => select_plain(&window, selector),
        Selector::Words(words) => {
            let (offset, region) = seq.region(among);
            let first = words
                .iter()
                .flat_map(|w| {
                    find_word_spans(processor.tokenizer(), region, w, MatchCase::Insensitive)
                })
                .filter_map(|span| predicting(offset + span.first))
                .min();
            Picked::Positions(first.into_iter().collect())
        }
        Selector::TokenId(id) => {
            let (offset, region) = seq.region(among);
            let first = region
                .iter()
                .enumerate()
                .filter(|(_, t)| *t == id)
                .find_map(|(i, _)| predicting(offset + i));
            Picked::Positions(first.into_iter().collect())
        }
        Selector::MeanBefore(_) => {
            let window: Vec<usize> = window.into_iter().filter(|&q| q >= from).collect();
            let end = window
                .iter()
                .position(|&q| seq.ids.get(q + 1).is_some_and(|t| end_ids.contains(t)));
            Picked::Mean(window[..end.unwrap_or(window.len())].to_vec())
        }
    }
}

fn features_table(
    processor: &Processor,
    samples: &[Sample],
    rows: &[Row],
    hooks: &[String],
    width: usize,
    half: bool,
) -> anyhow::Result<FeatureTable> {
    let mut token_text: BTreeMap<i64, String> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.token_id >= 0) {
        if let std::collections::btree_map::Entry::Vacant(slot) = token_text.entry(r.token_id) {
            // The vocabulary entry (`▁yes`, `Ġyes`, `<image>`): decoding one token alone drops
            // a SentencePiece word's leading space and shows a bare `▁` as nothing.
            let text = match processor.tokenizer().id_to_token(r.token_id as u32) {
                Some(piece) => piece,
                None => processor
                    .tokenizer()
                    .decode(&[r.token_id as u32], false)
                    .with_context(|| format!("decoding token {}", r.token_id))?,
            };
            slot.insert(text);
        }
    }
    let mut values = Vec::with_capacity(rows.len() * width);
    for r in rows {
        match &r.values {
            Some(v) => values.extend_from_slice(v),
            None => values.extend(std::iter::repeat_n(0.0, width)),
        }
    }
    Ok(FeatureTable::new()
        .with_column(
            "sample_id",
            Column::Utf8(rows.iter().map(|r| samples[r.sample].id.clone()).collect()),
        )
        .with_column(
            "image",
            Column::Utf8(
                rows.iter()
                    .map(|r| inference::image_name(&samples[r.sample]))
                    .collect(),
            ),
        )
        .with_column(
            "hook",
            Column::Utf8(rows.iter().map(|r| hooks[r.hook].clone()).collect()),
        )
        .with_column(
            "position",
            Column::Int64(rows.iter().map(|r| r.position).collect()),
        )
        .with_column(
            "token_role",
            Column::Utf8(rows.iter().map(|r| r.role.to_string()).collect()),
        )
        .with_column(
            "token_id",
            Column::Int64(rows.iter().map(|r| r.token_id).collect()),
        )
        .with_column(
            "token",
            Column::Utf8(
                rows.iter()
                    .map(|r| token_text.get(&r.token_id).cloned().unwrap_or_default())
                    .collect(),
            ),
        )
        .with_column(
            "vector",
            Column::Vector {
                dim: width,
                values,
                half,
            },
        )
        .with_column(
            "toi_found",
            Column::Bool(rows.iter().map(|r| r.found).collect()),
        ))
}

#[cfg(test)]
mod tests {
    use super::contains_word;

    #[test]
    fn whole_words_only() {
        assert!(contains_word("No, it is not.", "no"));
        assert!(!contains_word("snow and none", "no"));
        assert!(contains_word("a bus stop here", "bus stop"));
        assert!(!contains_word("covered", "red"));
        assert!(contains_word("RED car", "red"));
    }
}
