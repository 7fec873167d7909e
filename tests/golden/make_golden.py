#!/usr/bin/env python3
"""Generate golden test fixtures for infomax's numeric kernels with PyTorch.

Run from the repository root:

    /root/.venvs/dim-anchors/bin/python tests/golden/make_golden.py

Every case writes tests/golden/<case>.safetensors. Inputs are drawn as float32
(numpy Generator seeded per case), the reference is computed by PyTorch in
float64 from exactly those float32 values, and all stored float tensors are
float32 (f64 results rounded once to f32). Backward: gradients of
sum(y * dy) w.r.t. every input and parameter, with a random upstream `dy`
(cross entropy: gradient of the mean loss, i.e. dy = 1).
"""
import json
import os
import platform
import struct
import sys
import zlib

import numpy as np
import safetensors
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

SEED = 20261128
OUT_DIR = os.path.dirname(os.path.abspath(__file__))

torch.manual_seed(SEED)
torch.use_deterministic_algorithms(True)


def rng_for(case):
    # Independent, stable stream per case (adding/reordering cases changes nothing else).
    return np.random.default_rng([SEED, zlib.crc32(case.encode())])


def normal(rng, shape, scale=1.0):
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale)).astype(np.float32)


def uniform(rng, shape, lo, hi):
    return rng.uniform(lo, hi, size=shape).astype(np.float32)


def f64(a, grad=True):
    """float32 numpy -> float64 torch leaf (exact widening)."""
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(torch.float64)
    return t.requires_grad_(grad)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def base_meta(op, case):
    return {
        "op": op,
        "case": case,
        "seed": str(SEED),
        "compute_dtype": "float64",
        "stored_dtype": "float32",
        "torch_version": torch.__version__,
        "backward": "grad of sum(y * dy)",
    }


def canonicalize_header(path):
    """Rewrite the safetensors JSON header with sorted keys so reruns are byte-identical.

    safetensors (Rust) writes __metadata__ from a HashMap, so its key order changes
    from run to run. Only the header text is rewritten (still valid safetensors:
    8-byte little-endian length, JSON padded with spaces to a multiple of 8, then
    the unchanged data buffer; data_offsets are relative to the buffer).
    """
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


EXPECTED = {}  # case -> {name: shape}


def write(case, tensors, meta):
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in meta.items()}
    path = os.path.join(OUT_DIR, f"{case}.safetensors")
    save_file(tensors, path, metadata=meta)
    canonicalize_header(path)
    os.chmod(path, 0o644)
    EXPECTED[case] = {k: tuple(v.shape) for k, v in tensors.items()}
    desc = ", ".join(f"{k}{list(v.shape)}" for k, v in tensors.items())
    print(f"{case}: {desc}")


def backward(y, inputs, dy64):
    grads = torch.autograd.grad((y * dy64).sum(), inputs)
    return grads


# ---------------------------------------------------------------- conv2d
def conv2d_case(case, x_shape, w_shape, bias, stride, padding):
    rng = rng_for(case)
    x_np = normal(rng, x_shape)
    w_np = normal(rng, w_shape, 0.5)
    b_np = normal(rng, (w_shape[0],), 0.5) if bias else None
    x, w = f64(x_np), f64(w_np)
    b = f64(b_np) if bias else None
    y = F.conv2d(x, w, b, stride=stride, padding=padding)
    dy_np = normal(rng, tuple(y.shape))
    inputs = [x, w] + ([b] if bias else [])
    grads = backward(y, inputs, f64(dy_np, False))
    t = {"x": torch.from_numpy(x_np), "w": torch.from_numpy(w_np)}
    if bias:
        t["b"] = torch.from_numpy(b_np)
    t.update({"y": f32(y), "dy": torch.from_numpy(dy_np), "dx": f32(grads[0]), "dw": f32(grads[1])})
    if bias:
        t["db"] = f32(grads[2])
    meta = base_meta("conv2d", case)
    meta.update({
        "stride": stride, "padding": padding, "dilation": 1, "groups": 1,
        "kernel_h": w_shape[2], "kernel_w": w_shape[3],
        "bias": "true" if bias else "false", "layout": "NCHW", "weight_layout": "OIHW",
    })
    write(case, t, meta)


