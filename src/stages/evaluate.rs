//! `evaluate`: metrics of generations (VQA accuracy, answer counts and predicted answer types,
//! steering target rates, captioning scores, word-class rates), of concept dictionaries (word
//! overlap, test grounding), of a fine-tuning shift analysis (recovery of the fine-tuned
//! concepts by the original and the shifted ones), or, with `collect`, a sweep table of another
//! evaluate stage's instances.
//!
//! Outputs: `metrics.json` (every result, nested), `metrics.parquet` (one row, one column per
//! scalar metric), for generations `scores.parquet` (one row per sample: its VQA accuracy,
//! caption scores, target-rate flags), for a shift analysis `recovery.parquet` (one row per
//! concept); with `collect`, `table.parquet` + `table.csv` (one row per sweep point, one column
//! per coordinate and metric) and `plot.svg` + `plot.png`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use xlvlm_analysis::recovery_overlaps;
use xlvlm_dag::{InputArtifact, StageContext, StageOutput};
use xlvlm_metrics::dictionary::{grounding_words_overlap, test_grounding_scores};
use xlvlm_metrics::meteor::{MeteorResources, Paraphrases, Synonyms};
use xlvlm_metrics::steering::{
    SampleFlags, SteeringSample, answer_counts, majority_types, predicted_answer_types,
    sample_flags, word_class_rates,
};
use xlvlm_metrics::words::WordClass;
use xlvlm_metrics::{
    VqaAccuracy, VqaAnnotation, VqaPrediction, caption_scores_with, target_rates, vqa_accuracy,
};
use xlvlm_processor::image_crate;
use xlvlm_spec::{EvaluateParams, Metric, RecoveryInputs, VqaAccuracyMode};
use xlvlm_store::{Column, FeatureTable, read_parquet, read_parquet_columns};

pub fn run(ctx: &StageContext<'_>, p: &EvaluateParams) -> anyhow::Result<StageOutput> {
    if p.collect.is_some() {
        return sweep_table(ctx, p);
    }
    let wants = |m: Metric| p.metrics.as_ref().is_none_or(|list| list.contains(&m));
    let mut report = serde_json::Map::new();
    let mut scalars = Scalars::default();

    if let Some(input) = ctx.inputs.get("input") {
        let rows = read_generations(input)?;
        let baseline = match ctx.inputs.get("baseline") {
            Some(b) => Some(
                read_generations(b)?
                    .into_iter()
                    .map(|g| (g.sample_id, g.generation))
                    .collect::<HashMap<_, _>>(),
            ),
            None => None,
        };
        scalars.int("num_samples", rows.len());
        let mut per_sample = PerSample::new(&rows);
        generation_metrics(
            p,
            &wants,
            &rows,
            baseline.as_ref(),
            &mut report,
            &mut scalars,
            &mut per_sample,
        )
        .with_context(|| format!("evaluating the generations of `{}`", input.label))?;
        ctx.staging
            .write_table("scores.parquet", &per_sample.into_table(&rows))?;
    }
    if let Some(ground) = ctx.inputs.get("ground") {
        dictionary_metrics(ctx, ground, &wants, &mut report, &mut scalars)?;
    }
    if let Some(recovery) = &p.recovery
        && wants(Metric::Recovery)
    {
        recovery_metrics(ctx, recovery, &mut report, &mut scalars)?;
    }

    report.insert("scalars".into(), scalars.to_json());
    ctx.staging
        .write_file("metrics.json", &serde_json::to_vec_pretty(&report)?)?;
    ctx.staging
        .write_table("metrics.parquet", &scalars.to_table())?;
    Ok(StageOutput {
        rows: Some(1),
        summary: scalars.to_json(),
    })
}

/// One generated answer or caption with its ground truth.
struct Generated {
    sample_id: String,
    task: String,
    generation: String,
    references: Vec<String>,
    answer_type: String,
    question_type: String,
}

/// Per-sample results, one row per evaluated generation (`scores.parquet`): the columns each
/// metric adds, NaN or empty where a metric does not apply to a sample.
struct PerSample {
    row: HashMap<String, usize>,
    columns: Vec<(String, Column)>,
}

impl PerSample {
    fn new(rows: &[Generated]) -> PerSample {
        PerSample {
            row: rows
                .iter()
                .enumerate()
                .map(|(i, g)| (g.sample_id.clone(), i))
                .collect(),
            columns: Vec::new(),
        }
    }

    fn into_table(self, rows: &[Generated]) -> FeatureTable {
        let strings = |f: &dyn Fn(&Generated) -> String| Column::Utf8(rows.iter().map(f).collect());
        let mut t = FeatureTable::new()
            .with_column("sample_id", strings(&|g| g.sample_id.clone()))
            .with_column("task", strings(&|g| g.task.clone()))
            .with_column("generation", strings(&|g| g.generation.clone()));
        for (name, column) in self.columns {
            t = t.with_column(name, column);
        }
        t
    }
}

/// The Parquet files holding an artifact's generations (`generations-NNNNN.parquet`), or else
/// its main table (an imported table with the generations columns).
pub(crate) fn table_files(input: &InputArtifact) -> anyhow::Result<Vec<PathBuf>> {
    let generations: Vec<PathBuf> = input
        .manifest
        .files
        .iter()
        .filter(|f| f.path.starts_with("generations-") && f.path.ends_with(".parquet"))
        .map(|f| input.dir.join(&f.path))
        .collect();
    if generations.is_empty() {
        return super::main_table_files(input).with_context(|| {
            format!(
                "`{}` has no generations; evaluate reads those of an extract stage in generate \
                 mode or of a steer stage",
                input.label
            )
        });
    }
    Ok(generations)
}

fn strings_of<'t>(
    table: &'t FeatureTable,
    column: &str,
    label: &str,
) -> anyhow::Result<&'t [String]> {
    table.strings(column).with_context(|| {
        let have: Vec<&str> = table.columns.iter().map(|(n, _)| n.as_str()).collect();
        format!(
            "`{label}` has no string column `{column}` (columns: {}); evaluate reads generations \
             (sample_id, task, generation, references, answer_type, question_type)",
            have.join(", ")
        )
    })
}

