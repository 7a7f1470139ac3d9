#!/usr/bin/env python3
"""The peer for reading: RapidOCR's whole pipeline (`RapidOCR()(img)`: text
detection, the angle classifier and recognition), default settings. Prints
`ready` on stderr once the models are loaded, then one JSON line per image:
{"file", "ms", "lines": [{"box": [x1, y1, x2, y2], "text", "score"}]}, and
last {"peak_rss_kib": N}. The time covers reading the file and the whole
pipeline, as edgewatch's `timing_ms.total` does.

Usage: rapidocr_read.py IMAGE...
"""
import json
import resource
import sys
import time

import cv2
from rapidocr_onnxruntime import RapidOCR


def main():
    engine = RapidOCR()
    print("ready", file=sys.stderr, flush=True)
    for path in sys.argv[1:]:
        start = time.perf_counter()
        img = cv2.imread(path)
        result, _ = engine(img)
        ms = (time.perf_counter() - start) * 1000.0
        lines = []
        for quad, text, score in result or []:
            xs = [p[0] for p in quad]
            ys = [p[1] for p in quad]
            lines.append({"box": [float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))],
                          "text": text, "score": float(score)})
        print(json.dumps({"file": path, "ms": ms, "lines": lines}), flush=True)
    print(json.dumps({"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}), flush=True)


if __name__ == "__main__":
    main()
