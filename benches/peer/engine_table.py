#!/usr/bin/env python3
"""Turns `cargo bench --bench engines` output into the per-backend table:
model megapixels per second on one core, GFLOP/s (PP-OCRv4 det: 11.24 GFLOP
per model megapixel, counted from its Conv and ConvTranspose layers, 2 FLOP
per multiply-add) and the share of one core's FP32 peak.

The peak is the core's clock (/proc/cpuinfo, or MHZ) times its FP32 FLOP per
cycle: FLOP_PER_CYCLE, else 64 where the CPU has AVX-512 (two 512-bit FMA
pipes, as on AMD Zen 5 and Intel server cores; Zen 4 splits them and gets
32) and 32 with AVX2 + FMA. Usage: engine_table.py ENGINES_OUTPUT.txt"""
import os
import re
import sys

GFLOP_PER_MP = 11.24
UNITS = {"s": 1.0, "ms": 1e-3, "µs": 1e-6, "us": 1e-6, "ns": 1e-9}

text = open(sys.argv[1]).read()
rows = re.findall(r"^engine/(\S+)/1-thread/(\d+)x(\d+)\s+time:\s+\[\S+ \S+ (\S+) (\S+) \S+ \S+\]", text, re.M)
if not rows:
    sys.exit("error: no engine results found in " + sys.argv[1])
cpuinfo = open("/proc/cpuinfo").read()
mhz = float(os.environ.get("MHZ") or re.search(r"^cpu MHz\s*:\s*([\d.]+)", cpuinfo, re.M).group(1))
flags = re.search(r"^flags\s*:(.*)$", cpuinfo, re.M).group(1).split()
per_cycle = int(os.environ.get("FLOP_PER_CYCLE") or (64 if "avx512f" in flags else 32))
peak = mhz / 1000 * per_cycle

print("## The engines alone (criterion, `cargo bench --bench engines`)")
print()
print("One PP-OCRv4 det run per iteration on one thread (what one worker runs), same machine as above.")
print(f"GFLOP/s = {GFLOP_PER_MP} GFLOP per model megapixel × MP/s; one core's FP32 peak taken as")
print(f"{mhz:.0f} MHz × {per_cycle} FLOP/cycle = {peak:.0f} GFLOP/s.")
print()
print("| backend | input | median ms | model MP/s per core | GFLOP/s | share of FP32 peak |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for backend, w, h, median, unit in rows:
    secs = float(median) * UNITS[unit]
    mp = int(w) * int(h) / 1e6
    gflops = GFLOP_PER_MP * mp / secs
    print(f"| {backend} | {w}×{h} | {secs * 1e3:.0f} | {mp / secs:.2f} | {gflops:.1f} | {100 * gflops / peak:.0f}% |")
