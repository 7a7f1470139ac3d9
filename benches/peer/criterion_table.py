#!/usr/bin/env python3
"""Turns criterion's console output into a Markdown table of medians.
Usage: criterion_table.py CRITERION_OUTPUT.txt >> BENCHMARKS.md"""
import re
import sys

text = open(sys.argv[1]).read()
# "name\n   time:   [lo unit median unit hi unit]" (the name may share the line).
rows = re.findall(r"^(\S+)\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", text, re.M)
print("## Stage benches (criterion, `cargo bench --bench pipeline`)")
print()
print("Medians of the stages around the engine, same machine and run as above.")
print()
print("| bench | median |")
print("| --- | ---: |")
for name, median in rows:
    print(f"| `{name}` | {median} |")
if not rows:
    sys.exit("error: no criterion results found in " + sys.argv[1])
