#!/usr/bin/env python3
"""The PyTorch / ONNX Runtime side of scripts/compare.sh (BENCHMARKS.md).

Sub-commands; each appends one JSON object per measurement to --out (JSON
lines) and prints a one-line summary on stderr:

  train   timed DIM training steps (forward, loss, backward, Adam lr 1e-4,
          betas (0.5, 0.999)) of scripts/torch/dim_ref.py's model: batch 64,
          D = 512, the same synthetic input as benches/train_step.rs
  export  the conv encoders (input -> Y, eval mode, BN with non-trivial
          running statistics) to ONNX, with their state_dict as safetensors
          (infomax's tensor names); checks ONNX Runtime against PyTorch
  infer   encoder latency at batch 1 and throughput at batch 64, ONNX
          Runtime (default) or PyTorch eager

Records (the fields scripts/compare.py reads are marked *):
  {"kind"*: "train", "arch", "loss"*, "batch", "threads"*, "step_s": S,
   "images_per_s"*: S, "loss_first_last", "torch", "cpu", "loadavg_start"}
  {"kind": "export", "arch", "onnx", "exporter", "opset", "onnx_ops", "max_abs_err"}
  {"kind"*: "infer", "arch", "runtime"*, "version", "threads"*, "batch"*,
   "latency_s"*: S, "images_per_s"*: S, "cpu", "loadavg_start"}
  with S = {"median", "min", "max", "n"} (seconds or images/s) and
  cpu = {"own_cores", "foreign_cores"}: this process's CPU and everyone
  else's over the timed runs, in cores (from /proc/stat).

Before each timed block the script waits up to PEER_QUIET_MAX seconds
(default 10) for the rest of the machine to use less than a quarter core.

  python scripts/torch/peer.py train --loss jsd --threads 1 --out peer.jsonl
  python scripts/torch/peer.py export --artifacts /tmp/art --out export.jsonl
  python scripts/torch/peer.py infer --artifacts /tmp/art --threads 1 --out peer.jsonl
"""

import argparse
import json
import os
import statistics
import sys
import time
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

BATCH_INFER = (1, 64)


# ----------------------------------------------------------------------------- measuring


def summary(xs):
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def loadavg():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def busy_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[0] + v[1] + v[2] + v[5] + v[6]  # user nice system irq softirq


class CpuMeter:
    """Cores used by this process and by all others between start and done()."""

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK")
        self.t0, self.p0, self.b0 = time.perf_counter(), time.process_time(), busy_ticks()

    def done(self):
        wall = max(time.perf_counter() - self.t0, 1e-9)
        own = (time.process_time() - self.p0) / wall
        total = (busy_ticks() - self.b0) / self.hz / wall
        return {"own_cores": round(own, 2), "foreign_cores": round(max(total - own, 0.0), 2)}


def wait_quiet(threshold=0.25, window=0.5):
    limit = float(os.environ.get("PEER_QUIET_MAX", "10"))
    t0 = time.perf_counter()
    while True:
        m = CpuMeter()
        time.sleep(window)
        if m.done()["foreign_cores"] < threshold or time.perf_counter() - t0 >= limit:
            return round(time.perf_counter() - t0, 1)


def emit(path, rec):
    rec = dict(rec, loadavg_end=loadavg(), unix_time=round(time.time(), 1))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(rec) + "\n")


def threads(n):
    import torch

    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


def bench_input(batch, shape):
    """benches/train_step.rs's input: x[i] = ((i * 7919) % 255) / 127.5 - 1."""
    import torch

    n = batch * shape[0] * shape[1] * shape[2]
    i = torch.arange(n, dtype=torch.int64)
    return ((i * 7919) % 255).to(torch.float32).div(127.5).sub(1.0).reshape(batch, *shape)


# ----------------------------------------------------------------------------- train


