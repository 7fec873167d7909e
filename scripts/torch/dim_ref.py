"""PyTorch reference of infomax's Deep InfoMax model (docs/method.md, docs/dim.md).

One module for everything in this repository that needs the model in PyTorch:
the golden fixtures (tests/golden/make_dim_step.py and the scripts built on it,
tests/golden/make_infer_torch.py), the peer benchmark (scripts/torch/peer.py)
and the quality runs (scripts/torch/quality.py).
It needs torch only; scripts/torch/setup.sh makes a venv with it.

Module names are infomax's tensor names (src/model/mod.rs, src/io/export.rs):
encoder layer i (from 1) is `conv{i}` with its batch norm `bn{i}`; a single
hidden linear layer is `fc` (several: `fc1`, `fc2`, ..., their BN keeping the
layer number); Y is `out`; the MI heads are `local_head` and `global_head`,
each `l1`, `bn`, `l2`, `shortcut`, `ln`. Modules are created in that order, so
under one `torch.manual_seed` the default init draws the same numbers as any
other PyTorch model built in this order.

Encoders are described as infomax describes them (`EncoderConfig`, the
`encoder_config` of an exported file): an input [c, h, w], a list of layers
{"type": "conv", "out", "kernel", "stride", "padding", "bn", "relu"} or
{"type": "linear", "out", "bn", "relu"}, the index of the local map and the
width of Y (a linear layer with bias, no BN, no ReLU). A layer with BN has
no bias; `bn: false` gives it a bias instead (a folded encoder).

    conv28  (docs/method.md 2.4)  1x28x28: conv 64 5/2/2, conv 128 5/2/2 (local map 128x7x7), fc 1024, Y 64
    conv32  (docs/method.md 2.2)  3x32x32: conv 64 4/2/1, conv 128 4/2/1 (local map 128x8x8),
                                           conv 256 4/2/1, fc 1024, Y 64

MI head (encode-and-dot-product, on rows of n_in features):
    ln( l2(relu(bn(l1(x)))) + shortcut(x) )
    l1: n_in -> D, no bias; bn: BatchNorm1d(D); l2: D -> D with bias;
    shortcut: n_in -> D, no bias, init U(-0.01, 0.01) and weight[c, c] = 1 for
    c < n_in when D >= n_in; ln: LayerNorm(D).
The local head runs on the local map as rows (B*P, C), row = j*P + p with
p = h*W + w: a 1x1 conv with BatchNorm2d is the same map as a linear layer
with BatchNorm1d over these rows.

Scores S[i, j, p] = <global_head(Y_i), local_head(M_j)[p]>, B x B x P; the
positives are i == j. Estimators (the forms infomax reports):
    jsd  mean_{i!=j,p} softplus(S) + mean_{i,p} softplus(-S[i,i,p]) - 2 ln 2
    nce  mean_{i,p} [ logaddexp(S[i,i,p], LSE_{j!=i,p'} S[i,j,p']) - S[i,i,p] ]
    dv   log sum_{i!=j,p} exp(S[i,j,p]) - log(B(B-1)P) - mean_{i,p} S[i,i,p]
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------- encoder configs


def conv(out, kernel, stride, padding, bn=True, relu=True):
    return {"type": "conv", "out": out, "kernel": kernel, "stride": stride, "padding": padding, "bn": bn,
            "relu": relu}


def linear(out, bn=True, relu=True):
    return {"type": "linear", "out": out, "bn": bn, "relu": relu}


def conv28(conv1_out=64, conv2_out=128, fc_out=1024, y_dim=64, bn=True):
    """The paper's 28x28 encoder; the widths are arguments so fixtures can stay small."""
    return {
        "input": [1, 28, 28],
        "layers": [conv(conv1_out, 5, 2, 2, bn), conv(conv2_out, 5, 2, 2, bn), linear(fc_out, bn)],
        "local_layer": 1,
        "y_dim": y_dim,
    }


def conv32(y_dim=64, bn=True):
    """The DCGAN encoder for 32x32x3, the one the benchmarks time."""
    return {
        "input": [3, 32, 32],
        "layers": [conv(64, 4, 2, 1, bn), conv(128, 4, 2, 1, bn), conv(256, 4, 2, 1, bn), linear(1024, bn)],
        "local_layer": 1,
        "y_dim": y_dim,
    }


PRESETS = {"conv28": conv28, "conv32": conv32}


# ----------------------------------------------------------------------------- modules


