//! The context module (docs/method.md#context-module): the small network between encoder and decoder that
//! rewires itself per context, the way an intervention rewires a causal model.
//!
//! `z [B, K*w_in]` -> noise layer (obs or ivn block per concept; optionally dense in `obs`) ->
//! GELU -> expressive stack
//! (block-diagonal + BatchNorm + GELU) -> causal layer (`K x K` blocks, identity diagonal, cut
//! incoming edges of intervened concepts) -> unpool (dense) -> `[B, hidden]`.

use super::block_linear::{BlockLinear, apply_blocks};
use crate::config::{ModelConfig, NoiseLayer};
use crate::context::Context;
use burn::module::{Module, Param};
use burn::nn::{BatchNorm, BatchNormConfig, Initializer, Linear, LinearConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor, TensorData};

/// One layer of the per-concept MLP shared by all contexts.
#[derive(Module, Debug)]
pub struct ExpressiveLayer {
    pub linear: BlockLinear,
    pub norm: BatchNorm,
}

/// The reduced form of a linear causal model over concepts: maps exogenous noise blocks to
/// concept blocks. Learned off-diagonal blocks live in `b_obs` / `b_ivn`; diagonal blocks are
/// the identity and are never read from these tensors.
///
/// Layout: `[K*w, K*w]` indexed `[noise unit, concept unit]`, i.e. the transpose of the paper's
/// (row = concept, column = noise) notation, so the forward pass is a plain `x.matmul(W)`.
#[derive(Module, Debug)]
pub struct CausalLayer {
    pub b_obs: Param<Tensor<2>>,
    pub b_ivn: Param<Tensor<2>>,
    pub bias: Param<Tensor<1>>,
    #[module(skip)]
    pub blocks: usize,
    #[module(skip)]
    pub width: usize,
}

/// Where each weight of the effective causal matrix comes from in a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockSource {
    Identity,
    Observational,
    Interventional,
    Cut,
}

/// The composition rule (docs/method.md#causal-layer) for block (concept `r`, noise `c`) in
/// context `s`: from `W_ivn` if `c` is intervened; else cut if `r` is intervened (it loses its
/// incoming edges); else from `W_obs`.
/// Between two intervened concepts this takes `W_ivn`, as the paper's reference does.
pub fn block_source(concept: usize, noise: usize, context: Context) -> BlockSource {
    if concept == noise {
        BlockSource::Identity
    } else if context.contains(noise) {
        BlockSource::Interventional
    } else if context.contains(concept) {
        BlockSource::Cut
    } else {
        BlockSource::Observational
    }
}

impl CausalLayer {
    pub fn new(blocks: usize, width: usize, device: &Device) -> Self {
        let bound = if blocks == 1 {
            1.0
        } else {
            1.0 / (((blocks - 1) * width) as f64).sqrt()
        };
        let init = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        let n = blocks * width;
        Self {
            b_obs: init.init([n, n], device),
            b_ivn: init.init([n, n], device),
            bias: init.init([n], device),
            blocks,
            width,
        }
    }

    /// Masks selecting `b_obs` and `b_ivn` entries, plus the identity, for one context.
    fn masks(&self, context: Context, device: &Device) -> [Tensor<2>; 3] {
        let (k, w) = (self.blocks, self.width);
        let n = k * w;
        let mut obs = vec![0f32; n * n];
        let mut ivn = vec![0f32; n * n];
        let mut eye = vec![0f32; n * n];
        for noise in 0..k {
            for concept in 0..k {
                let source = block_source(concept, noise, context);
                for i in 0..w {
                    for j in 0..w {
                        let at = (noise * w + i) * n + concept * w + j;
                        match source {
                            BlockSource::Identity => eye[at] = f32::from(i == j),
                            BlockSource::Observational => obs[at] = 1.0,
                            BlockSource::Interventional => ivn[at] = 1.0,
                            BlockSource::Cut => {}
                        }
                    }
                }
            }
        }
        [obs, ivn, eye].map(|m| Tensor::from_data(TensorData::new(m, [n, n]), device))
    }

