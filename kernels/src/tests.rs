//! Every kernel against burn's own ops on the same CPU device: outputs, the gradients of every
//! input, BatchNorm's batch statistics, and Adam's parameters bit for bit.

use crate::{
    AdamStep, NormOrder, WeightOf, adam_update, bernoulli_nll, conv_halve, deconv_double,
    patch_ordered_weight, pixel_means, relu_affine, relu_batch_norm,
};
use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig};
use burn::tensor::activation::{relu, sigmoid, softplus};
use burn::tensor::module::{conv_transpose2d, conv2d};
use burn::tensor::ops::{ConvOptions, ConvTransposeOptions};
use burn::tensor::{Device, Distribution, Tensor, TensorData, Tolerance};

fn nchw_to_nhwc(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 2, 3, 1])
}

fn nhwc_to_nchw(x: Tensor<4>) -> Tensor<4> {
    x.permute([0, 3, 1, 2])
}

/// `f` run on fresh leaves made from `inputs`: its output, then each input's gradient of
/// `sum(output * r)` for a fixed `r` that weighs every output value differently.
fn output_and_gradients<const N: usize, const D: usize>(
    inputs: &[Tensor<D>; N],
    f: impl Fn([Tensor<D>; N]) -> Tensor<D>,
) -> Vec<TensorData> {
    let leaves = inputs.clone().map(|x| x.detach().require_grad());
    let out = f(leaves.clone());
    let device = out.device();
    let r = Tensor::<1, burn::tensor::Int>::arange(0..out.shape().num_elements() as i64, &device)
        .float()
        .sin()
        .reshape(out.shape());
    let grads = (out.clone() * r).sum().backward();
    std::iter::once(out.into_data())
        .chain(
            leaves
                .iter()
                .map(|x| x.grad(&grads).expect("a gradient").into_data()),
        )
        .collect()
}

fn assert_all_close(ours: &[TensorData], theirs: &[TensorData]) {
    assert_eq!(ours.len(), theirs.len());
    for (ours, theirs) in ours.iter().zip(theirs) {
        ours.assert_approx_eq::<f32>(theirs, Tolerance::permissive());
    }
}

/// Kernel 4, stride 2, padding 1: `[x (channels-first), weight (burn's layout), bias]`.
fn halving_inputs(transposed: bool, [c, o, side]: [usize; 3]) -> [Tensor<4>; 3] {
    let device = Device::flex().autodiff();
    let weight = match transposed {
        false => [o, c, 4, 4],
        true => [c, o, 4, 4],
    };
    [
        Tensor::random([2, c, side, side], Distribution::Default, &device),
        Tensor::random(weight, Distribution::Normal(0.0, 0.3), &device),
        Tensor::<1>::random([o], Distribution::Default, &device).reshape([1, 1, 1, o]),
    ]
}

/// Ours against burn's `conv2d` (or `conv_transpose2d`) with kernel 4, stride 2, padding 1.
fn check_halving(transposed: bool, dims: [usize; 3]) {
    let inputs = halving_inputs(transposed, dims);
    let ours = output_and_gradients(&inputs, |[x, w, b]| {
        let (x, b) = (nchw_to_nhwc(x), b.flatten(0, 3));
        nhwc_to_nchw(match transposed {
            false => conv_halve(x, patch_ordered_weight(w, WeightOf::Conv2d), b),
            true => deconv_double(x, patch_ordered_weight(w, WeightOf::ConvTranspose2d), b),
        })
    });
    let theirs = output_and_gradients(&inputs, |[x, w, b]| {
        let b = Some(b.flatten(0, 3));
        match transposed {
            false => conv2d(x, w, b, ConvOptions::new([2, 2], [1, 1], [1, 1], 1)),
            true => {
                let options = ConvTransposeOptions::new([2, 2], [1, 1], [0, 0], [1, 1], 1);
                conv_transpose2d(x, w, b, options)
            }
        }
    });
    assert_all_close(&ours, &theirs);
}

#[test]
fn convolution_matches_burn_with_gradients() {
    for dims in [[3, 4, 6], [5, 2, 4], [2, 3, 8]] {
        check_halving(false, dims);
    }
}

#[test]
fn transposed_convolution_matches_burn_with_gradients() {
    for dims in [[4, 3, 3], [2, 5, 2], [3, 2, 4]] {
        check_halving(true, dims);
    }
}

/// burn's ReLU and BatchNorm layer in `order`.
fn burn_relu_norm<const D: usize>(x: Tensor<D>, norm: &BatchNorm, order: NormOrder) -> Tensor<D> {
    match order {
        NormOrder::ReluThenNorm => norm.forward(relu(x)),
        NormOrder::NormThenRelu => relu(norm.forward(x)),
    }
}

