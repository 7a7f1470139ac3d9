#!/usr/bin/env python3
"""Quantizes the PP-OCR text detector to INT8 with ONNX Runtime's static QDQ
quantization, calibrated on sample frames.

Usage: quantize_int8.py MODEL.onnx OUT.onnx IMAGE... [--size 768x736] [--method minmax|percentile|entropy]

Each calibration image is cut into model-sized windows the way edgewatch's
`auto` tiling feeds them (BGR, (x/255 - 0.5) / 0.5, NCHW), so the ranges are
those of real inputs. Weights are per-channel INT8, activations UINT8, in
QDQ form: every engine that reads QDQ (ONNX Runtime, TensorRT) can run it.
"""
import argparse
import sys

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process


def load_rgb(path):
    """RGB uint8 HxWx3."""
    from PIL import Image  # noqa: PLC0415  (only this script needs Pillow)

    return np.asarray(Image.open(path).convert("RGB"))


def windows(img, h, w, stride_frac=0.85):
    H, W = img.shape[:2]
    if H < h or W < w:
        pad = np.full((max(H, h), max(W, w), 3), 255, np.uint8)
        pad[:H, :W] = img
        img, H, W = pad, pad.shape[0], pad.shape[1]
    ys = list(range(0, H - h + 1, int(h * stride_frac))) or [0]
    xs = list(range(0, W - w + 1, int(w * stride_frac))) or [0]
    for y in ys:
        for x in xs:
            yield img[y : y + h, x : x + w]


def to_tensor(rgb):
    bgr = rgb[..., ::-1].astype(np.float32) / 255.0
    return ((bgr - 0.5) / 0.5).transpose(2, 0, 1)[None].copy()


class Frames(CalibrationDataReader):
    def __init__(self, images, h, w, name, limit):
        self.items = []
        for path in images:
            img = load_rgb(path)
            for win in windows(img, h, w):
                self.items.append(win)
                if len(self.items) >= limit:
                    break
        self.name = name
        self.i = 0
        print(f"calibrating on {len(self.items)} windows of {w}x{h} from {len(images)} image(s)", file=sys.stderr)

    def get_next(self):
        if self.i >= len(self.items):
            return None
        self.i += 1
        return {self.name: to_tensor(self.items[self.i - 1])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("images", nargs="+")
    ap.add_argument("--size", default="768x736", help="HxW of the calibration windows")
    ap.add_argument("--method", default="percentile", choices=["minmax", "percentile", "entropy"])
    ap.add_argument("--limit", type=int, default=48, help="at most this many windows")
    ap.add_argument("--fp32-ends", action="store_true",
                    help="keep the stem's first convolution and the DB head (after the last Concat) in FP32")
    args = ap.parse_args()
    h, w = (int(v) for v in args.size.split("x"))
    import onnx  # noqa: PLC0415
    from onnx import version_converter  # noqa: PLC0415

    # Per-channel DequantizeLinear (its `axis`) needs opset 13; PaddleOCR's
    # exports are opset 11-12, and a runtime refuses the model otherwise.
    upgraded = args.out + ".op13.onnx"
    model = onnx.load(args.model)
    if model.opset_import[0].version < 13:
        model = version_converter.convert_version(model, 13)
    onnx.save(model, upgraded)
    pre = args.out + ".pre.onnx"
    # The symbolic pass cannot follow PP-OCR's dynamic shapes; ONNX's own
    # shape inference is enough for QDQ placement.
    quant_pre_process(upgraded, pre, skip_symbolic_shape=True)

    graph = onnx.load(pre).graph
    name = graph.input[0].name
    exclude = []
    if args.fp32_ends:
        nodes = list(graph.node)
        last_concat = max(i for i, n in enumerate(nodes) if n.op_type == "Concat")
        exclude = [n.name for n in nodes[last_concat + 1 :]]
        exclude += [next(n.name for n in nodes if n.op_type == "Conv")]
        print(f"keeping {len(exclude)} node(s) in FP32: the first Conv and the head", file=sys.stderr)
    method = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[args.method]
    quantize_static(
        pre,
        args.out,
        Frames(args.images, h, w, name, args.limit),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=method,
        nodes_to_exclude=exclude,
        extra_options={"CalibPercentile": 99.99} if method == CalibrationMethod.Percentile else {},
    )
    import os  # noqa: PLC0415

    os.remove(pre)
    os.remove(upgraded)
    print(f"wrote {args.out} ({os.path.getsize(args.out)} bytes, {args.method} calibration)", file=sys.stderr)


if __name__ == "__main__":
    main()