    /// The effective `[noise, concept]` matrix in a context.
    pub fn effective(&self, context: Context) -> Tensor<2> {
        let device = self.b_obs.device();
        let [obs, ivn, eye] = self.masks(context, &device);
        eye + self.b_obs.val() * obs + self.b_ivn.val() * ivn
    }

    pub fn forward(&self, noise: Tensor<2>, context: Context) -> Tensor<2> {
        noise.matmul(self.effective(context)) + self.bias.val().unsqueeze()
    }

    /// Learned weights back into `[0, 1]`; called after every optimizer step.
    pub fn clamped(self) -> Self {
        Self {
            b_obs: self.b_obs.map(clamp_unit),
            b_ivn: self.b_ivn.map(clamp_unit),
            ..self
        }
    }

    /// Group sparsity (sum of the L2 norms of the off-diagonal blocks) and squared L2 norm of the
    /// off-diagonal learned weights, over both weight sets: the optional regularisers
    /// (docs/method.md#causal-layer-regularisers).
    pub fn regularisers(&self) -> (Tensor<1>, Tensor<1>) {
        let (k, w) = (self.blocks, self.width);
        let device = self.b_obs.device();
        let off: Vec<f32> = (0..k * k).map(|i| f32::from(i / k != i % k)).collect();
        let off = Tensor::<2>::from_data(TensorData::new(off, [k, k]), &device);
        let mut group = Tensor::<1>::zeros([1], &device);
        let mut l2 = Tensor::<1>::zeros([1], &device);
        for weights in [self.b_obs.val(), self.b_ivn.val()] {
            // [noise block, i, concept block, j] -> per-block sums of squares [K, K]
            let squares = weights
                .reshape([k, w, k, w])
                .powi_scalar(2)
                .sum_dim(3)
                .sum_dim(1)
                .reshape([k, k])
                * off.clone();
            group = group + (squares.clone() + 1e-12).sqrt().sum().reshape([1]);
            l2 = l2 + squares.sum().reshape([1]);
        }
        (group, l2)
    }
}

/// The learned concept graph from a `[Kw, Kw]` causal weight matrix's values (`Model::learned_graph`
/// picks the matrix): `graph[parent][child]` is the mean |weight| of the block from noise
/// `parent` to concept `child`; the diagonal is 0. Takes values, not a tensor, for callers that
/// must read them back asynchronously (WebGPU in a browser cannot read synchronously).
pub fn graph_from_weights(weights: &[f32], blocks: usize, width: usize) -> Vec<Vec<f32>> {
    let (k, w) = (blocks, width);
    let n = k * w;
    let mut graph = vec![vec![0f32; k]; k];
    for (parent, row) in graph.iter_mut().enumerate() {
        for (child, cell) in row.iter_mut().enumerate() {
            if parent == child {
                continue;
            }
            let mut sum = 0f32;
            for i in 0..w {
                for j in 0..w {
                    sum += weights[(parent * w + i) * n + child * w + j].abs();
                }
            }
            *cell = sum / (w * w) as f32;
        }
    }
    graph
}

/// Clamps to `[0, 1]` as a fresh leaf: the clamp is a projection after the optimizer step, not
/// part of the next step's graph.
fn clamp_unit(t: Tensor<2>) -> Tensor<2> {
    let tracked = t.is_require_grad();
    let clamped = t.clamp(0.0, 1.0).detach();
    if tracked {
        clamped.require_grad()
    } else {
        clamped
    }
}

/// The whole context module.
#[derive(Module, Debug)]
pub struct ContextModule {
    /// Per-concept blocks `[K, w_in, w_in]`, or with [`NoiseLayer::DenseObs`] one dense block
    /// `[1, K*w_in, K*w_in]` (a dense map is a block-diagonal one with a single block).
    pub noise_obs: BlockLinear,
    pub noise_ivn: BlockLinear,
    #[module(skip)]
    pub noise_layer: NoiseLayer,
    pub stack: Vec<ExpressiveLayer>,
    pub causal: CausalLayer,
    pub unpool: Linear,
}

