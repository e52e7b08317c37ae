#!/usr/bin/python3
"""Quantized models in the node-test layout, onnxruntime-node references.

The ONNX node tests check each quantized op alone on tiny uint8 data; real
quantized exports chain them with int8 per-channel weights. This writes:
  - quant_extra_qlinear_chain: QuantizeLinear (int8 activations) ->
    QLinearConv (int8 per-output-channel weights, int32 bias, pads,
    strides) -> DequantizeLinear -> Relu -> DynamicQuantizeLinear ->
    MatMulInteger (uint8 weights) -> rescale (onnxruntime's dynamic
    quantization pattern);
  - quant_extra_qdq_conv: the QDQ format: int8 per-axis weights through
    DequantizeLinear into a float Conv, activations through uint8
    QuantizeLinear/DequantizeLinear pairs, then QLinearMatMul.
Inputs are seeded numpy draws; the outputs are onnxruntime-node's (the npm
package tests/wild uses), computed by running node on the saved model.

Usage: tools/gen_quant_cases.py OUT_DIR   (run from the repository root,
node_modules installed by tools/install-deps.sh)
"""
import json
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

ORT_JS = r"""
const ort = require(process.argv[1] + '/node_modules/onnxruntime-node');
const fs = require('fs');
(async () => {
  const [dir, shape] = [process.argv[2], JSON.parse(process.argv[3])];
  const s = await ort.InferenceSession.create(dir + '/model.onnx');
  const b = fs.readFileSync(dir + '/x.bin');
  const x = new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));
  const r = await s.run({x: new ort.Tensor('float32', x, shape)});
  const y = r[s.outputNames[0]];
  fs.writeFileSync(dir + '/y.bin', Buffer.from(y.data.buffer));
  console.log(JSON.stringify(y.dims));
})();
"""


def qlinear_chain(rng):
    W = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    inits = [
        nh.from_array(W, "W"),
        nh.from_array(rng.uniform(0.001, 0.01, 4).astype(np.float32), "ws"),
        nh.from_array(np.zeros(4, np.int8), "wz"),
        nh.from_array(rng.integers(-500, 500, 4).astype(np.int32), "B"),
        nh.from_array(np.array(0.02, np.float32), "xs"),
        nh.from_array(np.array(-3, np.int8), "xz"),
        nh.from_array(np.array(0.05, np.float32), "ys"),
        nh.from_array(np.array(5, np.int8), "yz"),
        nh.from_array(rng.integers(0, 255, (64, 5)).astype(np.uint8), "W2"),
        nh.from_array(np.array(0.004, np.float32), "w2s"),
        nh.from_array(np.array(128, np.uint8), "w2z"),
        nh.from_array(np.array([1, -1], np.int64), "shape"),
    ]
    nodes = [
        h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        h.make_node("QLinearConv",
                    ["xq", "xs", "xz", "W", "ws", "wz", "ys", "yz", "B"],
                    ["yq"], pads=[1, 1, 1, 1], strides=[2, 2]),
        h.make_node("DequantizeLinear", ["yq", "ys", "yz"], ["yf"]),
        h.make_node("Relu", ["yf"], ["yr"]),
        h.make_node("Reshape", ["yr", "shape"], ["yflat"]),
        h.make_node("DynamicQuantizeLinear", ["yflat"], ["a", "as", "az"]),
        h.make_node("MatMulInteger", ["a", "W2", "az", "w2z"], ["acc"]),
        h.make_node("Cast", ["acc"], ["accf"], to=T.FLOAT),
        h.make_node("Mul", ["as", "w2s"], ["sc"]),
        h.make_node("Mul", ["accf", "sc"], ["out"]),
    ]
    return nodes, inits, [1, 3, 8, 8], [1, 5]


def qdq_conv(rng):
    W = rng.integers(-127, 128, size=(6, 3, 3, 3)).astype(np.int8)
    inits = [
        nh.from_array(W, "W"),
        nh.from_array(rng.uniform(0.002, 0.02, 6).astype(np.float32), "ws"),
        nh.from_array(np.zeros(6, np.int8), "wz"),
        nh.from_array(rng.uniform(-0.5, 0.5, 6).astype(np.float32), "bias"),
        nh.from_array(np.array(0.015, np.float32), "xs"),
        nh.from_array(np.array(128, np.uint8), "xz"),
        nh.from_array(np.array(0.04, np.float32), "hs"),
        nh.from_array(np.array(0, np.uint8), "hz"),
        nh.from_array(rng.integers(0, 255, (9, 4)).astype(np.uint8), "M"),
        nh.from_array(np.array(0.01, np.float32), "ms"),
        nh.from_array(np.array(120, np.uint8), "mz"),
        nh.from_array(np.array(0.1, np.float32), "os"),
        nh.from_array(np.array(60, np.uint8), "oz"),
    ]
    nodes = [
        h.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        h.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        h.make_node("DequantizeLinear", ["W", "ws", "wz"], ["Wd"], axis=0),
        h.make_node("Conv", ["xd", "Wd", "bias"], ["c"], pads=[0, 0, 0, 0]),
        h.make_node("Relu", ["c"], ["r"]),
        h.make_node("QuantizeLinear", ["r", "hs", "hz"], ["rq"]),
        h.make_node("QLinearMatMul",
                    ["rq", "hs", "hz", "M", "ms", "mz", "os", "oz"], ["oq"]),
        h.make_node("DequantizeLinear", ["oq", "os", "oz"], ["out"]),
    ]
    return nodes, inits, [2, 3, 5, 11], [2, 6, 3, 4]


def main():
    out = sys.argv[1]
    root = os.getcwd()
    for name, fn in [("qlinear_chain", qlinear_chain), ("qdq_conv", qdq_conv)]:
        rng = np.random.default_rng(13)
        nodes, inits, xshape, yshape = fn(rng)
        g = h.make_graph(nodes, name,
                         [h.make_tensor_value_info("x", T.FLOAT, xshape)],
                         [h.make_tensor_value_info("out", T.FLOAT, yshape)],
                         inits)
        m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
        m.ir_version = 7
        onnx.checker.check_model(m)
        d = os.path.join(out, "test_quant_extra_" + name)
        os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
        onnx.save(m, os.path.join(d, "model.onnx"))
        x = rng.uniform(-2, 2, size=xshape).astype(np.float32)
        x.tofile(os.path.join(d, "x.bin"))
        dims = subprocess.run(["node", "-e", ORT_JS, root, d,
                               json.dumps(xshape)], check=True,
                              capture_output=True, text=True).stdout
        y = np.fromfile(os.path.join(d, "y.bin"), dtype=np.float32)
        y = y.reshape(json.loads(dims))
        os.remove(os.path.join(d, "x.bin"))
        os.remove(os.path.join(d, "y.bin"))
        with open(os.path.join(d, "test_data_set_0", "input_0.pb"), "wb") as f:
            f.write(nh.from_array(x, "x").SerializeToString())
        with open(os.path.join(d, "test_data_set_0", "output_0.pb"), "wb") as f:
            f.write(nh.from_array(y, "out").SerializeToString())


if __name__ == "__main__":
    main()
