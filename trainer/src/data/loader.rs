//! Batches for training: one context per batch, drawn and rendered on a background thread so
//! that making images never stalls the optimizer.

use crate::training::config::TrainConfig;
use intervene::config::ImageShape;
use intervene::context::Context;
use intervene::data::{Examples, Split};
use intervene::model::{HostImages, StageKernels};
use intervene::rng::Rng;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, sync_channel};

/// Random streams, kept apart so that e.g. changing the batch size never changes the data.
mod stream {
    pub const DATA: u64 = 1_000;
    pub const SCHEDULE: u64 = 2_000_000;
    pub const NOISE: u64 = 3_000_000;
}

/// The examples of every context a run trains on, split into train and validation.
pub struct TrainingData {
    pub contexts: Vec<Context>,
    pub train: Vec<Examples>,
    pub valid: Vec<Examples>,
}

impl TrainingData {
    /// Draws `per_context` examples of each training context, deterministically from the seed.
    pub fn generate(config: &TrainConfig) -> Self {
        let dataset = config.data();
        let all = Context::training_contexts(dataset.concepts().len());
        let contexts: Vec<Context> = all
            .into_iter()
            .take(config.training_context_count())
            .collect();
        let mut train = Vec::new();
        let mut valid = Vec::new();
        for (i, &context) in contexts.iter().enumerate() {
            let mut rng = Rng::derive(config.seed, stream::DATA + i as u64);
            let mut examples = dataset.draw(context, config.per_context, Split::Training, &mut rng);
            valid.push(examples.split_off(config.train_per_context()));
            train.push(examples);
        }
        Self {
            contexts,
            train,
            valid,
        }
    }
}

/// One training batch, ready to become tensors.
#[derive(Clone)]
pub struct Batch {
    pub context: Context,
    /// Pixel values in `[0, 1]`, laid out for the model's stage kernels.
    pub images: HostImages,
    /// `[B, latent]` standard normal noise for the reparameterisation.
    pub eps: Vec<f32>,
}

/// Which context and which examples each batch of an epoch uses: a pure function of
/// (seed, epoch), so a resumed run replays exactly the batches it would have seen.
pub fn plan_epoch(
    data: &TrainingData,
    config: &TrainConfig,
    epoch: usize,
) -> Vec<(usize, Vec<usize>)> {
    let mut rng = Rng::derive(config.seed, stream::SCHEDULE + epoch as u64);
    let mut order: Vec<Vec<usize>> = data.train.iter().map(|e| (0..e.len()).collect()).collect();
    (0..config.batches_per_epoch())
        .map(|_| {
            let c = rng.below(data.contexts.len());
            // A random subset of the context: a partial Fisher-Yates shuffle of its index list.
            let indices = &mut order[c];
            for i in 0..config.batch_size {
                let j = i + rng.below(indices.len() - i);
                indices.swap(i, j);
            }
            (c, indices[..config.batch_size].to_vec())
        })
        .collect()
}

/// Makes any batch of one epoch's plan: renders its images and draws its noise, each a pure
/// function of (seed, epoch, batch index), so a batch made again (a resumed run, a replayed
/// window) is the batch made the first time.
#[derive(Clone)]
pub struct BatchMaker {
    data: Arc<TrainingData>,
    seed: u64,
    epoch: usize,
    size: usize,
    shape: ImageShape,
    latent: usize,
    /// The kernels the images are laid out for.
    kernels: StageKernels,
}

impl BatchMaker {
    pub fn new(
        data: Arc<TrainingData>,
        config: &TrainConfig,
        epoch: usize,
        kernels: StageKernels,
    ) -> Self {
        let model = config.model_config();
        Self {
            data,
            seed: config.seed,
            epoch,
            size: config.image_size,
            shape: model.image,
            latent: model.latent_size(),
            kernels,
        }
    }

    /// Batch `index` of the plan, whose entry is `(context, indices)`. The images are rendered
    /// on every core.
    pub fn make(&self, index: usize, (c, indices): &(usize, Vec<usize>)) -> Batch {
        let mut noise = Rng::derive(
            self.seed ^ (self.epoch as u64).wrapping_mul(0x9E37),
            stream::NOISE + index as u64,
        );
        let mut eps = vec![0f32; indices.len() * self.latent];
        noise.fill_normal(&mut eps);
        let rendered = self.data.train[*c].render_indices(indices, self.size);
        Batch {
            context: self.data.contexts[*c],
            images: HostImages::new(rendered, self.shape, self.kernels),
            eps,
        }
    }
}

/// Starts making `plan[start..]` on a background thread; a small buffer keeps a few batches
/// ready while the current one trains.
pub fn spawn(
    maker: BatchMaker,
    plan: Arc<Vec<(usize, Vec<usize>)>>,
    start: usize,
) -> Receiver<Batch> {
    let (sender, receiver) = sync_channel(3);
    std::thread::spawn(move || {
        for (index, entry) in plan.iter().enumerate().skip(start) {
            if sender.send(maker.make(index, entry)).is_err() {
                return; // the training loop stopped early
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;
    use intervene::config::Method;
    use intervene::data::DatasetKind;

    fn config() -> TrainConfig {
        let mut c = TrainConfig::preset(
            crate::training::config::Preset::Quick,
            DatasetKind::QuadDependent,
            Method::Cm,
        )
        .unwrap();
        c.per_context = 100;
        c.batch_size = 10;
        c
    }

    #[test]
    fn plans_are_reproducible_and_batches_hold_distinct_examples() {
        let config = config();
        let data = TrainingData::generate(&config);
        assert_eq!(data.contexts.len(), 7);
        assert_eq!(data.train[0].len(), 70);
        assert_eq!(data.valid[0].len(), 30);
        let a = plan_epoch(&data, &config, 3);
        assert_eq!(a, plan_epoch(&data, &config, 3));
        assert_ne!(a, plan_epoch(&data, &config, 4));
        assert_eq!(a.len(), config.batches_per_epoch());
        for (_, indices) in &a {
            let mut sorted = indices.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                sorted.len(),
                indices.len(),
                "an example repeated within a batch"
            );
        }
    }

    #[test]
    fn base_trains_on_obs_only() {
        let mut config = config();
        config.method = Method::Base;
        let data = TrainingData::generate(&config);
        assert_eq!(data.contexts, vec![Context::OBS]);
    }

    #[test]
    fn loader_resumes_mid_epoch_with_the_same_batches() {
        let config = config();
        let data = Arc::new(TrainingData::generate(&config));
        let plan = Arc::new(plan_epoch(&data, &config, 0));
        let maker = BatchMaker::new(data, &config, 0, StageKernels::Cpu);
        let full: Vec<Batch> = spawn(maker.clone(), plan.clone(), 0).iter().collect();
        let resumed: Vec<Batch> = spawn(maker.clone(), plan.clone(), 2).iter().collect();
        assert_eq!(resumed.len(), full.len() - 2);
        assert_eq!(resumed[0].images, full[2].images);
        assert_eq!(resumed[0].eps, full[2].eps);
        let remade = maker.make(2, &plan[2]);
        assert_eq!(remade.images, full[2].images);
        assert_eq!(remade.eps, full[2].eps);
    }
}
