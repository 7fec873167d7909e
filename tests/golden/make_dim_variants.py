#!/usr/bin/env python3
"""Golden fixtures for one DIM step with occlusion (docs/method.md §7.2) or multiple globals (docs/method.md §7.1).

Run from the repository root:

    /root/.venvs/dim-anchors/bin/python tests/golden/make_dim_variants.py

Writes tests/golden/{occlude_step_{jsd,nce}, multi_step_{jsd,nce,dv}, multi_sample_step_nce}.safetensors.

The encoder, the MI heads, the widths and the input are make_dim_step.py's (same classes,
seed and recipe). Each variant is written the direct PyTorch way:

Occlusion (occlude_step_*): x_occ = x with, per image, the SIZE x SIZE square at (r0, c0)
set to FILL in every channel; (r0, c0) per image is drawn as infomax does for (seed, step):
SplitMix64 `Rng::derive(seed ^ 0x4F43434C5544, step)`, then per image r0 = below(H - SIZE + 1),
c0 = below(W - SIZE + 1) (ported below, so the test pins the draw). The local map comes from
the encoder on x, Y from the encoder on x_occ:
    S[i, j, p] = <global_head(Y_occ_i), local_head(local map of clean x)_{j,p}>
BN: the occluded pass normalises with its own batch statistics; the running statistics are
saved before it and restored after it, so only the clean pass updates them.
The encoder is called through torch.func.functional_call with two separate copies of its
parameters (clean pass, occluded pass), so grad_clean.* and grad_occ.* are each pass's share;
grad.* is their sum, checked against a plain loss.backward() through the shared parameters.

Multiple globals (multi_step_*): after the base DIM (encoder, local_head) come
    multi_global.conv1 Conv2d(C2, C2, 3, no padding, no bias) -> multi_global.bn1 BN2d -> ReLU
    multi_global.conv2 Conv2d(C2, C2, 1, no bias)             -> multi_global.bn2 BN2d -> ReLU
giving a 5x5xC2 map = K = 25 globals from the 7x7 local map, then
    global_head MIHead(C2, D) on the (B*25, C2) rows, row = i*25 + k, k = h*5 + w
    S[i, k, j, p] = <g_{i,k}, l_{j,p}>  (B x 25 x B x 49), positives i == j (every k, p)
and the estimators over all K (docs/method.md §3):
    jsd: mean_{i!=j,k,p} softplus(S) + mean_{i,k,p} softplus(-S[i,k,i,p]) - 2 ln 2
    nce: mean_{i,k,p} [ logaddexp(S[i,k,i,p], LSE_{j!=i,p'} S[i,k,j,p']) - S[i,k,i,p] ]
         (checked against the materialised log_softmax over [S+, all negatives of (i,k)])
    dv:  log sum_{i!=j,k,p} exp(S) - log(B(B-1)*25*49) - mean_{i,k,p} S[i,k,i,p]
multi_sample_step_nce: the same, but after the global head only one global per image is scored:
row i*25 + below(25) with `Rng::derive(seed ^ 0x474C4F42414C, step)` (K_scored = 1).
"""
import math
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch.func import functional_call

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_concat_step as cc  # noqa: E402
import make_dim_step as base  # noqa: E402

OUT_DIR = os.path.dirname(os.path.abspath(__file__))
DIM_SEED, STEP = 7, 5
SIZE, FILL = 14, 0.0
OCCLUDE_STREAM = 0x4F43_434C_5544
SAMPLE_STREAM = 0x474C_4F42_414C
SIDE, K_SIDE = base.LOCAL_SIDE, base.LOCAL_SIDE - 2
K = K_SIDE * K_SIDE


def draw_squares(n, h, w, size, seed, step):
    rng = cc.Rng.derive(seed ^ OCCLUDE_STREAM, step)
    out = []
    for _ in range(n):
        r = rng.below(h - size + 1)
        c = rng.below(w - size + 1)
        out.append((r, c))
    return out