def cmd_train(a):
    import torch

    import dim_ref as ref

    threads(a.threads)
    torch.manual_seed(0)
    model = ref.DIM(ref.PRESETS[a.arch](), a.mi_units).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999), eps=1e-8)
    x = bench_input(a.batch, model.encoder.input_shape)
    loss_fn = ref.LOSSES[a.loss]

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model.scores(x))
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(a.warmup):
        step()
    quiet = wait_quiet()
    load0 = loadavg()
    meter = CpuMeter()
    secs, losses = [], []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        losses.append(step())
        secs.append(time.perf_counter() - t0)
    cpu = meter.done()
    ips = [a.batch / s for s in secs]
    rec = {
        "kind": "train", "arch": a.arch, "loss": a.loss, "batch": a.batch, "mi_units": a.mi_units,
        "threads": a.threads, "step_s": summary(secs), "images_per_s": summary(ips), "warmup": a.warmup,
        "loss_first_last": [losses[0], losses[-1]], "torch": torch.__version__, "cpu": cpu,
        "quiet_wait_s": quiet, "loadavg_start": load0,
    }
    emit(a.out, rec)
    print(f"train {a.arch} {a.loss} B={a.batch} t={a.threads}: {statistics.median(ips):.1f} img/s "
          f"(min {min(ips):.1f}, max {max(ips):.1f}), own {cpu['own_cores']} / foreign "
          f"{cpu['foreign_cores']} cores, load {load0} -> {loadavg()}", file=sys.stderr)


# ----------------------------------------------------------------------------- export


def perturb_bn_(model, seed):
    """Running statistics and affine parameters away from (0, 1), so eval-mode BN does something."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
                m.weight.copy_(1.0 + 0.1 * torch.randn(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))


def onnx_export(module, x, path, opset):
    """The TorchScript exporter when this torch has it (what the BENCHMARKS.md
    figures used), else the dynamo one; both with a dynamic batch axis."""
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": still there in 2.15
            torch.onnx.export(module, (x,), path, dynamo=False, input_names=["x"], output_names=["y"],
                              opset_version=opset, dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}},
                              do_constant_folding=True)
        return "torchscript"
    except Exception as e:  # noqa: BLE001  (removed or failing legacy exporter)
        print(f"TorchScript exporter failed ({e!r}); using dynamo=True", file=sys.stderr)
    torch.onnx.export(module, (x,), path, dynamo=True, input_names=["x"], output_names=["y"],
                      opset_version=opset, dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    return "dynamo"


def ort_model(path, n_threads):
    """ONNX Runtime's runner for `path`: CPU provider, `n_threads` intra-op threads, one
    inter-op thread, sequential execution, every graph optimisation."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = n_threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def cmd_export(a):
    import numpy as np
    import onnx
    import torch
    from safetensors.torch import save_file

    import dim_ref as ref

    os.makedirs(a.artifacts, exist_ok=True)
    for arch in a.arch:
        torch.manual_seed(0)
        model = ref.DIM(ref.PRESETS[arch]())
        perturb_bn_(model, 1)
        model.eval()
        sd = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(sd, os.path.join(a.artifacts, f"{arch}_dim.safetensors"), metadata={"arch": arch})
        enc = ref.EncoderY(model.encoder).eval()
        x = torch.randn(4, *model.encoder.input_shape, generator=torch.Generator().manual_seed(2))
        with torch.inference_mode():
            y = enc(x).numpy()
        path = os.path.join(a.artifacts, f"{arch}_encoder.onnx")
        exporter = onnx_export(enc, x, path, a.opset)
        m = onnx.load(path)
        onnx.checker.check_model(m)
        err = float(np.abs(ort_model(path, 1).run(None, {"x": x.numpy()})[0] - y).max())
        if not err < 1e-3 * max(1.0, float(np.abs(y).max())):
            raise SystemExit(f"{arch}: ONNX Runtime differs from PyTorch by {err}")
        rec = {
            "kind": "export", "arch": arch, "onnx": path, "exporter": exporter,
            "opset": max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")),
            "onnx_ops": sorted({n.op_type for n in m.graph.node}), "max_abs_err": err,
            "torch": torch.__version__,
        }
        emit(a.out, rec)
        print(f"export {arch}: {path} ({exporter}, opset {rec['opset']}, ops {','.join(rec['onnx_ops'])}), "
              f"ORT vs torch max |dy| {err:.2e}", file=sys.stderr)