# ---------------------------------------------------------------- linear
def linear_case(case, n, fin, fout, bias):
    rng = rng_for(case)
    x_np = normal(rng, (n, fin))
    w_np = normal(rng, (fout, fin), 0.5)
    b_np = normal(rng, (fout,), 0.5) if bias else None
    x, w = f64(x_np), f64(w_np)
    b = f64(b_np) if bias else None
    y = F.linear(x, w, b)
    dy_np = normal(rng, tuple(y.shape))
    inputs = [x, w] + ([b] if bias else [])
    grads = backward(y, inputs, f64(dy_np, False))
    t = {"x": torch.from_numpy(x_np), "w": torch.from_numpy(w_np)}
    if bias:
        t["b"] = torch.from_numpy(b_np)
    t.update({"y": f32(y), "dy": torch.from_numpy(dy_np), "dx": f32(grads[0]), "dw": f32(grads[1])})
    if bias:
        t["db"] = f32(grads[2])
    meta = base_meta("linear", case)
    meta.update({"bias": "true" if bias else "false", "layout": "[N,in]", "weight_layout": "[out,in]",
                 "formula": "y = x @ w.T + b" if bias else "y = x @ w.T"})
    write(case, t, meta)


# ---------------------------------------------------------------- batch norm
def batchnorm_case(case, x_shape, train, eps=1e-5, momentum=0.1):
    rng = rng_for(case)
    c = x_shape[1]
    x_np = normal(rng, x_shape, 1.5)
    x_np = (x_np + normal(rng, (1, c) + (1,) * (len(x_shape) - 2), 1.0)).astype(np.float32)  # per-channel offset
    g_np = uniform(rng, (c,), 0.5, 1.5)
    be_np = normal(rng, (c,), 0.5)
    rm_np = normal(rng, (c,), 0.5)
    rv_np = uniform(rng, (c,), 0.5, 1.5)
    x, g, be = f64(x_np), f64(g_np), f64(be_np)
    rm, rv = f64(rm_np, False).clone(), f64(rv_np, False).clone()  # updated in place in train mode
    y = F.batch_norm(x, rm, rv, g, be, training=train, momentum=momentum, eps=eps)
    dy_np = normal(rng, tuple(y.shape))
    dx, dg, dbe = backward(y, [x, g, be], f64(dy_np, False))
    t = {
        "x": torch.from_numpy(x_np), "gamma": torch.from_numpy(g_np), "beta": torch.from_numpy(be_np),
        "running_mean": torch.from_numpy(rm_np), "running_var": torch.from_numpy(rv_np),
        "y": f32(y), "dy": torch.from_numpy(dy_np), "dx": f32(dx), "dgamma": f32(dg), "dbeta": f32(dbe),
        "running_mean_out": f32(rm), "running_var_out": f32(rv),
    }
    meta = base_meta("batch_norm", case)
    meta.update({
        "mode": "train" if train else "eval", "eps": repr(eps), "momentum": repr(momentum), "affine": "true",
        "dims": len(x_shape),
        "normalize_with": "batch stats, biased variance" if train else "running stats",
        "running_update": ("r = (1-momentum)*r + momentum*batch; running_var uses the UNBIASED (n-1) "
                           "batch variance, n = " + ("N" if len(x_shape) == 2 else "N*H*W") if train else "none (outputs equal inputs)"),
    })
    meta["layout"] = "NC" if len(x_shape) == 2 else "NCHW"
    write(case, t, meta)


# ---------------------------------------------------------------- layer norm over channels
def layernorm_channels_case(case, x_shape, eps=1e-5):
    rng = rng_for(case)
    c = x_shape[1]
    x_np = normal(rng, x_shape, 1.5)
    g_np = uniform(rng, (c,), 0.5, 1.5)
    be_np = normal(rng, (c,), 0.5)
    x, g, be = f64(x_np), f64(g_np), f64(be_np)
    y = F.layer_norm(x.permute(0, 2, 3, 1), (c,), g, be, eps=eps).permute(0, 3, 1, 2)
    dy_np = normal(rng, tuple(y.shape))
    dx, dg, dbe = backward(y, [x, g, be], f64(dy_np, False))
    t = {"x": torch.from_numpy(x_np), "gamma": torch.from_numpy(g_np), "beta": torch.from_numpy(be_np),
         "y": f32(y), "dy": torch.from_numpy(dy_np), "dx": f32(dx), "dgamma": f32(dg), "dbeta": f32(dbe)}
    meta = base_meta("layer_norm_channels", case)
    meta.update({"eps": repr(eps), "normalized_dim": "C (dim 1) at each (n,h,w)", "variance": "biased", "layout": "NCHW",
                 "formula": "F.layer_norm(x.permute(0,2,3,1),(C,),gamma,beta,eps).permute(0,3,1,2)"})
    write(case, t, meta)


