#!/usr/bin/env python3
"""Representation quality of the PyTorch reference DIM (docs/results.md, docs/dim.md).

Trains scripts/torch/dim_ref.py's conv28 DIM on 28x28 grey images
(Fashion-MNIST or MNIST, IDX .gz files) and scores the frozen encoder with
the paper's evaluation, the protocol `infomax::eval` implements
(docs/eval.md). docs/results.md compares infomax with these numbers.

Methods (--method):
  dim         local DIM (dim_ref.DIM, conv28, D = --mi-units), --loss jsd|nce|dv,
              Adam lr 1e-4, betas (0.5, 0.999), batch 64, last partial batch
              dropped, one seeded permutation per epoch
  random      the untrained encoder, evaluated twice: BN with its default
              running statistics (mean 0, var 1), then with statistics
              re-estimated by one train-mode pass over the train set
              (records "random-bn-default" and "random-bn-one-pass")
  pixels      the probes on the raw pixels (784 values in [-1, 1])
  supervised  the encoder plus the MLP probe on --sup-tap trained end to end
              with labels under the same budget (--sup-probe: also the
              frozen-feature evaluation of that encoder)
  load        evaluate an encoder from a safetensors file (--load): one this
              script wrote with --save, or one `infomax` exported. Tensor
              names are dim_ref's (= infomax's): conv1, bn1, conv2, bn2, fc,
              bn3, out, optionally prefixed with "encoder."; other tensors
              (the MI heads) are ignored. The encoder must keep its BN layers
              (an `infomax train` checkpoint or an unfolded export); a
              BN-folded file is refused (no bn1.running_mean).

Budget: --minutes M (default 12) trains until M minutes of training time
have passed, checked after every step, so the last epoch is usually partial;
--epochs N trains exactly N epochs; --steps S exactly S steps. Each record
keeps its step count, and --steps <count> with the same seed and --threads
replays a budget run independently of the machine's speed.

Evaluation (the encoder frozen, in eval mode), as docs/eval.md:
  features   'conv' (the 128x7x7 local map, flattened channel-major, 6272),
             'fc' (the 1024 post-ReLU hidden layer) and 'y' (64) of the whole
             train and test sets (--taps chooses), 1000 images at a time
  standardise  with the train mean and unbiased std; std < 1e-6 -> 1
  probes     linear  Linear(d, 10)
             mlp     Linear(d, 200), Dropout(0.1), BatchNorm1d(200), ReLU, Linear(200, 10)
  training   Adam lr 1e-3 (default betas), 30 epochs, batch 256, one seeded
             permutation per epoch, last partial batch kept, batches of fewer
             than 2 rows skipped, mean cross-entropy
  seeds      seed*1000 + 10*tap_index + clf_index + 7, tap_index 0/1/2 for
             conv/fc/y (0 for pixels), clf_index 0 linear / 1 mlp
  score      test accuracy after the last epoch (acc_<tap>_<clf>), 2000 rows at
             a time in eval mode; also the mean of the last five epochs
             (acc_<tap>_<clf>_last5) and the whole curve (eval_details)

Where this differs from `infomax` (none of it changes the protocol):
  - random streams: init, shuffling and dropout come from torch's generators,
    infomax draws them from its own SplitMix64 streams, so the two agree in
    distribution, not bit for bit; compare differences against the
    seed-to-seed spread.
  - standardisation statistics are computed in f32 by torch (infomax
    accumulates them in f64).
  - the one-pass BN statistics of --method random: by default over a seeded
    permutation (seed 12345) in batches of --batch, last partial batch
    dropped, as in the runs docs/results.md reports; infomax goes through the
    train set in order and keeps a last batch of at least 2 images, which
    --bn-pass ordered reproduces. Either way the running statistics are the
    plain average of the batch statistics (momentum None).
  - infomax evaluates that recalibrated baseline on Y only (unless
    --full-baselines); here it gets every tap in --taps.

The probe code is in standardize_, make_classifier, train_classifier,
accuracy and evaluate_features, the names docs/eval.md's protocol table uses.

The PyTorch runs docs/results.md reports were made with an earlier copy of
this protocol kept outside the repository, torch_dim_quality.py. This script
takes the same flags and draws the same random numbers in the same order
(model init under torch.manual_seed(seed), shuffling from seed + 1, probes
and BN pass as above), so each cited command reruns here with the same
flags. Checked on a short run (same seed and threads): the same probe
curves and accuracies, bit for bit; the logged JSD loss differs in the 9th
digit only, because dim_ref's estimator subtracts 2 ln 2 in f32.

Every run appends one JSON object per result to --out (JSON lines; default
runs/torch-quality.jsonl under the repository root, which git ignores) and
prints a RESULT line per record.

Data: <data-dir>/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, scaled as
infomax scales them, (x/255 - 0.5)/0.5. Default --data-dir:
/usr/share/datasets/fashion-mnist for fashion-mnist (Debian's
dataset-fashion-mnist), $MNIST_DIR or ./mnist for mnist. The bundled subset
is data/fashion-mnist-subset. Nothing is downloaded.

Needs torch and numpy (safetensors for --save / --load); scripts/torch/setup.sh.

Examples (from the repository root, VENV's python):
  python scripts/torch/quality.py --dataset fashion-mnist --method dim --loss jsd --mi-units 512 --minutes 12 --threads 2
  python scripts/torch/quality.py --data-dir data/fashion-mnist-subset --method dim --loss jsd --mi-units 128 --epochs 3 --seed 0
  python scripts/torch/quality.py --data-dir data/fashion-mnist-subset --method random
  python scripts/torch/quality.py --method load --load runs/fmnist-nce/epoch-0005.safetensors --taps y
  python scripts/torch/quality.py --data-dir data/fashion-mnist-subset --method dim --epochs 1 --clf-epochs 3 --subset 2000   # smoke test
"""

