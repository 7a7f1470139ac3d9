#!/usr/bin/env python3
"""Scores reading against ground truth, edgewatch (`detect` with [read])
beside RapidOCR's whole pipeline, on the same images in one run.

For each true line, the reads of every box whose centre lies inside the
line's box (widened by a quarter of its height) are joined left to right:
a line found as two boxes still counts. Whitespace counts nowhere (PP-OCR's
recognizer is not sure of the spaces between words); case and every other
character count. Prints a Markdown table.

Usage: read_compare.py TRUTH.jsonl EDGEWATCH.jsonl EDGEWATCH_RSS_KIB EDGEWATCH_WALL_S PEER.jsonl PEER_WALL_S SET_NAME
"""
import json
import sys


def squash(s):
    return "".join(s.split())


def lev(a, b):
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def line_reads(truth_box, found):
    x1, y1, x2, y2 = truth_box
    pad = (y2 - y1) / 4
    inside = []
    for box, text in found:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if x1 - pad <= cx <= x2 + pad and y1 - pad <= cy <= y2 + pad:
            inside.append((box[0], text))
    return squash("".join(t for _, t in sorted(inside)))


def score(truth, results):
    exact = total = 0
    chars = errors = 0
    for t in truth:
        found = results.get(t["file"], [])
        for line in t["truth"]:
            want = squash(line["text"])
            got = line_reads(line["box"], found)
            total += 1
            exact += got == want
            chars += len(want)
            errors += min(lev(want, got), len(want))
    return exact, total, 1 - errors / max(chars, 1)


def main():
    truth_path, ew_path, ew_rss, ew_wall, peer_path, peer_wall, name = sys.argv[1:8]
    truth = [json.loads(l) for l in open(truth_path) if l.strip()]
    ew, ew_ms = {}, []
    for l in open(ew_path):
        m = json.loads(l)
        path = m["image"]["path"]
        ew[path] = [(d["box"], d.get("text", "")) for d in m["detections"]]
        ew_ms.append(m["timing_ms"]["total"])
    peer, peer_ms, peer_rss = {}, [], 0
    for l in open(peer_path):
        m = json.loads(l)
        if "peak_rss_kib" in m:
            peer_rss = m["peak_rss_kib"]
            continue
        peer[m["file"]] = [(x["box"], x["text"]) for x in m["lines"]]
        peer_ms.append(m["ms"])
    n = len(truth)
    med = lambda v: sorted(v)[len(v) // 2] if v else float("nan")
    rows = []
    for who, res, ms, wall, rss in (
        ("edgewatch (detect + read)", ew, ew_ms, float(ew_wall), int(ew_rss)),
        ("RapidOCR 1.4.4 (det + cls + rec)", peer, peer_ms, float(peer_wall), peer_rss),
    ):
        exact, total, acc = score(truth, res)
        rows.append((who, exact, total, acc, med(ms), n / wall, rss))
    print(f"\n**{name}** ({n} images, {rows[0][2]} lines)\n")
    print("| | lines read exactly | character accuracy (1 − CER) | median ms/image | images/s (whole run) | peak RSS |")
    print("| --- | --- | --- | --- | --- | --- |")
    for who, exact, total, acc, m, ips, rss in rows:
        print(f"| {who} | {exact}/{total} ({exact / max(total, 1):.1%}) | {acc:.3f} | {m:.0f} | {ips:.2f} | {rss / 1024:.0f} MiB |")
    ratio = rows[0][5] / rows[1][5] if rows[1][5] else float("nan")
    print(f"\nedgewatch / RapidOCR images/s: {ratio:.2f}×")


if __name__ == "__main__":
    main()
