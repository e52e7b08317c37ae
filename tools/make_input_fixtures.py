#!/usr/bin/python3
"""Small models for issue 13 items 2-3 (inputs of any rank, several model
inputs, the input domain), built with Debian's python3-onnx helpers, and
their reference outputs computed independently with numpy (the forward
pass written out by hand here, not by our engine).

    /usr/bin/python3 tools/make_input_fixtures.py [--out tests/fixtures/inputs]

Writes (all small, committed):
  tabular_mlp.onnx    x [N, 8] -> Gemm 8x16 -> Relu -> Gemm 16x3 (rank 2)
  audio_conv1d.onnx   audio [N, 1, 64] -> Conv1d 4x1x5 (pad 2) -> Relu ->
                      ReduceMean over time -> Gemm 4x3 (rank 3)
  audio_multi.onnx    the audio model with two extra inputs: gain [1]
                      (no default: from the data NPZ) and offset [1] (its
                      initializer 0.05 is the default); the conv sees
                      audio * gain + offset
  image_norm.onnx     x [N, 3, 4, 4] already normalized: Conv 3x3 ->
                      Relu -> GlobalAveragePool -> Flatten -> Gemm
  image_mean.npy, image_std.npy  the normalization image_norm.onnx expects
                      (image_logits.npy: numpy's forward on (x - mean) / std)
  binary_sigmoid.onnx x [N, 8] -> Gemm -> Relu -> Gemm 16x1 -> Sigmoid:
                      one probability (binary_logit.npy: numpy's pre-sigmoid s)
  <name>_data.npz     x (inputs in [0, 1]), y (labels), extra inputs
  <name>_logits.npy   numpy's logits on x
"""
import argparse
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def relu(a):
    return np.maximum(a, 0)


def head(rng, feat, k):
    """A last Gemm (wf, bf) on standardized features, so the classes are
    balanced on the fixture data (labels are the reference argmax)."""
    mu, sd = feat.mean(0), feat.std(0) + 1e-3
    w = rng.normal(0, 1.0, (feat.shape[1], k))
    return (w / sd[:, None]).astype(np.float32), (-(mu / sd) @ w).astype(np.float32)


def init(name, a):
    return numpy_helper.from_array(np.asarray(a), name)


def save(model, path):
    onnx.checker.check_model(model)
    onnx.save(model, path)


def model_of(nodes, inputs, inits, out_dim, name, out_name="logits"):
    g = helper.make_graph(
        nodes, name, inputs,
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["N", out_dim])],
        inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)],
                             producer_name="make_input_fixtures")


def mlp(rng, k, out_value):
    """x [24, 8] in [0, 1] and an MLP Gemm 8x16 -> Relu -> Gemm 16xk whose
    last output is named out_value: (x, nodes, initializers, numpy's
    output on x)."""
    w1 = rng.normal(0, 0.6, (8, 16)).astype(np.float32)
    b1 = rng.normal(0, 0.1, 16).astype(np.float32)
    x = rng.uniform(0, 1, (24, 8)).astype(np.float32)
    w2, b2 = head(rng, relu(x @ w1 + b1), k)
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Gemm", ["r", "w2", "b2"], [out_value])]
    inits = [init("w1", w1), init("b1", b1), init("w2", w2), init("b2", b2)]
    return x, nodes, inits, relu(x @ w1 + b1) @ w2 + b2


def tabular(rng, out):
    x, nodes, inits, z = mlp(rng, 3, "logits")
    x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])
    save(model_of(nodes, [x_in], inits, 3, "tabular"),
         os.path.join(out, "tabular_mlp.onnx"))
    np.savez(os.path.join(out, "tabular_data.npz"), x=x, y=z.argmax(1).astype(np.int64))
    np.save(os.path.join(out, "tabular_logits.npy"), z.astype(np.float32))


def binary(rng, out):
    """A fraud-style binary classifier: one sigmoid probability (N x 1)."""
    x, nodes, inits, s = mlp(rng, 1, "s")
    nodes.append(helper.make_node("Sigmoid", ["s"], ["prob"]))
    x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])
    save(model_of(nodes, [x_in], inits, 1, "binary", "prob"),
         os.path.join(out, "binary_sigmoid.onnx"))
    np.savez(os.path.join(out, "binary_data.npz"), x=x,
             y=(s[:, 0] > 0).astype(np.int64))
    np.save(os.path.join(out, "binary_logit.npy"), s.astype(np.float32))


def conv1d(a, w, b):
    """a [N, 1, T], w [C, 1, 5], pad 2 -> [N, C, T]."""
    n, _, t = a.shape
    p = np.pad(a[:, 0], ((0, 0), (2, 2)))
    cols = np.stack([p[:, k:k + t] for k in range(5)], -1)  # N, T, 5
    return np.einsum("ntk,ck->nct", cols, w[:, 0]) + b[None, :, None]


