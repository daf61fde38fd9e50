//! The NaN guard's helper: a forward pass in training mode updates BatchNorm's running
//! statistics before the loss is known, so a non-finite batch would poison them for good. The
//! guard keeps handles to those buffers (no copy: burn tensors are immutable) and puts them back
//! when it skips a batch.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use intervene::model::Model;

/// Non-trainable float buffers (running statistics) of a model, flattened, in visiting order.
pub struct RunningStats(Vec<Tensor<1>>);

struct Snapshot(Vec<Tensor<1>>);

impl ModuleVisitor for Snapshot {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let value = param.val();
        if !value.is_require_grad() {
            self.0.push(value.flatten(0, D - 1));
        }
    }
}

struct Restore(std::vec::IntoIter<Tensor<1>>);

impl ModuleMapper for Restore {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.val().is_require_grad() {
            return param;
        }
        let saved = self.0.next().expect("snapshot covers every buffer");
        param.map(|t| saved.reshape(t.shape()))
    }
}

impl RunningStats {
    pub fn snapshot(model: &Model) -> Self {
        let mut s = Snapshot(Vec::new());
        model.visit(&mut s);
        RunningStats(s.0)
    }

    pub fn restore(self, model: Model) -> Model {
        model.map(&mut Restore(self.0.into_iter()))
    }
}