# ----------------------------------------------------------------------------- infer


def runner(a):
    """fn(numpy input) -> numpy output, and a version string."""
    if a.runtime == "ort":
        import onnxruntime as ort

        rt = ort_model(os.path.join(a.artifacts, f"{a.arch}_encoder.onnx"), a.threads)
        return (lambda xn: rt.run(None, {"x": xn})[0]), f"onnxruntime {ort.__version__}"
    import torch
    from safetensors.torch import load_file

    import dim_ref as ref

    threads(a.threads)
    model = ref.DIM(ref.PRESETS[a.arch]())
    model.load_state_dict(load_file(os.path.join(a.artifacts, f"{a.arch}_dim.safetensors")))
    enc = ref.EncoderY(model.encoder).eval()

    def run(xn):
        with torch.inference_mode():
            return enc(torch.from_numpy(xn)).numpy()

    return run, f"torch {torch.__version__}"


def cmd_infer(a):
    import numpy as np

    import dim_ref as ref

    shape = tuple(ref.PRESETS[a.arch]()["input"])
    rng = np.random.default_rng(0)
    for batch, warm, runs in ((1, 20, a.runs_b1), (64, 3, a.runs_b64)):
        run, version = runner(a)
        xn = rng.standard_normal((batch, *shape), dtype=np.float32)
        assert run(xn).shape == (batch, 64)
        for _ in range(warm):
            run(xn)
        quiet = wait_quiet()
        load0 = loadavg()
        meter = CpuMeter()
        secs = []
        for _ in range(runs):
            t0 = time.perf_counter()
            run(xn)
            secs.append(time.perf_counter() - t0)
        cpu = meter.done()
        rec = {
            "kind": "infer", "arch": a.arch, "runtime": a.runtime, "version": version, "threads": a.threads,
            "batch": batch, "latency_s": summary(secs), "images_per_s": summary([batch / s for s in secs]),
            "cpu": cpu, "quiet_wait_s": quiet, "loadavg_start": load0,
        }
        emit(a.out, rec)
        med = statistics.median(secs)
        print(f"infer {a.arch} {a.runtime} t={a.threads} B={batch}: median {med * 1e3:.3f} ms "
              f"(min {min(secs) * 1e3:.3f}, max {max(secs) * 1e3:.3f}), {batch / med:.1f} img/s, "
              f"own {cpu['own_cores']} / foreign {cpu['foreign_cores']} cores, load {load0} -> {loadavg()}",
              file=sys.stderr)


# ----------------------------------------------------------------------------- main


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    archs = ["conv28", "conv32"]

    sp = sub.add_parser("train", help="timed training steps")
    sp.add_argument("--arch", choices=archs, default="conv32")
    sp.add_argument("--loss", choices=["jsd", "nce", "dv"], default="jsd")
    sp.add_argument("--threads", type=int, default=1)
    sp.add_argument("--batch", type=int, default=64)
    sp.add_argument("--mi-units", type=int, default=512)
    sp.add_argument("--warmup", type=int, default=3)
    sp.add_argument("--steps", type=int, default=15)
    sp.add_argument("--out", required=True)
    sp.set_defaults(fn=cmd_train)

    sp = sub.add_parser("export", help="encoders to ONNX and safetensors")
    sp.add_argument("--arch", choices=archs, nargs="+", default=archs)
    sp.add_argument("--artifacts", required=True)
    sp.add_argument("--opset", type=int, default=17)
    sp.add_argument("--out", required=True)
    sp.set_defaults(fn=cmd_export)

    sp = sub.add_parser("infer", help="encoder latency (batch 1) and throughput (batch 64)")
    sp.add_argument("--arch", choices=archs, default="conv32")
    sp.add_argument("--runtime", choices=["ort", "torch"], default="ort")
    sp.add_argument("--threads", type=int, default=1)
    sp.add_argument("--artifacts", required=True)
    sp.add_argument("--runs-b1", type=int, default=200)
    sp.add_argument("--runs-b64", type=int, default=20)
    sp.add_argument("--out", required=True)
    sp.set_defaults(fn=cmd_infer)

    a = p.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