# ---------------------------------------------------------------- max pool
def maxpool_case(case, x_shape, k=3, s=2, p=0):
    rng = rng_for(case)
    x_np = normal(rng, x_shape)
    assert len(np.unique(x_np)) == x_np.size, "ties in maxpool input"
    x = f64(x_np)
    y = F.max_pool2d(x, k, s, p, ceil_mode=False)
    dy_np = normal(rng, tuple(y.shape))
    (dx,) = backward(y, [x], f64(dy_np, False))
    t = {"x": torch.from_numpy(x_np), "y": f32(y), "dy": torch.from_numpy(dy_np), "dx": f32(dx)}
    meta = base_meta("max_pool2d", case)
    meta.update({"kernel": k, "stride": s, "padding": p, "ceil_mode": "false", "dilation": 1,
                 "layout": "NCHW", "ties": "none (distinct continuous inputs)",
                 "note": "windows overlap (k>s): dx accumulates dy from every window whose max is there"})
    write(case, t, meta)


# ---------------------------------------------------------------- row ops
def log_softmax_case(case, shape):
    rng = rng_for(case)
    x_np = normal(rng, shape, 2.0)
    x = f64(x_np)
    y = F.log_softmax(x, dim=-1)
    dy_np = normal(rng, tuple(y.shape))
    (dx,) = backward(y, [x], f64(dy_np, False))
    t = {"x": torch.from_numpy(x_np), "y": f32(y), "dy": torch.from_numpy(dy_np), "dx": f32(dx)}
    meta = base_meta("log_softmax", case)
    meta.update({"dim": "-1 (last)", "layout": "[rows,cols]"})
    write(case, t, meta)


def logsumexp_case(case, shape):
    rng = rng_for(case)
    x_np = normal(rng, shape, 2.0)
    x = f64(x_np)
    y = torch.logsumexp(x, dim=-1)
    dy_np = normal(rng, tuple(y.shape))
    (dx,) = backward(y, [x], f64(dy_np, False))
    t = {"x": torch.from_numpy(x_np), "y": f32(y), "dy": torch.from_numpy(dy_np), "dx": f32(dx)}
    meta = base_meta("logsumexp", case)
    meta.update({"dim": "-1 (last)", "keepdim": "false", "layout": "[rows,cols]"})
    write(case, t, meta)


def cross_entropy_case(case, n, c, large):
    rng = rng_for(case)
    if large:
        x_np = uniform(rng, (n, c), -1e4, 1e4)
        # Make a few rows non-degenerate at large magnitude: the runner-up logit sits
        # within O(1) of the max, so softmax is not one-hot and a naive exp() overflows.
        for r, gap in [(0, 0.5), (1, 2.0), (2, 0.0)]:
            j = int(np.argmax(x_np[r]))
            k = (j + 1) % c
            x_np[r, k] = np.float32(x_np[r, j] - np.float32(gap))
    else:
        x_np = normal(rng, (n, c), 2.0)
    labels_np = rng.integers(0, c, size=(n,), dtype=np.int64)
    if large:
        labels_np[0] = int(np.argmin(x_np[0]))  # one row with a huge (~1e4) loss term
    x = f64(x_np)
    labels = torch.from_numpy(labels_np)
    y = F.cross_entropy(x, labels, reduction="mean")
    (dx,) = torch.autograd.grad(y, [x])
    t = {"x": torch.from_numpy(x_np), "labels": labels, "y": f32(y).reshape(()), "dx": f32(dx)}
    meta = base_meta("cross_entropy", case)
    meta.update({"backward": "grad of the mean loss y (dy = 1)", "reduction": "mean", "y_shape": "[] (0-d scalar)", "labels_dtype": "int64",
                 "dy": "1 (dx is the gradient of the mean loss; no dy tensor stored)",
                 "layout": "[N,C] logits", "label_smoothing": "0", "large_logits": "true" if large else "false"})
    write(case, t, meta)


