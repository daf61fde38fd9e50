//! Adam's update of one parameter tensor in a single pass over its values. burn's `Adam` builds
//! the same update from about a dozen whole-tensor operations, each allocating its result; on
//! the CPU that was 5% of a training step, for a model whose parameters fit in a few megabytes.

use super::flex::{self, Values};
use super::parallel;
use super::simd::wide_fn;
use burn::backend::autodiff::{Autodiff, checkpoint::strategy::CheckpointStrategy};
use burn::backend::flex::FlexTensor;
use burn::backend::{Dispatch, Flex, backend_extension, tensor::FloatTensor};
use burn::tensor::Tensor;

/// The optimizer's kernel: training only, and no gradient flows through it.
#[backend_extension(Flex, Autodiff)]
pub trait AdamKernel: burn::backend::Backend {
    /// One Adam step of a parameter from its gradient and moments (all the same shape): the
    /// parameter and moments after it.
    fn adam_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl AdamKernel for Flex {
    fn adam_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        update_tensors(param, &grad, moment_1, moment_2, step)
    }
}

impl<C: CheckpointStrategy> AdamKernel for Autodiff<Flex, C> {
    fn adam_update(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        moment_1: FloatTensor<Self>,
        moment_2: FloatTensor<Self>,
        step: AdamStep,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (param, moment_1, moment_2) = update_tensors(
            param.primitive().clone(),
            grad.primitive(),
            moment_1.primitive().clone(),
            moment_2.primitive().clone(),
            step,
        );
        let untracked = FloatTensor::<Self>::new;
        (untracked(param), untracked(moment_1), untracked(moment_2))
    }
}

/// See [`AdamKernel::adam_update`].
pub fn adam_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    moment_1: Tensor<D>,
    moment_2: Tensor<D>,
    step: AdamStep,
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (param, moment_1, moment_2) = <Dispatch as AdamKernel>::adam_update(
        param.into_dispatch(),
        grad.into_dispatch(),
        moment_1.into_dispatch(),
        moment_2.into_dispatch(),
        step,
    );
    (
        Tensor::from_dispatch(param),
        Tensor::from_dispatch(moment_1),
        Tensor::from_dispatch(moment_2),
    )
}

/// One step on CPU tensors; the parameter and moments are updated in place where nothing else
/// holds them.
fn update_tensors(
    param: FlexTensor,
    grad: &FlexTensor,
    moment_1: FlexTensor,
    moment_2: FlexTensor,
    step: AdamStep,
) -> (FlexTensor, FlexTensor, FlexTensor) {
    let grad = Values::of(grad);
    let [mut param, mut moment_1, mut moment_2] = [param, moment_1, moment_2].map(flex::writable);
    update(
        flex::values_mut(&mut param),
        grad.slice(),
        flex::values_mut(&mut moment_1),
        flex::values_mut(&mut moment_2),
        step,
    );
    (param, moment_1, moment_2)
}

/// One step's constants. Derived the way burn's `Adam` derives them (in `f32`, same order of
/// operations), so both optimizers produce the same bits and their states are interchangeable.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamStep {
    pub learning_rate: f32,
    pub beta_1: f32,
    pub beta_2: f32,
    pub epsilon: f32,
    /// Steps taken including this one (1 on the first).
    pub time: i32,
}

/// Values per parallel task: small tensors stay on one core.
const CHUNK: usize = 16 * 1024;

/// In place: the moments move towards `grad` and `grad^2`, then `param` takes the step
/// `learning_rate * m_hat / (sqrt(v_hat) + epsilon)`, with burn's placement of the bias
/// corrections. Zero moments give the first step.
pub(crate) fn update(
    param: &mut [f32],
    grad: &[f32],
    moment_1: &mut [f32],
    moment_2: &mut [f32],
    step: AdamStep,
) {
    let len = param.len();
    assert!(
        grad.len() == len && moment_1.len() == len && moment_2.len() == len,
        "a parameter, its gradient and its moments differ in size"
    );
    let AdamStep {
        learning_rate,
        beta_1,
        beta_2,
        epsilon,
        time,
    } = step;
    let (keep_1, keep_2) = (1.0 - beta_1, 1.0 - beta_2);
    let correction_2 = (1.0 - beta_2.powi(time)).sqrt();
    let scale = correction_2 / (1.0 - beta_1.powi(time));
    let floor = epsilon * correction_2;
    let constants = Constants {
        beta_1,
        beta_2,
        keep_1,
        keep_2,
        scale,
        floor,
        learning_rate,
    };
    parallel::for_each_chunk_of_three([param, moment_1, moment_2], CHUNK, |i, [p, m, v]| {
        update_chunk(p, &grad[i * CHUNK..][..p.len()], m, v, constants);
    });
}

/// What every value's update multiplies by, worked out once per step.
#[derive(Clone, Copy)]
struct Constants {
    beta_1: f32,
    beta_2: f32,
    keep_1: f32,
    keep_2: f32,
    scale: f32,
    floor: f32,
    learning_rate: f32,
}

wide_fn! {
    /// [`update`] of one chunk of the values.
    fn update_chunk(param: &mut [f32], grad: &[f32], moment_1: &mut [f32], moment_2: &mut [f32], k: Constants) {
        for (((p, m), v), &g) in param.iter_mut().zip(moment_1).zip(moment_2).zip(grad) {
            *m = *m * k.beta_1 + g * k.keep_1;
            *v = *v * k.beta_2 + g * g * k.keep_2;
            *p -= *m * k.scale / (v.sqrt() + k.floor) * k.learning_rate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(time: i32) -> AdamStep {
        AdamStep {
            learning_rate: 1e-3,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-5,
            time,
        }
    }

    /// The textbook form with f64 arithmetic, for a tolerance check independent of burn.
    #[test]
    fn matches_the_textbook_update_over_several_steps() {
        let n = 3 * CHUNK + 7; // several tasks and a ragged last one
        let mut param: Vec<f32> = (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 40.0)
            .collect();
        let (mut m, mut v) = (vec![0f32; n], vec![0f32; n]);
        let mut expected: Vec<f64> = param.iter().map(|&p| p as f64).collect();
        let (mut em, mut ev) = (vec![0f64; n], vec![0f64; n]);
        for t in 1..=5 {
            let grad: Vec<f32> = (0..n)
                .map(|i| (((i + 3 * t) * 53 % 97) as f32 - 48.0) / 30.0)
                .collect();
            update(&mut param, &grad, &mut m, &mut v, step(t as i32));
            for i in 0..n {
                let g = grad[i] as f64;
                em[i] = 0.9 * em[i] + 0.1 * g;
                ev[i] = 0.999 * ev[i] + 0.001 * g * g;
                let m_hat = em[i] / (1.0 - 0.9f64.powi(t as i32));
                let v_hat = ev[i] / (1.0 - 0.999f64.powi(t as i32));
                expected[i] -= 1e-3 * m_hat / (v_hat.sqrt() + 1e-5);
            }
        }
        for i in 0..n {
            assert!(
                (param[i] as f64 - expected[i]).abs() < 1e-6,
                "value {i}: {} vs {}",
                param[i],
                expected[i]
            );
        }
    }

    #[test]
    fn a_nan_gradient_reaches_the_parameter() {
        let (mut p, mut m, mut v) = (vec![1.0f32; 2], vec![0f32; 2], vec![0f32; 2]);
        update(&mut p, &[f32::NAN, 0.5], &mut m, &mut v, step(1));
        assert!(p[0].is_nan() && p[1].is_finite());
    }
}
