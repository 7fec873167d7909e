#!/usr/bin/env python3
"""Golden fixtures for ONE full Deep InfoMax training step, made with PyTorch.

Run from the repository root:

    /root/.venvs/dim-anchors/bin/python tests/golden/make_dim_step.py

(the venv: scripts/torch/setup.sh).

Writes tests/golden/dim_step_{jsd,nce,dv}.safetensors. The three files share the
model init and the input. Only the estimator (the loss) differs.

Also writes tests/golden/dim_step_global_{jsd,nce}.safetensors: the same step with global
DIM enabled (alpha 0.5, beta 1.0), see DIMGlobal below.

The model is the conv28 DIM of scripts/torch/dim_ref.py (its Encoder, MIHead and DIM:
module names, construction order and init), at small widths so that the fixture stays
small:

    encoder.conv1  Conv2d(1, C1, 5, s2, p2, no bias)  encoder.bn1 BN2d(C1)  ReLU   -> C1 x 14 x 14
    encoder.conv2  Conv2d(C1, C2, 5, s2, p2, no bias) encoder.bn2 BN2d(C2)  ReLU   -> C2 x 7 x 7 (local map)
    flatten channel-major (c*49 + h*7 + w)
    encoder.fc     Linear(C2*49, F, no bias)          encoder.bn3 BN1d(F)   ReLU
    encoder.out    Linear(F, Y) with bias                                         -> Y
    local_head     MIHead(C2, D) on the (B*49, C2) rows, row = j*49 + p, p = h*7 + w
    global_head    MIHead(Y, D) on Y
    MIHead: ln( l2(relu(bn(l1(x)))) + shortcut(x) ), l1 no bias, l2 bias, shortcut no bias,
            shortcut init U(-0.01, 0.01) then weight[c, c] = 1 for c < n_in if D >= n_in.
    S[i, j, p] = <g_i, l_{j,p}>   (B x B x 49, positives i == j)

The fixture uses C1 = 8, C2 = 16, F = 32, Y = 64, D = 32, B = 4 (the reference has
64, 128, 1024, 64, 512, 64).

Global DIM (the dim_step_global_* files): DIMGlobal is DIM plus a submodule global_dim,
created AFTER the base DIM (so after encoder, local_head, global_head, under the same seed:
the base parameters are bit-identical to the dim_step_* files and global_dim's come last):

    global_dim.fc   Linear(C2*49, F, no bias)  global_dim.bn3 BN1d(F)  ReLU   (fresh copy of the
                    encoder's layers above the local map), input = the local map flattened
                    channel-major (c*49 + h*7 + w), the same tensor the local head sees
    global_dim.out  Linear(F, D) with bias                                     -> M_j (B x D)
    global_dim.y    Linear(Y, D) with bias, on Y                               -> E_i (B x D)
    G[i, j] = <E_i, M_j>   (B x B, positives i == j)
    loss = beta * L_local(S) + alpha * L_global(G), L_global = the same estimator with P = 1.

Recipe: torch.manual_seed(SEED), build DIM in float32 (PyTorch default init plus the
shortcut init), then model.double(). x is B x 1 x 28 x 28 uniform in [-1, 1] from a seeded
numpy generator, drawn as float32 and widened exactly. Train mode: BN normalises with
batch statistics and updates its running statistics (momentum 0.1, unbiased variance).
Forward, loss, loss.backward() and one torch.optim.Adam step (lr 1e-4, betas (0.5, 0.999),
eps 1e-8) all run in float64. Every stored tensor is float32, so the stored parameters
before the step are exactly the values the f64 computation started from.
"""
import json
import math
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts", "torch"))
import dim_ref as ref  # noqa: E402  (the in-repo PyTorch reference model)

SEED = 20261128
OUT_DIR = os.path.dirname(os.path.abspath(__file__))

