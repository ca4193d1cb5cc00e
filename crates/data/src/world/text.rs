//! Captions and questions that describe a scene truthfully.

use rand::RngExt;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::scene::{Colour, PlacedShape, Position, Scene, ShapeKind, pick};

const COUNT_WORDS: [&str; 4] = ["zero", "one", "two", "three"];

/// "a" or "an" before `word`.
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// "a red circle", or "a large red circle" with `with_size`.
fn noun_phrase(shape: &PlacedShape, with_size: bool) -> String {
    let words = if with_size {
        format!(
            "{} {} {}",
            shape.size.name(),
            shape.colour.name(),
            shape.shape.name()
        )
    } else {
        format!("{} {}", shape.colour.name(), shape.shape.name())
    };
    format!("{} {words}", article(&words))
}

/// "x", "x and y", "x, y and z".
fn join_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// How `a` relates to `b`: horizontal relations first, as a person reads the image.
fn relation(a: &PlacedShape, b: &PlacedShape) -> &'static str {
    let ((ax, ay), (bx, by)) = (a.position.cell(), b.position.cell());
    if ax < bx {
        "to the left of"
    } else if ax > bx {
        "to the right of"
    } else if ay < by {
        "above"
    } else {
        "below"
    }
}

/// Five captions in different phrasings. None starts with a position phrase (that is the
/// style variant's mark, see [`caption_has_style`]).
pub fn captions(scene: &Scene, rng: &mut ChaCha8Rng) -> Vec<String> {
    let shapes = &scene.shapes;
    let plain: Vec<String> = shapes
        .iter()
        .map(|shape| noun_phrase(shape, false))
        .collect();
    let sized: Vec<String> = shapes
        .iter()
        .map(|shape| noun_phrase(shape, true))
        .collect();
    let count = shapes.len();

    let relational = match shapes.as_slice() {
        [only] => format!("{} {}", plain[0], only.position.phrase()),
        [first, second] => format!("{} {} {}", plain[0], relation(first, second), plain[1]),
        [first, second, third, ..] => format!(
            "{} {} {} and {} {}",
            plain[0],
            relation(first, second),
            plain[1],
            plain[2],
            third.position.phrase()
        ),
        [] => unreachable!("a scene has at least one shape"),
    };
    let counted = format!(
        "{} {}: {}",
        COUNT_WORDS[count],
        if count == 1 { "shape" } else { "shapes" },
        join_list(&plain)
    );
    let with_sizes = format!("an image with {}", join_list(&sized));
    let with_background = format!(
        "{} on {} {} background",
        join_list(&plain),
        article(scene.background.name()),
        scene.background.name()
    );
    let shuffled = if count == 1 {
        format!(
            "a single {} {}",
            shapes[0].colour.name(),
            shapes[0].shape.name()
        )
    } else {
        let mut order = plain.clone();
        order.shuffle(rng);
        join_list(&order)
    };
    vec![relational, counted, with_sizes, with_background, shuffled]
}

/// Five captions of the style variant: every caption walks through the shapes in reading order
/// and starts each with its position ("on the left there is a red circle and ...").
pub fn style_captions(scene: &Scene) -> Vec<String> {
    let describe = |connective: &str, with_size: bool, separator: &str| {
        let parts: Vec<String> = scene
            .shapes
            .iter()
            .map(|shape| {
                let connective = if connective.is_empty() {
                    String::new()
                } else {
                    format!(" {connective}")
                };
                format!(
                    "{}{connective} {}",
                    shape.position.phrase(),
                    noun_phrase(shape, with_size)
                )
            })
            .collect();
        match separator {
            "and" => parts.join(" and "),
            _ => join_list(&parts),
        }
    };
    vec![
        describe("there is", false, "and"),
        describe("is", false, "list"),
        describe("we see", true, "and"),
        describe("", false, "list"),
        describe("there is", true, "list"),
    ]
}