fn read_generations(input: &InputArtifact) -> anyhow::Result<Vec<Generated>> {
    let label = &input.label;
    let mut out = Vec::new();
    for path in table_files(input)? {
        let table = read_parquet(&path).with_context(|| format!("reading `{label}`"))?;
        let ids = strings_of(&table, "sample_id", label)?;
        let tasks = strings_of(&table, "task", label)?;
        let gens = strings_of(&table, "generation", label)?;
        let refs = strings_of(&table, "references", label)?;
        let empty = vec![String::new(); ids.len()];
        let answer_types = table.strings("answer_type").unwrap_or(&empty);
        let question_types = table.strings("question_type").unwrap_or(&empty);
        for i in 0..ids.len() {
            let references: Vec<String> = serde_json::from_str(&refs[i]).with_context(|| {
                format!(
                    "`{label}`, sample `{}`: `references` must be a JSON array of strings, got {:?}",
                    ids[i], refs[i]
                )
            })?;
            out.push(Generated {
                sample_id: ids[i].clone(),
                task: tasks[i].to_lowercase(),
                generation: gens[i].clone(),
                references,
                answer_type: answer_types[i].clone(),
                question_type: question_types[i].clone(),
            });
        }
    }
    if out.is_empty() {
        bail!("`{label}` has no generations");
    }
    let mut seen = HashMap::new();
    for g in &out {
        if seen.insert(g.sample_id.as_str(), ()).is_some() {
            bail!("`{label}`: sample `{}` appears twice", g.sample_id);
        }
    }
    Ok(out)
}

/// `sample_id` → reference captions of a table with `sample_id` and `references` columns.
fn read_references(input: &InputArtifact) -> anyhow::Result<HashMap<String, Vec<String>>> {
    let label = &input.label;
    let mut out = HashMap::new();
    for path in table_files(input)? {
        let table =
            read_parquet_columns(&path, &["sample_id", "references"]).with_context(|| {
                format!("`captions` = `{label}` needs `sample_id` and `references` columns")
            })?;
        let ids = strings_of(&table, "sample_id", label)?;
        let refs = strings_of(&table, "references", label)?;
        for (id, r) in ids.iter().zip(refs) {
            let references: Vec<String> = serde_json::from_str(r).with_context(|| {
                format!(
                    "`{label}`, sample `{id}`: `references` must be a JSON array of strings, got {r:?}"
                )
            })?;
            out.entry(id.clone()).or_insert(references);
        }
    }
    Ok(out)
}

