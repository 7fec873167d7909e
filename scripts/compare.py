#!/usr/bin/env python3
"""Prints the ratio tables of issue 5 from one run of scripts/compare.sh.

    compare.py ROUND_DIR [ROUND_DIR ...]

Each ROUND_DIR holds one round of both sides: `peer.jsonl` (PyTorch
training steps and ONNX Runtime inference, from scripts/torch/peer.py, whose
docstring gives the record fields), `fma.jsonl` (`examples/fma_peak --threads
1`, the peer of the GEMM-phase row),
`rss.jsonl` (peak resident set sizes around both sides' training steps) and
`criterion/` (our benches' estimates). Prints each round's table, then, with
several rounds, every row's per-round ratios and their median.
"""
import json
import os
import statistics
import sys


def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def median_s(crit, group, bench, param):
    with open(os.path.join(crit, group, bench, param, "new", "estimates.json")) as f:
        return json.load(f)["median"]["point_estimate"] / 1e9


def round_rows(d):
    """(measure, ours, peer name, peer figure or None, ratio, target, lower_is_better)."""
    recs = [r for r in load(os.path.join(d, "peer.jsonl")) if r.get("arch") == "conv32"]
    crit = os.path.join(d, "criterion")
    rows, ips = [], {}
    for loss, ours in (("jsd", "Jsd"), ("nce", "Nce")):
        for t in (1, 2):
            peer = [r for r in recs if r["kind"] == "train" and r["loss"] == loss and r["threads"] == t]
            if not peer:
                continue
            pv = peer[-1]["images_per_s"]["median"]
            ov = 64 / median_s(crit, "train_step", f"conv32 {ours}", f"{t}t")
            ips[(loss, t)] = (ov, pv)
            rows.append((f"train step conv32 {loss.upper()}, batch 64, {t} thread(s) [img/s]", ov, "PyTorch", pv,
                         ov / pv, 1.5, False))
    ort = {r["batch"]: r for r in recs if r["kind"] == "infer" and r["runtime"] == "ort" and r["threads"] == 1}
    if 1 in ort:
        pv = ort[1]["latency_s"]["median"] * 1e3
        for dtype, target in (("f32", 0.7), ("f16", 0.5), ("bf16", 0.5)):
            ov = median_s(crit, "infer", f"conv32 {dtype}", "batch 1") * 1e3
            rows.append((f"conv32 encoder, batch 1, 1 thread, {dtype} weights [ms]", ov, "ORT f32", pv, ov / pv,
                         target, True))
    if 64 in ort:
        pv = ort[64]["images_per_s"]["median"]
        ov = 64 / median_s(crit, "infer", "conv32 f32", "batch 64")
        rows.append(("conv32 encoder, batch 64, 1 thread [img/s]", ov, "ORT", pv, ov / pv, 1.2, False))
    # GEMM-bound phases: criterion's throughput is the FLOPs of one iteration.
    # The peak is the higher of the ymm and zmm probes of this round (the
    # zmm one is absent where the CPU has no AVX-512): on Zen 4 they are
    # equal, on Zen 5 and Intel server parts zmm doubles it.
    fma = load(os.path.join(d, "fma.jsonl"))
    peak = max(r["gflops_median"] for r in fma if r.get("what") in ("ymm-fma", "zmm-fma"))
    phase = {}
    for t in (1, 2):
        with open(os.path.join(crit, "phases", "conv32 step GEMM phases", f"{t}t", "new", "benchmark.json")) as f:
            flops = json.load(f)["throughput"]["Elements"]
        phase[t] = flops / median_s(crit, "phases", "conv32 step GEMM phases", f"{t}t") / 1e9
    rows.append(("GEMM-bound phases of the conv32 step, 1 thread [GFLOP/s]", phase[1], "FMA peak", peak,
                 phase[1] / peak, 0.8, False))
    rows.append(("the same phases, 2 threads / 1 thread [×]", phase[2] / phase[1], "–", None, phase[2] / phase[1],
                 1.85, False))
    for loss in ("jsd", "nce"):
        if (loss, 1) in ips and (loss, 2) in ips:
            ov = ips[(loss, 2)][0] / ips[(loss, 1)][0]
            pv = ips[(loss, 2)][1] / ips[(loss, 1)][1]
            rows.append((f"whole {loss.upper()} step, 2 threads / 1 thread [×]", ov, "PyTorch", pv, ov, 1.85, False))
    mem = load(os.path.join(d, "rss.jsonl"))
    for t in (1, 2):
        o = [r for r in mem if r["side"] == "infomax" and r["threads"] == t and r["loss"] == "jsd"]
        p = [r for r in mem if r["side"] == "pytorch" and r["threads"] == t and r["loss"] == "jsd"]
        if o and p:
            ov, pv = o[-1]["max_rss_kb"] / 1024, p[-1]["max_rss_kb"] / 1024
            rows.append((f"peak RSS, conv32 JSD step, batch 64, {t} thread(s) [MiB]", ov, "PyTorch", pv, ov / pv,
                         1.0, True))
    return rows, peak


def met(ratio, target, lower):
    return "yes" if (ratio <= target if lower else ratio >= target) else "no"


def main():
    dirs = sys.argv[1:]
    if not dirs:
        sys.exit(__doc__)
    rounds = []
    for i, d in enumerate(dirs, 1):
        rows, peak = round_rows(d)
        rounds.append(rows)
        print(f"\nround {i} ({d}); FMA peak, 1 thread: {peak:.1f} GFLOP/s")
        print("| measure | infomax | peer | peer figure | ratio | target | met |")
        print("|---|---|---|---|---|---|---|")
        for name, ov, peer, pv, ratio, target, lower in rows:
            pvs = "–" if pv is None else f"{pv:.3g}"
            sign = "≤" if lower else "≥"
            print(f"| {name} | {ov:.3g} | {peer} | {pvs} | {ratio:.2f} | {sign} {target} | {met(ratio, target, lower)} |")
    if len(rounds) > 1:
        print(f"\nall {len(rounds)} rounds: ratio per round, and their median")
        print("| measure | " + " | ".join(f"round {i}" for i in range(1, len(rounds) + 1)) + " | median | target | met |")
        print("|---|" + "---|" * (len(rounds) + 3))
        # Rows are matched by name; a round that lacks a row shows "–" there
        # and the median is over the rounds that have it.
        by_name = [{row[0]: row for row in r} for r in rounds]
        names = []
        for r in rounds:
            names += [row[0] for row in r if row[0] not in names]
        for name in names:
            row = next(b[name] for b in by_name if name in b)
            target, lower = row[5], row[6]
            ratios = [b[name][4] if name in b else None for b in by_name]
            med = statistics.median([x for x in ratios if x is not None])
            sign = "≤" if lower else "≥"
            print(f"| {name} | " + " | ".join("–" if x is None else f"{x:.2f}" for x in ratios)
                  + f" | {med:.2f} | {sign} {target} | {met(med, target, lower)} |")


if __name__ == "__main__":
    main()
