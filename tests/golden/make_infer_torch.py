#!/usr/bin/env python3
"""PyTorch side of tests/infer_torch.rs: load infomax's exported encoders with
`load_state_dict` and store PyTorch's outputs on fixed inputs.

  - conv28, unfolded (BN kept): loaded into the reference `Encoder` of
    scripts/torch/dim_ref.py (conv28 preset, BN layers included).
  - conv28, folded: the same `Encoder` without BN layers and with a bias on
    conv1/conv2/fc (the preset with bn=False: the folded variant).
  - edge, f16, folded: an encoder built from the file's `encoder_config`
    metadata alone (the generic recipe in docs/inference.md).

Usage (the files come from the ignored test `write_exported_files`):
  INFOMAX_PARITY_DIR=/tmp/infomax-parity cargo test --release --test infer_torch -- --ignored write_exported_files
  /root/.venvs/dim-anchors/bin/python tests/golden/make_infer_torch.py /tmp/infomax-parity
(the venv: scripts/torch/setup.sh)
Writes tests/golden/infer_torch.safetensors (inputs and outputs only, a few KB).
"""

import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts", "torch"))
import dim_ref as ref  # noqa: E402  (the in-repo PyTorch reference model)


def strip(sd):
    return {k[len("encoder."):]: v for k, v in sd.items()}


class FromConfig(nn.Module):
    """A folded encoder from `encoder_config`: conv|linear (+bias) -> ReLU? -> maxpool 3/2?; then Y."""

    def __init__(self, cfg):
        super().__init__()
        c, h, w = cfg["input"]
        self.plan = []
        n_linear = sum(1 for l in cfg["layers"] if l["type"] == "linear")
        k = 0
        flat = None
        for i, l in enumerate(cfg["layers"]):
            if l["type"] == "conv":
                name = f"conv{i + 1}"
                setattr(self, name, nn.Conv2d(c, l["out"], l["kernel"], stride=l["stride"], padding=l["padding"]))
                c = l["out"]
                h = (h + 2 * l["padding"] - l["kernel"]) // l["stride"] + 1
                w = (w + 2 * l["padding"] - l["kernel"]) // l["stride"] + 1
                if l.get("pool", False):
                    h, w = (h - 3) // 2 + 1, (w - 3) // 2 + 1
                flat = c * h * w
            else:
                k += 1
                name = "fc" if n_linear == 1 else f"fc{k}"
                setattr(self, name, nn.Linear(flat, l["out"]))
                flat = l["out"]
            self.plan.append((name, l))
        self.out = nn.Linear(flat, cfg["y_dim"])

    def forward(self, x):
        fc = None
        for name, l in self.plan:
            if l["type"] == "linear":
                x = getattr(self, name)(x.flatten(1))
            else:
                x = getattr(self, name)(x)
            if l.get("relu", True):
                x = F.relu(x)
            if l.get("pool", False):
                x = F.max_pool2d(x, 3, 2)
            if l["type"] == "linear":
                fc = x
        return None, fc, self.out(x)


def inputs(seed, n):
    # 8-bit pixels normalised as in training: (x/255 - 0.5)/0.5, computed in f32.
    px = np.random.default_rng(seed).integers(0, 256, size=(n, 1, 28, 28)).astype(np.float32)
    return torch.from_numpy((px / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5))


def run(enc, x):
    enc.eval()
    with torch.no_grad():
        _, fc, y = enc(x)
    return fc.contiguous(), y.contiguous()


def main():
    src = sys.argv[1]
    torch.manual_seed(0)
    out = {}

    x28 = inputs(20261128, 4)
    out["conv28.x"] = x28.reshape(4, -1)
    folded = load_file(os.path.join(src, "conv28_f32_folded.safetensors"))
    enc = ref.Encoder(ref.conv28(bn=False))
    enc.load_state_dict(strip(folded), strict=True)
    out["conv28_f32_folded.fc"], out["conv28_f32_folded.y"] = run(enc, x28)

    unfolded = load_file(os.path.join(src, "conv28_f32_unfolded.safetensors"))
    enc = ref.Encoder(ref.conv28())
    missing, unexpected = enc.load_state_dict(strip(unfolded), strict=False)
    # PyTorch's BN has a step counter the export does not carry; nothing else may differ.
    assert all(k.endswith("num_batches_tracked") for k in missing) and not unexpected, (missing, unexpected)
    out["conv28_f32_unfolded.fc"], out["conv28_f32_unfolded.y"] = run(enc, x28)

    path = os.path.join(src, "edge_f16_folded.safetensors")
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert meta["format"] == "infomax-encoder" and meta["folded"] == "true" and meta["dtype"] == "f16"
    enc = FromConfig(json.loads(meta["encoder_config"]))
    sd = load_file(path)
    assert all(v.dtype == torch.float16 for v in sd.values())
    enc.load_state_dict(strip(sd), strict=True)  # copies f16 into the f32 parameters exactly
    xe = inputs(7, 3)
    out["edge.x"] = xe.reshape(3, -1)
    out["edge_f16_folded.fc"], out["edge_f16_folded.y"] = run(enc, xe)

    meta = {"torch": torch.__version__, "numpy": np.__version__, "python": sys.version.split()[0]}
    save_file({k: v.float().contiguous() for k, v in out.items()}, os.path.join(HERE, "infer_torch.safetensors"), meta)
    for k, v in sorted(out.items()):
        print(f"{k}: {tuple(v.shape)} |max| {v.abs().max().item():.4f}")


if __name__ == "__main__":
    main()