fn generation_metrics(
    p: &EvaluateParams,
    wants: &dyn Fn(Metric) -> bool,
    rows: &[Generated],
    baseline: Option<&HashMap<String, String>>,
    report: &mut serde_json::Map<String, Value>,
    scalars: &mut Scalars,
    per_sample: &mut PerSample,
) -> anyhow::Result<()> {
    let vqa: Vec<&Generated> = rows.iter().filter(|g| g.task == "vqa").collect();
    let captions: Vec<&Generated> = rows
        .iter()
        .filter(|g| g.task == "captioning" || g.task == "caption")
        .collect();
    let explicit = |m: Metric| p.metrics.as_ref().is_some_and(|l| l.contains(&m));
    for (m, have, what) in [
        (Metric::VqaAccuracy, !vqa.is_empty(), "VQA"),
        (Metric::AnswerCounts, !vqa.is_empty(), "VQA"),
        (Metric::AnswerTypes, !vqa.is_empty(), "VQA"),
        (Metric::Captioning, !captions.is_empty(), "captioning"),
        (Metric::WordRates, !captions.is_empty(), "captioning"),
    ] {
        if explicit(m) && !have {
            bail!(
                "metric `{}` needs {what} samples (task column) and there are none",
                m.name()
            );
        }
    }

    if !vqa.is_empty()
        && (wants(Metric::VqaAccuracy) || wants(Metric::AnswerCounts) || wants(Metric::AnswerTypes))
    {
        // Question ids are row numbers of the VQA samples; errors name the sample.
        let predictions: Vec<VqaPrediction> = vqa
            .iter()
            .enumerate()
            .map(|(i, g)| VqaPrediction {
                question_id: i as u64,
                answer: g.generation.clone(),
            })
            .collect();
        if let Some(g) = vqa.iter().find(|g| g.references.is_empty()) {
            bail!("VQA sample `{}` has no reference answers", g.sample_id);
        }
        let annotations: Vec<VqaAnnotation> = vqa
            .iter()
            .enumerate()
            .map(|(i, g)| VqaAnnotation {
                question_id: i as u64,
                question_type: g.question_type.clone(),
                answer_type: g.answer_type.clone(),
                answers: g.references.clone(),
            })
            .collect();
        let mode = match p.vqa_accuracy {
            VqaAccuracyMode::Official => VqaAccuracy::Official,
            VqaAccuracyMode::XlVlms => VqaAccuracy::XlVlms,
        };
        let vqa_report = vqa_accuracy(&predictions, &annotations, mode)?;
        if wants(Metric::VqaAccuracy) {
            scalars.float("vqa_accuracy", vqa_report.overall);
            for (t, acc) in &vqa_report.per_answer_type {
                scalars.float(&format!("vqa_accuracy_{}", column_safe(t)), *acc);
            }
            report.insert(
                "vqa_accuracy".into(),
                json!({
                    "mode": vqa_report.mode,
                    "overall": vqa_report.overall,
                    "per_answer_type": vqa_report.per_answer_type,
                    "per_question_type": vqa_report.per_question_type,
                    "questions": vqa_report.questions.iter().zip(&vqa).map(|(q, g)| json!({
                        "sample_id": g.sample_id,
                        "prediction": q.normalized_prediction,
                        "accuracy": q.accuracy,
                    })).collect::<Vec<_>>(),
                }),
            );
        }
        let normalized: Vec<String> = vqa_report
            .questions
            .iter()
            .map(|q| q.normalized_prediction.clone())
            .collect();
        let mut prediction = vec![String::new(); rows.len()];
        let mut accuracy = vec![f64::NAN; rows.len()];
        for (q, g) in vqa_report.questions.iter().zip(&vqa) {
            let i = per_sample.row[&g.sample_id];
            prediction[i] = q.normalized_prediction.clone();
            accuracy[i] = q.accuracy;
        }
        per_sample
            .columns
            .push(("vqa_prediction".into(), Column::Utf8(prediction)));
        per_sample
            .columns
            .push(("vqa_accuracy".into(), Column::Float64(accuracy)));
        if wants(Metric::AnswerCounts) {
            let items: Vec<(String, String)> = vqa
                .iter()
                .zip(&normalized)
                .map(|(g, n)| (g.answer_type.clone(), n.clone()))
                .collect();
            report.insert("answer_counts".into(), json!(answer_counts(&items)));
        }
        if wants(Metric::AnswerTypes) {
            // The answer → type map comes from the reference answers of the evaluated questions
            // (xl-vlms read it from a file made the same way from the annotations).
            let mut by_type: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for g in &vqa {
                by_type
                    .entry(g.answer_type.clone())
                    .or_default()
                    .extend(g.references.iter().map(|r| r.trim().to_lowercase()));
            }
            let by_type: Vec<(String, Vec<String>)> = by_type.into_iter().collect();
            let types = predicted_answer_types(&normalized, &majority_types(&by_type));
            for (t, n) in &types {
                scalars.int(&format!("predicted_{}", column_safe(t)), *n);
            }
            report.insert("predicted_answer_types".into(), json!(types));
        }
    }

    if !p.prediction_words.is_empty() && wants(Metric::TargetRate) {
        let samples: Vec<SteeringSample> = rows
            .iter()
            .map(|g| SteeringSample {
                prediction: g.generation.clone(),
                targets: g.references.clone(),
                baseline: baseline.and_then(|b| b.get(&g.sample_id).cloned()),
            })
            .collect();
        if let Some(b) = baseline {
            let matched = rows.iter().filter(|g| b.contains_key(&g.sample_id)).count();
            if matched == 0 {
                bail!("the baseline shares no sample id with the evaluated generations");
            }
        }
        let r = target_rates(&samples, &p.prediction_words, &p.target_words)?;
        let flags: Vec<SampleFlags> = samples
            .iter()
            .map(|s| sample_flags(s, &p.prediction_words, &p.target_words))
            .collect();
        let bools = |f: &dyn Fn(&SampleFlags) -> bool| Column::Bool(flags.iter().map(f).collect());
        per_sample
            .columns
            .push(("has_toi".into(), bools(&|f| f.prediction_has_toi)));
        per_sample
            .columns
            .push(("targets_have_toi".into(), bools(&|f| f.targets_have_toi)));
        if baseline.is_some() {
            per_sample.columns.push((
                "baseline".into(),
                Column::Utf8(
                    samples
                        .iter()
                        .map(|s| s.baseline.clone().unwrap_or_default())
                        .collect(),
                ),
            ));
            per_sample
                .columns
                .push(("has_baseline".into(), bools(&|f| f.changed.is_some())));
            per_sample.columns.push((
                "baseline_has_toi".into(),
                bools(&|f| f.baseline_has_toi == Some(true)),
            ));
            per_sample
                .columns
                .push(("changed".into(), bools(&|f| f.changed == Some(true))));
        }
        scalars.int("num_preds_with_toi", r.num_preds_with_toi);
        scalars.int(
            "num_preds_and_targets_with_toi",
            r.num_preds_and_targets_with_toi,
        );
        scalars.float("percent_preds_with_toi", r.percent_preds_with_toi);
        scalars.float(
            "percent_preds_and_targets_with_toi",
            r.percent_preds_and_targets_with_toi,
        );
        if baseline.is_some() {
            scalars.int("num_with_baseline", r.num_with_baseline);
            scalars.int("num_baseline_preds_with_toi", r.num_baseline_preds_with_toi);
            scalars.int(
                "num_preds_and_baseline_preds_with_toi",
                r.num_preds_and_baseline_preds_with_toi,
            );
            if let Some(pf) = r.percent_flipped {
                scalars.float("percent_flipped", pf);
            }
            scalars.int("num_preds_changed", r.num_preds_changed);
            if let Some(pc) = r.percent_preds_changed {
                scalars.float("percent_preds_changed", pc);
            }
        }
        report.insert(
            "target_rate".into(),
            json!({
                "prediction_words": p.prediction_words,
                "target_words": p.target_words,
                "counts": r,
            }),
        );
    }

    if !captions.is_empty() && wants(Metric::Captioning) {
        if let Some(g) = captions.iter().find(|g| g.references.is_empty()) {
            bail!(
                "captioning sample `{}` has no reference captions",
                g.sample_id
            );
        }
        let hyps: BTreeMap<String, String> = captions
            .iter()
            .map(|g| (g.sample_id.clone(), g.generation.clone()))
            .collect();
        let refs: BTreeMap<String, Vec<String>> = captions
            .iter()
            .map(|g| (g.sample_id.clone(), g.references.clone()))
            .collect();
        let resources = meteor_resources(p)?;
        let scores = caption_scores_with(&hyps, &refs, &resources)?;
        let mut per_image: [Vec<f64>; 4] = std::array::from_fn(|_| vec![f64::NAN; rows.len()]);
        for (id, sc) in &scores.per_image {
            let i = per_sample.row[id];
            per_image[0][i] = sc.bleu[3];
            per_image[1][i] = sc.meteor;
            per_image[2][i] = sc.rouge_l;
            per_image[3][i] = sc.cider;
        }
        for (name, values) in ["bleu_4", "meteor", "rouge_l", "cider"]
            .iter()
            .zip(per_image)
        {
            per_sample
                .columns
                .push((name.to_string(), Column::Float64(values)));
        }
        let c = scores.corpus;
        for (i, b) in c.bleu.iter().enumerate() {
            scalars.float(&format!("bleu_{}", i + 1), *b);
        }
        scalars.float("meteor", c.meteor);
        scalars.float("rouge_l", c.rouge_l);
        scalars.float("cider", c.cider);
        report.insert(
            "captioning".into(),
            json!({
                "corpus": c,
                "per_image": scores.per_image,
                "meteor_modules": if p.meteor.is_some() {
                    json!(["exact", "stem", "synonym", "paraphrase"])
                } else {
                    json!(["exact", "stem"])
                },
            }),
        );
    }

    if !captions.is_empty() && wants(Metric::WordRates) && !p.word_classes.is_empty() {
        let texts: Vec<String> = captions.iter().map(|g| g.generation.clone()).collect();
        let classes: Vec<WordClass> = p.word_classes.clone();
        let rates = word_class_rates(&texts, &classes);
        for (name, r) in &rates {
            scalars.float(&format!("rate_{name}"), r.percent_captions_with_word);
        }
        report.insert("word_rates".into(), json!(rates));
    }
    Ok(())
}

