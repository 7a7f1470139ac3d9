#!/usr/bin/env python3
"""Writes the small, real ONNX models the YOLO and classifier tests run.

No public detector weights can be downloaded on the test machines, so these
are hand-built graphs with real operators (AveragePool, Mul, Concat,
Transpose, Gemm, Softmax) whose behaviour is known exactly:

* yolov8-squares.onnx  -- input `images` [1,3,640,640] RGB in [0,1]; output
  `output0` [1, 4+3, 1369] in the YOLOv8/v11 layout (no objectness). Each of
  the 37x37 candidates is a 64x64 window at stride 16; its class scores are
  the window's mean red, green and blue, raised to the 4th power. A pure red,
  green or blue 64x64 square aligned to 16 model pixels scores 1.0 in exactly
  one window; the shifted windows score at most 0.32 and are removed by NMS
  (IoU 0.6) or by the default 0.25 threshold. Labels are in the ONNX metadata
  (`names`), written as Ultralytics exports write them.
* yolov5-squares.onnx  -- the same detector in the YOLOv5 layout
  [1, 1369, 5+3]: objectness = the largest class score, class scores = the
  window means. No metadata: labels come from the config.
* classify-colors.onnx -- input `input` [1,3,224,224] ImageNet-normalised;
  output `logits` [1,3] = 4 x the mean normalised R, G and B: a red crop is
  class 0, green 1, blue 2.
* classify-colors-softmax.onnx -- the same with a Softmax on the output
  (probabilities, which the decoder must not soft-max again).

Usage: make_test_models.py OUT_DIR
"""
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 640
WIN = 64
STRIDE = 16
CELLS = (SIZE - WIN) // STRIDE + 1
N = CELLS * CELLS
LABELS = ["red", "green", "blue"]


def window_boxes():
    """cx, cy, w, h of every window, row-major: [1, 4, N]."""
    idx = np.arange(CELLS, dtype=np.float32) * STRIDE + WIN / 2
    cy, cx = np.meshgrid(idx, idx, indexing="ij")
    boxes = np.stack(
        [cx.ravel(), cy.ravel(), np.full(N, WIN, np.float32), np.full(N, WIN, np.float32)]
    )
    return boxes[None].astype(np.float32)


def opset():
    return [helper.make_opsetid("", 13)]


def save(model, path):
    onnx.checker.check_model(model, full_check=True)
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    print(f"wrote {path}")


def window_scores(nodes):
    """Nodes computing `pool` [1,3,N] (window means) and `score4` (^4)."""
    nodes += [
        helper.make_node(
            "AveragePool", ["images"], ["pooled"], kernel_shape=[WIN, WIN], strides=[STRIDE, STRIDE]
        ),
        helper.make_node("Reshape", ["pooled", "shape_1_3_n"], ["pool"]),
        helper.make_node("Mul", ["pool", "pool"], ["pool2"]),
        helper.make_node("Mul", ["pool2", "pool2"], ["score4"]),
    ]


def yolo_inputs():
    return [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, SIZE, SIZE])]


def yolov8(out_dir):
    nodes = []
    window_scores(nodes)
    nodes.append(helper.make_node("Concat", ["boxes", "score4"], ["output0"], axis=1))
    graph = helper.make_graph(
        nodes,
        "yolov8-squares",
        yolo_inputs(),
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 4 + len(LABELS), N])],
        initializer=[
            numpy_helper.from_array(window_boxes(), "boxes"),
            numpy_helper.from_array(np.array([1, 3, N], np.int64), "shape_1_3_n"),
        ],
    )
    model = helper.make_model(graph, opset_imports=opset(), producer_name="edgewatch-tests")
    names = "{" + ", ".join(f"{i}: '{n}'" for i, n in enumerate(LABELS)) + "}"
    helper.set_model_props(
        model, {"names": names, "stride": "32", "task": "detect", "imgsz": f"[{SIZE}, {SIZE}]"}
    )
    save(model, out_dir / "yolov8-squares.onnx")


def yolov5(out_dir):
    nodes = []
    window_scores(nodes)
    nodes += [
        helper.make_node("ReduceMax", ["score4"], ["objectness"], axes=[1], keepdims=1),
        helper.make_node("Concat", ["boxes", "objectness", "pool"], ["rows"], axis=1),
        helper.make_node("Transpose", ["rows"], ["output0"], perm=[0, 2, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "yolov5-squares",
        yolo_inputs(),
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, N, 5 + len(LABELS)])],
        initializer=[
            numpy_helper.from_array(window_boxes(), "boxes"),
            numpy_helper.from_array(np.array([1, 3, N], np.int64), "shape_1_3_n"),
        ],
    )
    model = helper.make_model(graph, opset_imports=opset(), producer_name="edgewatch-tests")
    save(model, out_dir / "yolov5-squares.onnx")


def classifier(out_dir, softmax):
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["gap"]),
        helper.make_node("Flatten", ["gap"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "weight", "bias"], ["logits" if not softmax else "raw"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["raw"], ["logits"], axis=1))
    name = "classify-colors-softmax" if softmax else "classify-colors"
    graph = helper.make_graph(
        nodes,
        name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, len(LABELS)])],
        initializer=[
            numpy_helper.from_array(np.eye(3, dtype=np.float32) * 4.0, "weight"),
            numpy_helper.from_array(np.zeros(3, np.float32), "bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=opset(), producer_name="edgewatch-tests")
    save(model, out_dir / f"{name}.onnx")


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "test"
    out_dir.mkdir(parents=True, exist_ok=True)
    yolov8(out_dir)
    yolov5(out_dir)
    classifier(out_dir, softmax=False)
    classifier(out_dir, softmax=True)
    (out_dir / "colors.names").write_text("\n".join(LABELS) + "\n")
    print(f"wrote {out_dir / 'colors.names'}")


if __name__ == "__main__":
    main()