def draw_samples(n, k, s, seed, step):
    rng = cc.Rng.derive(seed ^ SAMPLE_STREAM, step)
    return [(r // s) * k + rng.below(k) for r in range(n * s)]


def occlude(x, squares):
    xo = x.clone()
    for i, (r, c) in enumerate(squares):
        xo[i, :, r:r + SIZE, c:c + SIZE] = FILL
    return xo


# ----------------------------------------------------------------------------- losses with K globals


def split4(s):
    """s: (B, K, B, P) -> positives (B, K, P), negatives (B(B-1), K, P)."""
    b = s.shape[0]
    eye = torch.eye(b, dtype=torch.bool)
    st = s.permute(0, 2, 1, 3)  # (B_i, B_j, K, P)
    return st[eye], st[~eye]


def jsd4(s):
    pos, neg = split4(s)
    return F.softplus(neg).mean() + F.softplus(-pos).mean() - 2.0 * math.log(2.0)


def nce4(s):
    b, k, _, p = s.shape
    eye = torch.eye(b, dtype=torch.bool)
    pos = s.permute(0, 2, 1, 3)[eye]  # (B, K, P)
    neg = s.masked_fill(eye[:, None, :, None], float("-inf")).reshape(b, k, b * p)
    lse = torch.logsumexp(neg, dim=2, keepdim=True)  # (B, K, 1): shared by all p
    return (torch.logaddexp(pos, lse) - pos).mean()


def nce4_materialised(s):
    """The reference's form: per positive, log_softmax over [S+, every negative of (i, k)]."""
    b, k, _, p = s.shape
    tot, cnt = 0.0, 0
    for i in range(b):
        negs = torch.cat([s[i, :, j, :] for j in range(b) if j != i], dim=1)  # (K, (B-1)P)
        for q in range(p):
            logits = torch.cat([s[i, :, i, q:q + 1], negs], dim=1)  # (K, 1 + (B-1)P)
            tot = tot - F.log_softmax(logits, dim=1)[:, 0].sum()
            cnt += k
    return tot / cnt


def dv4(s):
    b, k, _, p = s.shape
    pos, neg = split4(s)
    return torch.logsumexp(neg.reshape(-1), dim=0) - math.log(b * (b - 1) * k * p) - pos.mean()


LOSSES4 = {"jsd": jsd4, "nce": nce4, "dv": dv4}


def naive4(name, s):
    """Plain-Python f64 loops over (i, k, j, p)."""
    s = np.asarray(s, dtype=np.float64)
    b, k, _, p = s.shape
    pos = [s[i, g, i, q] for i in range(b) for g in range(k) for q in range(p)]
    if name == "jsd":
        neg = [s[i, g, j, q] for i in range(b) for g in range(k) for j in range(b) if j != i for q in range(p)]
        return (sum(base.softplus_np(v) for v in neg) / len(neg)
                + sum(base.softplus_np(-v) for v in pos) / len(pos) - 2.0 * math.log(2.0))
    if name == "nce":
        tot = 0.0
        for i in range(b):
            for g in range(k):
                lse = base.lse_np([s[i, g, j, q] for j in range(b) if j != i for q in range(p)])
                for q in range(p):
                    tot += base.lse_np([s[i, g, i, q], lse]) - s[i, g, i, q]
        return tot / (b * k * p)
    if name == "dv":
        neg = [s[i, g, j, q] for i in range(b) for g in range(k) for j in range(b) if j != i for q in range(p)]
        return base.lse_np(neg) - math.log(len(neg)) - sum(pos) / len(pos)
    raise ValueError(name)


# ----------------------------------------------------------------------------- models


class MultiGlobal(nn.Module):
    def __init__(self, c_in, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, c):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(c))))))


class DIMMulti(nn.Module):
    def __init__(self, mi_units, conv1_out, conv2_out, fc_out, y_dim):
        super().__init__()
        self.encoder = base.Encoder(conv1_out, conv2_out, fc_out, y_dim)
        self.local_head = base.MIHead(conv2_out, mi_units)
        self.multi_global = MultiGlobal(conv2_out, conv2_out)
        self.global_head = base.MIHead(conv2_out, mi_units)

    def globals_and_locals(self, x):
        c, _, y = self.encoder(x)
        b, ch = x.shape[0], c.shape[1]
        l = self.local_head(c.permute(0, 2, 3, 1).reshape(b * base.N_LOCAL, ch))  # row j*49 + p
        m = self.multi_global(c)  # (B, C, 5, 5)
        g = self.global_head(m.permute(0, 2, 3, 1).reshape(b * K, m.shape[1]))  # row i*25 + k
        return g, l, y