/// METEOR's synonym and paraphrase data when `meteor` names them, else none (exact and stem
/// modules only).
fn meteor_resources(p: &EvaluateParams) -> anyhow::Result<MeteorResources> {
    let Some(m) = &p.meteor else {
        return Ok(MeteorResources::default());
    };
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading METEOR data `{}`", path.display()))
    };
    Ok(MeteorResources {
        synonyms: Some(Synonyms::parse(&read(&m.synsets)?, &read(&m.exceptions)?)?),
        paraphrases: Some(Paraphrases::load(&m.paraphrases)?),
    })
}

/// Concept words of a `ground` artifact, per concept in concept order.
fn concept_words(ground: &InputArtifact) -> anyhow::Result<Vec<Vec<String>>> {
    let path = ground.dir.join("grounding.json");
    if ground.manifest.file("grounding.json").is_none() {
        bail!(
            "`{}` is a {} stage; `ground` must name a ground stage",
            ground.label,
            ground.manifest.kind
        );
    }
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading `{}`", path.display()))?;
    let json: Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))?;
    let concepts = json["concepts"]
        .as_array()
        .with_context(|| format!("`{}` has no `concepts` list", path.display()))?;
    concepts
        .iter()
        .map(|c| {
            c["words"]
                .as_array()
                .map(|ws| {
                    ws.iter()
                        .filter_map(|w| w["word"].as_str().map(str::to_string))
                        .collect()
                })
                .with_context(|| format!("`{}`: a concept without `words`", path.display()))
        })
        .collect()
}

fn dictionary_metrics(
    ctx: &StageContext<'_>,
    ground: &InputArtifact,
    wants: &dyn Fn(Metric) -> bool,
    report: &mut serde_json::Map<String, Value>,
    scalars: &mut Scalars,
) -> anyhow::Result<()> {
    let words = concept_words(ground)?;
    if wants(Metric::Overlap) {
        let overlap = grounding_words_overlap(&words)
            .with_context(|| format!("word overlap of `{}`", ground.label))?;
        scalars.float("overlap", overlap.metric);
        report.insert("overlap".into(), json!(overlap));
    }
    let (Some(acts), Some(caps)) = (ctx.inputs.get("activations"), ctx.inputs.get("captions"))
    else {
        return Ok(());
    };
    if !wants(Metric::TestGrounding) {
        return Ok(());
    }
    // A decomposition's held-out samples (`project`) when it has them, else its own samples.
    let file = ["projected.parquet", "activations.parquet"]
        .into_iter()
        .find(|f| acts.manifest.file(f).is_some())
        .with_context(|| {
            format!(
                "`{}` is a {} stage without `projected.parquet` or `activations.parquet`; \
                 `activations` must name a decompose stage",
                acts.label, acts.manifest.kind
            )
        })?;
    let table =
        read_parquet(&acts.dir.join(file)).with_context(|| format!("reading `{}`", acts.label))?;
    let ids = super::sample_ids(&table, &acts.label)?;
    let (k, values) = super::vectors(&table, "vector", &acts.label)?;
    if k != words.len() {
        bail!(
            "`{}` has {k} concepts but `{}` grounded {}",
            acts.label,
            ground.label,
            words.len()
        );
    }
    let captions = read_references(caps)?;
    let (mut rows, mut texts) = (Vec::new(), Vec::new());
    for (id, row) in ids.iter().zip(values.chunks_exact(k)) {
        // A sample's caption words are those of all its reference captions.
        if let Some(refs) = captions.get(id) {
            rows.push(row.to_vec());
            texts.push(refs.join(" \n "));
        }
    }
    if rows.is_empty() {
        bail!(
            "no sample of `{}` has captions in `{}`",
            acts.label,
            caps.label
        );
    }
    let s = test_grounding_scores(&rows, &words, &texts)?;
    scalars.int("grounding_samples", rows.len());
    scalars.float("grounding_top_1_mean", s.top_1_mean);
    scalars.float("grounding_top_1_std", s.top_1_std);
    scalars.float("grounding_top_3_mean", s.top_3_mean);
    scalars.float("grounding_top_3_std", s.top_3_std);
    report.insert("test_grounding".into(), json!(s));
    Ok(())
}

/// How a `concept_shifts` stage lists its concept sets in `concepts.parquet`, which is the
/// order a `ground` stage numbers them in (the `r`-th row of a set is its grounded concept `r`).
struct ShiftConcepts {
    /// K, the concepts of each set.
    k: usize,
    /// `matching[k]`: the fine-tuned concept (its index in the independent decomposition of the
    /// fine-tuned features) matched to concept `k`.
    matching: Vec<usize>,
    /// For each set, row `r` → the index its grounding is filed under: the concept `k` for the
    /// original and shifted sets, the fine-tuned concept's own index for the fine-tuned set
    /// (whose rows the shift stage writes in matched order, row `k` = fine-tuned concept
    /// `matching[k]`).
    original: Vec<usize>,
    shifted: Vec<usize>,
    finetuned: Vec<usize>,
}

const RECOVERY_SETS: [&str; 3] = ["original", "shifted", "finetuned"];

