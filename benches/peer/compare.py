#!/usr/bin/env python3
"""Runs edgewatch and RapidOCR side by side on the same image sets,
alternating, and writes the Markdown report.

Each run is a fresh process over a whole set. Measured per run:
- cold start: spawn to ready (edgewatch: its "model … classes" log line,
  after the model is loaded and optimised; RapidOCR: after `RapidOCR()`);
- images/s: images / (exit − ready);
- latency per image: edgewatch's `timing_ms.total` (decode + infer + post),
  RapidOCR's imread + detection;
- peak RSS: the child's `ru_maxrss` from wait4 (no sampling gaps);
- recall and precision against the known text boxes at IoU >= 0.3.
Figures are medians over the rounds (peak RSS: the largest).

Usage: compare.py --bin EDGEWATCH --peer-python PY --peer NAME:PYTHONPATH:SCRIPT ...
                  --set NAME:TRUTH.jsonl ... --runner NAME:CONFIG ... --rounds N --out FILE
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def iou(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / (area(a) + area(b) - inter)


def score(truth, found, thr=0.3):
    """(hits on truth, true positives among found, len(truth), len(found))."""
    hit = sum(1 for t in truth if any(iou(t, f) >= thr for f in found))
    tp = sum(1 for f in found if any(iou(t, f) >= thr for t in truth))
    return hit, tp, len(truth), len(found)


def run(cmd, env, ready_marker):
    """Runs `cmd`; returns (cold_s, busy_s, stdout lines, peak RSS bytes)."""
    spawned = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    ready = [None]
    err_lines = []

    def watch():
        for line in proc.stderr:
            err_lines.append(line)
            if ready[0] is None and ready_marker in line:
                ready[0] = time.perf_counter()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    out = proc.stdout.read().splitlines()
    _, status, usage = os.wait4(proc.pid, 0)
    done = time.perf_counter()
    t.join()
    if status != 0:
        sys.exit(f"error: {' '.join(cmd[:3])} … failed:\n{''.join(err_lines[-20:])}")
    if ready[0] is None:
        sys.exit(f"error: {cmd[0]} never said {ready_marker!r}:\n{''.join(err_lines[-20:])}")
    return ready[0] - spawned, done - ready[0], out, usage.ru_maxrss * 1024


def edgewatch(args, config, files):
    env = dict(os.environ, EDGEWATCH_LOG="info")
    cold, busy, out, rss = run([args.bin, "detect", "--config", config, *files], env, " classes, labels from ")
    per = {}
    for line in out:
        msg = json.loads(line)
        per[msg["image"]["path"]] = (msg["timing_ms"]["total"], [d["box"] for d in msg["detections"]])
    return cold, busy, per, rss


def rapidocr(args, peer, files):
    """`peer` is (PYTHONPATH, script in this folder)."""
    path, script = peer
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", ""))
    if not env["OMP_NUM_THREADS"]:
        del env["OMP_NUM_THREADS"]
    cmd = [args.peer_python, str(HERE / script), *files]
    cold, busy, out, rss = run(cmd, env, "ready")
    per = {}
    for line in out:
        msg = json.loads(line)
        per[msg["file"]] = (msg["ms"], msg["boxes"])
    return cold, busy, per, rss


def pct(values, p):
    values = sorted(values)
    k = (len(values) - 1) * p / 100.0
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def machine():
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {mem} RAM, Linux {platform.release()}, Python {platform.python_version()}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--peer-python", default=sys.executable)
    ap.add_argument("--peer", action="append", required=True,
                    help="NAME:PYTHONPATH:SCRIPT (the first is the one ratios are taken to)")
    ap.add_argument("--set", action="append", required=True, help="NAME:TRUTH.jsonl")
    ap.add_argument("--runner", action="append", required=True, help="NAME:CONFIG.toml")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="")
    args = ap.parse_args()

    sections = []
    for spec in args.set:
        name, truth_file = spec.rsplit(":", 1)
        truth = {}
        for line in open(truth_file):
            rec = json.loads(line)
            # Real scans come without line ground truth: speed and boxes only.
            truth[rec["file"]] = None if rec["truth"] is None else [t["box"] for t in rec["truth"]]
        files = sorted(truth)
        peers = [p.split(":", 2) for p in args.peer]
        runners = [(p[0], tuple(p[1:])) for p in peers] + [
            (label, config) for label, config in (r.split(":", 1) for r in args.runner)
        ]
        results = {r[0]: [] for r in runners}
        for rnd in range(args.rounds):
            # Alternate the order each round so neither side always runs on a
            # warmer or cooler machine.
            order = runners if rnd % 2 == 0 else list(reversed(runners))
            for label, config in order:
                res = rapidocr(args, config, files) if isinstance(config, tuple) else edgewatch(args, config, files)
                missing = [f for f in files if f not in res[2]]
                if missing:
                    sys.exit(f"error: {label} gave no result for {missing[:3]}")
                results[label].append(res)
                print(f"[{name}] round {rnd + 1} {label}: {len(files) / res[1]:.2f} img/s, "
                      f"peak {res[3] / 2**20:.0f} MiB", file=sys.stderr, flush=True)
        rows = []
        for label, _ in runners:
            runs = results[label]
            lat = [ms for r in runs for ms, _ in r[2].values()]
            hits = tp = nt = nf = 0
            boxes = sum(len(runs[0][2][f][1]) for f in files)
            for f in files:
                if truth[f] is None:
                    continue
                h, t, a, b = score(truth[f], runs[0][2][f][1])
                hits, tp, nt, nf = hits + h, tp + t, nt + a, nf + b
            rows.append({
                "label": label,
                "ips": statistics.median(len(files) / r[1] for r in runs),
                "p50": pct(lat, 50),
                "p99": pct(lat, 99),
                "rss": max(r[3] for r in runs) / 2**20,
                "cold": statistics.median(r[0] for r in runs),
                "recall": hits / nt if nt else None,
                "precision": tp / nf if nf else 0.0,
                "hits": f"{hits}/{nt}",
                "boxes": boxes,
            })
        sections.append((name, len(files), rows))

    lines = [
        "# Benchmarks: edgewatch beside RapidOCR",
        "",
        "Generated by `benches/peer/bench-peer.sh`; do not edit by hand. Every figure",
        "below comes from one run of the script: both sides on the same machine and the",
        "same images, alternating, each run a fresh process over the whole set.",
        "",
        f"- Machine: {machine()}",
        f"- Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- Command: `{args.command or ' '.join(sys.argv)}`",
        f"- Rounds: {args.rounds} per side and set; images/s, latencies and cold start are",
        "  medians over the rounds, peak RSS the largest.",
        "- Models: PP-OCRv4 det (`ch_PP-OCRv4_det_infer.onnx`, sha256 d2a7720d…) for RapidOCR 1.4.4",
        "  and edgewatch; PP-OCRv6 small det (the file RapidOCR 3.10's wheel ships, sha256 090f04ab…)",
        "  for RapidOCR 3.10 and the runner that names it; INT8: `engines/make-int8.sh`.",
        "- RapidOCR runs text detection only (`use_det=True, use_cls=False, use_rec=False`)",
        "  with its default settings (longest side capped at 2000, `limit_side_len` 736 `min`).",
        "- edgewatch runs as shipped unless the runner says otherwise: `backend = \"auto\"`",
        "  (ONNX Runtime where its library is found and the budget holds it, else tract),",
        "  `[tiling] mode = \"auto\"` at the recall-first scale 7 / `min_text_px` (0.7), budget 320 MiB.",
        "- images/s = images / (exit − ready); latency = per image, file read included;",
        "  cold start = spawn to model ready; peak RSS = the child's `ru_maxrss`;",
        "  recall / precision: boxes matching the known text at IoU ≥ 0.3.",
        "",
    ]
    for name, n, rows in sections:
        first, newest = rows[0], rows[min(1, len(args.peer) - 1)]
        lines += [f"## {name} ({n} images)", "",
                  "| runner | images/s | × RapidOCR 1.4.4 | × RapidOCR 3.10 | p50 ms | p99 ms | peak RSS MiB | cold start s | recall | precision | boxes |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in rows:
            ratio = r["ips"] / first["ips"] if first["ips"] else 0.0
            ratio3 = r["ips"] / newest["ips"] if newest["ips"] else 0.0
            recall = "—" if r["recall"] is None else f"{r['recall']:.3f} ({r['hits']})"
            precision = "—" if r["recall"] is None else f"{r['precision']:.3f}"
            lines.append(
                f"| {r['label']} | {r['ips']:.2f} | {ratio:.2f} | {ratio3:.2f} | {r['p50']:.0f} | {r['p99']:.0f} | "
                f"{r['rss']:.0f} | {r['cold']:.2f} | {recall} | {precision} | {r['boxes']} |"
            )
        lines.append("")
    Path(args.out).write_text("\n".join(lines))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