def audio(rng, out):
    w = rng.normal(0, 0.5, (4, 1, 5)).astype(np.float32)
    b = rng.normal(0, 0.1, 4).astype(np.float32)

    def nodes_from(src):
        return [helper.make_node("Conv", [src, "w", "b"], ["c"], pads=[2, 2]),
                helper.make_node("Relu", ["c"], ["r"]),
                helper.make_node("ReduceMean", ["r"], ["m"], axes=[2], keepdims=0),
                helper.make_node("Gemm", ["m", "wf", "bf"], ["logits"])]

    # tones of different pitch and loudness around 0.5, in [0, 1]
    t = np.arange(64, dtype=np.float64)
    f = rng.uniform(0.02, 0.45, (16, 1, 1))
    amp = rng.uniform(0.05, 0.5, (16, 1, 1))
    x = (0.5 + amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 6, (16, 1, 1))))
    x = np.clip(x + rng.normal(0, 0.02, x.shape), 0, 1).astype(np.float32)
    wf, bf = head(rng, relu(conv1d(x, w, b)).mean(2), 3)
    inits = [init("w", w), init("b", b), init("wf", wf), init("bf", bf)]

    a_in = helper.make_tensor_value_info("audio", TensorProto.FLOAT, ["N", 1, 64])
    save(model_of(nodes_from("audio"), [a_in], inits, 3, "audio"),
         os.path.join(out, "audio_conv1d.onnx"))

    def ref(a):
        return relu(conv1d(a, w, b)).mean(2) @ wf + bf

    z = ref(x)
    np.savez(os.path.join(out, "audio_data.npz"), x=x, y=z.argmax(1).astype(np.int64))
    np.save(os.path.join(out, "audio_logits.npy"), z.astype(np.float32))
    # several inputs: gain from the data, offset from its initializer
    gain = np.array([0.9], np.float32)
    offset = np.array([0.05], np.float32)
    nodes = [helper.make_node("Mul", ["audio", "gain"], ["ag"]),
             helper.make_node("Add", ["ag", "offset"], ["ao"])] + nodes_from("ao")
    ins = [helper.make_tensor_value_info("gain", TensorProto.FLOAT, [1]), a_in,
           helper.make_tensor_value_info("offset", TensorProto.FLOAT, [1])]
    save(model_of(nodes, ins, inits + [init("offset", offset)], 3, "audio_multi"),
         os.path.join(out, "audio_multi.onnx"))
    zm = ref(x * gain + offset)
    np.savez(os.path.join(out, "audio_multi_data.npz"), x=x,
             y=zm.argmax(1).astype(np.int64), gain=gain)
    np.save(os.path.join(out, "audio_multi_logits.npy"), zm.astype(np.float32))


def image(rng, out):
    w = rng.normal(0, 0.4, (6, 3, 3, 3)).astype(np.float32)
    b = rng.normal(0, 0.1, 6).astype(np.float32)

    def build(wc, bc, path):
        nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                 helper.make_node("Relu", ["c"], ["r"]),
                 helper.make_node("GlobalAveragePool", ["r"], ["g"]),
                 helper.make_node("Flatten", ["g"], ["f"]),
                 helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"])]
        x_in = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])
        save(model_of(nodes, [x_in], [init("w", wc), init("b", bc), init("wf", wf),
                                      init("bf", bf)], 4, "image"), path)

    # the reference: numpy's forward on the normalized pixels
    x = rng.uniform(0, 1, (12, 3, 4, 4)).astype(np.float32)
    xn = (x - MEAN[None, :, None, None]) / STD[None, :, None, None]
    p = np.pad(xn, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([p[:, :, i:i + 4, j:j + 4] for i in range(3) for j in range(3)], -1)
    c = np.einsum("nchwk,ock->nohw", cols, w.reshape(6, 3, 9)) + b[None, :, None, None]
    feat = relu(c).mean((2, 3))
    wf, bf = head(rng, feat, 4)
    build(w, b, os.path.join(out, "image_norm.onnx"))
    z = feat @ wf + bf
    np.savez(os.path.join(out, "image_data.npz"), x=x, y=z.argmax(1).astype(np.int64))
    np.save(os.path.join(out, "image_logits.npy"), z.astype(np.float32))
    np.save(os.path.join(out, "image_mean.npy"), MEAN)
    np.save(os.path.join(out, "image_std.npy"), STD)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests",
        "fixtures", "inputs"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(13)
    tabular(rng, a.out)
    audio(rng, a.out)
    image(rng, a.out)
    binary(np.random.default_rng(14), a.out)


if __name__ == "__main__":
    main()