fn read_shift_concepts(shift: &InputArtifact) -> anyhow::Result<ShiftConcepts> {
    let label = &shift.label;
    let expected = "`recovery.shift` must name a shift stage with `method = \"concept_shifts\"`";
    if shift.manifest.kind != "shift" || shift.manifest.file("concepts.parquet").is_none() {
        bail!(
            "`{label}` (kind `{}`) has no concept sets; {expected}",
            shift.manifest.kind
        );
    }
    let table = read_parquet(&shift.dir.join("concepts.parquet"))
        .with_context(|| format!("reading the concepts of `{label}`"))?;
    let (Some(sets), Some(concepts), Some(finetuned)) = (
        table.strings("set"),
        table.ints("concept"),
        table.ints("finetuned_concept"),
    ) else {
        bail!(
            "`{label}` has no `set`, `concept` and `finetuned_concept` columns in \
             `concepts.parquet` (method = {}); {expected}",
            shift.manifest.params["method"]
        );
    };
    let rows_of = |set: &str| -> Vec<(i64, i64)> {
        (0..sets.len())
            .filter(|&i| sets[i] == set)
            .map(|i| (concepts[i], finetuned[i]))
            .collect()
    };
    let [original, shifted, tuned] = RECOVERY_SETS.map(rows_of);
    let k = original.len();
    for (set, rows) in RECOVERY_SETS.iter().zip([&original, &shifted, &tuned]) {
        if rows.is_empty() || rows.len() != k {
            bail!(
                "`{label}` lists {} `{set}` concepts and {k} `original` ones; {expected} \
                 (each set holds the K concepts)",
                rows.len()
            );
        }
    }
    // Every concept once per set and every fine-tuned concept once: a one-to-one matching.
    let permutation = |values: Vec<i64>, what: &str| -> anyhow::Result<Vec<usize>> {
        let mut seen = vec![false; k];
        values
            .into_iter()
            .map(|v| match usize::try_from(v) {
                Ok(u) if u < k && !std::mem::replace(&mut seen[u], true) => Ok(u),
                _ => bail!(
                    "`{label}`: `concepts.parquet` {what} holds {v}, which is not a distinct \
                     index below {k}"
                ),
            })
            .collect()
    };
    let original_concepts = permutation(original.iter().map(|r| r.0).collect(), "concept")?;
    let matched = permutation(original.iter().map(|r| r.1).collect(), "finetuned_concept")?;
    let mut matching = vec![0; k];
    for (&c, &m) in original_concepts.iter().zip(&matched) {
        matching[c] = m;
    }
    // The shifted and fine-tuned rows must tell the same matching.
    for (set, rows) in [("shifted", &shifted), ("finetuned", &tuned)] {
        let cs = permutation(rows.iter().map(|r| r.0).collect(), "concept")?;
        if let Some((&c, r)) = cs
            .iter()
            .zip(rows.iter())
            .find(|(c, r)| r.1 != matching[**c] as i64)
        {
            bail!(
                "`{label}`: concept {c} of the `{set}` set is matched to fine-tuned concept {} \
                 but the `original` set says {}",
                r.1,
                matching[c]
            );
        }
    }
    // Checked above: the concepts of each set are a permutation, and the fine-tuned rows carry
    // `matching[concept]`, itself a permutation.
    Ok(ShiftConcepts {
        k,
        matching,
        original: original_concepts,
        shifted: shifted.iter().map(|r| r.0 as usize).collect(),
        finetuned: tuned.iter().map(|r| r.1 as usize).collect(),
    })
}

/// One concept set grounded: words and most-activating sample ids per grounded concept (in
/// the ground stage's numbering), and the list lengths it asked for.
struct GroundedSet {
    words: Vec<Vec<String>>,
    samples: Option<Vec<Vec<String>>>,
    num_words: usize,
    num_samples: usize,
}

/// The grounding of one set of the shift stage, after checking that it is one.
fn read_grounded_set(
    ground: &InputArtifact,
    set: &str,
    shift: &InputArtifact,
    shift_stage: &str,
    k: usize,
) -> anyhow::Result<GroundedSet> {
    let label = &ground.label;
    let role = format!("recovery.{set}");
    let expected = format!(
        "`{role}` must name a ground stage with `concepts = \"{shift_stage}\"` and \
         `set = \"{set}\"`"
    );
    if ground.manifest.kind != "ground" || ground.manifest.file("words.parquet").is_none() {
        bail!(
            "`{label}` (kind `{}`) is not a ground stage; {expected}",
            ground.manifest.kind
        );
    }
    if ground.manifest.inputs.get("concepts") != Some(&shift.key) {
        bail!(
            "`{label}` grounds the concepts of another stage than `recovery.shift` = `{}`; \
             {expected}",
            shift.label
        );
    }
    let params = &ground.manifest.params;
    if params["set"].as_str() != Some(set) {
        bail!(
            "`{label}` grounds the set {}; {expected}",
            match params["set"].as_str() {
                Some(s) => format!("`{s}`"),
                None => "of no name".to_string(),
            }
        );
    }
    let count = |key: &str| -> anyhow::Result<usize> {
        params[key]
            .as_u64()
            .map(|v| v as usize)
            .with_context(|| format!("`{label}`: the manifest has no `{key}` parameter"))
    };
    let num_words = count("num_grounded_text_tokens")?;
    let num_samples = count("num_most_activating_samples")?;
    let grouped = |file: &str, column: &str| -> anyhow::Result<Vec<Vec<String>>> {
        let path = ground.dir.join(file);
        let table = read_parquet_columns(&path, &["concept", "rank", column])
            .with_context(|| format!("reading `{file}` of `{label}`"))?;
        let (Some(concepts), Some(ranks), Some(values)) = (
            table.ints("concept"),
            table.ints("rank"),
            table.strings(column),
        ) else {
            bail!("`{file}` of `{label}` needs integer `concept`, `rank` and string `{column}`");
        };
        let mut ranked: Vec<Vec<(i64, String)>> = vec![Vec::new(); k];
        for ((&c, &r), v) in concepts.iter().zip(ranks).zip(values) {
            let slot = usize::try_from(c)
                .ok()
                .and_then(|c| ranked.get_mut(c))
                .with_context(|| {
                    format!(
                        "`{file}` of `{label}` names concept {c}, but `{}` has {k} concepts",
                        shift.label
                    )
                })?;
            slot.push((r, v.clone()));
        }
        Ok(ranked
            .into_iter()
            .map(|mut items| {
                items.sort_by_key(|(r, _)| *r);
                items.into_iter().map(|(_, v)| v).collect()
            })
            .collect())
    };
    let words = grouped("words.parquet", "word")?;
    let samples = if num_samples > 0 && ground.manifest.file("samples.parquet").is_some() {
        Some(grouped("samples.parquet", "sample_id")?)
    } else {
        None
    };
    Ok(GroundedSet {
        words,
        samples,
        num_words,
        num_samples,
    })
}

/// Files the lists of a set under the index `filed[r]` of each grounded concept `r`.
fn refile(lists: &[Vec<String>], filed: &[usize]) -> Vec<Vec<String>> {
    let mut out = vec![Vec::new(); lists.len()];
    for (list, &at) in lists.iter().zip(filed) {
        out[at] = list.clone();
    }
    out
}

