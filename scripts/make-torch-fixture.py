#!/usr/bin/env python3
"""Writes the test data of `intervene import-torch`: a checkpoint of the paper's reference VAE
(conv3 backbone, MNIST's six concepts, widths 2.15.5, hidden 128) and what the reference computes
from it for fixed inputs, so that trainer/tests/import_torch.rs can check that our model, given
the same weights, computes the same images.

The reference code (github.com/Alex-Markham/context-module, AGPL-3.0) is run from a checkout you
fetch yourself; nothing of it is copied here. It runs on the CPU:

    python3 -m venv /tmp/torch-env
    /tmp/torch-env/bin/pip install torch torchvision pandas matplotlib seaborn pot torchinfo tqdm
    git clone https://github.com/Alex-Markham/context-module /tmp/context-module
    /tmp/torch-env/bin/python scripts/make-torch-fixture.py \
        --reference /tmp/context-module --out tests/data/torch-reference

The weights are the reference's own random initialisation (seeded), with the causal weights
clamped into [0, 1] as its training loop leaves them, BatchNorm statistics moved away from their
defaults by a few training-mode passes, and the unpool and output weights scaled up, so that
every tensor the import maps matters and pixels span (0, 1).
"""

import argparse
import json
import sys
from pathlib import Path

# The reference's MNIST concepts, in its loader's order (ours differ: the import reorders).
CONCEPTS = ["scaled", "shear", "shift", "swel", "thic", "thin"]
DEPTH, W_IN, W_OUT, HIDDEN = 2, 15, 5, 128
# Contexts to decode: obs, every single intervention, and two composed pairs.
CONTEXTS = [["obs"]] + [[c] for c in CONCEPTS] + [["scaled", "thin"], ["shear", "swel"]]
BATCH = 4


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, type=Path, help="checkout of the reference")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.path.insert(0, str(args.reference / "src"))
    import torch
    from conceptualizer.arch import get_architectures
    from conceptualizer.repro import VAE

    torch.manual_seed(args.seed)
    k = len(CONCEPTS)
    model = VAE(
        arch_id="conv3",
        arch_flag="concepts",
        latent_dim=k * W_IN,
        eps_dim=k,
        eps_in_width=W_IN,
        eps_out_width=W_OUT,
        eps_depth=DEPTH,
        c_dim=k,
        c_width=W_OUT,
        concepts=["obs"] + CONCEPTS,
        device=torch.device("cpu"),
        VAE_ARCHITECTURES=get_architectures(HIDDEN),
    )
    with torch.no_grad():
        model.causal_layer.obs_weight.clamp_(0, 1)
        model.causal_layer.ivn_weight.clamp_(0, 1)
    # Training-mode passes move every BatchNorm's running statistics.
    model.train()
    with torch.no_grad():
        for labels in CONTEXTS:
            model(torch.rand(32, 1, 28, 28), labels, arch_flag="concepts")
        # At initialisation every pixel is near 0.5 and contexts differ by under 0.01: larger
        # unpool and output weights spread pixels over (0, 1) and contexts apart, so that the
        # test's tolerance is small next to what a wrong mapping would change.
        model.unpool.weight.mul_(4.0)
        model.decoder[-2].weight.mul_(25.0)
    model.eval()

    images = torch.rand(BATCH, 1, 28, 28)
    z = torch.randn(BATCH, k * W_IN)
    arrays = {}
    with torch.no_grad():
        h = model.encode(images)
        arrays["images"] = images
        arrays["mu"] = model.fc_mu(h)
        arrays["logvar"] = model.fc_var(h)
        arrays["z"] = z
        for labels in CONTEXTS:
            decoded = model.decode(model.conceptualize(z, labels, arch_flag="concepts"))
            arrays["decoded-" + "+".join(labels)] = decoded

    args.out.mkdir(parents=True, exist_ok=True)
    # As the reference's training script saves it: the state dict under `model_state_dict`.
    torch.save({"epoch": 0, "model_state_dict": model.state_dict()}, args.out / "vae.pth")
    # A bare state dict, of one tensor only: the import must read it and name what is missing.
    torch.save({"fc_mu.weight": torch.zeros(1, 1)}, args.out / "bare-partial.pth")
    manifest = {"concepts": CONCEPTS, "widths": f"{DEPTH}.{W_IN}.{W_OUT}", "arrays": {}}
    for name, tensor in arrays.items():
        values = tensor.numpy().astype("<f4")
        values.tofile(args.out / f"{name}.f32")
        manifest["arrays"][name] = list(values.shape)
    manifest["torch"] = torch.__version__
    (args.out / "expected.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {args.out}: vae.pth and {len(arrays)} arrays (torch {torch.__version__})")


if __name__ == "__main__":
    main()
