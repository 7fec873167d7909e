#!/usr/bin/env python3
"""Golden fixtures for one DIM step with the concat-and-convolve local head (docs/method.md §4.2).

Run from the repository root:

    /root/.venvs/dim-anchors/bin/python tests/golden/make_concat_step.py

Writes tests/golden/concat_step_{jsd,nce,dv}.safetensors.

The encoder is make_dim_step.py's (same class, widths and input recipe). The head is
written the direct way, not with infomax's split of the first layer: Y is broadcast over
the 7x7 grid and concatenated with the local map along channels, then

    local_head.concat.l1  Conv2d(C2 + Y, H, 1) -> ReLU
    local_head.concat.l2  Conv2d(H, H, 1)      -> ReLU
    local_head.concat.l3  Conv2d(H, 1, 1)                  -> one score per location

Positives: image i's local map with its own Y. Negatives: the local map of image perm[i]
with image i's Y, where perm is the cyclic permutation infomax draws for (seed, step):
SplitMix64 `Rng::derive(seed ^ 0x434F4E434154, step)` then Sattolo's algorithm, ported
below (so the test also pins the RNG stream).

Losses over the pairs (T+ = positive score, T- = negative score, means over B*49 pairs):
    jsd: mean softplus(-T+) + mean softplus(T-) - 2 ln 2
    nce: mean [ logaddexp(T+, T-) - T+ ]
    dv:  log mean exp(T-) - mean T+
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_dim_step as base  # noqa: E402

SEED_TORCH = 20261129
DIM_SEED, STEP = 7, 3
HIDDEN = 24
PERM_STREAM = 0x434F_4E43_4154
MASK = (1 << 64) - 1
GOLDEN = 0x9E37_79B9_7F4A_7C15
OUT_DIR = os.path.dirname(os.path.abspath(__file__))


def mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58_476D_1CE4_E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D0_49BB_1331_11EB) & MASK
    return z ^ (z >> 31)


class Rng:
    def __init__(self, seed):
        self.state = seed & MASK

    @classmethod
    def derive(cls, seed, stream):
        r = cls(seed ^ ((stream * 0xD1B5_4A32_D192_ED03) & MASK))
        r.next_u64()
        return r

    def next_u64(self):
        self.state = (self.state + GOLDEN) & MASK
        return mix64(self.state)

    def below(self, n):
        m = self.next_u64() * n
        if (m & MASK) < n:
            threshold = ((-n) & MASK) % n
            while (m & MASK) < threshold:
                m = self.next_u64() * n
        return m >> 64


def draw_perm(n, seed, step):
    rng = Rng.derive(seed ^ PERM_STREAM, step)
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.below(i)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


class ConcatHead(nn.Module):
    def __init__(self, c, y, h):
        super().__init__()
        self.l1 = nn.Conv2d(c + y, h, 1)
        self.l2 = nn.Conv2d(h, h, 1)
        self.l3 = nn.Conv2d(h, 1, 1)

    def forward(self, z):
        return self.l3(F.relu(self.l2(F.relu(self.l1(z)))))


class LocalHead(nn.Module):
    def __init__(self, c, y, h):
        super().__init__()
        self.concat = ConcatHead(c, y, h)


class DIMConcat(nn.Module):
    def __init__(self, hidden, conv1_out, conv2_out, fc_out, y_dim):
        super().__init__()
        self.encoder = base.Encoder(conv1_out, conv2_out, fc_out, y_dim)
        self.local_head = LocalHead(conv2_out, y_dim, hidden)

    def pair_scores(self, x, perm):
        c, _, y = self.encoder(x)
        b = x.shape[0]
        ymap = y[:, :, None, None].expand(b, y.shape[1], c.shape[2], c.shape[3])
        pos = self.local_head.concat(torch.cat([c, ymap], 1)).reshape(b * base.N_LOCAL)  # row i*49 + p
        neg = self.local_head.concat(torch.cat([c[perm], ymap], 1)).reshape(b * base.N_LOCAL)
        return pos, neg, y


def loss_of(est, pos, neg):
    if est == "jsd":
        return F.softplus(-pos).mean() + F.softplus(neg).mean() - 2.0 * math.log(2.0)
    if est == "nce":
        return (torch.logaddexp(pos, neg) - pos).mean()
    if est == "dv":
        return torch.logsumexp(neg, 0) - math.log(neg.numel()) - pos.mean()
    raise ValueError(est)


def naive_loss(est, pos, neg):
    """Plain Python floats, independent of torch."""
    sp = base.softplus_np
    n = len(pos)
    if est == "jsd":
        return sum(sp(-v) for v in pos) / n + sum(sp(v) for v in neg) / n - 2.0 * math.log(2.0)
    if est == "nce":
        return sum(base.lse_np([a, b]) - a for a, b in zip(pos, neg)) / n
    if est == "dv":
        return base.lse_np(list(neg)) - math.log(n) - sum(pos) / n
    raise ValueError(est)


def run(est, x_np):
    w = base.WIDTHS
    torch.manual_seed(SEED_TORCH)
    model = DIMConcat(HIDDEN, w["conv1_out"], w["conv2_out"], w["fc_out"], w["y_dim"]).double().train()
    perm = draw_perm(base.BATCH, DIM_SEED, STEP)
    assert all(p != i for i, p in enumerate(perm)), perm
    t = {"x": torch.from_numpy(x_np), "perm": torch.tensor(perm, dtype=torch.float32)}
    names = [n for n, _ in model.named_parameters()]
    bns = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for n, p in model.named_parameters():
        with torch.no_grad():
            p.copy_(p.to(torch.float32).to(torch.float64))  # f32-exact start
        t[n] = base.f32(p)
    for n in bns:
        m = model.get_submodule(n)
        t[f"{n}.running_mean"], t[f"{n}.running_var"] = base.f32(m.running_mean), base.f32(m.running_var)
    x = torch.from_numpy(x_np).to(torch.float64)
    pos, neg, y = model.pair_scores(x, perm)
    loss = loss_of(est, pos, neg)
    loss.backward()
    for n, p in model.named_parameters():
        t[f"grad.{n}"] = base.f32(p.grad)
    t.update({"loss": base.f32(loss).reshape(1), "pos": base.f32(pos), "neg": base.f32(neg), "y": base.f32(y)})
    nv = naive_loss(est, pos.detach().tolist(), neg.detach().tolist())
    assert abs(nv - loss.item()) <= 1e-12, (est, nv, loss.item())
    print(f"  concat {est}: loss {loss.item():.10f}, naive {nv:.10f}, perm {perm}")
    meta = {k: str(v) for k, v in w.items()}
    meta.update({"batch": str(base.BATCH), "hidden": str(HIDDEN), "seed": str(DIM_SEED), "step": str(STEP),
                 "estimator": est, "param_names": ",".join(names),
                 "torch": torch.__version__, "script": "tests/golden/make_concat_step.py"})
    path = os.path.join(OUT_DIR, f"concat_step_{est}.safetensors")
    save_file({k: v.contiguous() for k, v in t.items()}, path, metadata=meta)
    base.canonicalize_header(path)


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    x_np = base.make_input()
    for est in ("jsd", "nce", "dv"):
        run(est, x_np)


if __name__ == "__main__":
    main()
