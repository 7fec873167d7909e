#!/usr/bin/env python3
"""Prints the ratio table of issue 5 from one run of scripts/compare.sh:
the anchors' JSON lines (PyTorch training steps, ONNX Runtime inference) and
criterion's estimates (median time per iteration) of our benches.

    compare.py ANCHORS_JSONL CRITERION_DIR
"""
import json
import os
import sys


def criterion_median_s(root, group, bench, param):
    path = os.path.join(root, group, bench, param, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["median"]["point_estimate"] / 1e9


def main():
    anchors, crit = sys.argv[1], sys.argv[2]
    recs = [json.loads(line) for line in open(anchors) if line.strip()]
    rows = []
    for loss, ours in (("jsd", "Jsd"), ("nce", "Nce")):
        for t in (1, 2):
            peer = [r for r in recs if r["kind"] == "train" and r["loss"] == loss and r["threads"] == t]
            if not peer:
                continue
            peer_ips = peer[-1]["images_per_s"]["median"]
            our_ips = 64 / criterion_median_s(crit, "train_step", f"conv32 {ours}", f"{t}t")
            rows.append((f"train step conv32 {loss.upper()}, batch 64, {t} thread(s) [img/s]",
                         our_ips, f"PyTorch {peer[-1].get('torch', '')}", peer_ips, our_ips / peer_ips, "≥ 1.5"))
    ort = {r["batch"]: r for r in recs if r["kind"] == "infer" and r["runtime"] == "ort" and r["threads"] == 1}
    if 1 in ort:
        peer_ms = ort[1]["latency_s"]["median"] * 1e3
        for dtype, target in (("f32", "≤ 0.7"), ("f16", "≤ 0.5"), ("bf16", "≤ 0.5")):
            ours = criterion_median_s(crit, "infer", f"conv32 {dtype}", "batch 1") * 1e3
            rows.append((f"conv32 encoder, batch 1, 1 thread, {dtype} weights [ms]", ours,
                         f"ORT {ort[1]['version']} f32", peer_ms, ours / peer_ms, target))
    if 64 in ort:
        peer_ips = ort[64]["images_per_s"]["median"]
        ours = 64 / criterion_median_s(crit, "infer", "conv32 f32", "batch 64")
        rows.append(("conv32 encoder, batch 64, 1 thread [img/s]", ours, f"ORT {ort[64]['version']}",
                     peer_ips, ours / peer_ips, "≥ 1.2"))
    print("| measure | infomax | peer | peer figure | ratio | target |")
    print("|---|---|---|---|---|---|")
    for name, ours, peer, pv, ratio, target in rows:
        print(f"| {name} | {ours:.3g} | {peer} | {pv:.3g} | {ratio:.2f} | {target} |")


if __name__ == "__main__":
    main()