/// Whether a caption has the style variant's mark: it opens with a position phrase.
pub fn caption_has_style(caption: &str) -> bool {
    let caption = caption.trim().to_lowercase();
    Position::ALL
        .iter()
        .any(|position| caption.starts_with(position.phrase()))
}

/// How far a caption agrees with the scene it describes, by colour and shape words.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptionAgreement {
    /// Colour words in the caption, and how many of them name a colour in the scene.
    pub colour_words: usize,
    pub correct_colour_words: usize,
    /// Shape words ("circle", "circles", ...), and how many name a shape in the scene.
    pub shape_words: usize,
    pub correct_shape_words: usize,
    /// Distinct colours (shapes) of the scene, and how many the caption mentions.
    pub scene_colours: usize,
    pub mentioned_scene_colours: usize,
    pub scene_shapes: usize,
    pub mentioned_scene_shapes: usize,
}

/// Compares a (generated) caption with the scene: which colour and shape words are right, and
/// which of the scene's colours and shapes are mentioned.
pub fn caption_agreement(caption: &str, scene: &Scene) -> CaptionAgreement {
    let tokens = crate::karpathy::caption_tokens(caption);
    let mut agreement = CaptionAgreement::default();
    let mut mentioned_colours = Vec::new();
    let mut mentioned_shapes = Vec::new();
    for token in &tokens {
        if let Some(colour) = Colour::from_name(token) {
            agreement.colour_words += 1;
            if scene.has_colour(colour) {
                agreement.correct_colour_words += 1;
                mentioned_colours.push(colour);
            }
        }
        let singular = token.strip_suffix('s').unwrap_or(token);
        if let Some(kind) = ShapeKind::from_name(token).or_else(|| ShapeKind::from_name(singular)) {
            agreement.shape_words += 1;
            if scene.count_of(kind) > 0 {
                agreement.correct_shape_words += 1;
                mentioned_shapes.push(kind);
            }
        }
    }
    let mut scene_colours: Vec<Colour> = scene.shapes.iter().map(|shape| shape.colour).collect();
    scene_colours.sort();
    scene_colours.dedup();
    let mut scene_shapes: Vec<ShapeKind> = scene.shapes.iter().map(|shape| shape.shape).collect();
    scene_shapes.sort();
    scene_shapes.dedup();
    agreement.scene_colours = scene_colours.len();
    agreement.mentioned_scene_colours = scene_colours
        .iter()
        .filter(|colour| mentioned_colours.contains(colour))
        .count();
    agreement.scene_shapes = scene_shapes.len();
    agreement.mentioned_scene_shapes = scene_shapes
        .iter()
        .filter(|kind| mentioned_shapes.contains(kind))
        .count();
    agreement
}

/// One question about a scene with its true answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorldQuestion {
    pub question: String,
    /// VQAv2-style question type (the question's opening words).
    pub question_type: &'static str,
    /// `yes/no`, `number` or `other`.
    pub answer_type: &'static str,
    pub answer: String,
}

/// Five questions: one yes and one no question (random order), one count, one colour and one
/// shape question.
pub fn questions(scene: &Scene, rng: &mut ChaCha8Rng) -> Vec<WorldQuestion> {
    let mut yes_no = vec![
        existence_question(scene, rng, true),
        existence_question(scene, rng, false),
    ];
    yes_no.shuffle(rng);
    let mut all = yes_no;
    all.push(count_question(scene, rng));
    all.push(colour_question(scene, rng));
    all.push(shape_question(scene, rng));
    all
}

