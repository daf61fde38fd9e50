//! The serde description of a model: enough to rebuild it from nothing but this struct and its
//! weights. Saved in every run folder and inside every exported file.

use serde::{Deserialize, Serialize};
use std::{fmt, str::FromStr};

/// The black-box encoder/decoder pair (docs/method.md#backbones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Architecture {
    /// 28x28 grey images (MNIST).
    Conv3,
    /// RGB images of 64x64 (the paper's), or 32x32 with one stride-2 stage fewer on each side.
    Simple64bn,
}

/// How a model is trained and whether it has a context module (docs/method.md#methods).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Context module trained end to end with context labels.
    Cm,
    /// Context module, but every batch treated as `obs`.
    CmPooled,
    /// Plain VAE trained on `obs` only.
    Base,
    /// Plain VAE trained on all contexts pooled.
    BasePooled,
    /// Context module on a trained `base-pooled` encoder and decoder, which stay frozen.
    CmFrozen,
    /// As `cm-frozen` for the first 20% of epochs, then everything trains.
    CmFinetune,
    /// Plain VAE whose loss penalises the total correlation of its latents (the paper's
    /// strongest baseline), trained on all contexts pooled.
    BetaTcvae,
}

impl Method {
    /// In the order of the paper's table.
    pub const ALL: [Method; 7] = [
        Method::Cm,
        Method::CmFinetune,
        Method::CmFrozen,
        Method::Base,
        Method::BasePooled,
        Method::CmPooled,
        Method::BetaTcvae,
    ];

    pub fn has_context_module(self) -> bool {
        matches!(
            self,
            Method::Cm | Method::CmPooled | Method::CmFrozen | Method::CmFinetune
        )
    }

    /// Whether training batches tell the model their context (otherwise it sees `obs`).
    pub fn uses_context_labels(self) -> bool {
        matches!(self, Method::Cm | Method::CmFrozen | Method::CmFinetune)
    }

    /// Whether training draws from every context or from `obs` alone.
    pub fn trains_on_all_contexts(self) -> bool {
        !matches!(self, Method::Base)
    }

    /// Whether the method starts from a trained `base-pooled` encoder and decoder.
    pub fn starts_from_base_pooled(self) -> bool {
        matches!(self, Method::CmFrozen | Method::CmFinetune)
    }

    pub fn name(self) -> &'static str {
        match self {
            Method::Cm => "cm",
            Method::CmPooled => "cm-pooled",
            Method::Base => "base",
            Method::BasePooled => "base-pooled",
            Method::CmFrozen => "cm-frozen",
            Method::CmFinetune => "cm-finetune",
            Method::BetaTcvae => "beta-tcvae",
        }
    }

    /// The row label of the paper's table.
    pub fn label(self) -> &'static str {
        match self {
            Method::Cm => "CM (end-to-end)",
            Method::CmPooled => "CM pooled",
            Method::Base => "base",
            Method::BasePooled => "base pooled",
            Method::CmFrozen => "CM (frozen)",
            Method::CmFinetune => "CM (fine-tune)",
            Method::BetaTcvae => "beta-TCVAE",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_by_name(s, &Method::ALL, |m| m.name(), "method")
    }
}

/// Finds the variant called `text`, or says which names are valid.
pub(crate) fn parse_by_name<T: Copy>(
    text: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
    what: &str,
) -> Result<T, String> {
    all.iter()
        .copied()
        .find(|&v| name(v) == text)
        .ok_or_else(|| {
            let valid: Vec<&str> = all.iter().map(|&v| name(v)).collect();
            format!(
                "unknown {what} '{text}'; valid {what}s are: {}",
                valid.join(", ")
            )
        })
}

/// What the context module's noise layer mixes in the observational context
/// (docs/method.md#noise-layer). In intervened contexts both act per concept, as the composition
/// rule needs: an intervened concept's block from the interventional weights, every other
/// concept's from the observational ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum NoiseLayer {
    /// One block per concept in every context. The default of files that do not name one:
    /// every model before the option had it.
    #[default]
    Block,
    /// A dense `K*w_in x K*w_in` matrix in `obs`, as the paper's reference has; its diagonal
    /// blocks in intervened contexts.
    DenseObs,
}