def softplus_case(case, n):
    rng = rng_for(case)
    x_np = uniform(rng, (n,), -15.0, 15.0)
    x = f64(x_np)
    y = F.softplus(x, beta=1.0, threshold=20.0)
    dy_np = normal(rng, tuple(y.shape))
    (dx,) = backward(y, [x], f64(dy_np, False))
    t = {"x": torch.from_numpy(x_np), "y": f32(y), "dy": torch.from_numpy(dy_np), "dx": f32(dx)}
    meta = base_meta("softplus", case)
    meta.update({"beta": "1", "threshold": "20", "input_range": "[-15, 15] (threshold never triggers; "
                 "y == log1p(exp(x)) exactly in f64)", "layout": "[n]"})
    write(case, t, meta)


def sigmoid_case(case, n):
    rng = rng_for(case)
    x_np = uniform(rng, (n,), -8.0, 8.0)
    x = f64(x_np)
    y = torch.sigmoid(x)
    dy_np = normal(rng, tuple(y.shape))
    (dx,) = backward(y, [x], f64(dy_np, False))
    t = {"x": torch.from_numpy(x_np), "y": f32(y), "dy": torch.from_numpy(dy_np), "dx": f32(dx)}
    meta = base_meta("sigmoid", case)
    meta.update({"input_range": "[-8, 8]", "layout": "[n]"})
    write(case, t, meta)


def versions():
    lines = [
        f"python {platform.python_version()}",
        f"torch {torch.__version__}",
        f"numpy {np.__version__}",
        f"safetensors {safetensors.__version__}",
        f"platform {platform.platform()}",
    ]
    return lines


def main():
    vs = versions()
    print("\n".join(vs))
    with open(os.path.join(OUT_DIR, "versions.txt"), "w") as f:
        f.write("# versions used by tests/golden/make_golden.py\n")
        f.write("\n".join(vs) + "\n")

    conv2d_case("conv2d_k4s2p1", (2, 3, 8, 8), (5, 3, 4, 4), True, 2, 1)
    conv2d_case("conv2d_k5s2p2", (2, 3, 9, 9), (4, 3, 5, 5), False, 2, 2)
    conv2d_case("conv2d_1x1", (2, 6, 5, 5), (7, 6, 1, 1), True, 1, 0)
    conv2d_case("conv2d_k3s1p1", (1, 4, 6, 7), (3, 4, 3, 3), True, 1, 1)
    linear_case("linear_bias", 4, 10, 6, True)
    linear_case("linear_nobias", 3, 7, 5, False)
    batchnorm_case("batchnorm2d_train", (3, 4, 5, 5), True)
    batchnorm_case("batchnorm2d_eval", (3, 4, 5, 5), False)
    batchnorm_case("batchnorm1d_train", (6, 5), True)
    batchnorm_case("batchnorm1d_eval", (6, 5), False)
    layernorm_channels_case("layernorm_channels", (2, 4, 3, 3))
    maxpool_case("maxpool_k3s2", (2, 3, 9, 9))
    log_softmax_case("log_softmax", (4, 7))
    logsumexp_case("logsumexp", (4, 7))
    cross_entropy_case("cross_entropy", 5, 4, large=False)
    cross_entropy_case("cross_entropy_large", 5, 4, large=True)
    softplus_case("softplus", 20)
    sigmoid_case("sigmoid", 20)

    # Load-back check: every file reads back with the expected names, shapes and dtypes.
    for case, shapes in EXPECTED.items():
        got = load_file(os.path.join(OUT_DIR, f"{case}.safetensors"))
        assert set(got) == set(shapes), (case, sorted(got), sorted(shapes))
        for k, v in got.items():
            assert tuple(v.shape) == shapes[k], (case, k, v.shape, shapes[k])
            want = torch.int64 if k == "labels" else torch.float32
            assert v.dtype == want, (case, k, v.dtype)
            assert torch.isfinite(v.to(torch.float64)).all(), (case, k)
    print(f"wrote and re-loaded {len(EXPECTED)} files in {OUT_DIR}")


if __name__ == "__main__":
    sys.exit(main())