import argparse
import gzip
import json
import math
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import dim_ref  # noqa: E402

TAPS = ("conv", "fc", "y")
PROBES = ("linear", "mlp")
DATA_DIRS = {
    "fashion-mnist": "/usr/share/datasets/fashion-mnist",
    "mnist": os.environ.get("MNIST_DIR", "mnist"),
}
IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # unsigned bytes, 3-d images / 1-d labels


def say(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- data


def read_idx(path, ndim):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise SystemExit(f"{path}: shorter than an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != IDX_MAGIC[ndim]:
        raise SystemExit(f"{path}: IDX magic {magic:#010x}, expected {IDX_MAGIC[ndim]:#010x}")
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=head)
    if body.size != math.prod(shape):
        raise SystemExit(f"{path}: {body.size} values after the header, which declares {shape}")
    return body.reshape(shape)


def load_split(data_dir, prefix):
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"), 3)
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"), 1)
    if images.shape[1:] != (28, 28) or images.shape[0] != labels.shape[0]:
        raise SystemExit(f"{data_dir} {prefix}: images {images.shape}, labels {labels.shape}")
    x = torch.from_numpy(images.astype(np.float32)).div_(255.0).sub_(0.5).div_(0.5)
    return x.unsqueeze(1).contiguous(), torch.from_numpy(labels.astype(np.int64))


# ----------------------------------------------------------------------------- probes


def make_classifier(kind, d, classes=10):
    if kind == "linear":
        return nn.Linear(d, classes)
    return nn.Sequential(nn.Linear(d, 200), nn.Dropout(0.1), nn.BatchNorm1d(200), nn.ReLU(), nn.Linear(200, classes))


def probe_seed(seed, tap_index, kind):
    return seed * 1000 + 10 * tap_index + PROBES.index(kind) + 7


def standardize_(train, test):
    """In place, with the train statistics (as infomax's `standardize`)."""
    mean = train.mean(0)
    std = train.std(0)
    std[std < 1e-6] = 1.0
    train.sub_(mean).div_(std)
    test.sub_(mean).div_(std)


@torch.no_grad()
def accuracy(model, x, y, rows=2000):
    model.eval()
    hits = sum((model(x[i : i + rows]).argmax(1) == y[i : i + rows]).sum().item() for i in range(0, len(x), rows))
    return hits / len(x)


def train_classifier(kind, xtr, ytr, xte, yte, args, seed):
    torch.manual_seed(seed)
    model = make_classifier(kind, xtr.shape[1])
    opt = torch.optim.Adam(model.parameters(), lr=args.clf_lr)
    order = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    curve = []
    loss_sum, rows = 0.0, 0
    for _ in range(args.clf_epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=order)
        loss_sum, rows = 0.0, 0
        for start in range(0, len(xtr), args.clf_batch):
            idx = perm[start : start + args.clf_batch]
            if len(idx) < 2:
                continue  # BatchNorm1d needs two rows; skipped for both probes, as infomax does
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            rows += len(idx)
        curve.append(round(accuracy(model, xte, yte), 5))
    tail = curve[-5:]
    return {
        "acc": curve[-1],
        "acc_last5": round(sum(tail) / len(tail), 5),
        "train_loss": round(loss_sum / max(rows, 1), 5),
        "curve": curve,
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def evaluate_features(train_feats, test_feats, ytr, yte, args, label):
    """{tap: features} -> flat accuracies and per-probe details (standardises in place)."""
    accs, details = {}, {}
    for tap, ftr in train_feats.items():
        fte = test_feats[tap]
        standardize_(ftr, fte)
        tap_index = TAPS.index(tap) if tap in TAPS else 0
        for kind in PROBES:
            r = train_classifier(kind, ftr, ytr, fte, yte, args, probe_seed(args.seed, tap_index, kind))
            accs[f"acc_{tap}_{kind}"] = r["acc"]
            accs[f"acc_{tap}_{kind}_last5"] = r["acc_last5"]
            details[f"{tap}_{kind}"] = r
            say(f"{label} {tap:>6} (d={ftr.shape[1]}) {kind:>6}: {100 * r['acc']:.2f}% "
                f"(last five {100 * r['acc_last5']:.2f}%, train loss {r['train_loss']:.4f}, {r['wall_s']:.0f}s)")
    return accs, details


@torch.no_grad()
def features(encoder, x, taps, rows=1000):
    encoder.eval()
    parts = {t: [] for t in taps}
    for i in range(0, len(x), rows):
        local, fc, y = encoder(x[i : i + rows])
        got = {"conv": local.flatten(1), "fc": fc, "y": y}
        for t in taps:
            parts[t].append(got[t])
    return {t: torch.cat(v) for t, v in parts.items()}


def score_encoder(encoder, data, args, label):
    xtr, ytr, xte, yte = data
    t0 = time.perf_counter()
    ftr, fte = features(encoder, xtr, args.taps), features(encoder, xte, args.taps)
    say(f"{label}: features in {time.perf_counter() - t0:.1f}s")
    accs, details = evaluate_features(ftr, fte, ytr, yte, args, label)
    accs["eval_wall_s"] = round(time.perf_counter() - t0, 1)
    return accs, details


@torch.no_grad()
def one_pass_bn(encoder, x, batch, ordered):
    """BN running statistics = the average of the batch statistics of one train-mode pass."""
    for m in encoder.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    encoder.train()
    if ordered:  # infomax's train::recalibrate_bn
        starts = [s for s in range(0, len(x), batch) if len(x) - s >= 2]
        for s in starts:
            encoder(x[s : s + batch])
    else:  # the runs in docs/results.md
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(12345))
        for b in range(len(x) // batch):
            encoder(x[perm[b * batch : (b + 1) * batch]])
    encoder.eval()


# ----------------------------------------------------------------------------- training


def cpu_ticks():
    try:
        with open("/proc/stat") as f:
            v = [int(t) for t in f.readline().split()[1:]]
        return v[0] + v[1] + v[2] + v[5] + v[6]
    except OSError:
        return None


def budget(args):
    return f"{args.steps} steps" if args.steps else f"{args.epochs} epochs" if args.epochs else f"{args.minutes} min"


def run_budget(step, xtr, ytr, args, label, after_epoch=None):
    """Trains with step(x, y) -> {name: float, 'loss' among them} until the budget is spent."""
    n, bs = len(xtr), args.batch
    per_epoch = n // bs
    order = torch.Generator().manual_seed(args.seed + 1)
    limit_s = None if (args.epochs or args.steps) else 60.0 * args.minutes
    limit_steps = args.steps or (args.epochs * per_epoch if args.epochs else None)
    steps = full_epochs = 0
    train_s = 0.0  # training only: --eval-every evaluations are not counted
    epochs = []
    t_wall, t_cpu, ticks0 = time.perf_counter(), time.process_time(), cpu_ticks()
    done = False
    while not done:
        perm = torch.randperm(n, generator=order)
        sums, k = {}, 0
        t0 = time.perf_counter()
        for b in range(per_epoch):
            idx = perm[b * bs : (b + 1) * bs]
            vals = step(xtr[idx], ytr[idx])
            for key, v in vals.items():
                sums[key] = sums.get(key, 0.0) + v
            k += 1
            steps += 1
            if not math.isfinite(vals["loss"]):
                say(f"{label}: loss not finite at step {steps}, stopping")
                done = True
            elif limit_steps is not None and steps >= limit_steps:
                done = True
            elif limit_s is not None and train_s + time.perf_counter() - t0 >= limit_s:
                done = True
            if done:
                break
        dt = time.perf_counter() - t0
        train_s += dt
        complete = k == per_epoch
        full_epochs += complete
        rec = {"epoch": full_epochs if complete else full_epochs + k / per_epoch, "steps": steps}
        rec.update({key: v / max(k, 1) for key, v in sums.items()})
        rec["images_per_s"] = k * bs / max(dt, 1e-9)
        rec["elapsed_s"] = train_s
        epochs.append(rec)
        say(f"{label} epoch {rec['epoch']:.3f} ({k} steps) "
            + " ".join(f"{key}={rec[key]:.4f}" for key in sums)
            + f" img/s={rec['images_per_s']:.1f} elapsed={train_s:.1f}s load={os.getloadavg()[0]:.2f}")
        if after_epoch is not None and complete and not done:
            after_epoch(full_epochs)
    wall = time.perf_counter() - t_wall
    own = (time.process_time() - t_cpu) / max(wall, 1e-9)
    ticks1 = cpu_ticks()
    foreign = None
    if ticks0 is not None and ticks1 is not None:
        foreign = round(max((ticks1 - ticks0) / os.sysconf("SC_CLK_TCK") / max(wall, 1e-9) - own, 0.0), 2)
    return {
        "steps": steps,
        "epochs_completed": full_epochs,
        "epochs": steps / per_epoch,
        "train_wall_s": round(train_s, 2),
        "images_per_s": round(steps * bs / max(train_s, 1e-9), 2),
        "train_own_cores": round(own, 2),
        "train_foreign_cores": foreign,
    }, epochs


def record(args, **extra):
    rec = {
        "dataset": args.dataset,
        "data_dir": args.data_dir,
        "method": args.method,
        "seed": args.seed,
        "threads": torch.get_num_threads(),
        "taps": args.taps,
        "budget": budget(args) if args.method in ("dim", "supervised") else None,
        "clf": {"epochs": args.clf_epochs, "batch": args.clf_batch, "lr": args.clf_lr},
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__},
        "host": {"cpus": os.cpu_count(), "loadavg_start": [round(v, 2) for v in os.getloadavg()]},
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "script": "scripts/torch/quality.py",
    }
    rec.update(extra)
    return rec


def run_dim(args, data):
    xtr, ytr = data[0], data[1]
    torch.manual_seed(args.seed)
    model = dim_ref.DIM(dim_ref.conv28(), args.mi_units)
    loss_fn = dim_ref.LOSSES[args.loss]
    # dim_ref's JSD is the spec's form (minus 2 ln 2); 'loss' keeps the plain
    # softplus sum, as the earlier records do, and 'loss_ref' the spec's form.
    shift = 2.0 * math.log(2.0) if args.loss == "jsd" else 0.0
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
    eye = torch.eye(args.batch, dtype=torch.bool)
    label = f"{args.dataset}/dim-{args.loss}-D{args.mi_units}"
    say(f"{label}: {sum(p.numel() for p in model.parameters())} parameters, {budget(args)}, batch {args.batch}")

    def step(x, _y):
        model.train()
        s = model.scores(x)
        loss = loss_fn(s)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        v = loss.item()
        with torch.no_grad():
            return {"loss": v + shift, "loss_ref": v, "pos_score": s[eye].mean().item(),
                    "neg_score": s[~eye].mean().item()}

    periodic = []

    def after_epoch(ep):
        if args.eval_every and ep % args.eval_every == 0:
            accs, _ = score_encoder(model.encoder, data, args, f"{label} @epoch {ep}")
            periodic.append({"epoch": ep, **accs})

    summary, epochs = run_budget(step, xtr, ytr, args, label, after_epoch)
    if args.save:
        save(model, args, label)
    accs, details = score_encoder(model.encoder, data, args, label)
    rec = record(args, loss=args.loss, mi_units=args.mi_units, batch=args.batch, **summary)
    rec["final_epoch_loss"] = epochs[-1]["loss"] if epochs else None
    rec.update(accs)
    rec.update(epoch_log=epochs, eval_every=periodic, eval_details=details)
    return [rec]


def run_random(args, data):
    torch.manual_seed(args.seed)
    enc = dim_ref.Encoder(dim_ref.conv28())
    out = []
    for stats in ("default", "one-pass"):
        if stats == "one-pass":
            t0 = time.perf_counter()
            one_pass_bn(enc, data[0], args.batch, args.bn_pass == "ordered")
            say(f"{args.dataset}/random: BN statistics from one {args.bn_pass} pass in {time.perf_counter() - t0:.1f}s")
        accs, details = score_encoder(enc, data, args, f"{args.dataset}/random-{stats}")
        rec = record(args, method=f"random-bn-{stats}", bn_stats=stats,
                     bn_pass=args.bn_pass if stats == "one-pass" else None)
        rec.update(accs)
        rec["eval_details"] = details
        out.append(rec)
    return out


def run_pixels(args, data):
    xtr, ytr, xte, yte = data
    t0 = time.perf_counter()
    accs, details = evaluate_features({"pixels": xtr.flatten(1).clone()}, {"pixels": xte.flatten(1).clone()},
                                   ytr, yte, args, f"{args.dataset}/pixels")
    accs["eval_wall_s"] = round(time.perf_counter() - t0, 1)
    rec = record(args, taps=["pixels"])
    rec.update(accs)
    rec["eval_details"] = details
    return [rec]


def run_supervised(args, data):
    xtr, ytr, xte, yte = data
    torch.manual_seed(args.seed)
    enc = dim_ref.Encoder(dim_ref.conv28())
    width = {"conv": enc.local_channels * enc.n_local, "fc": 1024, "y": enc.y_dim}[args.sup_tap]
    head = make_classifier("mlp", width)
    tap = TAPS.index(args.sup_tap)
    model = nn.ModuleDict({"encoder": enc, "head": head})
    opt = torch.optim.Adam(model.parameters(), lr=args.sup_lr)
    label = f"{args.dataset}/supervised-{args.sup_tap}"
    say(f"{label}: {budget(args)}, batch {args.batch}, Adam lr {args.sup_lr}")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.m = model

        def forward(self, x):
            return head(enc(x)[tap].flatten(1))

    net = Net()

    def step(x, y):
        net.train()
        logits = net(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return {"loss": loss.item(), "train_acc": (logits.argmax(1) == y).float().mean().item()}

    curve = []

    def after_epoch(ep):
        curve.append(round(accuracy(net, xte, yte), 5))
        say(f"{label} epoch {ep}: test {100 * curve[-1]:.2f}%")

    summary, epochs = run_budget(step, xtr, ytr, args, label, after_epoch)
    acc = accuracy(net, xte, yte)
    say(f"{label}: test {100 * acc:.2f}%")
    rec = record(args, loss="cross-entropy", sup_tap=args.sup_tap, batch=args.batch, sup_lr=args.sup_lr, **summary)
    rec.update(acc_supervised=round(acc, 5), test_acc_per_epoch=curve, epoch_log=epochs)
    out = [rec]
    if args.sup_probe:
        accs, details = score_encoder(enc, data, args, f"{label} frozen")
        probe = record(args, method="supervised-probe", sup_tap=args.sup_tap, steps=summary["steps"])
        probe.update(accs)
        probe["eval_details"] = details
        out.append(probe)
    return out


def run_load(args, data):
    from safetensors.torch import load_file

    tensors = {k.removeprefix("encoder."): v for k, v in load_file(args.load).items()}
    enc = dim_ref.Encoder(dim_ref.conv28())
    state = enc.state_dict()
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        if k not in tensors:
            raise SystemExit(f"{args.load}: no tensor {k}")
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise SystemExit(f"{args.load}: {k} is {tuple(tensors[k].shape)}, conv28 needs {tuple(v.shape)}")
    enc.load_state_dict({k: tensors[k].to(v.dtype) if k in tensors else v for k, v in state.items()})
    accs, details = score_encoder(enc, data, args, f"{args.dataset}/load:{os.path.basename(args.load)}")
    rec = record(args, loaded=os.path.basename(args.load))
    rec.update(accs)
    rec["eval_details"] = details
    return [rec]


def save(model, args, label):
    from safetensors.torch import save_file

    os.makedirs(os.path.dirname(os.path.abspath(args.save)), exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, args.save, metadata={"tag": label, "seed": str(args.seed), "torch": torch.__version__})
    say(f"wrote {len(state)} tensors to {args.save}")


METHODS = {"dim": run_dim, "random": run_random, "pixels": run_pixels, "supervised": run_supervised, "load": run_load}


# ----------------------------------------------------------------------------- command line


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=sorted(DATA_DIRS), default="fashion-mnist")
    p.add_argument("--data-dir", help="folder of the IDX .gz files (default: see above)")
    p.add_argument("--method", choices=sorted(METHODS), default="dim")
    p.add_argument("--loss", choices=sorted(dim_ref.LOSSES), default="jsd", help="DIM estimator")
    p.add_argument("--mi-units", type=int, default=512, help="D, the MI heads' width")
    p.add_argument("--batch", type=int, default=64, help="training batch (DIM, supervised) and the BN pass")
    p.add_argument("--minutes", type=float, default=12.0, help="training-time budget")
    p.add_argument("--epochs", type=int, default=0, help="train exactly N epochs instead")
    p.add_argument("--steps", type=int, default=0, help="train exactly N steps instead")
    p.add_argument("--eval-every", type=int, default=0, help="DIM: also evaluate after every N full epochs")
    p.add_argument("--taps", default="conv,fc,y", help="comma list of the encoder features to score")
    p.add_argument("--clf-epochs", type=int, default=30)
    p.add_argument("--clf-batch", type=int, default=256)
    p.add_argument("--clf-lr", type=float, default=1e-3)
    p.add_argument("--bn-pass", choices=("shuffled", "ordered"), default="shuffled",
                   help="random: order of the one-pass BN statistics (ordered = infomax's)")
    p.add_argument("--sup-tap", choices=TAPS, default="y")
    p.add_argument("--sup-lr", type=float, default=1e-3)
    p.add_argument("--sup-probe", action="store_true", help="supervised: also score the frozen encoder")
    p.add_argument("--load", help="load: safetensors file with the encoder")
    p.add_argument("--save", help="dim: write the model (encoder and MI heads) as safetensors")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--subset", type=int, default=0, help="smoke tests: the first N train and N//6 test images")
    p.add_argument("--out", default=os.path.join(ROOT, "runs", "torch-quality.jsonl"), help="JSON lines to append to")
    args = p.parse_args(argv)
    if args.epochs and args.steps:
        p.error("--epochs and --steps exclude each other")
    if not (args.epochs or args.steps) and args.minutes <= 0:
        p.error("--minutes must be positive without --epochs or --steps")
    args.taps = [t.strip() for t in args.taps.split(",") if t.strip()]
    if not args.taps or not set(args.taps) <= set(TAPS):
        p.error(f"--taps: a comma list of {', '.join(TAPS)}")
    if args.method == "load" and not args.load:
        p.error("--method load needs --load FILE")
    args.data_dir = args.data_dir or DATA_DIRS[args.dataset]
    return args


def main(argv=None):
    args = parse(argv)
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    xtr, ytr = load_split(args.data_dir, "train")
    xte, yte = load_split(args.data_dir, "t10k")
    if args.subset:
        n_test = max(args.subset // 6, 2)
        xtr, ytr, xte, yte = xtr[: args.subset], ytr[: args.subset], xte[:n_test], yte[:n_test]
    say(f"{args.dataset}: train {tuple(xtr.shape)}, test {tuple(xte.shape)} from {args.data_dir}; "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.2f}")
    t0 = time.perf_counter()
    records = METHODS[args.method](args, (xtr.contiguous(), ytr.contiguous(), xte.contiguous(), yte.contiguous()))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "a") as f:
        for r in records:
            r["subset"] = args.subset or None
            r["total_wall_s"] = round(time.perf_counter() - t0, 1)
            r["host"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
            f.write(json.dumps(r) + "\n")
    for r in records:
        accs = " ".join(f"{k[4:]}={100 * v:.2f}" for k, v in r.items() if k.startswith("acc_") and not k.endswith("_last5"))
        say(f"RESULT {r['dataset']} {r['method']}: {accs}")
    say(f"done in {time.perf_counter() - t0:.1f}s; {len(records)} record(s) appended to {args.out}")


if __name__ == "__main__":
    main()
