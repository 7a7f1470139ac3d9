#!/usr/bin/env python3
"""Writes the small, real ONNX models the YOLO, classifier and DB tests run.

No public detector weights can be downloaded on the test machines, so these
are hand-built graphs with real operators (Conv, AveragePool, Mul, Concat,
Transpose, Gemm, Softmax, Sigmoid) whose behaviour is known exactly. They
are written the way real exporters write theirs, because that is what
operators bring: a symbolic batch (and, where the exporter makes them
dynamic, symbolic height and width) named as each exporter names it,
`value_info` for the tensors inside the graph carrying those symbols (ONNX
shape inference, which torch.onnx and paddle2onnx run, writes it), node and
tensor names in each exporter's style, and the opsets current exporters pick.

* yolov8-squares.onnx  -- as Ultralytics `export(format="onnx", dynamic=True)`
  writes (opset 19): input `images` [batch, 3, height, width] RGB in [0,1];
  output `output0` [batch, 4+3, anchors] in the YOLOv8/v11 layout (no
  objectness). At 640x640 each of the 37x37 candidates is a 64x64 window at
  stride 16; its class scores are the window's mean red, green and blue,
  raised to the 4th power. A pure red, green or blue 64x64 square aligned to
  16 model pixels scores 1.0 in exactly one window; the shifted windows
  score at most 0.32 and are removed by NMS (IoU 0.6) or by the default 0.25
  threshold. Labels are in the ONNX metadata (`names`), as Ultralytics
  writes them. The box grid is a constant for 640x640, so it runs there only.
* yolov5-squares.onnx  -- the same detector in the YOLOv5 layout
  [batch, 1369, 5+3] as YOLOv5's export.py writes with a dynamic batch
  (opset 17): input [batch, 3, 640, 640]; objectness = the largest class
  score, class scores = the window means. No metadata: labels come from the
  config.
* classify-colors.onnx -- as torch.onnx.export of a torchvision-style model
  with `dynamic_axes={"input": {0: "batch_size"}, ...}` (opset 17): input
  `input` [batch_size, 3, 224, 224] ImageNet-normalised, a 1x1 identity Conv
  (`/features/features.0/Conv`), global pooling, a Gemm; output `logits`
  [batch_size, 3] = 4 x the mean normalised R, G and B: a red crop is class
  0, green 1, blue 2.
* classify-colors-softmax.onnx -- the same as paddle2onnx writes a PaddleClas
  model (opset 14): input `x` [DynamicDimension.0, 3, 224, 224], nodes
  `Conv.0` ..., a Softmax on the output (probabilities, which the decoder must
  not soft-max again), and the labels in the metadata `character`, one per
  line, as PaddleOCR/PaddleClas exports keep them.
* db-bright.onnx -- a DB (text) model as paddle2onnx writes PP-OCR det
  (opset 14): input `x` [DynamicDimension.0, 3, DynamicDimension.1,
  DynamicDimension.2], output `sigmoid_0.tmp_0` [DynamicDimension.0, 1,
  DynamicDimension.1, DynamicDimension.2] = sigmoid(8 x the mean normalised
  R, G, B): bright regions are text (p > 0.99), black is not (p < 0.001).
  Its inner maps carry symbols of their own (`DynamicDimension.3`), as
  Paddle's do.

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


def opset(version):
    return [helper.make_opsetid("", version)]


def with_value_info(model, overrides=None):
    """Runs ONNX shape inference, as torch.onnx and paddle2onnx do, so the
    file carries `value_info` for inner tensors with the exporter's symbols;
    `overrides` (name -> dims) replace what it infers, as some exporters'
    own shape passes do."""
    declared = [onnx.helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type,
                [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim])
                for o in model.graph.output]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    # Outputs keep the dims the export declared (dynamic_axes), as exporters
    # write them; inference would narrow them to what it could prove.
    del model.graph.output[:]
    model.graph.output.extend(declared)
    for name, dims in (overrides or {}).items():
        found = [v for v in model.graph.value_info if v.name == name]
        assert found, f"no value_info for {name}"
        elem = found[0].type.tensor_type.elem_type
        model.graph.value_info.remove(found[0])
        model.graph.value_info.append(helper.make_tensor_value_info(name, elem, dims))
    assert len(model.graph.value_info) > 0, "shape inference wrote no value_info"
    return model


def save(model, path):
    onnx.checker.check_model(model, full_check=True)
    tmp = path.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(path)
    print(f"wrote {path}")


def window_scores(nodes):
    """Nodes computing `pool` [batch,3,N] (window means) and `score4` (^4),
    named as torch.onnx names them."""
    nodes += [
        helper.make_node(
            "AveragePool",
            ["images"],
            ["/model.0/pool/AveragePool_output_0"],
            name="/model.0/pool/AveragePool",
            kernel_shape=[WIN, WIN],
            strides=[STRIDE, STRIDE],
        ),
        helper.make_node(
            "Reshape",
            ["/model.0/pool/AveragePool_output_0", "/model.0/Constant_output_0"],
            ["pool"],
            name="/model.0/Reshape",
        ),
        helper.make_node("Mul", ["pool", "pool"], ["/model.0/Mul_output_0"], name="/model.0/Mul"),
        helper.make_node(
            "Mul",
            ["/model.0/Mul_output_0", "/model.0/Mul_output_0"],
            ["score4"],
            name="/model.0/Mul_1",
        ),
    ]


def yolo_initializers():
    # Reshape to [batch (copied: 0), 3, all the rest (-1)], as a dynamic export has it.
    return [
        numpy_helper.from_array(window_boxes(), "boxes"),
        numpy_helper.from_array(np.array([0, 3, -1], np.int64), "/model.0/Constant_output_0"),
    ]


def yolov8(out_dir):
    nodes = []
    window_scores(nodes)
    nodes.append(
        helper.make_node("Concat", ["boxes", "score4"], ["output0"], name="/model.22/Concat", axis=1)
    )
    graph = helper.make_graph(
        nodes,
        "main_graph",
        [
            helper.make_tensor_value_info(
                "images", TensorProto.FLOAT, ["batch", 3, "height", "width"]
            )
        ],
        [
            helper.make_tensor_value_info(
                "output0", TensorProto.FLOAT, ["batch", 4 + len(LABELS), "anchors"]
            )
        ],
        initializer=yolo_initializers(),
    )
    model = helper.make_model(graph, opset_imports=opset(19), producer_name="pytorch")
    model.producer_version = "2.5.1"
    # The window grid is a 640x640 constant: say so in the inner facts, as an
    # export traced at 640 carries its trace size in places.
    model = with_value_info(
        model,
        {
            "/model.0/pool/AveragePool_output_0": ["batch", 3, "floor(height/16 - 3)", "floor(width/16 - 3)"],
            "pool": ["batch", 3, "anchors"],
        },
    )
    names = "{" + ", ".join(f"{i}: '{n}'" for i, n in enumerate(LABELS)) + "}"
    helper.set_model_props(
        model,
        {
            "description": "Ultralytics YOLOv8n model trained on squares.yaml",
            "author": "Ultralytics",
            "version": "8.3.40",
            "license": "AGPL-3.0 License (https://ultralytics.com/license)",
            "stride": "32",
            "task": "detect",
            "batch": "1",
            "imgsz": f"[{SIZE}, {SIZE}]",
            "names": names,
            "args": "{'batch': 1, 'half': False, 'dynamic': True, 'simplify': True, 'opset': None}",
        },
    )
    save(model, out_dir / "yolov8-squares.onnx")


def yolov5(out_dir):
    nodes = []
    window_scores(nodes)
    nodes += [
        helper.make_node(
            "ReduceMax", ["score4"], ["objectness"], name="/model.24/ReduceMax", axes=[1], keepdims=1
        ),
        helper.make_node(
            "Concat", ["boxes", "objectness", "pool"], ["rows"], name="/model.24/Concat", axis=1
        ),
        helper.make_node(
            "Transpose", ["rows"], ["output0"], name="/model.24/Transpose", perm=[0, 2, 1]
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "main_graph",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [
            helper.make_tensor_value_info(
                "output0", TensorProto.FLOAT, ["batch", N, 5 + len(LABELS)]
            )
        ],
        initializer=yolo_initializers(),
    )
    model = helper.make_model(graph, opset_imports=opset(17), producer_name="pytorch")
    model.producer_version = "2.1.0"
    save(with_value_info(model), out_dir / "yolov5-squares.onnx")


def classifier(out_dir):
    """torch.onnx.export of a torchvision-style classifier, dynamic batch."""
    nodes = [
        helper.make_node(
            "Conv",
            ["input", "features.0.weight", "features.0.bias"],
            ["/features/features.0/Conv_output_0"],
            name="/features/features.0/Conv",
            kernel_shape=[1, 1],
            strides=[1, 1],
            pads=[0, 0, 0, 0],
        ),
        helper.make_node(
            "GlobalAveragePool",
            ["/features/features.0/Conv_output_0"],
            ["/avgpool/GlobalAveragePool_output_0"],
            name="/avgpool/GlobalAveragePool",
        ),
        helper.make_node(
            "Flatten",
            ["/avgpool/GlobalAveragePool_output_0"],
            ["/Flatten_output_0"],
            name="/Flatten",
            axis=1,
        ),
        helper.make_node(
            "Gemm",
            ["/Flatten_output_0", "fc.weight", "fc.bias"],
            ["logits"],
            name="/fc/Gemm",
            alpha=1.0,
            beta=1.0,
            transB=1,
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "main_graph",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch_size", 3, 224, 224])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch_size", len(LABELS)])],
        initializer=[
            numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "features.0.weight"),
            numpy_helper.from_array(np.zeros(3, np.float32), "features.0.bias"),
            numpy_helper.from_array(np.eye(3, dtype=np.float32) * 4.0, "fc.weight"),
            numpy_helper.from_array(np.zeros(3, np.float32), "fc.bias"),
        ],
    )
    model = helper.make_model(graph, opset_imports=opset(17), producer_name="pytorch")
    model.producer_version = "2.5.1"
    save(with_value_info(model), out_dir / "classify-colors.onnx")


def classifier_paddle(out_dir):
    """paddle2onnx of a PaddleClas model: Paddle's names and symbols, labels
    in the metadata `character`."""
    batch = "DynamicDimension.0"
    nodes = [
        helper.make_node(
            "Conv", ["x", "conv1_weights", "conv1_bias"], ["conv2d_0.tmp_0"], name="Conv.0",
            kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0], dilations=[1, 1], group=1,
        ),
        helper.make_node("GlobalAveragePool", ["conv2d_0.tmp_0"], ["pool2d_0.tmp_0"], name="GlobalAveragePool.0"),
        helper.make_node("Flatten", ["pool2d_0.tmp_0"], ["flatten_0.tmp_0"], name="Flatten.0", axis=1),
        helper.make_node("MatMul", ["flatten_0.tmp_0", "fc_0.w_0"], ["linear_0.tmp_0"], name="MatMul.0"),
        helper.make_node("Add", ["linear_0.tmp_0", "fc_0.b_0"], ["linear_0.tmp_1"], name="Add.0"),
        helper.make_node("Softmax", ["linear_0.tmp_1"], ["softmax_0.tmp_0"], name="Softmax.0", axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "paddle-onnx",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 224, 224])],
        [helper.make_tensor_value_info("softmax_0.tmp_0", TensorProto.FLOAT, [batch, len(LABELS)])],
        initializer=[
            numpy_helper.from_array(np.eye(3, dtype=np.float32).reshape(3, 3, 1, 1), "conv1_weights"),
            numpy_helper.from_array(np.zeros(3, np.float32), "conv1_bias"),
            numpy_helper.from_array(np.eye(3, dtype=np.float32) * 4.0, "fc_0.w_0"),
            numpy_helper.from_array(np.zeros(3, np.float32), "fc_0.b_0"),
        ],
    )
    model = helper.make_model(graph, opset_imports=opset(14), producer_name="PaddlePaddle")
    model.producer_version = "2.6.0"
    model = with_value_info(model)
    helper.set_model_props(model, {"character": "\n".join(LABELS)})
    save(model, out_dir / "classify-colors-softmax.onnx")


def db_bright(out_dir):
    """paddle2onnx of a PP-OCR det-shaped model: everything dynamic."""
    n, h, w = "DynamicDimension.0", "DynamicDimension.1", "DynamicDimension.2"
    nodes = [
        helper.make_node(
            "Conv", ["x", "conv_w", "conv_b"], ["conv2d_0.tmp_0"], name="Conv.0",
            kernel_shape=[1, 1], strides=[1, 1], pads=[0, 0, 0, 0],
        ),
        helper.make_node("Sigmoid", ["conv2d_0.tmp_0"], ["sigmoid_0.tmp_0"], name="Sigmoid.0"),
    ]
    graph = helper.make_graph(
        nodes,
        "paddle-onnx",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [n, 3, h, w])],
        [helper.make_tensor_value_info("sigmoid_0.tmp_0", TensorProto.FLOAT, [n, 1, h, w])],
        initializer=[
            numpy_helper.from_array(np.full((1, 3, 1, 1), 8.0 / 3.0, np.float32), "conv_w"),
            numpy_helper.from_array(np.zeros(1, np.float32), "conv_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=opset(14), producer_name="PaddlePaddle")
    model.producer_version = "2.6.0"
    model = with_value_info(
        model, {"conv2d_0.tmp_0": [n, 1, "DynamicDimension.3", "DynamicDimension.4"]}
    )
    save(model, out_dir / "db-bright.onnx")


def main():
    out_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "test"
    out_dir.mkdir(parents=True, exist_ok=True)
    yolov8(out_dir)
    yolov5(out_dir)
    classifier(out_dir)
    classifier_paddle(out_dir)
    db_bright(out_dir)
    (out_dir / "colors.names").write_text("\n".join(LABELS) + "\n")
    print(f"wrote {out_dir / 'colors.names'}")


if __name__ == "__main__":
    main()
