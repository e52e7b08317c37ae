#!/usr/bin/python3
"""Extra Einsum conformance cases with numpy.einsum as the reference.

Debian's libonnx-testdata has 5 Einsum node tests; this writes more
equations exporters emit (attention contractions, batched matmuls with
ellipsis broadcasting, diagonals, outer products, implicit outputs) in the
node-test layout (model.onnx + test_data_set_0/{input,output}_*.pb), every
operand a graph input. tests/onnx/CMakeLists.txt runs each with
`aisbx onnx-check`.

Usage: /usr/bin/python3 tools/gen_einsum_cases.py tests/onnx/einsum_extra
(deterministic: a fixed seed).
"""
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper, TensorProto

CASES = [
    ("attn_scores", "bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]),
    ("attn_values", "bhqk,bhkd->bhqd", [(2, 2, 3, 5), (2, 2, 5, 4)]),
    ("ellipsis_matmul_bcast", "...ij,...jk->...ik", [(2, 1, 3, 4), (3, 4, 2)]),
    ("diag", "ii->i", [(4, 4)]),
    ("trace_implicit", "ii", [(3, 3)]),
    ("transpose", "ij->ji", [(3, 5)]),
    ("dot_all", "ij,ij->", [(3, 4), (3, 4)]),
    ("outer", "i,j->ij", [(3,), (4,)]),
    ("sum_all", "ijk->", [(2, 3, 4)]),
    ("chain3", "ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("implicit_matmul", "ij,jk", [(2, 3), (3, 4)]),
    ("implicit_upper", "Ab,bC", [(2, 3), (3, 4)]),
    ("ellipsis_dot", "...i,...i->...", [(2, 3, 4), (3, 4)]),
    ("batch_ellipsis_mid", "b...,b...->b...", [(2, 3, 1), (2, 1, 4)]),
    ("bilinear", "bn,anm,bm->ba", [(2, 3), (4, 3, 5), (2, 5)]),
    ("batch_diag", "bii->bi", [(2, 3, 3)]),
    ("permute_sum", "abcd->dba", [(2, 3, 2, 4)]),
]


def main():
    root = sys.argv[1]
    rng = np.random.default_rng(1205)
    for name, eq, shapes in CASES:
        xs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        y = np.einsum(eq, *[x.astype(np.float64) for x in xs]).astype(np.float32)
        names = ["x%d" % i for i in range(len(xs))]
        node = helper.make_node("Einsum", names, ["y"], equation=eq)
        graph = helper.make_graph(
            [node], name,
            [helper.make_tensor_value_info(nm, TensorProto.FLOAT, x.shape)
             for nm, x in zip(names, xs)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, y.shape)])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 12)],
                                  producer_name="gen_einsum_cases")
        model.ir_version = 7
        d = os.path.join(root, "test_einsum_extra_" + name)
        os.makedirs(os.path.join(d, "test_data_set_0"), exist_ok=True)
        onnx.save(model, os.path.join(d, "model.onnx"))
        for i, x in enumerate(xs):
            with open(os.path.join(d, "test_data_set_0", "input_%d.pb" % i), "wb") as f:
                f.write(numpy_helper.from_array(x, names[i]).SerializeToString())
        with open(os.path.join(d, "test_data_set_0", "output_0.pb"), "wb") as f:
            f.write(numpy_helper.from_array(np.asarray(y), "y").SerializeToString())
    print("wrote %d cases under %s" % (len(CASES), root))


if __name__ == "__main__":
    main()
