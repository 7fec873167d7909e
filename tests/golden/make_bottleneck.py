#!/usr/bin/env python3
"""Golden fixtures for one ResNet bottleneck block (docs/method.md §2.5), made with PyTorch.

Run from the repository root:

    /root/.venvs/dim-anchors/bin/python tests/golden/make_bottleneck.py

Writes tests/golden/bottleneck_{proj,identity}.safetensors. The block is

    conv1 1x1 (planes, no bias) -> bn1 -> ReLU
    conv2 3x3 (planes, stride s, pad 1, no bias) -> bn2 -> ReLU
    conv3 1x1 (4*planes, no bias) -> bn3
    + shortcut(x): identity when the shape is kept, else
      Sequential(conv 1x1 (4*planes, stride s, no bias), BatchNorm2d)
    -> ReLU

built with PyTorch's default init from a fixed seed, BN affine parameters and
running statistics then drawn at random (so they matter), cast to float64,
run in train mode (batch statistics; running statistics updated with
momentum 0.1 and the unbiased variance), and differentiated as
sum(y * dy) for a random dy. Everything is stored as float32 (each value
the f64 result rounded once); the stored inputs are exactly the f32 values
the f64 computation started from.

Tensors: x, dy, y, dx; every parameter and BN buffer under its state_dict
name (before the step); grad.<param>; after.<bn>.running_{mean,var}.
Metadata: cin, planes, stride, param_names (state_dict order), buffers.
"""
import os
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_golden as mg  # noqa: E402  (helpers: header canonicalisation, write)


class Bottleneck(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        out = 4 * planes
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        if stride != 1 or cin != out:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + self.shortcut(x))


def case(name, n, cin, planes, stride, hw):
    rng = mg.rng_for(name)
    torch.manual_seed(zlib.crc32(name.encode()))
    block = Bottleneck(cin, planes, stride)
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.from_numpy(mg.uniform(rng, (c,), 0.5, 1.5)))
                m.bias.copy_(torch.from_numpy(mg.normal(rng, (c,), 0.1)))
                m.running_mean.copy_(torch.from_numpy(mg.normal(rng, (c,), 0.1)))
                m.running_var.copy_(torch.from_numpy(mg.uniform(rng, (c,), 0.5, 1.5)))
        # Round every parameter to f32 first, so the stored f32 values are exact.
        for t in list(block.parameters()) + list(block.buffers()):
            if t.is_floating_point():
                t.copy_(t.to(torch.float32))
    state = {k: v.detach().clone().to(torch.float32) for k, v in block.state_dict().items()
             if not k.endswith("num_batches_tracked")}
    block = block.double().train()
    x = mg.f64(mg.normal(rng, (n, cin, hw, hw)))
    y = block(x)
    dy = mg.f64(mg.normal(rng, tuple(y.shape)), grad=False)
    params = dict(block.named_parameters())
    grads = torch.autograd.grad((y * dy).sum(), [x] + list(params.values()))
    tensors = {"x": mg.f32(x), "dy": mg.f32(dy), "y": mg.f32(y), "dx": mg.f32(grads[0])}
    for k, v in state.items():
        tensors[k] = v
    for (k, _), g in zip(params.items(), grads[1:]):
        tensors[f"grad.{k}"] = mg.f32(g)
    buffers = [k for k in block.state_dict() if k.endswith("running_mean") or k.endswith("running_var")]
    after = block.state_dict()
    for k in buffers:
        tensors[f"after.{k}"] = mg.f32(after[k])

    # Independent check of the forward with the functional ops, in f64.
    def bn(h, prefix):
        return F.batch_norm(h, None, None, state[f"{prefix}.weight"].double(), state[f"{prefix}.bias"].double(),
                            training=True, eps=1e-5)
    with torch.no_grad():
        xd = x.detach()
        w = {k: v.double() for k, v in state.items()}
        h = F.relu(bn(F.conv2d(xd, w["conv1.weight"]), "bn1"))
        h = F.relu(bn(F.conv2d(h, w["conv2.weight"], stride=stride, padding=1), "bn2"))
        h = bn(F.conv2d(h, w["conv3.weight"]), "bn3")
        r = bn(F.conv2d(xd, w["shortcut.0.weight"], stride=stride), "shortcut.1") if "shortcut.0.weight" in w else xd
        ref = F.relu(h + r)
        assert torch.allclose(ref, y.detach(), rtol=0, atol=1e-12), "functional forward disagrees"

    meta = mg.base_meta("bottleneck", name)
    meta.update({
        "cin": cin, "planes": planes, "stride": stride, "hw": hw, "batch": n,
        "mode": "train (batch statistics, momentum 0.1, unbiased running_var)",
        "param_names": ",".join(params.keys()),
        "buffers": ",".join(buffers),
        "shortcut": "projection" if "shortcut.0.weight" in state else "identity",
    })
    mg.write(name, tensors, meta)


def main():
    case("bottleneck_proj", n=4, cin=6, planes=3, stride=2, hw=7)
    case("bottleneck_identity", n=3, cin=12, planes=3, stride=1, hw=5)
    for name, shapes in mg.EXPECTED.items():
        got = load_file(os.path.join(mg.OUT_DIR, f"{name}.safetensors"))
        assert set(got) == set(shapes), name
        for k, v in got.items():
            assert tuple(v.shape) == shapes[k] and v.dtype == torch.float32, (name, k)
            assert torch.isfinite(v.double()).all(), (name, k)
    print(f"wrote and re-loaded {len(mg.EXPECTED)} files")


if __name__ == "__main__":
    sys.exit(main())