/// xl-vlms' recovery metrics of a shift analysis: for each concept `k`, the grounding words
/// (T-Overlap, in percent of the words per concept) and the most-activating samples that the
/// matched fine-tuned concept shares with the original concept `k` and with the shifted one.
fn recovery_metrics(
    ctx: &StageContext<'_>,
    inputs: &RecoveryInputs,
    report: &mut serde_json::Map<String, Value>,
    scalars: &mut Scalars,
) -> anyhow::Result<()> {
    let shift = &ctx.inputs["recovery.shift"];
    let concepts = read_shift_concepts(shift)?;
    let k = concepts.k;
    let [original, shifted, finetuned] = RECOVERY_SETS.map(|set| {
        let ground = &ctx.inputs[&format!("recovery.{set}")];
        read_grounded_set(ground, set, shift, &inputs.shift.0, k)
    });
    let (original, shifted, finetuned) = (original?, shifted?, finetuned?);
    let labels = RECOVERY_SETS.map(|set| ctx.inputs[&format!("recovery.{set}")].label.clone());
    let grounded = [&original, &shifted, &finetuned];
    for (what, get) in [
        (
            "num_grounded_text_tokens",
            (|g: &GroundedSet| g.num_words) as fn(&GroundedSet) -> usize,
        ),
        ("num_most_activating_samples", |g: &GroundedSet| {
            g.num_samples
        }),
    ] {
        if grounded.iter().any(|g| get(g) != get(&original)) {
            bail!(
                "the recovery groundings differ in `{what}` ({}); overlaps compare lists of one \
                 length",
                labels
                    .iter()
                    .zip(grounded)
                    .map(|(l, g)| format!("`{l}`: {}", get(g)))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    let num_words = original.num_words;
    if num_words == 0 {
        bail!("the recovery groundings keep no words (`num_grounded_text_tokens = 0`)");
    }
    let overlaps = |get: fn(&GroundedSet) -> Option<&Vec<Vec<String>>>| {
        let (Some(o), Some(s), Some(f)) = (get(&original), get(&shifted), get(&finetuned)) else {
            return Ok(None);
        };
        let o = refile(o, &concepts.original);
        let s = refile(s, &concepts.shifted);
        let f = refile(f, &concepts.finetuned);
        recovery_overlaps(&o, &s, &f, &concepts.matching)
            .map(|v| Some((v, [o, s, f])))
            .context("recovery overlaps")
    };
    let (words, word_sets) = overlaps(|g| Some(&g.words))?.expect("words are always grounded");
    let mas = overlaps(|g| g.samples.as_ref())?;
    let num_samples = original.num_samples;

    let percent = |n: usize, of: usize| 100.0 * n as f64 / of as f64;
    let mean = |v: &mut dyn Iterator<Item = f64>| v.sum::<f64>() / k as f64;
    let improved = words.iter().filter(|o| o.shifted > o.original).count();
    let equal = words.iter().filter(|o| o.shifted == o.original).count();
    let worse = k - improved - equal;
    scalars.int("recovery_concepts", k);
    scalars.int("recovery_num_words", num_words);
    scalars.float(
        "recovery_t_overlap_original",
        mean(&mut words.iter().map(|o| percent(o.original, num_words))),
    );
    scalars.float(
        "recovery_t_overlap_shifted",
        mean(&mut words.iter().map(|o| percent(o.shifted, num_words))),
    );
    scalars.int("recovery_concepts_improved", improved);
    scalars.int("recovery_concepts_equal", equal);
    scalars.int("recovery_concepts_worse", worse);
    if let Some((mas, _)) = &mas {
        scalars.int("recovery_num_samples", num_samples);
        scalars.float(
            "recovery_mas_overlap_original",
            mean(&mut mas.iter().map(|o| percent(o.original, num_samples))),
        );
        scalars.float(
            "recovery_mas_overlap_shifted",
            mean(&mut mas.iter().map(|o| percent(o.shifted, num_samples))),
        );
    }

    let ints = |f: &dyn Fn(usize) -> usize| Column::Int64((0..k).map(|c| f(c) as i64).collect());
    let floats = |f: &dyn Fn(usize) -> f64| Column::Float64((0..k).map(f).collect());
    let mut table = FeatureTable::new()
        .with_column("concept", ints(&|c| c))
        .with_column("finetuned_concept", ints(&|c| concepts.matching[c]))
        .with_column("word_intersection_original", ints(&|c| words[c].original))
        .with_column("word_intersection_shifted", ints(&|c| words[c].shifted))
        .with_column(
            "t_overlap_original",
            floats(&|c| percent(words[c].original, num_words)),
        )
        .with_column(
            "t_overlap_shifted",
            floats(&|c| percent(words[c].shifted, num_words)),
        );
    if let Some((mas, _)) = &mas {
        table = table
            .with_column("mas_intersection_original", ints(&|c| mas[c].original))
            .with_column("mas_intersection_shifted", ints(&|c| mas[c].shifted))
            .with_column(
                "mas_overlap_original",
                floats(&|c| percent(mas[c].original, num_samples)),
            )
            .with_column(
                "mas_overlap_shifted",
                floats(&|c| percent(mas[c].shifted, num_samples)),
            );
    }
    ctx.staging.write_table("recovery.parquet", &table)?;

    let [wo, ws, wf] = &word_sets;
    let per_concept: Vec<Value> = (0..k)
        .map(|c| {
            let m = concepts.matching[c];
            let mut row = json!({
                "concept": c,
                "finetuned_concept": m,
                "words": { "original": wo[c], "shifted": ws[c], "finetuned": wf[m] },
                "word_intersection_original": words[c].original,
                "word_intersection_shifted": words[c].shifted,
                "t_overlap_original": percent(words[c].original, num_words),
                "t_overlap_shifted": percent(words[c].shifted, num_words),
            });
            if let Some((mas, [so, ss, sf])) = &mas {
                row["samples"] = json!({ "original": so[c], "shifted": ss[c], "finetuned": sf[m] });
                row["mas_intersection_original"] = json!(mas[c].original);
                row["mas_intersection_shifted"] = json!(mas[c].shifted);
            }
            row
        })
        .collect();
    report.insert(
        "recovery".into(),
        json!({
            "shift": shift.label,
            "groundings": labels,
            "num_words": num_words,
            "num_samples": mas.as_ref().map(|_| num_samples),
            "concepts_improved": improved,
            "concepts_equal": equal,
            "concepts_worse": worse,
            "concepts": per_concept,
        }),
    );
    Ok(())
}

/// `yes/no` → `yes_no`: metric names usable as column names in any tool.
fn column_safe(s: &str) -> String {
    let out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() { "none".into() } else { out }
}

#[derive(Clone, Debug, PartialEq)]
enum Scalar {
    Int(i64),
    Float(f64),
}

/// Scalar metrics in the order they were computed.
#[derive(Default)]
struct Scalars(Vec<(String, Scalar)>);

impl Scalars {
    fn int(&mut self, name: &str, v: usize) {
        self.push(name, Scalar::Int(v as i64));
    }

    fn float(&mut self, name: &str, v: f64) {
        self.push(name, Scalar::Float(v));
    }

    /// Two answer types that differ only in punctuation (`yes/no`, `yes no`) would share a
    /// column name: the later one gets a numbered suffix.
    fn push(&mut self, name: &str, v: Scalar) {
        let mut unique = name.to_string();
        let mut n = 2;
        while self.0.iter().any(|(m, _)| *m == unique) {
            unique = format!("{name}_{n}");
            n += 1;
        }
        self.0.push((unique, v));
    }

    fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(n, v)| {
                    let v = match v {
                        Scalar::Int(i) => json!(i),
                        Scalar::Float(f) => json!(f),
                    };
                    (n.clone(), v)
                })
                .collect(),
        )
    }

    fn to_table(&self) -> FeatureTable {
        let mut t = FeatureTable::new();
        for (n, v) in &self.0 {
            t = t.with_column(
                n.clone(),
                match v {
                    Scalar::Int(i) => Column::Int64(vec![*i]),
                    Scalar::Float(f) => Column::Float64(vec![*f]),
                },
            );
        }
        t
    }
}

