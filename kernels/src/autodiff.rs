//! Backward passes of the CPU kernels, registered with burn's autodiff (the `train` feature).
#![cfg(any(test, feature = "train"))]

use super::weight_layout::{self, WeightOf};
use super::{CpuKernels, NormOrder, flex, gradients};
use burn::backend::Flex;
use burn::backend::autodiff::{
    Autodiff, NodeId,
    checkpoint::{base::Checkpointer, strategy::CheckpointStrategy},
    grads::Gradients,
    ops::{Backward, Ops, OpsKind},
};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;

/// Which of a convolution's two forms a backward node undoes.
#[derive(Clone, Copy, Debug)]
enum ConvForm {
    Halve,
    Double,
}

#[derive(Debug)]
struct ConvBackward(ConvForm);

impl Backward<Flex, 3> for ConvBackward {
    /// The input and the weight.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = grads.consume::<Flex>(&ops.node);
        let (x, weight) = &ops.state;
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let d = match self.0 {
            ConvForm::Halve => gradients::conv_backward(x, weight, &d_out, wanted),
            ConvForm::Double => gradients::deconv_backward(x, weight, &d_out, wanted),
        };
        register(grads, parent_ids(&ops), d);
    }
}

/// A float tensor on burn's autodiff-wrapped CPU backend.
type Tracked<C> = FloatTensor<Autodiff<Flex, C>>;

fn conv<C: CheckpointStrategy>(
    form: ConvForm,
    x: Tracked<C>,
    weight: Tracked<C>,
    bias: Tracked<C>,
) -> Tracked<C> {
    let forward = |x: &FlexTensor, w: &FlexTensor, b: &FlexTensor| match form {
        ConvForm::Halve => flex::conv_forward(x, w, b),
        ConvForm::Double => flex::deconv_forward(x, w, b),
    };
    match ConvBackward(form)
        .prepare::<C>([x.node(), weight.node(), bias.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let (x, weight) = (x.primitive().clone(), weight.primitive().clone());
            let out = forward(&x, &weight, bias.primitive());
            prep.finish((x, weight), out)
        }
        OpsKind::UnTracked(prep) => {
            prep.finish(forward(x.primitive(), weight.primitive(), bias.primitive()))
        }
    }
}

#[derive(Debug)]
struct NormBackward;

/// What the norm's backward needs from its forward.
#[derive(Clone, Debug)]
struct NormState {
    y: FlexTensor,
    gamma: FlexTensor,
    beta: FlexTensor,
    mean: FlexTensor,
    variance: FlexTensor,
    epsilon: f64,
    order: NormOrder,
}

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = grads.consume::<Flex>(&ops.node);
        let s = &ops.state;
        let d = gradients::norm_backward(
            &s.y,
            &s.gamma,
            &s.beta,
            &s.mean,
            &s.variance,
            d_out,
            s.epsilon,
            s.order,
        );
        register(grads, parent_ids(&ops), d.map(Some));
    }
}

#[derive(Debug)]
struct AffineBackward(NormOrder);

impl Backward<Flex, 3> for AffineBackward {
    /// The input, scale and shift.
    type State = (FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = grads.consume::<Flex>(&ops.node);
        let (y, scale, shift) = &ops.state;
        let d = gradients::affine_backward(y, scale, shift, d_out, self.0);
        register(grads, parent_ids(&ops), d.map(Some));
    }
}

#[derive(Debug)]
struct BernoulliBackward {
    bound: f64,
}

impl Backward<Flex, 2> for BernoulliBackward {
    /// The logits and the targets.
    type State = (FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = grads.consume::<Flex>(&ops.node);
        let (logits, targets) = &ops.state;
        let wanted = ops.parents.each_ref().map(Option::is_some);
        let d = gradients::bernoulli_backward(logits, targets, &d_out, self.bound, wanted);
        register(grads, parent_ids(&ops), d);
    }
}