/// Image tensor shape, channels first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    pub channels: usize,
    pub size: usize,
}

impl ImageShape {
    pub fn pixels(self) -> usize {
        self.size * self.size
    }

    /// Values per image (channels x pixels).
    pub fn numel(self) -> usize {
        self.channels * self.pixels()
    }
}

/// Context-module widths, written `depth.w_in.w_out` as in the paper (e.g. `2.32.8`). Read from
/// that text or from the `{depth, w_in, w_out}` record that files written before store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "WidthsRecord")]
pub struct Widths {
    pub depth: usize,
    pub w_in: usize,
    pub w_out: usize,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum WidthsRecord {
    Text(String),
    Parts {
        depth: usize,
        w_in: usize,
        w_out: usize,
    },
}

impl TryFrom<WidthsRecord> for Widths {
    type Error = String;
    fn try_from(record: WidthsRecord) -> Result<Self, String> {
        match record {
            WidthsRecord::Text(text) => text.parse(),
            WidthsRecord::Parts { depth, w_in, w_out } => Ok(Widths { depth, w_in, w_out }),
        }
    }
}

/// Widest a context module may be: depth (width points), and noise or concept width per concept.
/// The defaults are `2.32.8` (quad) and `2.15.5` (MNIST).
pub const MAX_DEPTH: usize = 16;
pub const MAX_WIDTH: usize = 1024;
/// Largest encoder output / decoder input (`h`, 128 in the paper).
pub const MAX_HIDDEN: usize = 4096;

impl Widths {
    /// Every width positive and within [`MAX_DEPTH`] and [`MAX_WIDTH`].
    pub fn validate(self) -> Result<(), String> {
        let ok = (1..=MAX_DEPTH).contains(&self.depth)
            && (1..=MAX_WIDTH).contains(&self.w_in)
            && (1..=MAX_WIDTH).contains(&self.w_out);
        match ok {
            true => Ok(()),
            false => Err(format!(
                "widths {self} must be depth.w_in.w_out with depth in 1..={MAX_DEPTH} and widths in 1..={MAX_WIDTH}, e.g. 2.32.8"
            )),
        }
    }

    /// The expressive stack's width points, linearly spaced from `w_in` to `w_out` over `depth`
    /// points and truncated to integers (so `depth - 1` layers).
    pub fn stack(self) -> Vec<usize> {
        if self.depth <= 1 {
            return vec![self.w_in];
        }
        (0..self.depth)
            .map(|i| {
                let t = i as f64 / (self.depth - 1) as f64;
                (self.w_in as f64 + t * (self.w_out as f64 - self.w_in as f64)) as usize
            })
            .collect()
    }
}

impl fmt::Display for Widths {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.depth, self.w_in, self.w_out)
    }
}

impl FromStr for Widths {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<usize> = s
            .split('.')
            .map(|p| p.parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("widths '{s}' must be depth.w_in.w_out, e.g. 2.32.8"))?;
        let [depth, w_in, w_out] = parts[..] else {
            return Err(format!(
                "widths '{s}' must be depth.w_in.w_out, e.g. 2.32.8"
            ));
        };
        let widths = Widths { depth, w_in, w_out };
        widths.validate()?;
        Ok(widths)
    }
}

/// Everything needed to rebuild a model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub image: ImageShape,
    /// Concept names, in the order of the context module's blocks.
    pub concepts: Vec<String>,
    pub widths: Widths,
    /// Encoder output and decoder input size (`h`, 128 in the paper).
    pub hidden: usize,
    pub method: Method,
    #[serde(default)]
    pub noise_layer: NoiseLayer,
}

impl ModelConfig {
    pub fn num_concepts(&self) -> usize {
        self.concepts.len()
    }

    /// Size of `z`: `K * w_in` with a context module, `hidden` for a plain VAE.
    pub fn latent_size(&self) -> usize {
        if self.method.has_context_module() {
            self.num_concepts() * self.widths.w_in
        } else {
            self.hidden
        }
    }