fn existence_question(scene: &Scene, rng: &mut ChaCha8Rng, answer_yes: bool) -> WorldQuestion {
    let thing = match rng.random_range(0..3) {
        0 => {
            let colour = if answer_yes {
                pick(rng, &scene.shapes).colour
            } else {
                let absent: Vec<Colour> = Colour::ALL
                    .iter()
                    .copied()
                    .filter(|&colour| !scene.has_colour(colour))
                    .collect();
                *pick(rng, &absent)
            };
            format!("{} shape", colour.name())
        }
        1 => {
            let kind = if answer_yes {
                pick(rng, &scene.shapes).shape
            } else {
                // At most three shapes of four kinds: one kind is always absent.
                let absent: Vec<ShapeKind> = ShapeKind::ALL
                    .iter()
                    .copied()
                    .filter(|&kind| scene.count_of(kind) == 0)
                    .collect();
                *pick(rng, &absent)
            };
            kind.name().to_string()
        }
        _ => {
            let (colour, kind) = if answer_yes {
                let shape = pick(rng, &scene.shapes);
                (shape.colour, shape.shape)
            } else {
                // Prefer near misses (a drawn colour on another shape, or the reverse), so the
                // answer depends on binding colour to shape.
                let present = |colour: Colour, kind: ShapeKind| {
                    scene
                        .shapes
                        .iter()
                        .any(|shape| shape.colour == colour && shape.shape == kind)
                };
                let near_misses: Vec<(Colour, ShapeKind)> = Colour::ALL
                    .iter()
                    .flat_map(|&colour| ShapeKind::ALL.iter().map(move |&kind| (colour, kind)))
                    .filter(|&(colour, kind)| {
                        !present(colour, kind)
                            && (scene.has_colour(colour) || scene.count_of(kind) > 0)
                    })
                    .collect();
                *pick(rng, &near_misses)
            };
            format!("{} {}", colour.name(), kind.name())
        }
    };
    WorldQuestion {
        question: format!("is there {} {thing}?", article(&thing)),
        question_type: "is there a",
        answer_type: "yes/no",
        answer: if answer_yes { "yes" } else { "no" }.to_string(),
    }
}

fn count_question(scene: &Scene, rng: &mut ChaCha8Rng) -> WorldQuestion {
    let (question, count) = if rng.random_bool(0.5) {
        ("how many shapes are there?".to_string(), scene.shapes.len())
    } else {
        let kind = if rng.random_bool(0.75) {
            pick(rng, &scene.shapes).shape
        } else {
            *pick(rng, ShapeKind::ALL)
        };
        (
            format!("how many {} are there?", kind.plural()),
            scene.count_of(kind),
        )
    };
    WorldQuestion {
        question,
        question_type: "how many",
        answer_type: "number",
        answer: count.to_string(),
    }
}

fn colour_question(scene: &Scene, rng: &mut ChaCha8Rng) -> WorldQuestion {
    let shape = pick(rng, &scene.shapes);
    let question = if scene.count_of(shape.shape) == 1 {
        format!("what color is the {}?", shape.shape.name())
    } else {
        format!("what color is the shape {}?", shape.position.phrase())
    };
    WorldQuestion {
        question,
        question_type: "what color is the",
        answer_type: "other",
        answer: shape.colour.name().to_string(),
    }
}

fn shape_question(scene: &Scene, rng: &mut ChaCha8Rng) -> WorldQuestion {
    let shape = pick(rng, &scene.shapes);
    WorldQuestion {
        question: format!("what shape is {}?", shape.position.phrase()),
        question_type: "what shape is",
        answer_type: "other",
        answer: shape.shape.name().to_string(),
    }
}

/// Ten annotators' answers. Counts are sometimes written as words ("two"), as real VQAv2
/// annotators do; the VQA evaluation normalises them to digits.
pub fn annotator_answers(question: &WorldQuestion, rng: &mut ChaCha8Rng) -> Vec<String> {
    let mut answers = vec![question.answer.clone(); 10];
    if question.answer_type == "number" && rng.random_bool(0.3) {
        let word = question
            .answer
            .parse::<usize>()
            .ok()
            .and_then(|n| COUNT_WORDS.get(n));
        if let Some(word) = word {
            let slot = rng.random_range(0..answers.len());
            answers[slot] = word.to_string();
        }
    }
    answers
}