/// Undoes [`flex::patch_ordered_weight`]: the gradient goes back to burn's layout (`dims`).
#[derive(Debug)]
struct PatchOrderBackward {
    dims: [usize; 4],
    of: WeightOf,
}

impl Backward<Flex, 1> for PatchOrderBackward {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let d_out = flex::Values::of(&grads.consume::<Flex>(&ops.node));
        let d = weight_layout::from_patch_order(d_out.slice(), self.dims, self.of);
        register(grads, parent_ids(&ops), [Some(flex::tensor(d, &self.dims))]);
    }
}

/// Hands each gradient to its parent, where the parent takes part in the graph.
fn register<const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    d: [Option<FlexTensor>; N],
) {
    for (parent, grad) in parents.into_iter().zip(d) {
        if let (Some(parent), Some(grad)) = (parent, grad) {
            grads.register::<Flex>(parent, grad);
        }
    }
}

/// The ids of the parents that take part in the graph.
fn parent_ids<const N: usize>(ops: &Ops<impl Sized, N>) -> [Option<NodeId>; N] {
    ops.parents.each_ref().map(|p| p.as_ref().map(|p| p.id))
}

impl<C: CheckpointStrategy> CpuKernels for Autodiff<Flex, C> {
    fn conv_halve(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        conv::<C>(ConvForm::Halve, x, weight, bias)
    }

    fn deconv_double(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        conv::<C>(ConvForm::Double, x, weight, bias)
    }

    fn relu_batch_norm(
        y: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
        order: NormOrder,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let prep = NormBackward
            .prepare::<C>([y.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (out, mean, variance) = flex::norm_forward(
            y.primitive(),
            gamma.primitive(),
            beta.primitive(),
            epsilon,
            order,
        );
        let out = match prep {
            OpsKind::Tracked(prep) => {
                let state = NormState {
                    y: y.primitive().clone(),
                    gamma: gamma.primitive().clone(),
                    beta: beta.primitive().clone(),
                    mean: mean.clone(),
                    variance: variance.clone(),
                    epsilon,
                    order,
                };
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        // The statistics feed the running averages only: no gradient flows through them.
        (out, Tracked::<C>::new(mean), Tracked::<C>::new(variance))
    }

    fn relu_affine(
        y: FloatTensor<Self>,
        scale: FloatTensor<Self>,
        shift: FloatTensor<Self>,
        order: NormOrder,
    ) -> FloatTensor<Self> {
        let prep = AffineBackward(order)
            .prepare::<C>([y.node(), scale.node(), shift.node()])
            .compute_bound()
            .stateful();
        let out = flex::affine_forward(
            y.primitive().clone(),
            scale.primitive(),
            shift.primitive(),
            order,
        );
        match prep {
            OpsKind::Tracked(prep) => {
                let state = (
                    y.primitive().clone(),
                    scale.primitive().clone(),
                    shift.primitive().clone(),
                );
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn bernoulli_nll(
        logits: FloatTensor<Self>,
        targets: FloatTensor<Self>,
        bound: f64,
    ) -> FloatTensor<Self> {
        let out = flex::bernoulli_forward(logits.primitive(), targets.primitive(), bound);
        let prep = BernoulliBackward { bound }
            .prepare::<C>([logits.node(), targets.node()])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(prep) => {
                let state = (logits.primitive().clone(), targets.primitive().clone());
                prep.finish(state, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(out),
        }
    }

    fn pixel_means(logits: FloatTensor<Self>) -> FloatTensor<Self> {
        Tracked::<C>::new(flex::pixel_means(logits.primitive()))
    }

    fn patch_ordered_weight(weight: FloatTensor<Self>, of: WeightOf) -> FloatTensor<Self> {
        let dims = flex::four_dims(weight.primitive().layout().shape());
        PatchOrderBackward { dims, of }
            .prepare::<C>([weight.node()])
            .compute_bound()
            .stateless(flex::patch_ordered_weight(weight.primitive(), of))
    }
}