/// A collected instance: its sweep coordinates, label and scalar metrics.
struct SweepRow {
    coords: BTreeMap<String, String>,
    label: String,
    values: HashMap<String, Scalar>,
}

/// One table row per instance of the collected stage, in sweep order: its coordinates, its
/// label, and every column of its `metrics.parquet`.
fn sweep_table(ctx: &StageContext<'_>, p: &EvaluateParams) -> anyhow::Result<StageOutput> {
    let mut instances: Vec<(usize, &InputArtifact)> = ctx
        .inputs
        .iter()
        .filter_map(|(role, a)| {
            role.strip_prefix("collect.")
                .and_then(|i| i.parse::<usize>().ok())
                .map(|i| (i, a))
        })
        .collect();
    instances.sort_by_key(|(i, _)| *i);
    if instances.is_empty() {
        bail!("`collect` found no instance to gather");
    }
    let mut coord_names: Vec<String> = Vec::new();
    let mut metric_names: Vec<String> = Vec::new();
    let mut rows: Vec<SweepRow> = Vec::new();
    for (_, a) in &instances {
        if a.manifest.file("metrics.parquet").is_none() {
            bail!(
                "`{}` is a {} stage without `metrics.parquet`; `collect` must name an evaluate stage",
                a.label,
                a.manifest.kind
            );
        }
        let t = read_parquet(&a.dir.join("metrics.parquet"))
            .with_context(|| format!("reading the metrics of `{}`", a.label))?;
        let mut values = HashMap::new();
        for (name, col) in &t.columns {
            let v = match col {
                Column::Int64(v) if v.len() == 1 => Scalar::Int(v[0]),
                Column::Float64(v) if v.len() == 1 => Scalar::Float(v[0]),
                _ => bail!("`{}`: metrics column `{name}` is not one number", a.label),
            };
            if !metric_names.contains(name) {
                metric_names.push(name.clone());
            }
            values.insert(name.clone(), v);
        }
        for c in a.coords.keys() {
            if !coord_names.contains(c) {
                coord_names.push(c.clone());
            }
        }
        rows.push(SweepRow {
            coords: a.coords.clone(),
            label: a.label.clone(),
            values,
        });
    }

    let mut table = FeatureTable::new();
    let mut numeric_coords = Vec::new();
    for c in &coord_names {
        let labels: Vec<String> = rows
            .iter()
            .map(|r| r.coords.get(c).cloned().unwrap_or_default())
            .collect();
        let numbers: Option<Vec<f64>> = labels.iter().map(|l| l.parse::<f64>().ok()).collect();
        table = match numbers {
            Some(n) => {
                numeric_coords.push(c.clone());
                table.with_column(c.clone(), Column::Float64(n))
            }
            None => table.with_column(c.clone(), Column::Utf8(labels)),
        };
    }
    table = table.with_column(
        "instance",
        Column::Utf8(rows.iter().map(|r| r.label.clone()).collect()),
    );
    for m in &metric_names {
        let cells: Vec<Option<&Scalar>> = rows.iter().map(|r| r.values.get(m)).collect();
        let ints: Option<Vec<i64>> = cells
            .iter()
            .map(|c| match c {
                Some(Scalar::Int(i)) => Some(*i),
                _ => None,
            })
            .collect();
        let col = match ints {
            Some(i) => Column::Int64(i),
            // A metric missing at some sweep point is NaN there.
            None => Column::Float64(
                cells
                    .iter()
                    .map(|c| match c {
                        Some(Scalar::Int(i)) => *i as f64,
                        Some(Scalar::Float(f)) => *f,
                        None => f64::NAN,
                    })
                    .collect(),
            ),
        };
        table = table.with_column(m.clone(), col);
    }
    ctx.staging.write_table("table.parquet", &table)?;
    ctx.staging
        .write_file("table.csv", to_csv(&table).as_bytes())?;

    let plot = p
        .plot
        .clone()
        .unwrap_or(xlvlm_spec::PlotParams { x: None, y: vec![] });
    let x = match &plot.x {
        Some(x) if !coord_names.contains(x) => bail!(
            "`plot.x = {x:?}` is not a sweep coordinate of the table (coordinates: {})",
            coord_names.join(", ")
        ),
        Some(x) if !numeric_coords.contains(x) => {
            bail!("`plot.x = {x:?}` has values that are not numbers")
        }
        Some(x) => Some(x.clone()),
        None => numeric_coords.first().cloned(),
    };
    let ys: Vec<String> = if plot.y.is_empty() {
        [
            "percent_preds_with_toi",
            "percent_preds_changed",
            "vqa_accuracy",
            "cider",
        ]
        .iter()
        .filter(|m| metric_names.iter().any(|n| n == *m))
        .map(|m| m.to_string())
        .collect()
    } else {
        for y in &plot.y {
            if !metric_names.contains(y) {
                bail!(
                    "`plot.y` names `{y}`, which the table does not have (metrics: {})",
                    metric_names.join(", ")
                );
            }
        }
        plot.y.clone()
    };
    let plotted = match (&x, ys.is_empty()) {
        (Some(x), false) => {
            let plot = Plot::of(&table, x, &ys, &coord_names)?;
            ctx.staging.write_file("plot.svg", plot.svg()?.as_bytes())?;
            ctx.staging.write_file("plot.png", &plot.png()?)?;
            true
        }
        _ => false,
    };
    Ok(StageOutput {
        rows: Some(rows.len() as u64),
        summary: json!({
            "instances": rows.len(),
            "coordinates": coord_names,
            "metrics": metric_names,
            "plot": plotted.then(|| json!({"x": x, "y": ys})),
        }),
    })
}