WIDTHS = {"conv1_out": 8, "conv2_out": 16, "fc_out": 32, "y_dim": 64, "mi_units": 32}
BATCH = 4
LR, BETAS, EPS = 1e-4, (0.5, 0.999), 1e-8
LOCAL_SIDE = 7
N_LOCAL = LOCAL_SIDE * LOCAL_SIDE
ALPHA, BETA = 0.5, 1.0  # global DIM weight, local DIM weight (dim_step_global_* only)
GLOBAL_ESTIMATORS = ("jsd", "nce")

torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)


# ----------------------------------------------------------------------------- model
# scripts/torch/dim_ref.py's classes at the fixture widths. Encoder, MIHead and DIM keep
# the signatures make_concat_step.py and make_dim_variants.py call them with.


def Encoder(conv1_out=64, conv2_out=128, fc_out=1024, y_dim=64):
    return ref.Encoder(ref.conv28(conv1_out, conv2_out, fc_out, y_dim))


MIHead = ref.MIHead


class DIM(ref.DIM):
    def __init__(self, mi_units=512, conv1_out=64, conv2_out=128, fc_out=1024, y_dim=64):
        super().__init__(ref.conv28(conv1_out, conv2_out, fc_out, y_dim), mi_units)


class GlobalDim(nn.Module):
    """Global DIM: a fresh copy of the encoder's layers above the local map (fc, bn3, ReLU),
    then out (-> D); y maps Y to D. Scores G[i, j] = <y(Y_i), out(tower(local map j))>."""

    def __init__(self, local_len, fc_out, y_dim, d):
        super().__init__()
        self.fc = nn.Linear(local_len, fc_out, bias=False)
        self.bn3 = nn.BatchNorm1d(fc_out)
        self.out = nn.Linear(fc_out, d)
        self.y = nn.Linear(y_dim, d)

    def forward(self, c, y):
        m = self.out(F.relu(self.bn3(self.fc(c.flatten(1)))))  # (B, D), flatten = c*49 + h*7 + w
        e = self.y(y)  # (B, D)
        return e @ m.t()  # G[i, j]


class DIMGlobal(DIM):
    """DIM plus global_dim. global_dim is built after the base DIM, so under the same seed the
    base parameters are identical to DIM's and global_dim's draw from the RNG stream after them."""

    def __init__(self, mi_units=512, conv1_out=64, conv2_out=128, fc_out=1024, y_dim=64):
        super().__init__(mi_units, conv1_out, conv2_out, fc_out, y_dim)
        self.global_dim = GlobalDim(conv2_out * N_LOCAL, fc_out, y_dim, mi_units)

    def scores_y_global(self, x):
        c, _, y = self.encoder(x)
        b, ch = x.shape[0], c.shape[1]
        rows = c.permute(0, 2, 3, 1).reshape(b * N_LOCAL, ch)  # as DIM.scores_and_y
        l = self.local_head(rows)
        g = self.global_head(y)
        s = (g @ l.t()).view(b, b, N_LOCAL)
        return s, y, self.global_dim(c, y)  # the same c and y feed both heads


# ----------------------------------------------------------------------------- losses (spec form)

split, jsd_loss, nce_loss, dv_loss, LOSSES = ref.split, ref.jsd_loss, ref.nce_loss, ref.dv_loss, ref.LOSSES
FORMULAS = {
    "jsd": "mean_{i!=j,p} softplus(S[i,j,p]) + mean_{i,p} softplus(-S[i,i,p]) - 2 ln 2",
    "nce": "mean_{i,p} [ logaddexp(S[i,i,p], LSE_{j!=i,p'} S[i,j,p']) - S[i,i,p] ]",
    "dv": "log sum_{i!=j,p} exp(S[i,j,p]) - log(B(B-1)*49) - mean_{i,p} S[i,i,p]",
}
GLOBAL_FORMULAS = {
    "jsd": "mean_{i!=j} softplus(G[i,j]) + mean_i softplus(-G[i,i]) - 2 ln 2",
    "nce": "mean_i [ logaddexp(G[i,i], LSE_{j!=i} G[i,j]) - G[i,i] ]",
}


