#!/usr/bin/python3
"""Extra Resize conformance cases from ONNX's own reference implementation.

Debian's libonnx-testdata has 23 Resize node tests; this script builds more
(every mode x coordinate_transformation_mode x nearest_mode, scales and
sizes, 1-D/2-D/3-D inputs, exclude_outside, cubic_coeff_a, roi) with the
numpy reference that generated those tests (python3-onnx 1.12,
onnx/backend/test/case/node/resize.py: interpolate_nd), in the same layout
(model.onnx + test_data_set_0/{input,output}_0.pb), scales/sizes/roi as
initializers. tests/onnx/CMakeLists.txt runs each with `aisbx onnx-check`.

Usage: /usr/bin/python3 tools/gen_resize_cases.py tests/onnx/resize_extra
(deterministic: a fixed seed; rerunning rewrites identical files).
"""
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto
from onnx.backend.test.case.node.resize import (interpolate_nd, cubic_coeffs,
                                                 linear_coeffs, nearest_coeffs)

CTS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric",
       "tf_crop_and_resize"]  # tf_half_pixel_for_nn: not in the 1.12 reference
NMS = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


def write_case(root, name, x, y, attrs, scales=None, sizes=None, roi=None):
    d = os.path.join(root, name)
    os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
    inits, ins = [], ["X"]
    if roi is not None:
        inits.append(numpy_helper.from_array(roi.astype(np.float32), "roi"))
        ins.append("roi")
    else:
        ins.append("")
    if scales is not None:
        inits.append(numpy_helper.from_array(scales.astype(np.float32), "scales"))
        ins.append("scales")
    else:
        ins.append("")
        inits.append(numpy_helper.from_array(sizes.astype(np.int64), "sizes"))
        ins.append("sizes")
    node = helper.make_node("Resize", ins, ["Y"], **attrs)
    graph = helper.make_graph(
        [node], name,
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, y.shape)],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                              producer_name="gen_resize_cases")
    model.ir_version = 7
    onnx.save(model, os.path.join(d, "model.onnx"))
    with open(os.path.join(d, "test_data_set_0", "input_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(x, "X").SerializeToString())
    with open(os.path.join(d, "test_data_set_0", "output_0.pb"), "wb") as f:
        f.write(numpy_helper.from_array(y.astype(np.float32), "Y").SerializeToString())


def main():
    root = sys.argv[1]
    rng = np.random.default_rng(20261205)
    n = 0
    for mode in ["nearest", "linear", "cubic"]:
        for ct in CTS:
            for variant in range(3):
                rank = [4, 3, 5][variant] if mode != "cubic" else [4, 3, 4][variant]
                shape = [1, 2] + [int(v) for v in rng.integers(2, 6, rank - 2)]
                x = rng.standard_normal(shape).astype(np.float32)
                attrs = {"mode": mode, "coordinate_transformation_mode": ct}
                if mode == "nearest":
                    nm = NMS[(n + variant) % 4]
                    attrs["nearest_mode"] = nm
                    coeffs = lambda r, nm=nm: nearest_coeffs(r, mode=nm)
                elif mode == "linear":
                    coeffs = linear_coeffs
                else:
                    a = -0.75 if variant != 2 else -0.5
                    if variant == 2:
                        attrs["cubic_coeff_a"] = a
                        attrs["exclude_outside"] = 1
                    coeffs = lambda r, a=a: cubic_coeffs(r, A=a)
                kw = {"coordinate_transformation_mode": ct,
                      "exclude_outside": attrs.get("exclude_outside", 0)}
                roi = None
                if ct == "tf_crop_and_resize":
                    lo = np.concatenate([[0, 0], rng.uniform(-0.3, 0.4, rank - 2)])
                    hi = np.concatenate([[1, 1], rng.uniform(0.6, 1.3, rank - 2)])
                    roi = np.concatenate([lo, hi]).astype(np.float32)
                    attrs["extrapolation_value"] = 0.5
                    kw["extrapolation_value"] = 0.5
                    kw["roi"] = roi.astype(np.float64)
                name = "test_resize_extra_%s_%s_%d" % (mode, ct, variant)
                if variant == 1:  # sizes
                    sizes = np.array(shape[:2] + [int(v) for v in rng.integers(1, 9, rank - 2)])
                    y = interpolate_nd(x, coeffs, output_size=sizes, **kw)
                    write_case(root, name, x, y, attrs, sizes=sizes, roi=roi)
                else:
                    picks = [0.5, 0.6, 0.75, 1.0, 1.3, 1.5, 2.0, 2.5, 3.0]
                    sc = [1.0, 1.0] + [float(np.float32(picks[i])) for i in rng.integers(0, 9, rank - 2)]
                    for i in range(2, rank):
                        if int(sc[i] * shape[i]) < 1:
                            sc[i] = 1.0
                    scales = np.array(sc, dtype=np.float32)
                    y = interpolate_nd(x, coeffs, scale_factors=scales.astype(np.float64), **kw)
                    write_case(root, name, x, y, attrs, scales=scales, roi=roi)
                n += 1
    print("wrote %d cases under %s" % (n, root))


if __name__ == "__main__":
    main()