class Encoder(nn.Module):
    """forward(x) -> (local map B x C x H x W, last hidden linear layer's output, Y)."""

    def __init__(self, config=None):
        super().__init__()
        config = config or conv28()
        c, h, w = config["input"]
        layers = config["layers"]
        self.input_shape = (c, h, w)
        self.local_layer = config["local_layer"]
        self.y_dim = config["y_dim"]
        n_linear = sum(1 for l in layers if l["type"] == "linear")
        self.steps = []  # (layer name, BN name or None, is linear, ReLU)
        width = c * h * w
        k = 0
        for i, l in enumerate(layers):
            bn = l.get("bn", True)
            if l.get("pool", False):
                raise ValueError("max-pool layers are not part of this reference")
            if l["type"] == "conv":
                name = f"conv{i + 1}"
                setattr(self, name, nn.Conv2d(c, l["out"], l["kernel"], stride=l["stride"], padding=l["padding"],
                                              bias=not bn))
                c = l["out"]
                h = (h + 2 * l["padding"] - l["kernel"]) // l["stride"] + 1
                w = (w + 2 * l["padding"] - l["kernel"]) // l["stride"] + 1
                width = c * h * w
                if bn:
                    setattr(self, f"bn{i + 1}", nn.BatchNorm2d(c))
            elif l["type"] == "linear":
                k += 1
                name = "fc" if n_linear == 1 else f"fc{k}"
                setattr(self, name, nn.Linear(width, l["out"], bias=not bn))
                width = l["out"]
                if bn:
                    setattr(self, f"bn{i + 1}", nn.BatchNorm1d(width))
            else:
                raise ValueError(f"unknown layer type {l['type']!r}")
            if i == self.local_layer:
                if l["type"] != "conv":
                    raise ValueError("the local map must be a conv layer's output")
                self.local_channels, self.n_local = c, h * w
            self.steps.append((name, f"bn{i + 1}" if bn else None, l["type"] == "linear", l.get("relu", True)))
        self.out = nn.Linear(width, self.y_dim)

    def forward(self, x):
        local = fc = None
        h = x
        for i, (name, bn, is_linear, relu) in enumerate(self.steps):
            if is_linear:
                h = h.flatten(1)  # channel-major: c*H*W + h*W + w
            h = getattr(self, name)(h)
            if bn is not None:
                h = getattr(self, bn)(h)
            if relu:
                h = F.relu(h)
            if i == self.local_layer:
                local = h
            if is_linear:
                fc = h
        return local, fc, self.out(h)


class EncoderY(nn.Module):
    """input -> Y only (what is exported to ONNX and timed for inference)."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, x):
        return self.encoder(x)[2]


class MIHead(nn.Module):
    """Encode-and-dot-product MI network on rows (R, n_in) -> (R, d)."""

    def __init__(self, n_in, d):
        super().__init__()
        self.l1 = nn.Linear(n_in, d, bias=False)
        self.bn = nn.BatchNorm1d(d)
        self.l2 = nn.Linear(d, d)
        self.shortcut = nn.Linear(n_in, d, bias=False)
        self.ln = nn.LayerNorm(d)
        with torch.no_grad():
            # after the default init of every layer above, from the same RNG stream
            self.shortcut.weight.uniform_(-0.01, 0.01)
            if d >= n_in:
                idx = torch.arange(n_in)
                self.shortcut.weight[idx, idx] = 1.0

    def forward(self, x):
        return self.ln(self.l2(F.relu(self.bn(self.l1(x)))) + self.shortcut(x))


class DIM(nn.Module):
    """Local DIM: the encoder, then the two MI heads, in this order."""

    def __init__(self, encoder_config=None, mi_units=512):
        super().__init__()
        self.encoder = Encoder(encoder_config)
        self.local_head = MIHead(self.encoder.local_channels, mi_units)
        self.global_head = MIHead(self.encoder.y_dim, mi_units)

    def scores_and_y(self, x):
        c, _, y = self.encoder(x)
        b, ch, p = x.shape[0], c.shape[1], self.encoder.n_local
        rows = c.permute(0, 2, 3, 1).reshape(b * p, ch)  # row = j*P + p, p = h*W + w
        l = self.local_head(rows)  # (B*P, D)
        g = self.global_head(y)  # (B, D)
        return (g @ l.t()).view(b, b, p), y  # S[i, j, p]

    def scores(self, x):
        return self.scores_and_y(x)[0]


# ----------------------------------------------------------------------------- estimators


def split(s):
    """Positives (B, P) = S[i, i, :] and negatives (B(B-1), P), i != j."""
    eye = torch.eye(s.shape[0], dtype=torch.bool)
    return s[eye], s[~eye]


def jsd_loss(s):
    pos, neg = split(s)
    return F.softplus(neg).mean() + F.softplus(-pos).mean() - 2.0 * math.log(2.0)


def nce_loss(s):
    b, _, p = s.shape
    eye = torch.eye(b, dtype=torch.bool)
    pos = s[eye]  # (B, P)
    neg = s.masked_fill(eye.unsqueeze(-1), float("-inf")).reshape(b, b * p)
    lse_neg = torch.logsumexp(neg, dim=1, keepdim=True)  # (B, 1): row i's negatives serve all its p
    return (torch.logaddexp(pos, lse_neg) - pos).mean()


def dv_loss(s):
    b, _, p = s.shape
    pos, neg = split(s)
    return torch.logsumexp(neg.reshape(-1), dim=0) - math.log(b * (b - 1) * p) - pos.mean()


LOSSES = {"jsd": jsd_loss, "nce": nce_loss, "dv": dv_loss}
