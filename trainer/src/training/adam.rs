//! The optimizer: Adam with burn's betas (0.9 / 0.999) and the run's epsilon. Where the CPU
//! kernels run, its update is fused into one pass per parameter (`intervene_kernels::adam_update`);
//! elsewhere burn's own `Adam` runs. The choice is made once, when the optimizer is built for a
//! device. Both keep burn's `AdamState` and compute the same bits, so a checkpoint resumes on
//! either.

use burn::optim::{
    AdamConfig, AdamState, AdaptiveMomentumState, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};
use intervene_kernels::AdamStep;

const BETA_1: f32 = 0.9;
const BETA_2: f32 = 0.999;

/// A fresh optimizer for a whole model on `device`, with Adam's `epsilon` (which is relative to
/// the per-image loss's gradients: docs/method.md#optimizer).
pub fn for_device(device: &Device, epsilon: f32) -> ModuleOptimizer {
    match intervene_kernels::supports(device) {
        true => ModuleOptimizer::from(FusedAdam { epsilon }),
        false => ModuleOptimizer::from(burns(epsilon)),
    }
}

/// burn's Adam with our constants.
fn burns(epsilon: f32) -> burn::optim::Adam {
    AdamConfig::new()
        .with_beta_1(BETA_1)
        .with_beta_2(BETA_2)
        .with_epsilon(epsilon)
        .build()
}

/// Adam in one pass per parameter on the CPU.
#[derive(Clone)]
struct FusedAdam {
    epsilon: f32,
}

impl Optimizer for FusedAdam {
    type State<const D: usize> = AdamState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let (time, moment_1, moment_2) = match state {
            Some(AdamState { momentum }) => {
                (momentum.time + 1, momentum.moment_1, momentum.moment_2)
            }
            None => (1, grad.zeros_like(), grad.zeros_like()),
        };
        let step = AdamStep {
            learning_rate: lr as f32,
            beta_1: BETA_1,
            beta_2: BETA_2,
            epsilon: self.epsilon,
            time: time as i32,
        };
        let (tensor, moment_1, moment_2) =
            intervene_kernels::adam_update(tensor, grad, moment_1, moment_2, step);
        let momentum = AdaptiveMomentumState::new(time, moment_1, moment_2);
        (tensor, Some(AdamState::new(momentum)))
    }

    fn to_device<const D: usize>(state: Self::State<D>, device: &Device) -> Self::State<D> {
        burn::optim::Adam::to_device(state, device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{Module, Param};
    use burn::optim::GradientsParams;
    use burn::tensor::TensorData;

    #[derive(Module, Debug)]
    struct Weights {
        a: Param<Tensor<2>>,
        b: Param<Tensor<1>>,
    }

    fn weights(device: &Device) -> Weights {
        let values = |n: usize, k: usize| -> Vec<f32> {
            (0..n).map(|i| ((i * k % 29) as f32 - 14.0) / 9.0).collect()
        };
        Weights {
            a: Param::from_tensor(Tensor::from_data(
                TensorData::new(values(35, 7), [5, 7]),
                device,
            )),
            b: Param::from_tensor(Tensor::from_data(
                TensorData::new(values(3, 5), [3]),
                device,
            )),
        }
    }

    /// Three steps of the CPU's optimizer and of burn's Adam on a transposed (strided) and a
    /// plain parameter, with a different loss each step: the same parameters, bit for bit.
    #[test]
    fn gives_burns_adam_bit_for_bit() {
        let device = Device::flex().autodiff();
        let run = |mut optimizer: ModuleOptimizer| {
            let mut model = weights(&device);
            for step in 0..3 {
                let a = model.a.val().transpose();
                let loss = (a.clone() * a).sum() * (step as f64 + 1.0)
                    + (model.b.val() * (step as f64 - 1.5)).exp().sum();
                let grads = GradientsParams::from_grads(loss.backward(), &model);
                model = optimizer.step(1e-2, model, grads);
            }
            [model.a.val().into_data(), model.b.val().into_data()]
        };
        for epsilon in [1e-5, 1e-10] {
            let ours = run(for_device(&device, epsilon));
            let theirs = run(ModuleOptimizer::from(burns(epsilon)));
            assert_eq!(ours, theirs, "epsilon {epsilon}");
        }
    }
}
