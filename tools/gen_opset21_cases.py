#!/usr/bin/python3
"""Node-test cases for opsets 19-21, with numpy as the reference.

Debian's libonnx-testdata (ONNX 1.12) stops at opset 17, so nothing there
exercises the loader at opsets 19-21 or the few semantics those opsets add
to ops we support. This writes, in the node-test layout (model.onnx +
test_data_set_0/{input,output}_*.pb):
  - Pad-19 mode "wrap" (numpy.pad(mode="wrap"), ONNX's own reference);
  - ops whose 19/20/21 versions only add types (float8, int4), loaded at
    their newest opset: Reshape, Transpose, Squeeze, Unsqueeze, Flatten,
    Cast, Identity, Shape, Size, ConstantOfShape, ReduceMax/Min-20, Equal-19;
  - Split with 6 outputs (more than the 4 the engine once capped).
Float runtime inputs are graph inputs; integer parameters are initializers.

Usage: /usr/bin/python3 tools/gen_opset21_cases.py tests/onnx/opset21_extra
(deterministic: a fixed seed).
"""
import sys

import numpy as np
from onnx import helper, numpy_helper, TensorProto

from nodecase import write_case


def i64(name, v):
    return numpy_helper.from_array(np.asarray(v, dtype=np.int64), name)


def cases(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    x2 = rng.standard_normal((1, 2, 3, 3)).astype(np.float32)
    out = []
    # name, opset, nodes, inputs {name: array}, initializers, outputs {name: array}
    pads = [0, 0, 2, 1, 0, 0, 1, 3]
    out.append(("pad_wrap", 19,
                [helper.make_node("Pad", ["x", "pads"], ["y"], mode="wrap")],
                {"x": x2}, [i64("pads", pads)],
                {"y": np.pad(x2, [(0, 0), (0, 0), (2, 1), (1, 3)], mode="wrap")}))
    out.append(("pad_wrap_axes", 19,
                [helper.make_node("Pad", ["x", "pads", "", "axes"], ["y"], mode="wrap")],
                {"x": x}, [i64("pads", [3, 2]), i64("axes", [-1])],
                {"y": np.pad(x, [(0, 0), (0, 0), (3, 2)], mode="wrap")}))
    out.append(("reshape", 21, [helper.make_node("Reshape", ["x", "s"], ["y"])],
                {"x": x}, [i64("s", [3, -1, 0])], {"y": x.reshape(3, 2, 4)}))
    out.append(("transpose", 21,
                [helper.make_node("Transpose", ["x"], ["y"], perm=[2, 0, 1])],
                {"x": x}, [], {"y": x.transpose(2, 0, 1)}))
    out.append(("squeeze_unsqueeze", 21,
                [helper.make_node("Unsqueeze", ["x", "a"], ["u"]),
                 helper.make_node("Squeeze", ["u", "b"], ["y"])],
                {"x": x}, [i64("a", [0, 3]), i64("b", [0])],
                {"y": x[:, :, None, :]}))
    out.append(("flatten", 21, [helper.make_node("Flatten", ["x"], ["y"], axis=2)],
                {"x": x}, [], {"y": x.reshape(6, 4)}))
    out.append(("cast_identity", 21,
                [helper.make_node("Cast", ["x"], ["c"], to=TensorProto.INT32),
                 helper.make_node("Cast", ["c"], ["d"], to=TensorProto.FLOAT),
                 helper.make_node("Identity", ["d"], ["y"])],
                {"x": x * 4}, [], {"y": (x * 4).astype(np.int32).astype(np.float32)}))
    out.append(("shape_size_cos", 21,
                [helper.make_node("Shape", ["x"], ["s"], start=1),
                 helper.make_node("ConstantOfShape", ["s"], ["c"],
                                  value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.5])),
                 helper.make_node("Size", ["x"], ["n"]),
                 helper.make_node("Cast", ["n"], ["nf"], to=TensorProto.FLOAT),
                 helper.make_node("Mul", ["c", "nf"], ["m"]),
                 helper.make_node("Add", ["x", "m"], ["y"])],
                {"x": x}, [], {"y": x + np.float32(0.5 * x.size)}))
    out.append(("reduce_max_min", 20,
                [helper.make_node("ReduceMax", ["x", "a"], ["mx"], keepdims=0),
                 helper.make_node("ReduceMin", ["x", "a"], ["mn"], keepdims=0),
                 helper.make_node("Sub", ["mx", "mn"], ["y"])],
                {"x": x}, [i64("a", [1])], {"y": x.max(1) - x.min(1)}))
    z = np.round(x).astype(np.float32)
    out.append(("equal_where", 19,
                [helper.make_node("Equal", ["x", "z"], ["e"]),
                 helper.make_node("Where", ["e", "x", "z"], ["y"])],
                {"x": z, "z": z[:, :1, :]}, [],
                {"y": np.where(z == z[:, :1, :], z, z[:, :1, :])}))
    xs = rng.standard_normal((2, 11)).astype(np.float32)
    parts = np.split(xs, [2, 4, 6, 8, 10], axis=1)  # ceil(11 / 6) = 2 each, last 1
    out.append(("split_6_outputs", 21,
                [helper.make_node("Split", ["x"], ["y%d" % k for k in range(6)], axis=1,
                                  num_outputs=6)],
                {"x": xs}, [], {"y%d" % k: v for k, v in enumerate(parts)}))
    return out


def main():
    root = sys.argv[1]
    rng = np.random.default_rng(1905)
    all_cases = cases(rng)
    for name, opset, nodes, ins, inits, outs in all_cases:
        graph = helper.make_graph(
            nodes, name,
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in ins.items()],
            [helper.make_tensor_value_info(k, TensorProto.FLOAT, v.shape) for k, v in outs.items()],
            initializer=inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                  producer_name="gen_opset21_cases")
        model.ir_version = 8
        write_case(root, "test_opset%d_%s" % (opset, name), model,
                   [(list(ins.items()), list(outs.items()))])
    print("wrote %d cases under %s" % (len(all_cases), root))


if __name__ == "__main__":
    main()