def bn_names(model):
    return [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def store_start(model, t):
    for n, p in model.named_parameters():
        t[n] = base.f32(p)
        assert torch.equal(t[n].to(torch.float64), p.detach()), n
    for n in bn_names(model):
        m = model.get_submodule(n)
        t[f"{n}.running_mean"], t[f"{n}.running_var"] = base.f32(m.running_mean), base.f32(m.running_var)


def store_end(model, t):
    for n, p in model.named_parameters():
        t[f"grad.{n}"] = base.f32(torch.zeros_like(p) if p.grad is None else p.grad)  # None: unused by the loss
    for n in bn_names(model):
        m = model.get_submodule(n)
        t[f"after.{n}.running_mean"], t[f"after.{n}.running_var"] = base.f32(m.running_mean), base.f32(m.running_var)


def meta_common(names, est, script_tag):
    meta = {k: str(v) for k, v in base.WIDTHS.items()}
    meta.update({"batch": str(base.BATCH), "seed": str(DIM_SEED), "step": str(STEP), "estimator": est,
                 "param_names": ",".join(names), "variant": script_tag, "torch_version": torch.__version__,
                 "compute_dtype": "float64", "stored_dtype": "float32",
                 "script": "tests/golden/make_dim_variants.py"})
    return meta


def save(t, meta, stem, expected):
    path = os.path.join(OUT_DIR, f"{stem}.safetensors")
    save_file({k: v.contiguous() for k, v in t.items()}, path, metadata=meta)
    base.canonicalize_header(path)
    os.chmod(path, 0o644)
    expected[path] = {k: tuple(v.shape) for k, v in t.items()}
    print(f"wrote {path} ({len(t)} tensors, {os.path.getsize(path)} bytes)")


# ----------------------------------------------------------------------------- occlusion


def run_occlude(est, x_np, expected):
    torch.manual_seed(base.SEED)
    model = base.DIM(**base.WIDTHS).double().train()
    names = [n for n, _ in model.named_parameters()]
    t = {"x": torch.from_numpy(x_np)}
    store_start(model, t)
    x = torch.from_numpy(x_np).to(torch.float64)
    squares = draw_squares(base.BATCH, 28, 28, SIZE, DIM_SEED, STEP)
    xo = occlude(x, squares)
    t["x_occ"] = base.f32(xo)
    t["squares"] = torch.tensor(squares, dtype=torch.float32)
    enc = model.encoder
    enc_bns = [n for n in bn_names(enc)]
    # every BN of the model (the heads' too, for the rerun in (2)) as it was before the step
    saved = {n: (model.get_submodule(n).running_mean.clone(), model.get_submodule(n).running_var.clone())
             for n in bn_names(model)}

    def restore():
        # fresh buffer tensors (an in-place copy would bump the version of a graph input); the
        # heads have not run yet whenever this is called in (2), so only the encoder's change
        for n, (rm, rv) in saved.items():
            model.get_submodule(n).running_mean = rm.clone()
            model.get_submodule(n).running_var = rv.clone()

    def scores(c, y):
        b, ch = c.shape[0], c.shape[1]
        l = model.local_head(c.permute(0, 2, 3, 1).reshape(b * base.N_LOCAL, ch))
        g = model.global_head(y)
        return (g @ l.t()).view(b, b, base.N_LOCAL)

    # (1) Two separate copies of the encoder parameters: each pass's share of the gradient.
    p_clean = {n: p.detach().clone().requires_grad_() for n, p in enc.named_parameters()}
    p_occ = {n: p.detach().clone().requires_grad_() for n, p in enc.named_parameters()}
    _, _, y_occ = functional_call(enc, p_occ, (xo,))
    restore()
    c_clean, _, _ = functional_call(enc, p_clean, (x,))
    after_split = {n: (enc.get_submodule(n).running_mean.clone(), enc.get_submodule(n).running_var.clone())
                   for n in enc_bns}
    s_split = scores(c_clean, y_occ)
    restore()  # the heads' BN statistics too: (2) runs them again
    loss_split = base.LOSSES[est](s_split)
    def grads_of(ps):
        gs = torch.autograd.grad(loss_split, list(ps.values()), retain_graph=True, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(ps.values(), gs)]

    g_clean = grads_of(p_clean)  # zero above the local map: the clean Y is not used
    g_occ = grads_of(p_occ)
    model.zero_grad(set_to_none=True)

    # (2) The plain form: the shared parameters used twice, loss.backward().
    _, _, y2 = enc(xo)
    restore()
    c2, _, _ = enc(x)
    s = scores(c2, y2)
    loss = base.LOSSES[est](s)
    loss.backward()
    assert abs(loss.item() - loss_split.item()) <= 1e-14, (loss.item(), loss_split.item())
    for (n, p), gc, go in zip(enc.named_parameters(), g_clean, g_occ):
        assert torch.allclose(p.grad, gc + go, rtol=1e-12, atol=1e-15), n
        t[f"grad_clean.encoder.{n}"] = base.f32(gc)
        t[f"grad_occ.encoder.{n}"] = base.f32(go)
    for n in enc_bns:
        m = enc.get_submodule(n)
        assert torch.equal(m.running_mean, after_split[n][0]) and torch.equal(m.running_var, after_split[n][1])
    store_end(model, t)
    t.update({"loss": base.f32(loss).reshape(1), "scores": base.f32(s), "y": base.f32(y2)})
    pos, neg = base.split(s.detach())
    t.update({"pos_mean": base.f32(pos.mean()).reshape(1), "neg_mean": base.f32(neg.mean()).reshape(1)})
    nv = base.naive_loss(est, s.detach().numpy())
    assert abs(nv - loss.item()) <= 1e-10, (est, nv, loss.item())
    conv1 = "conv1.weight"
    share = {k: (gc.norm().item(), go.norm().item())
             for k, gc, go in zip([n for n, _ in enc.named_parameters()], g_clean, g_occ)}
    assert share[conv1][0] > 0 and share[conv1][1] > 0
    print(f"  occlude {est}: loss {loss.item():.10f} (naive {nv:.10f}), squares {squares}, "
          f"|grad conv1| clean {share[conv1][0]:.4g} occluded {share[conv1][1]:.4g}")
    meta = meta_common(names, est, "occlusion")
    meta.update({"size": str(SIZE), "fill": repr(FILL),
                 "bn": "occluded pass: batch statistics, running statistics restored after it; "
                       "clean pass: batch statistics, running statistics updated (momentum 0.1)"})
    save(t, meta, f"occlude_step_{est}", expected)


# ----------------------------------------------------------------------------- multiple globals


def run_multi(est, x_np, expected, samples=None):
    torch.manual_seed(base.SEED)
    w = base.WIDTHS
    model = DIMMulti(w["mi_units"], w["conv1_out"], w["conv2_out"], w["fc_out"], w["y_dim"]).double().train()
    names = [n for n, _ in model.named_parameters()]
    t = {"x": torch.from_numpy(x_np)}
    store_start(model, t)
    x = torch.from_numpy(x_np).to(torch.float64)
    g, l, y = model.globals_and_locals(x)
    b = base.BATCH
    if samples is None:
        ks = K
    else:
        idx = draw_samples(b, K, samples, DIM_SEED, STEP)
        t["sampled"] = torch.tensor(idx, dtype=torch.float32)
        g = g[torch.tensor(idx)]
        ks = samples
    s = (g @ l.t()).view(b, ks, b, base.N_LOCAL)
    loss = LOSSES4[est](s)
    loss.backward()
    store_end(model, t)
    pos, neg = split4(s.detach())
    t.update({"loss": base.f32(loss).reshape(1), "scores": base.f32(s.reshape(b * ks, b * base.N_LOCAL)),
              "y": base.f32(y), "pos_mean": base.f32(pos.mean()).reshape(1),
              "neg_mean": base.f32(neg.mean()).reshape(1)})
    nv = naive4(est, s.detach().numpy())
    assert abs(nv - loss.item()) <= 1e-10, (est, nv, loss.item())
    if est == "nce":
        mv = nce4_materialised(s.detach()).item()
        assert abs(mv - loss.item()) <= 1e-10, (mv, loss.item())
    for n, p in model.named_parameters():
        if n.startswith(("encoder.fc", "encoder.bn3", "encoder.out")):
            assert p.grad is None, n  # above the local map: no local-DIM gradient
        elif not n.endswith("ln.bias"):
            assert p.grad.abs().max() > 0, n
    print(f"  multi {est} (samples {samples}): loss {loss.item():.10f}, naive {nv:.10f}")
    meta = meta_common(names, est, "multiple globals")
    meta.update({"globals": str(K), "scored": str(ks), "channels": str(w["conv2_out"]),
                 "samples": "all" if samples is None else str(samples),
                 "scores": "S[(i,k),(j,p)] = <g_{i,k}, l_{j,p}>, rows i*K + k (k = h*5 + w), cols j*49 + p"})
    stem = f"multi_step_{est}" if samples is None else f"multi_sample_step_{est}"
    save(t, meta, stem, expected)


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    x_np = base.make_input()
    expected = {}
    for est in ("jsd", "nce"):
        run_occlude(est, x_np, expected)
    for est in ("jsd", "nce", "dv"):
        run_multi(est, x_np, expected)
    run_multi("nce", x_np, expected, samples=1)
    for path, shapes in expected.items():
        got = load_file(path)
        assert set(got) == set(shapes), path
        for k, v in got.items():
            assert tuple(v.shape) == shapes[k] and v.dtype == torch.float32, (path, k)
            assert torch.isfinite(v).all(), (path, k)
    print(f"re-loaded {len(expected)} files")


if __name__ == "__main__":
    sys.exit(main())
