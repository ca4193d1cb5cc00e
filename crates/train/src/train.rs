//! The training loop: the model's own forward on `Autodiff<Flex>`, masked next-token
//! cross-entropy on the response tokens, Adam over the named weights.

use burn::backend::{Autodiff, Flex};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use xlvlm_model::{Logits, Vlm};

use crate::data::{EncodedData, TrainBatch};
use crate::error::{Result, TrainError};

/// The backend training runs on: burn's CPU backend with reverse-mode autodiff.
pub type TrainBackend = Autodiff<Flex>;

/// Optimisation settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TrainOptions {
    pub steps: usize,
    pub batch_size: usize,
    /// Peak learning rate, reached after `warmup_steps`, then cosine decay to a tenth of it.
    pub learning_rate: f64,
    pub warmup_steps: usize,
    /// Gradients are scaled down when their global L2 norm exceeds this.
    pub clip_norm: f64,
    /// Seeds the example order and which caption of an image is the target.
    pub seed: u64,
    /// Steps of vision pretraining before a model trained from scratch sees any text (naming
    /// each patch's shape and colour; see `pretrain_vision`); 0 skips it. Fine-tunes ignore it.
    #[serde(default)]
    pub vision_steps: usize,
    /// Whether the language phase also updates the vision tower. LLaVA-1.5 keeps its CLIP tower
    /// frozen and trains the projector and the language model; so do the defaults here (the
    /// language loss otherwise wears away the pretrained shape features before the decoder
    /// learns to read them).
    #[serde(default)]
    pub train_vision: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            steps: 6000,
            batch_size: 32,
            learning_rate: 1e-3,
            warmup_steps: 30,
            clip_norm: 1.0,
            seed: 0,
            vision_steps: 600,
            train_vision: false,
        }
    }
}

