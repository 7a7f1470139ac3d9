#!/usr/bin/env python3
"""The newest peer: RapidOCR 3.x (`rapidocr` on PyPI; ONNX Runtime + OpenCV),
text detection only, default settings: its default detector is the
PP-OCRv6 small model its wheel ships. Prints `ready` on stderr once the
model is loaded, then one JSON line per image, as rapidocr_det.py does.

Usage: rapidocr3_det.py IMAGE...
"""
import json
import sys
import time

import cv2
import numpy as np
from rapidocr import RapidOCR


def main():
    engine = RapidOCR()
    # It loads its models on the first call: one blank image first, so
    # `ready` means ready, as it does for the other runners.
    engine(np.full((64, 64, 3), 255, np.uint8), use_det=True, use_cls=False, use_rec=False)
    print("ready", file=sys.stderr, flush=True)
    for path in sys.argv[1:]:
        start = time.perf_counter()
        img = cv2.imread(path)
        result = engine(img, use_det=True, use_cls=False, use_rec=False)
        ms = (time.perf_counter() - start) * 1000.0
        boxes = []
        for quad in result.boxes if result.boxes is not None else []:
            xs = [float(p[0]) for p in quad]
            ys = [float(p[1]) for p in quad]
            boxes.append([min(xs), min(ys), max(xs), max(ys)])
        print(json.dumps({"file": path, "ms": ms, "boxes": boxes}), flush=True)


if __name__ == "__main__":
    main()