fn to_csv(table: &FeatureTable) -> String {
    fn field(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    let mut out = table
        .columns
        .iter()
        .map(|(n, _)| field(n))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    for r in 0..table.num_rows() {
        let cells: Vec<String> = table
            .columns
            .iter()
            .map(|(_, c)| match c {
                Column::Utf8(v) => field(&v[r]),
                Column::Int64(v) => v[r].to_string(),
                Column::Float64(v) if v[r].is_nan() => String::new(),
                Column::Float64(v) => v[r].to_string(),
                Column::Bool(v) => v[r].to_string(),
                Column::Vector { .. } => String::new(),
            })
            .collect();
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}

/// Lines of `ys` against `x`, sorted by x, one per metric and per combination of the other
/// coordinates (`coords`; a grid sweep gives one line per point of the other axes), with a
/// legend; drawn as SVG and as PNG.
struct Plot {
    x_label: String,
    series: Vec<(String, Vec<(f64, f64)>)>,
    x_range: (f64, f64),
    y_range: (f64, f64),
}

const PLOT_SIZE: (u32, u32) = (720, 480);

impl Plot {
    fn of(table: &FeatureTable, x: &str, ys: &[String], coords: &[String]) -> anyhow::Result<Self> {
        let xs = table.floats(x).context("x column")?.to_vec();
        // Rows grouped by the values of the coordinates other than x, in first-seen order.
        let others: Vec<&String> = coords.iter().filter(|c| *c != x).collect();
        let cell = |c: &str, r: usize| match table.column(c) {
            Some(Column::Utf8(v)) => v[r].clone(),
            Some(Column::Float64(v)) => v[r].to_string(),
            _ => String::new(),
        };
        let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
        for r in 0..table.num_rows() {
            let name = others
                .iter()
                .map(|c| format!("{c}={}", cell(c, r)))
                .collect::<Vec<_>>()
                .join(", ");
            match groups.iter_mut().find(|(n, _)| *n == name) {
                Some((_, rows)) => rows.push(r),
                None => groups.push((name, vec![r])),
            }
        }
        let mut series: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
        for y in ys {
            let values: Vec<f64> = match table.column(y) {
                Some(Column::Int64(v)) => v.iter().map(|i| *i as f64).collect(),
                Some(Column::Float64(v)) => v.clone(),
                _ => vec![],
            };
            for (group, rows) in &groups {
                let mut pts: Vec<(f64, f64)> = rows
                    .iter()
                    .map(|&r| (xs[r], values[r]))
                    .filter(|(a, b)| a.is_finite() && b.is_finite())
                    .collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                let label = if group.is_empty() {
                    y.clone()
                } else {
                    format!("{y} ({group})")
                };
                series.push((label, pts));
            }
        }
        let all = series.iter().flat_map(|(_, p)| p.iter());
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for (a, b) in all {
            x0 = x0.min(*a);
            x1 = x1.max(*a);
            y0 = y0.min(*b);
            y1 = y1.max(*b);
        }
        if x0 > x1 {
            bail!("nothing to plot: every plotted value is missing");
        }
        let pad = |lo: f64, hi: f64| {
            let d = if hi > lo { (hi - lo) * 0.05 } else { 1.0 };
            (lo - d, hi + d)
        };
        let (x0, x1) = pad(x0, x1);
        let (y0, mut y1) = pad(y0, y1);
        // Room above the data for the legend (one line per series).
        y1 += (y1 - y0) * (0.07 * series.len() as f64).min(0.8);
        Ok(Plot {
            x_label: x.to_string(),
            series,
            x_range: (x0, x1),
            y_range: (y0, y1),
        })
    }

    fn svg(&self) -> anyhow::Result<String> {
        let mut svg = String::new();
        self.draw(plotters::prelude::SVGBackend::with_string(
            &mut svg, PLOT_SIZE,
        ))?;
        Ok(svg)
    }

    fn png(&self) -> anyhow::Result<Vec<u8>> {
        let (w, h) = PLOT_SIZE;
        let mut rgb = vec![0u8; (w * h * 3) as usize];
        self.draw(plotters::prelude::BitMapBackend::with_buffer(
            &mut rgb, PLOT_SIZE,
        ))?;
        let image = image_crate::RgbImage::from_raw(w, h, rgb).context("a plot buffer")?;
        super::png_bytes(&image)
    }

    fn draw<DB: plotters::prelude::DrawingBackend>(&self, backend: DB) -> anyhow::Result<()> {
        use plotters::prelude::*;
        register_plot_font();
        let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the plot: {e}");
        let root = backend.into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let (x0, x1) = self.x_range;
        let (y0, y1) = self.y_range;
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc(self.x_label.as_str())
            .draw()
            .map_err(|e| err(&e))?;
        for (i, (name, pts)) in self.series.iter().enumerate() {
            // matplotlib's tab10 colours, distinct on white
            const TAB10: [(u8, u8, u8); 10] = [
                (31, 119, 180),
                (255, 127, 14),
                (44, 160, 44),
                (214, 39, 40),
                (148, 103, 189),
                (140, 86, 75),
                (227, 119, 194),
                (127, 127, 127),
                (188, 189, 34),
                (23, 190, 207),
            ];
            let (r, g, b) = TAB10[i % TAB10.len()];
            let color = RGBColor(r, g, b).to_rgba();
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(name.clone())
                .legend(move |(a, b)| PathElement::new(vec![(a, b), (a + 16, b)], color));
            chart
                .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
        Ok(())
    }
}

/// plotters lays out and draws text with the fonts registered by name; xlvlm brings its own
/// (DejaVu Sans) so plots look the same on every machine.
fn register_plot_font() {
    static REGISTERED: std::sync::Once = std::sync::Once::new();
    REGISTERED.call_once(|| {
        plotters::style::register_font(
            "sans-serif",
            plotters::style::FontStyle::Normal,
            dejavu::sans::regular(),
        )
        .unwrap_or_else(|_| panic!("the embedded DejaVu Sans is a valid font"));
    });
}
