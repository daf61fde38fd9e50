//! Block-diagonal linear maps: one small dense block per concept, no weights between concepts.
//!
//! Stored as `[K, w_in, w_out]` and applied as one batched matmul over the K blocks, so the
//! zeros between concepts are never multiplied (a dense masked `K*w_in x K*w_out` matmul does K
//! times the work). `intervene bench --json` measures the difference.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

/// One linear block per concept, with bias.
#[derive(Module, Debug)]
pub struct BlockLinear {
    /// `[K, w_in, w_out]`: block k maps concept k's `w_in` inputs to its `w_out` outputs.
    pub weight: Param<Tensor<3>>,
    /// `[K, w_out]`.
    pub bias: Param<Tensor<2>>,
}

impl BlockLinear {
    /// Blocks initialised uniform(-1/sqrt(w_in), 1/sqrt(w_in)), as the paper's reference does.
    pub fn new(blocks: usize, w_in: usize, w_out: usize, device: &Device) -> Self {
        Self::uniform(blocks, w_in, w_out, 1.0 / (w_in as f64).sqrt(), device)
    }

    /// Blocks initialised uniform(-bound, bound).
    pub fn uniform(blocks: usize, w_in: usize, w_out: usize, bound: f64, device: &Device) -> Self {
        let init = Initializer::Uniform {
            min: -bound,
            max: bound,
        };
        Self {
            weight: init.init([blocks, w_in, w_out], device),
            bias: init.init([blocks, w_out], device),
        }
    }

    pub fn blocks(&self) -> usize {
        self.weight.shape().dims::<3>()[0]
    }

    /// `[B, K*w_in] -> [B, K*w_out]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        apply_blocks(x, self.weight.val(), self.bias.val())
    }
}

/// Applies per-concept blocks `weight [K, a, b]`, `bias [K, b]` to `x [B, K*a]`.
pub fn apply_blocks(x: Tensor<2>, weight: Tensor<3>, bias: Tensor<2>) -> Tensor<2> {
    let [batch, _] = x.dims();
    let [blocks, w_in, w_out] = weight.dims();
    let per_block = x.reshape([batch, blocks, w_in]).swap_dims(0, 1); // [K, B, a]
    let out = per_block.matmul(weight) + bias.unsqueeze_dim::<3>(1); // [K, B, b]
    out.swap_dims(0, 1).reshape([batch, blocks * w_out])
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    #[test]
    fn blocks_do_not_mix_concepts() {
        let device = Device::flex();
        let layer = BlockLinear::new(3, 2, 4, &device);
        let x: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let base = layer.forward(Tensor::from_data(
            TensorData::new(x.clone(), [1, 6]),
            &device,
        ));
        let mut x2 = x.clone();
        x2[2] += 5.0; // concept 1's first input
        let moved = layer.forward(Tensor::from_data(TensorData::new(x2, [1, 6]), &device));
        let diff: Vec<f32> = (moved - base)
            .abs()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        for (j, d) in diff.iter().enumerate() {
            let concept = j / 4;
            if concept == 1 {
                continue;
            }
            assert!(*d < 1e-6, "output {j} of concept {concept} moved by {d}");
        }
        assert!(
            diff[4..8].iter().any(|d| *d > 1e-4),
            "concept 1 should respond"
        );
    }

    #[test]
    fn matches_dense_block_diagonal_product() {
        let device = Device::flex();
        let layer = BlockLinear::new(2, 3, 2, &device);
        let w: Vec<f32> = layer
            .weight
            .val()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let b: Vec<f32> = layer
            .bias
            .val()
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        let x = [0.5f32, -1.0, 2.0, 1.5, 0.25, -0.75];
        let out: Vec<f32> = layer
            .forward(Tensor::from_data(
                TensorData::new(x.to_vec(), [1, 6]),
                &device,
            ))
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        for k in 0..2 {
            for o in 0..2 {
                let mut expect = b[k * 2 + o];
                for i in 0..3 {
                    expect += x[k * 3 + i] * w[k * 6 + i * 2 + o];
                }
                assert!((out[k * 2 + o] - expect).abs() < 1e-5);
            }
        }
    }
}