def global_loss(estimator, g):
    """The local estimator with P = 1 on the B x B global scores."""
    return LOSSES[estimator](g.unsqueeze(-1))


# ----------------------------------------------------------------------------- naive numpy check


def softplus_np(v):
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def lse_np(vals):
    m = max(vals)
    return m + math.log(sum(math.exp(v - m) for v in vals))


def naive_loss(name, s):
    """Loop over (i, j, p) in plain Python floats (f64), independent of torch."""
    s = np.asarray(s, dtype=np.float64)
    b, _, p = s.shape
    pos = [(i, q) for i in range(b) for q in range(p)]
    neg = [(i, j, q) for i in range(b) for j in range(b) if i != j for q in range(p)]
    if name == "jsd":
        return (sum(softplus_np(s[i, j, q]) for i, j, q in neg) / len(neg)
                + sum(softplus_np(-s[i, i, q]) for i, q in pos) / len(pos) - 2.0 * math.log(2.0))
    if name == "nce":
        tot = 0.0
        for i, q in pos:
            lse_neg = lse_np([s[i, j, r] for j in range(b) if j != i for r in range(p)])
            tot += lse_np([s[i, i, q], lse_neg]) - s[i, i, q]
        return tot / len(pos)
    if name == "dv":
        return (lse_np([s[i, j, q] for i, j, q in neg]) - math.log(len(neg))
                - sum(s[i, i, q] for i, q in pos) / len(pos))
    raise ValueError(name)


def naive_global_loss(name, g):
    """Loop over (i, j) of the B x B global scores in plain Python floats, written from the
    global formulas directly (does not go through naive_loss or torch)."""
    g = np.asarray(g, dtype=np.float64)
    b = g.shape[0]
    if name == "jsd":
        neg = pos = 0.0
        for i in range(b):
            for j in range(b):
                if i == j:
                    pos += softplus_np(-g[i, i])
                else:
                    neg += softplus_np(g[i, j])
        return neg / (b * (b - 1)) + pos / b - 2.0 * math.log(2.0)
    if name == "nce":
        tot = 0.0
        for i in range(b):
            lse_neg = lse_np([g[i, j] for j in range(b) if j != i])
            tot += lse_np([g[i, i], lse_neg]) - g[i, i]
        return tot / b
    raise ValueError(name)


# ----------------------------------------------------------------------------- io (as make_golden.py)


def canonicalize_header(path):
    """Rewrite the safetensors JSON header with sorted keys so reruns are byte-identical."""
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def make_input():
    rng = np.random.default_rng([SEED, zlib.crc32(b"dim_step")])
    return rng.uniform(-1.0, 1.0, size=(BATCH, 1, 28, 28)).astype(np.float32)