impl TrainOptions {
    /// Defaults of a fine-tune from a trained checkpoint: fewer steps, a lower peak rate.
    pub fn finetune_default() -> Self {
        Self {
            steps: 150,
            learning_rate: 5e-4,
            warmup_steps: 10,
            vision_steps: 0,
            ..Self::default()
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |option, message: String| Err(TrainError::Option { option, message });
        if self.steps == 0 {
            return bad("steps", "must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size", "must be at least 1".into());
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad(
                "learning_rate",
                format!("{} is not a positive number", self.learning_rate),
            );
        }
        if self.clip_norm.is_nan() || self.clip_norm <= 0.0 {
            return bad(
                "clip_norm",
                format!("{} is not a positive number", self.clip_norm),
            );
        }
        Ok(())
    }

    /// Learning rate at `step` (0-based): linear warm-up, then cosine to 10% of the peak.
    pub fn learning_rate_at(&self, step: usize) -> f64 {
        let peak = self.learning_rate;
        if step < self.warmup_steps {
            return peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = (self.steps - self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        peak * (0.1 + 0.9 * cosine)
    }
}

/// What the progress callback sees after each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepReport {
    /// `"vision"` (pretraining the vision tower) or `"language"` (the captions and answers).
    pub phase: &'static str,
    /// 1-based.
    pub step: usize,
    pub steps: usize,
    pub loss: f32,
    pub learning_rate: f64,
}

/// Masked mean cross-entropy of next-token predictions (weights sum to 1 over a batch).
pub fn response_loss(
    model: &Vlm<TrainBackend>,
    batch: &TrainBatch,
) -> Result<Tensor<TrainBackend, 1>> {
    let logits = model
        .forward(&batch.batch, &[], &[], Logits::All)?
        .logits
        .expect("Logits::All returns logits");
    let [rows, seq, vocab] = logits.dims();
    let device = model.device();
    let n = rows * seq;
    let log_probs = log_softmax(logits.reshape([n, vocab]), 1);
    let targets = Tensor::<TrainBackend, 2, Int>::from_data(
        TensorData::new(batch.targets.clone(), [n, 1]),
        device,
    );
    let weights =
        Tensor::<TrainBackend, 1>::from_data(TensorData::new(batch.weights.clone(), [n]), device);
    let picked = log_probs.gather(1, targets).reshape([n]);
    Ok((picked * weights).sum().neg())
}

/// Adam's moments of one weight.
struct Moments {
    first: Tensor<Flex, 1>,
    second: Tensor<Flex, 1>,
}

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPSILON: f64 = 1e-8;

/// Adam over a list of flat weights, with the gradients' global L2 norm clipped.
struct Adam {
    moments: Vec<Moments>,
    steps: i32,
}

impl Adam {
    fn new(weights: &[Tensor<Flex, 1>]) -> Self {
        let moments = weights
            .iter()
            .map(|w| Moments {
                first: w.zeros_like(),
                second: w.zeros_like(),
            })
            .collect();
        Self { moments, steps: 0 }
    }

    /// One update of `weights` by `grads` (same order; `None` = the loss does not reach it).
    fn update(
        &mut self,
        weights: &mut [Tensor<Flex, 1>],
        grads: Vec<Option<Tensor<Flex, 1>>>,
        learning_rate: f64,
        clip_norm: f64,
    ) {
        let squares: Vec<Tensor<Flex, 1>> = grads
            .iter()
            .flatten()
            .map(|g| g.clone().powi_scalar(2).sum())
            .collect();
        let norm = f64::from(Tensor::cat(squares, 0).sum().into_scalar()).sqrt();
        let scale = if norm > clip_norm {
            clip_norm / norm
        } else {
            1.0
        };
        self.steps += 1;
        let bias1 = 1.0 - BETA1.powi(self.steps);
        let bias2 = 1.0 - BETA2.powi(self.steps);
        for ((w, m), g) in weights.iter_mut().zip(&mut self.moments).zip(grads) {
            // weights the loss does not reach (CLIP's unused post_layernorm) keep their values
            let Some(g) = g else { continue };
            let g = g.mul_scalar(scale);
            m.first = m.first.clone().mul_scalar(BETA1) + g.clone().mul_scalar(1.0 - BETA1);
            m.second =
                m.second.clone().mul_scalar(BETA2) + g.powi_scalar(2).mul_scalar(1.0 - BETA2);
            let update = m.first.clone().div_scalar(bias1)
                / m.second
                    .clone()
                    .div_scalar(bias2)
                    .sqrt()
                    .add_scalar(EPSILON);
            *w = w.clone() - update.mul_scalar(learning_rate);
        }
    }
}

/// The weights one training phase updates, flat, in the model's visiting order followed by any
/// weights of its own (classification heads), with their optimiser state.
pub(crate) struct Trainable {
    values: Vec<Tensor<Flex, 1>>,
    /// Frozen weights are constants: no gradient, no backward pass through them.
    trained: Vec<bool>,
    adam: Option<Adam>,
    phase: &'static str,
}

impl Trainable {
    /// The model's weights; those whose checkpoint name fails `trains` stay frozen.
    pub(crate) fn of_model(
        model: &Vlm<TrainBackend>,
        phase: &'static str,
        trains: impl Fn(&str) -> bool,
    ) -> Self {
        let mut values = Vec::new();
        let mut trained = Vec::new();
        model.visit_params(|name, _, value| {
            values.push(value.inner());
            trained.push(trains(name));
        });
        Self {
            values,
            trained,
            adam: None,
            phase,
        }
    }

    /// Adds a trained weight of the phase's own; `bind` returns its leaf after the model's.
    pub(crate) fn push(&mut self, value: Tensor<Flex, 1>) {
        self.values.push(value);
        self.trained.push(true);
    }

    /// The model with the current weights as leaves of a new graph, and every weight's leaf.
    pub(crate) fn bind(
        &self,
        model: Vlm<TrainBackend>,
    ) -> Result<(Vlm<TrainBackend>, Vec<Tensor<TrainBackend, 1>>)> {
        let leaf = |i: usize| {
            let value = Tensor::<TrainBackend, 1>::from_inner(self.values[i].clone());
            if self.trained[i] {
                value.require_grad()
            } else {
                value
            }
        };
        let mut leaves = Vec::with_capacity(self.values.len());
        let model = model.map_params(|_, _, _| {
            let value = leaf(leaves.len());
            leaves.push(value.clone());
            value
        })?;
        leaves.extend((leaves.len()..self.values.len()).map(leaf));
        Ok((model, leaves))
    }

    /// Back-propagates `loss` from the graph `bind` made, updates the trained weights and
    /// reports the step.
    pub(crate) fn step(
        &mut self,
        loss: Tensor<TrainBackend, 1>,
        leaves: &[Tensor<TrainBackend, 1>],
        step: usize,
        options: &TrainOptions,
        progress: &mut dyn FnMut(&StepReport),
    ) -> Result<f32> {
        let loss_value = loss.clone().into_scalar();
        if !loss_value.is_finite() {
            return Err(TrainError::Input(format!(
                "the {} loss became {loss_value} at step {}; lower the learning rate",
                self.phase,
                step + 1
            )));
        }
        let grads = loss.backward();
        let grads = leaves
            .iter()
            .zip(&self.trained)
            .map(|(l, &t)| if t { l.grad(&grads) } else { None })
            .collect();
        let learning_rate = options.learning_rate_at(step);
        let values = &mut self.values;
        self.adam.get_or_insert_with(|| Adam::new(values)).update(
            values,
            grads,
            learning_rate,
            options.clip_norm,
        );
        progress(&StepReport {
            phase: self.phase,
            step: step + 1,
            steps: options.steps,
            loss: loss_value,
            learning_rate,
        });
        Ok(loss_value)
    }

    /// The model holding the trained weights, no longer tracking gradients.
    pub(crate) fn into_model(self, model: Vlm<TrainBackend>) -> Result<Vlm<TrainBackend>> {
        let mut values = self.values.into_iter();
        Ok(model.map_params(|_, _, _| {
            Tensor::from_inner(values.next().expect("one value per weight"))
        })?)
    }
}

/// Whether checkpoint weight `name` belongs to the vision tower (not the projector).
fn is_vision_tower(name: &str) -> bool {
    name.starts_with("vision_tower.")
}

/// Trains the weights of `model` (the vision tower's only with `train_vision`) on `data` and
/// returns the trained model (its weights no longer track gradients) and the loss of every step.
pub fn train(
    model: Vlm<TrainBackend>,
    data: &EncodedData,
    options: &TrainOptions,
    progress: &mut dyn FnMut(&StepReport),
) -> Result<(Vlm<TrainBackend>, Vec<f32>)> {
    options.validate()?;
    if data.examples.is_empty() {
        return Err(TrainError::Input("no training examples".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut weights = Trainable::of_model(&model, "language", |name| {
        options.train_vision || !is_vision_tower(name)
    });
    let mut order: Vec<usize> = Vec::new();
    let mut model = model;
    let mut losses = Vec::with_capacity(options.steps);
    for step in 0..options.steps {
        let mut picks = Vec::with_capacity(options.batch_size);
        while picks.len() < options.batch_size {
            if order.is_empty() {
                order = (0..data.examples.len()).collect();
                order.shuffle(&mut rng);
            }
            let e = order.pop().expect("refilled above");
            let r = rng.random_range(0..data.examples[e].responses.len());
            picks.push((e, r));
        }
        let batch = data.batch(&picks);

        let (bound, leaves) = weights.bind(model)?;
        model = bound;
        let loss = response_loss(&model, &batch)?;
        losses.push(weights.step(loss, &leaves, step, options, progress)?);
    }
    let model = weights.into_model(model)?;
    Ok((model, losses))
}
