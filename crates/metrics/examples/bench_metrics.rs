//! Benchmark: PTB tokenisation + BLEU-1..4 + METEOR + ROUGE-L + CIDEr-D on a corpus written by
//! `tools/refgen/metrics_goldens.py --bench N` (raw captions, 5 references per image, and the
//! scores pycocoevalcap computed on it in the same run).
//!
//! ```text
//! /work/venvs/metrics/bin/python tools/refgen/metrics_goldens.py --bench 5000 --bench-out /tmp/bench.json
//! cargo run --release -p xlvlm-metrics --example bench_metrics -- /tmp/bench.json \
//!     [SYNONYM_DIR PARAPHRASE_TABLE]
//! ```
//!
//! With METEOR's data (`unzip meteor-1.5.jar 'synonym/*'` and `data/paraphrase-en.gz` from
//! pycocoevalcap's `meteor/` folder) it also times loading them and the full METEOR.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;
use xlvlm_metrics::caption::meteor::{MeteorResources, Paraphrases, Synonyms};
use xlvlm_metrics::caption::{bleu, caption_scores_tokenized, cider, meteor, rouge};
use xlvlm_metrics::ptb_tokenize;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: bench_metrics CORPUS.json (from metrics_goldens.py --bench N)");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let corpus: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    let hyps: BTreeMap<String, String> = corpus["res"]
        .as_object()
        .expect("res: object of image id -> caption")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("caption").to_owned()))
        .collect();
    let refs: BTreeMap<String, Vec<String>> = corpus["gts"]
        .as_object()
        .expect("gts: object of image id -> captions")
        .iter()
        .map(|(k, v)| {
            let list = v.as_array().expect("list of captions");
            (
                k.clone(),
                list.iter()
                    .map(|c| c.as_str().expect("caption").to_owned())
                    .collect(),
            )
        })
        .collect();
    let n_refs: usize = refs.values().map(Vec::len).sum();
    println!("{} images, {} references", hyps.len(), n_refs);

    let total = Instant::now();
    let t = Instant::now();
    let tok = |s: &String| ptb_tokenize(s).join(" ");
    let tok_hyps: BTreeMap<String, String> =
        hyps.iter().map(|(k, v)| (k.clone(), tok(v))).collect();
    let tok_refs: BTreeMap<String, Vec<String>> = refs
        .iter()
        .map(|(k, v)| (k.clone(), v.iter().map(tok).collect()))
        .collect();
    println!("ptb_tokenize  {:8.3} s", t.elapsed().as_secs_f64());

    let h: Vec<&str> = tok_hyps.values().map(String::as_str).collect();
    let r: Vec<Vec<&str>> = tok_refs
        .values()
        .map(|rs| rs.iter().map(String::as_str).collect())
        .collect();
    let t = Instant::now();
    let b = bleu::bleu(&h, &r);
    println!("bleu          {:8.3} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let m = meteor::meteor(&h, &r);
    println!("meteor        {:8.3} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let rl = rouge::rouge_l(&h, &r);
    println!("rouge_l       {:8.3} s", t.elapsed().as_secs_f64());
    let t = Instant::now();
    let c = cider::cider_d(&h, &r);
    println!("cider_d       {:8.3} s", t.elapsed().as_secs_f64());
    println!("total         {:8.3} s", total.elapsed().as_secs_f64());

    let mut full_meteor = None;
    if let (Some(synonym_dir), Some(paraphrase_table)) =
        (std::env::args().nth(2), std::env::args().nth(3))
    {
        let t = Instant::now();
        let resources = MeteorResources {
            synonyms: Some(Synonyms::load(std::path::Path::new(&synonym_dir)).expect("synonyms")),
            paraphrases: Some(
                Paraphrases::load(std::path::Path::new(&paraphrase_table)).expect("paraphrases"),
            ),
        };
        println!("load METEOR data {:8.3} s", t.elapsed().as_secs_f64());
        let t = Instant::now();
        full_meteor = Some(meteor::meteor_with(&h, &r, &resources).corpus);
        println!("meteor (all modules) {:8.3} s", t.elapsed().as_secs_f64());
    }

    // The same numbers through the public entry point, checked against pycocoevalcap.
    let report = caption_scores_tokenized(&tok_hyps, &tok_refs).expect("valid corpus");
    assert_eq!(report.corpus.bleu, b.corpus);
    let reference = &corpus["scores"];
    let ours = [
        ("Bleu_1", b.corpus[0]),
        ("Bleu_2", b.corpus[1]),
        ("Bleu_3", b.corpus[2]),
        ("Bleu_4", b.corpus[3]),
        ("METEOR_exact_stem", m.corpus),
        ("METEOR", full_meteor.unwrap_or(m.corpus)),
        ("ROUGE_L", rl.corpus),
        ("CIDEr", c.corpus),
    ];
    for (name, value) in ours {
        let expected = reference[name].as_f64().unwrap_or(f64::NAN);
        println!(
            "{name:18} xlvlm {value:.9}  pycocoevalcap {expected:.9}  diff {:+.2e}",
            value - expected
        );
    }
}