def run(estimator, x_np, with_global=False):
    """One step. with_global: DIMGlobal and loss = BETA * local + ALPHA * global."""
    if with_global:
        torch.manual_seed(SEED)
        base_sd = {k: v.clone() for k, v in DIM(**WIDTHS).state_dict().items()}
    torch.manual_seed(SEED)
    model = DIMGlobal(**WIDTHS) if with_global else DIM(**WIDTHS)
    if with_global:
        # the base model's init is bit-identical to DIM's under the same seed
        sd = model.state_dict()
        assert list(sd)[:len(base_sd)] == list(base_sd), "global_dim must come last"
        assert all(k.startswith("global_dim.") for k in list(sd)[len(base_sd):])
        for k, v in base_sd.items():
            assert torch.equal(sd[k], v), k
    model.double()
    model.train()
    names = [n for n, _ in model.named_parameters()]
    assert names == [k for k in model.state_dict() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    bns = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    t = {"x": torch.from_numpy(x_np)}
    for n, p in model.named_parameters():
        t[n] = f32(p)
        assert torch.equal(t[n].to(torch.float64), p.detach()), n  # init is f32-exact
    for n in bns:
        m = model.get_submodule(n)
        t[f"{n}.running_mean"], t[f"{n}.running_var"] = f32(m.running_mean), f32(m.running_var)

    bn_in, bn_out = {}, {}
    for n in bns:
        model.get_submodule(n).register_forward_hook(lambda m, inp, out, n=n: bn_in.__setitem__(n, inp[0].detach()))
        model.get_submodule(n).register_forward_hook(lambda m, inp, out, n=n: bn_out.__setitem__(n, out.detach()))
    emb = {}
    if with_global:
        for n in ("global_dim.out", "global_dim.y"):
            model.get_submodule(n).register_forward_hook(lambda m, inp, out, n=n: emb.__setitem__(n, out.detach()))
    x = torch.from_numpy(x_np).to(torch.float64)
    opt = torch.optim.Adam(model.parameters(), lr=LR, betas=BETAS, eps=EPS)
    opt.zero_grad(set_to_none=True)
    if with_global:
        s, y, gs = model.scores_y_global(x)
        local_loss = LOSSES[estimator](s)
        glob_loss = global_loss(estimator, gs)
        loss = BETA * local_loss + ALPHA * glob_loss
        # the two parts' gradients separately, to check that backward sums them
        params = list(model.parameters())
        g_loc = torch.autograd.grad(local_loss, params, retain_graph=True, allow_unused=True)
        g_glob = torch.autograd.grad(glob_loss, params, retain_graph=True, allow_unused=True)
    else:
        s, y = model.scores_and_y(x)
        loss = LOSSES[estimator](s)
    loss.backward()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
    opt.step()

    for n, p in model.named_parameters():
        t[f"grad.{n}"] = f32(p.grad)
    for n, p in model.named_parameters():
        t[f"after.{n}"] = f32(p)
    for n in bns:
        m = model.get_submodule(n)
        t[f"after.{n}.running_mean"], t[f"after.{n}.running_var"] = f32(m.running_mean), f32(m.running_var)
    pos, neg = split(s.detach())
    t.update({"loss": f32(loss).reshape(1), "scores": f32(s), "y": f32(y),
              "pos_mean": f32(pos.mean()).reshape(1), "neg_mean": f32(neg.mean()).reshape(1)})
    if with_global:
        t.update({"global_scores": f32(gs), "global_loss": f32(glob_loss).reshape(1),
                  "local_loss": f32(local_loss).reshape(1)})

    # ---- checks
    lv = loss.item()
    tag = f"global_{estimator}" if with_global else estimator
    # the loss on the f64 scores, and the torch loss on the STORED f32 scores, against a naive loop
    s64 = s.detach().numpy()
    s_st = t["scores"].to(torch.float64)
    local_ref = local_loss.item() if with_global else lv
    for label, arr, ref in [("f64 scores", s64, local_ref), ("stored scores", s_st.numpy(), LOSSES[estimator](s_st).item())]:
        nv = naive_loss(estimator, arr)
        assert abs(nv - ref) <= 1e-10, (estimator, label, nv, ref)
        print(f"  {tag}: naive loop on {label}: {nv:.17g} vs torch {ref:.17g} (|diff| {abs(nv - ref):.1e})")
    if with_global:
        gv = glob_loss.item()
        g64 = gs.detach().numpy()
        # G itself, as a naive (i, j, d) loop over the two embeddings
        e_np, m_np = emb["global_dim.y"].numpy(), emb["global_dim.out"].numpy()
        b, d = e_np.shape
        g_naive = np.array([[sum(e_np[i, k] * m_np[j, k] for k in range(d)) for j in range(b)] for i in range(b)])
        assert np.abs(g_naive - g64).max() <= 1e-12 * max(1.0, np.abs(g64).max()), "global scores"
        g_st = t["global_scores"].to(torch.float64)
        for label, arr, ref in [("f64 global scores", g64, gv),
                                ("stored global scores", g_st.numpy(), global_loss(estimator, g_st).item())]:
            nv = naive_global_loss(estimator, arr)
            assert abs(nv - ref) <= 1e-12, (estimator, label, nv, ref)
            print(f"  {tag}: naive (i, j) loop on {label}: {nv:.17g} vs torch {ref:.17g} (|diff| {abs(nv - ref):.1e})")
        assert abs(lv - (BETA * local_ref + ALPHA * gv)) <= 1e-15, "total loss"
        # loss.backward() gives BETA * grad(local) + ALPHA * grad(global); the encoder gets both
        zero = torch.zeros(())
        for (n, p), gl, gg in zip(model.named_parameters(), g_loc, g_glob):
            gl = zero if gl is None else gl
            gg = zero if gg is None else gg
            want = BETA * gl + ALPHA * gg
            assert torch.allclose(grads[n], want, rtol=1e-12, atol=1e-15), n
            if n.startswith("encoder."):
                assert gg.abs().max() > 0 and gl.abs().max() > 0, n
            if n.startswith("global_dim."):
                assert gl.abs().max() == 0, n  # unused by the local loss
            if n.startswith(("local_head.", "global_head.")):
                assert gg.abs().max() == 0, n  # unused by the global loss
        print(f"  {tag}: local_loss {local_ref:.10g}, global_loss {gv:.10g}, total {lv:.10g}; "
              f"max |G| {np.abs(g64).max():.4g}, G diag {np.diag(g64).round(4).tolist()}")
    # Adam step 1 in closed form: m_hat = g, v_hat = g^2 -> p -= lr * g / (|g| / sqrt(bc2) * sqrt(bc2) + eps)
    bc1, bc2 = 1 - BETAS[0], 1 - BETAS[1]
    worst = 0.0
    for n, p in model.named_parameters():
        g = grads[n]
        m, v = (1 - BETAS[0]) * g, (1 - BETAS[1]) * g * g
        want = before[n] - (LR / bc1) * m / (v.sqrt() / math.sqrt(bc2) + EPS)
        worst = max(worst, (want - p.detach()).abs().max().item())
    assert worst < 1e-15, worst
    # BN running statistics: 0.9 * old + 0.1 * batch stat (unbiased var), from the captured BN inputs
    for n in bns:
        m, h = model.get_submodule(n), bn_in[n]
        h = h.transpose(0, 1).reshape(h.shape[1], -1)  # (C, N) or (C, N*H*W)
        assert torch.allclose(m.running_mean, 0.1 * h.mean(1), rtol=0, atol=1e-15), n
        assert torch.allclose(m.running_var, 0.9 + 0.1 * h.var(1, unbiased=True), rtol=0, atol=1e-14), n
    pre_relu_min = {n: o.abs().min().item() for n, o in bn_out.items()}
    print(f"  {tag}: min |BN output| (pre-ReLU): " + ", ".join(f"{n} {v:.2e}" for n, v in pre_relu_min.items()))
    gmin = min(g.abs().min().item() for g in grads.values())
    small = {n: int((g.abs() < 1e-6).sum()) for n, g in grads.items() if (g.abs() < 1e-6).any()}
    print(f"  {tag}: loss {lv:.10g}, pos_mean {pos.mean().item():.6g}, neg_mean {neg.mean().item():.6g}, "
          f"adam closed-form max err {worst:.1e}, min |grad| {gmin:.3e}, |grad|<1e-6: {small or 'none'}")
    return t, names, lv


def main():
    x_np = make_input()
    expected = {}
    jobs = [(e, False) for e in LOSSES] + [(e, True) for e in GLOBAL_ESTIMATORS]
    for estimator, with_global in jobs:
        t, names, _ = run(estimator, x_np, with_global)
        meta = {
            "estimator": estimator,
            "loss_formula": FORMULAS[estimator],
            **{k: str(v) for k, v in WIDTHS.items()},
            "batch": str(BATCH),
            "n_local": str(N_LOCAL),
            "fc_in": str(WIDTHS["conv2_out"] * N_LOCAL),
            "lr": repr(LR),
            "betas": f"{BETAS[0]!r},{BETAS[1]!r}",
            "eps": repr(EPS),
            "adam": "torch.optim.Adam, step 1, weight_decay 0, amsgrad false, zero initial moments",
            "seed": str(SEED),
            "input": "x uniform [-1,1] float32, numpy default_rng([seed, crc32('dim_step')])",
            "init": "torch.manual_seed(seed); DIM(...) float32 default init + shortcut U(-0.01,0.01), "
                    "weight[c,c]=1 for c<n_in only if mi_units >= n_in; then model.double()",
            "shortcut_identity": "; ".join(
                f"{head} {'yes' if WIDTHS['mi_units'] >= n_in else 'NO'} (n_in {n_in}, mi_units {WIDTHS['mi_units']})"
                for head, n_in in [("local_head", WIDTHS["conv2_out"]), ("global_head", WIDTHS["y_dim"])]),
            "softplus": "F.softplus (beta 1, threshold 20: returns v itself for v > 20)",
            "bn": "train mode, eps 1e-05, momentum 0.1, running_var updated with unbiased batch variance",
            "ln_eps": "1e-05",
            "local_rows": "row = j*49 + p, p = h*7 + w; fc input = c*49 + h*7 + w",
            "scores": "S[i,j,p] = <g_i, l_{j,p}>, positives i == j",
            "compute_dtype": "float64",
            "stored_dtype": "float32",
            "torch_version": torch.__version__,
            "param_names": ",".join(names),
        }
        stem = f"dim_step_{estimator}"
        if with_global:
            stem = f"dim_step_global_{estimator}"
            meta.update({
                "alpha": repr(ALPHA),
                "beta": repr(BETA),
                "loss_formula": f"beta * local_loss + alpha * global_loss; local_loss = {FORMULAS[estimator]}",
                "local_loss_formula": FORMULAS[estimator],
                "global_loss_formula": GLOBAL_FORMULAS[estimator],
                "global_scores": "G[i,j] = <global_dim.y(y_i), global_dim.out(relu(global_dim.bn3("
                                 "global_dim.fc(flatten(local map_j)))))>, B x B, positives i == j",
                "global_dim": "fc Linear(conv2_out*49, fc_out, no bias) -> bn3 BN1d(fc_out) train -> ReLU -> "
                              "out Linear(fc_out, mi_units, bias); y Linear(y_dim, mi_units, bias) on y; input = "
                              "local map (conv2 block after BN+ReLU) flattened c*49 + h*7 + w",
                "init": "torch.manual_seed(seed); DIM(...) float32 default init + shortcut U(-0.01,0.01), "
                        "weight[c,c]=1 for c<n_in only if mi_units >= n_in; then global_dim (fc, bn3, out, y) "
                        "default init from the same RNG stream; then model.double(). Base parameters are "
                        "bit-identical to dim_step_<estimator>'s",
            })
        path = os.path.join(OUT_DIR, f"{stem}.safetensors")
        save_file(t, path, metadata=meta)
        canonicalize_header(path)
        os.chmod(path, 0o644)
        expected[path] = {k: tuple(v.shape) for k, v in t.items()}
        print(f"wrote {path} ({len(t)} tensors, {os.path.getsize(path)} bytes)")

    for path, shapes in expected.items():
        got = load_file(path)
        assert set(got) == set(shapes), path
        for k, v in got.items():
            assert tuple(v.shape) == shapes[k] and v.dtype == torch.float32, (path, k)
            assert torch.isfinite(v).all(), (path, k)
    print(f"re-loaded {len(expected)} files")


if __name__ == "__main__":
    sys.exit(main())
