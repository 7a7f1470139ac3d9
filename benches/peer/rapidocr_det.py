#!/usr/bin/env python3
"""The peer: RapidOCR (ONNX Runtime + OpenCV) text detection only, default
settings. Prints `ready` on stderr once the model is loaded, then one JSON
line per image: {"file", "ms", "boxes": [[x1, y1, x2, y2], ...]}. The time
covers reading the file and detection, as edgewatch's `timing_ms.total` does.

Usage: rapidocr_det.py IMAGE...
"""
import json
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
        result, _ = engine(img, use_det=True, use_cls=False, use_rec=False)
        ms = (time.perf_counter() - start) * 1000.0
        boxes = []
        for quad in result or []:
            xs = [p[0] for p in quad]
            ys = [p[1] for p in quad]
            boxes.append([float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys))])
        print(json.dumps({"file": path, "ms": ms, "boxes": boxes}), flush=True)


if __name__ == "__main__":
    main()
