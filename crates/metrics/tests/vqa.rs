//! VQA accuracy against the official evaluator's goldens (tools/refgen/metrics_goldens.py).

use serde_json::Value;
use xlvlm_metrics::{VqaAccuracy, VqaAnnotation, VqaPrediction, vqa_accuracy};

fn golden() -> Value {
    serde_json::from_str(include_str!("fixtures/vqa_official.json")).expect("valid golden JSON")
}

fn inputs(g: &Value) -> (Vec<VqaPrediction>, Vec<VqaAnnotation>) {
    let questions = g["questions"].as_array().expect("questions");
    let preds = questions
        .iter()
        .map(|q| VqaPrediction {
            question_id: q["question_id"].as_u64().unwrap(),
            answer: q["prediction"].as_str().unwrap().to_owned(),
        })
        .collect();
    let annotations = questions
        .iter()
        .map(|q| VqaAnnotation {
            question_id: q["question_id"].as_u64().unwrap(),
            question_type: q["question_type"].as_str().unwrap().to_owned(),
            answer_type: q["answer_type"].as_str().unwrap().to_owned(),
            answers: q["answers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().to_owned())
                .collect(),
        })
        .collect();
    (preds, annotations)
}

#[test]
fn official_accuracy_matches_the_evaluator_exactly() {
    let g = golden();
    let (preds, annotations) = inputs(&g);
    let report = vqa_accuracy(&preds, &annotations, VqaAccuracy::Official).unwrap();
    let questions = g["questions"].as_array().unwrap();
    assert!(questions.len() > 100);
    for (q, got) in questions.iter().zip(&report.questions) {
        assert_eq!(
            got.accuracy,
            q["accuracy"].as_f64().unwrap(),
            "question {} ({}): prediction {:?} normalised to {:?}",
            q["question_id"],
            q["note"],
            q["prediction"],
            got.normalized_prediction
        );
    }
    assert_eq!(report.overall, g["overall"].as_f64().unwrap());
    for (key, field) in [
        ("per_answer_type", &report.per_answer_type),
        ("per_question_type", &report.per_question_type),
    ] {
        let expected = g[key].as_object().unwrap();
        assert_eq!(field.len(), expected.len());
        for (k, v) in expected {
            assert_eq!(field[k], v.as_f64().unwrap(), "{key} {k}");
        }
    }
}

/// xl-vlms' simplified formula around lmms-eval's EvalAIAnswerProcessor (the normaliser xl-vlms
/// copies), on the same questions.
#[test]
fn xl_vlms_accuracy_matches_its_reference() {
    let (preds, annotations) = inputs(&golden());
    let g: Value =
        serde_json::from_str(include_str!("fixtures/vqa_xl_vlms.json")).expect("valid golden JSON");
    let report = vqa_accuracy(&preds, &annotations, VqaAccuracy::XlVlms).unwrap();
    for (q, got) in g["questions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&report.questions)
    {
        assert_eq!(got.question_id, q["question_id"].as_u64().unwrap());
        assert_eq!(
            got.normalized_prediction,
            q["normalized_prediction"].as_str().unwrap(),
            "question {}",
            got.question_id
        );
        assert!((got.accuracy - q["accuracy"].as_f64().unwrap()).abs() < 1e-9);
    }
    for (k, v) in g["per_answer_type"].as_object().unwrap() {
        assert!(
            (report.per_answer_type[k] - v.as_f64().unwrap()).abs() < 1e-9,
            "{k}"
        );
    }
    assert!((report.overall - g["overall"].as_f64().unwrap()).abs() < 1e-9);
}

#[test]
fn quirk_cases_score_as_documented() {
    let g = golden();
    let (preds, annotations) = inputs(&g);
    let report = vqa_accuracy(&preds, &annotations, VqaAccuracy::Official).unwrap();
    let acc = |note: &str| {
        let i = g["questions"]
            .as_array()
            .unwrap()
            .iter()
            .position(|q| q["note"].as_str().unwrap().contains(note))
            .unwrap();
        report.questions[i].accuracy
    };
    assert_eq!(acc("GT is not digit-normalised"), 0.0);
    assert_eq!(acc("number word -> digit"), 100.0);
    assert_eq!(acc("3 matches -> 0.9"), 90.0);
    assert_eq!(acc("hyphen -> space"), 100.0);
}

fn one(
    prediction: &str,
    answers: &[&str],
    answer_type: &str,
    id: u64,
) -> (VqaPrediction, VqaAnnotation) {
    (
        VqaPrediction {
            question_id: id,
            answer: prediction.into(),
        },
        VqaAnnotation {
            question_id: id,
            question_type: "what".into(),
            answer_type: answer_type.into(),
            answers: answers.iter().map(|a| a.to_string()).collect(),
        },
    )
}

#[test]
fn xl_vlms_formula_is_the_simplified_one() {
    // 3 matches: the seed's min(1, 3/3) = 100, the official leave-one-out gives 90.
    let (p1, a1) = one(
        "Red.",
        &[
            "red", "red", "red", "blue", "blue", "blue", "blue", "blue", "blue", "blue",
        ],
        "other",
        1,
    );
    // The seed normalises GT answers with process_digit_article: "two" -> "2" matches.
    let (p2, a2) = one("2", &["two"; 10], "number", 2);
    // 1 match of 10 in another type.
    let (p3, a3) = one(
        "yes",
        &["yes", "no", "no", "no", "no", "no", "no", "no", "no", "no"],
        "yes/no",
        3,
    );
    let preds = [p1, p2, p3];
    let anns = [a1, a2, a3];
    let seed = vqa_accuracy(&preds, &anns, VqaAccuracy::XlVlms).unwrap();
    let scores: Vec<f64> = seed.questions.iter().map(|q| q.accuracy).collect();
    assert_eq!(scores[0], 100.0);
    assert_eq!(scores[1], 100.0);
    assert!((scores[2] - 100.0 / 3.0).abs() < 1e-12);
    // Macro average over answer types.
    assert!((seed.overall - (100.0 + 100.0 + 100.0 / 3.0) / 3.0).abs() < 1e-12);
    let official = vqa_accuracy(&preds, &anns, VqaAccuracy::Official).unwrap();
    assert_eq!(official.questions[0].accuracy, 90.0);
    assert_eq!(official.questions[1].accuracy, 0.0);
}

#[test]
fn mismatched_inputs_are_errors() {
    let (p, a) = one("yes", &["yes"], "yes/no", 1);
    let (p2, _) = one("no", &["no"], "yes/no", 2);
    let err = vqa_accuracy(
        &[p.clone(), p2],
        std::slice::from_ref(&a),
        VqaAccuracy::Official,
    )
    .unwrap_err();
    assert!(err.to_string().contains("question 2"), "{err}");
    let err = vqa_accuracy(&[], std::slice::from_ref(&a), VqaAccuracy::Official).unwrap_err();
    assert!(err.to_string().contains("no prediction"), "{err}");
    let mut empty = a.clone();
    empty.answers.clear();
    assert!(vqa_accuracy(&[p], &[empty], VqaAccuracy::Official).is_err());
}
