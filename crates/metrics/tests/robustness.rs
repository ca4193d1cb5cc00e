//! Arbitrary text (punctuation, quotes, combining marks, emoji, CJK, odd whitespace) never makes
//! the text processing panic or produce non-finite scores.

#[test]
fn arbitrary_text_is_handled() {
    let pool: Vec<char> = "aZ09 .,;:'\"`-_/\\()[]{}<>!?@#$%^&*+=~|\t\n\r\u{2019}\u{201C}\u{2026}\u{2014}é\u{0301}😀中\u{00A0}\u{200B}yn'tsS.A".chars().collect();
    let mut state = 12345u64;
    let mut rnd = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    for _ in 0..2000 {
        let len = rnd(25);
        let s: String = (0..len).map(|_| pool[rnd(pool.len())]).collect();
        let t = xlvlm_metrics::ptb_tokenize(&s);
        let _ = xlvlm_metrics::caption::meteor::normalize(&s);
        let p = vec![xlvlm_metrics::VqaPrediction {
            question_id: 1,
            answer: s.clone(),
        }];
        let a = vec![xlvlm_metrics::VqaAnnotation {
            question_id: 1,
            question_type: "q".into(),
            answer_type: "a".into(),
            answers: vec![s.clone(), "x".into()],
        }];
        xlvlm_metrics::vqa_accuracy(&p, &a, xlvlm_metrics::VqaAccuracy::Official).unwrap();
        xlvlm_metrics::vqa_accuracy(&p, &a, xlvlm_metrics::VqaAccuracy::XlVlms).unwrap();
        let joined = t.join(" ");
        let m =
            xlvlm_metrics::caption::meteor::meteor(&[joined.as_str()], &[vec![s.as_str(), "a b"]]);
        assert!(m.per_image[0].is_finite());
    }
}
