#!/usr/bin/python3
"""Large-weight models for measuring what loading costs (issue 13 item 6).

Writes three models in the ONNX node-test layout (model.onnx plus
test_data_set_0/input_0.pb and output_0.pb), so that
`/usr/bin/time -v aisbx onnx-check DIR` measures load + plan + one forward
(and checks the output):
  - u8_dq_matmul: 44 MiB of uint8 weights [5632, 8192], per-column scales
    and zero points, DequantizeLinear -> MatMul;
  - u8_dq_conv: 44 MiB of uint8 weights [1024, 4992, 3, 3], per-output-
    channel DequantizeLinear -> Conv (3x3, pads 1) on a 4x4 input;
  - f16_matmul: 44 MiB of float16 weights [4096, 5632]: x -> Cast(float16)
    -> MatMul -> Cast(float), as converters keep float32 inputs/outputs.
References are numpy's (float64 accumulation of the dequantized / float16
values): they check that the weights survive loading, not onnxruntime's
float16 rounding of the product.

Usage: /usr/bin/python3 tools/make_lazy_weights_models.py OUT_DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh


def save(out, name, nodes, inits, x, y):
    """Writes model.onnx and one test data set under out/name."""
    d = os.path.join(out, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    g = h.make_graph(
        nodes, name,
        [h.make_tensor_value_info("x", T.FLOAT, list(x.shape))],
        [h.make_tensor_value_info("y", T.FLOAT, list(y.shape))], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, os.path.join(d, "model.onnx"))
    for fn, arr, nm in (("input_0.pb", x, "x"), ("output_0.pb", y, "y")):
        with open(os.path.join(d, "test_data_set_0", fn), "wb") as f:
            f.write(nh.from_array(arr.astype(np.float32), nm).SerializeToString())


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(13)
    # uint8 DequantizeLinear -> MatMul
    K, N = 5632, 8192
    W = rng.integers(0, 256, (K, N), dtype=np.uint8)
    s = rng.uniform(0.001, 0.01, N).astype(np.float32)
    z = rng.integers(100, 156, N, dtype=np.uint8)
    x = rng.uniform(-1, 1, (1, K)).astype(np.float32)
    Wf = (W.astype(np.float32) - z.astype(np.float32)) * s
    y = x.astype(np.float64) @ Wf.astype(np.float64)
    save(out, "u8_dq_matmul",
         [h.make_node("DequantizeLinear", ["W", "s", "z"], ["Wf"], axis=1),
          h.make_node("MatMul", ["x", "Wf"], ["y"])],
         [nh.from_array(W, "W"), nh.from_array(s, "s"), nh.from_array(z, "z")],
         x, y)
    del W, Wf
    # uint8 DequantizeLinear -> Conv
    M, C = 1024, 4992
    W = rng.integers(0, 256, (M, C, 3, 3), dtype=np.uint8)
    s = rng.uniform(0.0005, 0.002, M).astype(np.float32)
    z = rng.integers(100, 156, M, dtype=np.uint8)
    x = rng.uniform(-1, 1, (1, C, 4, 4)).astype(np.float32)
    Wf = (W.astype(np.float32) - z.astype(np.float32)[:, None, None, None]) * \
        s[:, None, None, None]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([xp[0, :, i:i + 4, j:j + 4] for i in range(3)
                     for j in range(3)], axis=1)  # C, 9, 4, 4
    y = np.einsum("mck,ckhw->mhw", Wf.reshape(M, C, 9).astype(np.float64),
                  cols)[None]
    save(out, "u8_dq_conv",
         [h.make_node("DequantizeLinear", ["W", "s", "z"], ["Wf"], axis=0),
          h.make_node("Conv", ["x", "Wf"], ["y"], kernel_shape=[3, 3],
                      pads=[1, 1, 1, 1])],
         [nh.from_array(W, "W"), nh.from_array(s, "s"), nh.from_array(z, "z")],
         x, y)
    del W, Wf, cols
    # float16 weights
    K, N = 4096, 5632
    W = rng.uniform(-0.05, 0.05, (K, N)).astype(np.float16)
    x = rng.uniform(-1, 1, (1, K)).astype(np.float32)
    y = x.astype(np.float16).astype(np.float64) @ W.astype(np.float64)
    save(out, "f16_matmul",
         [h.make_node("Cast", ["x"], ["x16"], to=T.FLOAT16),
          h.make_node("MatMul", ["x16", "W"], ["y16"]),
          h.make_node("Cast", ["y16"], ["y"], to=T.FLOAT)],
         [nh.from_array(W, "W")], x, y)


if __name__ == "__main__":
    main()