/// A BatchNorm layer with the given scale and shift.
fn norm_layer(gamma: Tensor<1>, beta: Tensor<1>) -> BatchNorm {
    let [c] = gamma.dims();
    BatchNorm {
        gamma: Param::from_tensor(gamma.clone()),
        beta: Param::from_tensor(beta.clone()),
        ..BatchNormConfig::new(c).init(&gamma.device())
    }
}

/// Training-mode norm of rows `[N, C]` against burn's layer: output, the gradients of input,
/// gamma and beta, and the batch statistics the running averages are made from. (Every input is
/// passed flat: burn's layer takes its scale and shift as leaves.)
#[test]
fn training_norm_matches_burn_with_gradients_and_statistics() {
    let device = Device::flex().autodiff();
    let (n, c) = (24, 5);
    let rows = Tensor::<2>::random([n, c], Distribution::Normal(0.2, 1.0), &device);
    let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device);
    let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device);
    let inputs = [rows.clone().flatten(0, 1), gamma.clone(), beta.clone()];
    for order in [NormOrder::ReluThenNorm, NormOrder::NormThenRelu] {
        let ours = output_and_gradients(&inputs, |[y, g, b]| {
            relu_batch_norm(y.reshape([n, c]), g, b, 1e-5, order)
                .0
                .flatten(0, 1)
        });
        let theirs = output_and_gradients(&inputs, |[y, g, b]| {
            burn_relu_norm(y.reshape([n, c]), &norm_layer(g, b), order).flatten(0, 1)
        });
        assert_all_close(&ours, &theirs);

        let (_, mean, variance) =
            relu_batch_norm(rows.clone(), gamma.clone(), beta.clone(), 1e-5, order);
        let normalised = match order {
            NormOrder::ReluThenNorm => relu(rows.clone()),
            NormOrder::NormThenRelu => rows.clone(),
        };
        let expected = [
            normalised.clone().mean_dim(0).flatten::<1>(0, 1),
            normalised.var_bias(0).flatten::<1>(0, 1),
        ];
        for (ours, expected) in [mean, variance].into_iter().zip(expected) {
            ours.into_data()
                .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::permissive());
        }
    }
}

/// Inference-mode norm (running statistics folded into a per-channel affine map) against burn's
/// layer in inference mode, with the gradient of the input (a frozen backbone still passes
/// gradients through).
#[test]
fn inference_norm_matches_burn_with_gradients() {
    let device = Device::flex().autodiff();
    let c = 4;
    let gamma = Tensor::<1>::random([c], Distribution::Normal(1.0, 0.5), &device);
    let beta = Tensor::<1>::random([c], Distribution::Normal(0.0, 0.5), &device);
    let norm = norm_layer(gamma.clone(), beta.clone()).freeze();
    let mean = Tensor::<1>::random([c], Distribution::Normal(0.0, 1.0), &device);
    let variance = Tensor::<1>::random([c], Distribution::Uniform(0.5, 2.0), &device);
    norm.running_mean.update(mean);
    norm.running_var.update(variance);
    // The updates are queued until read with `value_sync`.
    let (mean, variance) = (
        norm.running_mean.value_sync(),
        norm.running_var.value_sync(),
    );
    let scale = gamma / (variance + norm.epsilon).sqrt();
    let shift = beta - mean * scale.clone();
    let rows = [Tensor::<2>::random(
        [18, c],
        Distribution::Normal(0.2, 1.0),
        &device,
    )];
    for order in [NormOrder::ReluThenNorm, NormOrder::NormThenRelu] {
        let ours = output_and_gradients(&rows, |[y]| {
            relu_affine(y, scale.clone(), shift.clone(), order)
        });
        let theirs = output_and_gradients(&rows, |[y]| burn_relu_norm(y, &norm, order));
        assert_all_close(&ours, &theirs);
    }
}

/// Without autodiff the inference norm overwrites its input's buffer when it holds the only
/// handle; a tensor that shares the input must keep its values.
#[test]
fn inference_norm_in_place_leaves_shared_inputs_alone() {
    let device = Device::flex();
    let c = 3;
    let scale = Tensor::<1>::from_floats([0.5, -1.0, 2.0], &device);
    let shift = Tensor::<1>::from_floats([0.1, 0.2, -0.3], &device);
    let data = Tensor::<2>::random([8, c], Distribution::Normal(0.2, 1.0), &device).into_data();
    for order in [NormOrder::ReluThenNorm, NormOrder::NormThenRelu] {
        let owned = Tensor::<2>::from_data(data.clone(), &device);
        let in_place = relu_affine(owned, scale.clone(), shift.clone(), order);
        let kept = Tensor::<2>::from_data(data.clone(), &device);
        let copied = relu_affine(kept.clone(), scale.clone(), shift.clone(), order);
        let expected = {
            let v = Tensor::<2>::from_data(data.clone(), &device);
            let (s, t) = (
                scale.clone().unsqueeze_dim(0),
                shift.clone().unsqueeze_dim(0),
            );
            match order {
                NormOrder::ReluThenNorm => relu(v) * s + t,
                NormOrder::NormThenRelu => relu(v * s + t),
            }
            .into_data()
        };
        in_place
            .into_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::permissive());
        copied
            .into_data()
            .assert_approx_eq::<f32>(&expected, Tolerance::permissive());
        assert_eq!(kept.into_data(), data);
    }
}

