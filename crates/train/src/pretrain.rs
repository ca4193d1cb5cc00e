//! Vision pretraining: before the toy VLM learns captions and answers, its vision tower and
//! projector learn to name the shape and the colour in each image patch from the world's scene
//! annotations, as LLaVA-1.5 starts from a CLIP tower that already sees. Learning shapes through
//! the language-model loss alone stalls at chance on this world (colours come easily, the few
//! pixels that tell a circle from a square do not); with this stage they are learnt in seconds.
//! The two linear classification heads are thrown away afterwards: the checkpoint keeps the
//! LLaVA layout.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xlvlm_data::world::{Colour, ShapeKind, WorldSummary};
use xlvlm_model::{Batch, CaptureSpec, Logits, PixelValues, Positions, Vlm};

use crate::data::EncodedData;
use crate::error::{Result, TrainError};
use crate::train::{StepReport, TrainBackend, TrainOptions, Trainable};

/// What each image patch shows: class 0 = no shape centred in the patch, else the 1-based index
/// into [`ShapeKind::ALL`] / [`Colour::ALL`]. Row-major `[images, patches]`, in the order of
/// [`EncodedData::images`].
pub struct PatchLabels {
    pub patches: usize,
    pub shapes: Vec<i64>,
    pub colours: Vec<i64>,
}

impl PatchLabels {
    /// Labels from the world's `scenes.json` for a `grid`×`grid` patch grid over the whole
    /// (square) image: a shape belongs to the patch that holds its centre.
    pub fn from_world(world_dir: &Path, data: &EncodedData, grid: usize) -> Result<Self> {
        let world = WorldSummary::read(world_dir)?;
        let scenes = world.read_scenes(world_dir)?;
        let by_file: HashMap<&str, &xlvlm_data::world::Scene> = scenes
            .iter()
            .map(|s| (s.filename.as_str(), &s.scene))
            .collect();
        let side = world.image_size as f32;
        let patches = grid * grid;
        let mut shapes = vec![0i64; data.images.len() * patches];
        let mut colours = vec![0i64; data.images.len() * patches];
        for (i, path) in data.images.iter().enumerate() {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let scene = by_file.get(name).ok_or_else(|| {
                TrainError::Input(format!(
                    "{}: not in {}/scenes.json",
                    path.display(),
                    world_dir.display()
                ))
            })?;
            for shape in &scene.shapes {
                let cell = |v: f32| ((v / side * grid as f32) as usize).min(grid - 1);
                let patch = i * patches + cell(shape.y) * grid + cell(shape.x);
                let index = |pos: Option<usize>| pos.map_or(0, |p| p as i64 + 1);
                shapes[patch] = index(ShapeKind::ALL.iter().position(|&k| k == shape.shape));
                colours[patch] = index(Colour::ALL.iter().position(|&c| c == shape.colour));
            }
        }
        Ok(Self {
            patches,
            shapes,
            colours,
        })
    }
}

/// Trains the vision tower and the projector (the language model is not reached) to classify
/// each patch's shape and colour from the projector's output; returns the model and the loss of
/// every step.
pub fn pretrain_vision(
    model: Vlm<TrainBackend>,
    data: &EncodedData,
    labels: &PatchLabels,
    image_token: u32,
    options: &TrainOptions,
    progress: &mut dyn FnMut(&StepReport),
) -> Result<(Vlm<TrainBackend>, Vec<f32>)> {
    let device = *model.device();
    let capture = CaptureSpec {
        hook: model.parse_hook("projector")?,
        positions: Positions::All,
    };
    let hidden = model.hook_width(capture.hook);
    let classes = [ShapeKind::ALL.len() + 1, Colour::ALL.len() + 1];
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    // the tower and projector (the language model is not reached), then the two heads:
    // [hidden, classes] weights (small random) and zero biases
    let mut weights = Trainable::of_model(&model, "vision", |_| true);
    for n in classes {
        let scale = (1.0 / hidden as f32).sqrt();
        let w: Vec<f32> = (0..hidden * n)
            .map(|_| rng.random_range(-scale..scale))
            .collect();
        weights.push(Tensor::from_data(TensorData::new(w, [hidden * n]), &device));
        weights.push(Tensor::zeros([n], &device));
    }
    let [c, h, w] = data.pixel_shape;
    let mut order: Vec<usize> = Vec::new();
    let mut model = model;
    let mut losses = Vec::with_capacity(options.steps);
    for step in 0..options.steps {
        let mut picks = Vec::with_capacity(options.batch_size);
        while picks.len() < options.batch_size {
            if order.is_empty() {
                order = (0..data.images.len()).collect();
                order.shuffle(&mut rng);
            }
            picks.push(order.pop().expect("refilled above"));
        }
        let batch = Batch::new(
            vec![vec![image_token; labels.patches]; picks.len()],
            vec![vec![true; labels.patches]; picks.len()],
        )
        .with_pixel_values(PixelValues {
            data: picks
                .iter()
                .flat_map(|&i| data.pixels[i].iter().copied())
                .collect(),
            shape: [picks.len(), c, h, w],
        });

        let (bound, leaves) = weights.bind(model)?;
        model = bound;
        let out = model.forward(&batch, std::slice::from_ref(&capture), &[], Logits::None)?;
        let rows: Vec<Tensor<TrainBackend, 2>> = out
            .captures
            .into_iter()
            .flat_map(|c| c.rows)
            .map(|r| r.values.expect("every image-token position is captured"))
            .collect();
        let features = Tensor::cat(rows, 0);
        let n = features.dims()[0];
        if n != picks.len() * labels.patches {
            return Err(TrainError::Input(format!(
                "the projector gave {n} rows for {} images of {} patches",
                picks.len(),
                labels.patches
            )));
        }
        let mut loss = Tensor::<TrainBackend, 1>::zeros([1], &device);
        // the heads are the last weights: a weight and a bias per head
        let heads = &leaves[leaves.len() - 2 * classes.len()..];
        for (k, (targets, classes)) in [&labels.shapes, &labels.colours]
            .into_iter()
            .zip(classes)
            .enumerate()
        {
            let weight = heads[2 * k].clone().reshape([hidden, classes]);
            let bias = heads[2 * k + 1].clone().reshape([1, classes]);
            let logits = features.clone().matmul(weight) + bias;
            let picked: Vec<i64> = picks
                .iter()
                .flat_map(|&i| targets[i * labels.patches..(i + 1) * labels.patches].iter())
                .copied()
                .collect();
            let targets =
                Tensor::<TrainBackend, 2, Int>::from_data(TensorData::new(picked, [n, 1]), &device);
            let nll = log_softmax(logits, 1).gather(1, targets).mean().neg();
            loss = loss + nll;
        }
        losses.push(weights.step(loss, &leaves, step, options, progress)?);
    }
    let model = weights.into_model(model)?;
    Ok((model, losses))
}