impl ContextModule {
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let k = config.num_concepts();
        let widths = config.widths.stack();
        let w_in = config.widths.w_in;
        let w_last = *widths.last().expect("at least one width");
        let stack = widths
            .windows(2)
            .map(|pair| ExpressiveLayer {
                linear: BlockLinear::new(k, pair[0], pair[1], device),
                norm: BatchNormConfig::new(k * pair[1]).init(device),
            })
            .collect();
        // Both kinds draw every weight from +-1/sqrt(w_in), as the reference does.
        let noise_obs = match config.noise_layer {
            NoiseLayer::Block => BlockLinear::new(k, w_in, w_in, device),
            NoiseLayer::DenseObs => {
                BlockLinear::uniform(1, k * w_in, k * w_in, 1.0 / (w_in as f64).sqrt(), device)
            }
        };
        Self {
            noise_obs,
            noise_ivn: BlockLinear::new(k, w_in, w_in, device),
            noise_layer: config.noise_layer,
            stack,
            causal: CausalLayer::new(k, w_last, device),
            unpool: LinearConfig::new(k * w_last, config.hidden).init(device),
        }
    }

    /// Noise layer: in `obs` the observational weights as they are (per concept, or dense);
    /// otherwise per concept, block k from the interventional weights iff k is intervened.
    fn noise_layer(&self, z: Tensor<2>, context: Context) -> Tensor<2> {
        if context.is_obs() {
            return self.noise_obs.forward(z);
        }
        let k = self.noise_ivn.blocks();
        let pick: Vec<f32> = (0..k).map(|i| f32::from(context.contains(i))).collect();
        let device = z.device();
        let pick = Tensor::<1>::from_data(TensorData::new(pick, [k]), &device);
        let keep = pick.clone().neg().add_scalar(1.0);
        let (obs_weight, obs_bias) = self.observational_blocks();
        let weight = obs_weight * keep.clone().reshape([k, 1, 1])
            + self.noise_ivn.weight.val() * pick.clone().reshape([k, 1, 1]);
        let bias =
            obs_bias * keep.reshape([k, 1]) + self.noise_ivn.bias.val() * pick.reshape([k, 1]);
        apply_blocks(z, weight, bias)
    }

    /// The observational noise weights per concept, `[K, w_in, w_in]` and `[K, w_in]`: a dense
    /// matrix gives its diagonal blocks, what an intervened context keeps of it.
    fn observational_blocks(&self) -> (Tensor<3>, Tensor<2>) {
        let (weight, bias) = (self.noise_obs.weight.val(), self.noise_obs.bias.val());
        match self.noise_layer {
            NoiseLayer::Block => (weight, bias),
            NoiseLayer::DenseObs => {
                let [k, w, _] = self.noise_ivn.weight.dims();
                let device = weight.device();
                // [in block, i, out block, o] -> [in block, out block, i, o], keep in == out.
                let blocks = weight.reshape([k, w, k, w]).swap_dims(1, 2);
                let diagonal = Tensor::<2>::eye(k, &device).reshape([k, k, 1, 1]);
                let blocks = (blocks * diagonal).sum_dim(1).reshape([k, w, w]);
                (blocks, bias.reshape([k, w]))
            }
        }
    }

    /// The concept representation after the causal layer, before unpooling: `[B, K*w_out]`.
    pub fn concepts(&self, z: Tensor<2>, context: Context) -> Tensor<2> {
        let mut x = gelu(self.noise_layer(z, context));
        for layer in &self.stack {
            x = gelu(layer.norm.forward(layer.linear.forward(x)));
        }
        self.causal.forward(x, context)
    }

    /// `[B, K*w_in] -> [B, hidden]`, into the decoder.
    pub fn forward(&self, z: Tensor<2>, context: Context) -> Tensor<2> {
        self.unpool.forward(self.concepts(z, context))
    }

    pub fn clamped(self) -> Self {
        Self {
            causal: self.causal.clamped(),
            ..self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> Device {
        Device::flex()
    }

    /// A causal layer whose learned weights are all `value` (so every edge is non-zero).
    fn causal_with(blocks: usize, width: usize, obs: f32, ivn: f32) -> CausalLayer {
        let d = device();
        let n = blocks * width;
        let layer = CausalLayer::new(blocks, width, &d);
        CausalLayer {
            b_obs: Param::from_tensor(Tensor::full([n, n], obs, &d)),
            b_ivn: Param::from_tensor(Tensor::full([n, n], ivn, &d)),
            bias: Param::from_tensor(Tensor::zeros([n], &d)),
            ..layer
        }
    }

    fn one_hot(n: usize, at: usize, value: f32) -> Tensor<2> {
        let mut v = vec![0f32; n];
        v[at] = value;
        Tensor::from_data(TensorData::new(v, [1, n]), &device())
    }

    fn values(t: Tensor<2>) -> Vec<f32> {
        t.into_data().try_into_vec_as::<f32>().unwrap()
    }

    /// How much concept `concept`'s output moves when noise block `noise` is kicked.
    fn response(layer: &CausalLayer, context: Context, noise: usize, concept: usize) -> f32 {
        let w = layer.width;
        let n = layer.blocks * w;
        let out = values(layer.forward(one_hot(n, noise * w, 1.0), context));
        out[concept * w..(concept + 1) * w]
            .iter()
            .map(|v| v.abs())
            .sum()
    }

    /// The graph read from `B_ivn` and the edges the forward pass carries agree on direction:
    /// `graph[parent][child]` is how much intervening on `parent` moves concept `child`.
    #[test]
    fn the_learned_graph_reads_the_edges_an_intervention_carries() {
        let (blocks, width) = (3, 2);
        let n = blocks * width;
        let graph = [[0.0, 0.0, 0.0], [0.0, 0.0, 0.5], [0.5, 0.0, 0.0]];
        let mut b_ivn = vec![0f32; n * n];
        for (parent, row) in graph.iter().enumerate() {
            for (child, &edge) in row.iter().enumerate() {
                for i in 0..width {
                    for j in 0..width {
                        b_ivn[(parent * width + i) * n + child * width + j] = edge;
                    }
                }
            }
        }
        let read = graph_from_weights(&b_ivn, blocks, width);
        assert_eq!(read, graph.map(Vec::from).to_vec());
        let layer = CausalLayer {
            b_ivn: Param::from_tensor(Tensor::from_data(TensorData::new(b_ivn, [n, n]), &device())),
            ..causal_with(blocks, width, 0.0, 0.0)
        };
        for (parent, row) in graph.iter().enumerate() {
            for (child, &edge) in row.iter().enumerate() {
                if parent != child {
                    let context = Context::single(parent);
                    let moved = response(&layer, context, parent, child) > 0.0;
                    assert_eq!(moved, edge > 0.0, "edge {parent} -> {child}");
                }
            }
        }
    }

    #[test]
    fn intervened_concept_ignores_other_noise() {
        let layer = causal_with(3, 2, 0.7, 0.4);
        let ctx = Context::single(1);
        for noise in [0, 2] {
            assert_eq!(
                response(&layer, ctx, noise, 1),
                0.0,
                "noise {noise} leaked into concept 1"
            );
        }
    }

    #[test]
    fn observational_context_uses_every_nonzero_edge() {
        let layer = causal_with(3, 2, 0.7, 0.4);
        for noise in 0..3 {
            for concept in 0..3 {
                if noise != concept {
                    let r = response(&layer, Context::OBS, noise, concept);
                    assert!((r - 2.0 * 0.7).abs() < 1e-5, "edge {noise}->{concept}: {r}");
                }
            }
        }
    }

    #[test]
    fn diagonal_blocks_act_as_identity_in_every_context() {
        let layer = causal_with(3, 2, 0.9, 0.3);
        let n = 6;
        for ctx in [
            Context::OBS,
            Context::single(0),
            Context::from_indices([0, 2]),
        ] {
            for unit in 0..n {
                let out = values(layer.forward(one_hot(n, unit, 1.0), ctx));
                let block = unit / 2;
                for (j, v) in out.iter().enumerate().filter(|(j, _)| j / 2 == block) {
                    let expect = f32::from(j == unit);
                    assert!(
                        (v - expect).abs() < 1e-6,
                        "ctx {ctx} unit {unit} -> {j}: {v}"
                    );
                }
            }
        }
    }

    /// The dense observational noise layer mixes concepts in `obs` only: in any intervened
    /// context each concept's noise is its own block, the dense matrix's diagonal one where the
    /// concept is not intervened.
    #[test]
    fn a_dense_noise_layer_mixes_concepts_in_obs_only() {
        let d = device();
        let config = ModelConfig {
            noise_layer: NoiseLayer::DenseObs,
            ..crate::model::tests::tiny_config(crate::config::Method::Cm, 32)
        };
        let (k, w) = (config.num_concepts(), config.widths.w_in);
        let n = k * w;
        let module = ContextModule::new(&config, &d);
        assert_eq!(module.noise_obs.weight.dims(), [1, n, n]);
        let dense = values(module.noise_obs.weight.val().reshape([n, n]));
        let obs_bias = values(module.noise_obs.bias.val());
        let ivn = values(module.noise_ivn.weight.val().reshape([k * w, w]));
        let ivn_bias = values(module.noise_ivn.bias.val());
        // Unit `unit` kicked: `output[j]` minus the bias is weight row `unit`.
        for context in [
            Context::OBS,
            Context::single(1),
            Context::from_indices([0, 2]),
        ] {
            let zero = values(module.noise_layer(Tensor::zeros([1, n], &d), context));
            for unit in 0..n {
                let out = values(module.noise_layer(one_hot(n, unit, 1.0), context));
                for j in 0..n {
                    let (from, to) = (unit / w, j / w);
                    let expect = match (context.is_obs(), from == to, context.contains(to)) {
                        (true, _, _) => dense[unit * n + j],
                        (false, false, _) => 0.0,
                        (false, true, false) => dense[unit * n + j],
                        (false, true, true) => ivn[unit * w + j % w],
                    };
                    let bias = match context.contains(to) {
                        true => ivn_bias[j],
                        false => obs_bias[j],
                    };
                    assert!((zero[j] - bias).abs() < 1e-6, "{context} bias {j}");
                    let got = out[j] - zero[j];
                    assert!(
                        (got - expect).abs() < 1e-5,
                        "{context}: {unit} -> {j}: {got}"
                    );
                }
            }
        }
    }

    #[test]
    fn composing_two_interventions_follows_the_rule() {
        // obs edges 0.7, ivn edges 0.4: the response tells which weight set a block used.
        let layer = causal_with(3, 1, 0.7, 0.4);
        let both = Context::from_indices([0, 1]);
        assert!(
            (response(&layer, both, 1, 0) - 0.4).abs() < 1e-6,
            "ivn between intervened"
        );
        assert!(
            (response(&layer, both, 0, 1) - 0.4).abs() < 1e-6,
            "ivn between intervened"
        );
        assert_eq!(
            response(&layer, both, 2, 0),
            0.0,
            "intervened concept loses incoming edge"
        );
        assert!(
            (response(&layer, both, 0, 2) - 0.4).abs() < 1e-6,
            "intervened noise uses ivn"
        );
        let single = Context::single(0);
        assert!(
            (response(&layer, single, 1, 2) - 0.7).abs() < 1e-6,
            "untouched edge uses obs"
        );
        for r in 0..3 {
            for c in 0..3 {
                let expect = match (r == c, both.contains(c), both.contains(r)) {
                    (true, _, _) => BlockSource::Identity,
                    (false, true, _) => BlockSource::Interventional,
                    (false, false, true) => BlockSource::Cut,
                    _ => BlockSource::Observational,
                };
                assert_eq!(block_source(r, c, both), expect);
            }
        }
    }

    #[test]
    fn clamping_keeps_causal_weights_in_unit_interval() {
        let d = device();
        let layer = CausalLayer::new(3, 2, &d);
        let wild = CausalLayer {
            b_obs: Param::from_tensor(Tensor::random(
                [6, 6],
                burn::tensor::Distribution::Normal(0.0, 3.0),
                &d,
            )),
            ..layer
        };
        let clamped = wild.clamped();
        for t in [clamped.b_obs.val(), clamped.b_ivn.val()] {
            let v = values(t);
            assert!(v.iter().all(|x| (0.0..=1.0).contains(x)));
        }
    }
}