/// The loss per image, `sum softplus(l) - x l` over clamped logits, with logits past the clamp,
/// and the gradients of both logits and targets.
#[test]
fn bernoulli_loss_matches_burn_with_gradients() {
    let device = Device::flex().autodiff();
    let bound = 16.118_095_596_4;
    let inputs = [
        Tensor::<2>::random([3, 40], Distribution::Normal(0.0, 12.0), &device),
        Tensor::<2>::random([3, 40], Distribution::Default, &device),
    ];
    let weights = Tensor::<1>::from_floats([1.0, 2.0, 3.0], &device);
    let per_image = |loss: Tensor<1>| (loss * weights.clone()).unsqueeze_dim::<2>(1);
    let ours = output_and_gradients(&inputs, |[l, x]| per_image(bernoulli_nll(l, x, bound)));
    let theirs = output_and_gradients(&inputs, |[l, x]| {
        let l = l.clamp(-bound, bound);
        let bce = softplus(l.clone(), 1.0) - x * l;
        per_image(bce.sum_dim(1).flatten(0, 1))
    });
    assert_all_close(&ours, &theirs);
}

/// A NaN logit gives a NaN loss (the training loop skips such batches) instead of a clamped one.
#[test]
fn bernoulli_loss_lets_nan_through() {
    let device = Device::flex();
    let logits = Tensor::<2>::from_floats([[f32::NAN, 0.0]], &device);
    let targets = Tensor::<2>::from_floats([[0.5, 0.5]], &device);
    let loss: f32 = bernoulli_nll(logits, targets, 16.0).into_scalar();
    assert!(loss.is_nan());
}

/// Pixel means are the sigmoid of channels-last logits, handed back channels-first.
#[test]
fn pixel_means_are_the_sigmoid_channels_first() {
    let device = Device::flex();
    let logits = Tensor::<4>::random([2, 5, 3, 3], Distribution::Normal(0.0, 4.0), &device);
    let ours = pixel_means(logits.clone());
    let theirs = sigmoid(nhwc_to_nchw(logits));
    assert_eq!(ours.dims(), [2, 3, 5, 3]);
    ours.into_data()
        .assert_approx_eq::<f32>(&theirs.into_data(), Tolerance::default());
}

/// Three steps of the fused update and of burn's Adam, on a transposed (strided) parameter with
/// a new gradient each step: the same bits.
#[test]
fn adam_matches_burns_adam_bit_for_bit() {
    use burn::optim::{AdamConfig, AdamState, AdaptiveMomentumState, Optimizer};
    let device = Device::flex();
    let (beta_1, beta_2, epsilon) = (0.9, 0.999, 1e-5);
    let burns = AdamConfig::new()
        .with_beta_1(beta_1)
        .with_beta_2(beta_2)
        .with_epsilon(epsilon)
        .build();
    let start = Tensor::<2>::random([7, 5], Distribution::Normal(0.0, 1.0), &device).transpose();
    let (mut ours, mut theirs) = (start.clone(), start);
    let mut state: Option<AdamState<2>> = None;
    let (mut moment_1, mut moment_2) = (ours.zeros_like(), ours.zeros_like());
    for time in 1..=3 {
        let grad = Tensor::<2>::random([5, 7], Distribution::Normal(0.0, 2.0), &device);
        let step = AdamStep {
            learning_rate: 1e-2,
            beta_1,
            beta_2,
            epsilon,
            time,
        };
        (ours, moment_1, moment_2) = adam_update(ours, grad.clone(), moment_1, moment_2, step);
        (theirs, state) = burns.step(1e-2, theirs, grad, state);
        let burn_moments = state.as_ref().map(|s| &s.momentum);
        let AdaptiveMomentumState {
            moment_1: m,
            moment_2: v,
            ..
        } = burn_moments.expect("burn's state").clone();
        assert_eq!(moment_1.clone().into_data(), m.into_data());
        assert_eq!(moment_2.clone().into_data(), v.into_data());
        assert_eq!(
            ours.clone().into_data(),
            theirs.clone().into_data(),
            "step {time}"
        );
    }
}