    /// Channel widths of the conv stages, encoder order (the decoder mirrors them).
    pub fn conv_channels(&self) -> Vec<usize> {
        match self.architecture {
            Architecture::Conv3 => vec![32, 64, 128],
            Architecture::Simple64bn => {
                let stages = (self.image.size / 4).trailing_zeros() as usize;
                [32, 64, 128, 256][..stages].to_vec()
            }
        }
    }

    /// Rejects what the architectures cannot take or what no real model has, with a message
    /// naming the problem. Weights files' headers pass through here too, before anything is
    /// built from them.
    pub fn validate(&self) -> Result<(), String> {
        let k = self.num_concepts();
        if k == 0 || k > crate::context::MAX_CONCEPTS {
            return Err(format!(
                "a model needs 1 to {} concepts, got {k}",
                crate::context::MAX_CONCEPTS
            ));
        }
        for (i, name) in self.concepts.iter().enumerate() {
            crate::context::check_concept_name(name)?;
            if self.concepts[..i].contains(name) {
                return Err(format!(
                    "concept names must be distinct, got {:?}",
                    self.concepts
                ));
            }
        }
        self.widths.validate()?;
        match (self.architecture, self.image.channels, self.image.size) {
            (Architecture::Conv3, 1, 28) => {}
            (Architecture::Simple64bn, 3, 32 | 64) => {}
            (arch, c, s) => {
                return Err(format!(
                    "architecture {arch:?} cannot take {c}x{s}x{s} images (conv3: 1x28x28; simple64bn: 3x32x32 or 3x64x64)"
                ));
            }
        }
        if !(1..=MAX_HIDDEN).contains(&self.hidden) {
            return Err(format!(
                "hidden size must be in 1..={MAX_HIDDEN}, got {}",
                self.hidden
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_parse_and_stack() {
        let w: Widths = "2.32.8".parse().unwrap();
        assert_eq!(
            w,
            Widths {
                depth: 2,
                w_in: 32,
                w_out: 8
            }
        );
        assert_eq!(w.stack(), vec![32, 8]);
        assert_eq!("3.15.5".parse::<Widths>().unwrap().stack(), vec![15, 10, 5]);
        assert!("2.32".parse::<Widths>().is_err());
        assert!("a.b.c".parse::<Widths>().is_err());
        assert!("2.100000.8".parse::<Widths>().is_err());
        assert!("0.32.8".parse::<Widths>().is_err());
    }

    /// A weights file's header is checked as strictly as a flag: widths, hidden size and concept
    /// names included.
    #[test]
    fn validate_applies_every_bound_to_a_whole_config() {
        let good = ModelConfig {
            architecture: Architecture::Simple64bn,
            image: ImageShape {
                channels: 3,
                size: 32,
            },
            concepts: vec!["a".into(), "b".into()],
            widths: "2.32.8".parse().unwrap(),
            hidden: 128,
            method: Method::Cm,
            noise_layer: NoiseLayer::Block,
        };
        assert_eq!(good.validate(), Ok(()));
        let bad = [
            ModelConfig {
                widths: Widths {
                    depth: 2,
                    w_in: 0,
                    w_out: 8,
                },
                ..good.clone()
            },
            ModelConfig {
                widths: Widths {
                    depth: 1 << 62,
                    w_in: 4,
                    w_out: 8,
                },
                ..good.clone()
            },
            ModelConfig {
                hidden: MAX_HIDDEN + 1,
                ..good.clone()
            },
            ModelConfig {
                concepts: vec!["a".into(), "a".into()],
                ..good.clone()
            },
            ModelConfig {
                concepts: vec![String::new()],
                ..good.clone()
            },
            ModelConfig {
                image: ImageShape {
                    channels: 3,
                    size: 48,
                },
                ..good.clone()
            },
        ];
        // Names the context syntax cannot address.
        let unaddressable =
            ["a+b", "c,d", "size=1", " b", "b ", "obs", "tab\t"].map(|name| ModelConfig {
                concepts: vec!["a".into(), name.into()],
                ..good.clone()
            });
        for config in bad.into_iter().chain(unaddressable) {
            assert!(config.validate().is_err(), "{config:?}");
        }
    }

    #[test]
    fn method_names_round_trip() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
        }
        assert!("cmx".parse::<Method>().unwrap_err().contains("cm-pooled"));
    }
}
