"""Writes one case in ONNX's node-test layout (used by tools/gen_*_cases.py).

write_case(root, name, model, datasets): root/name/model.onnx and, for the
k-th (inputs, outputs) pair of datasets, root/name/test_data_set_k/
input_i.pb and output_i.pb; inputs and outputs are lists of (name, array)
in graph order. Inputs keep their dtype; outputs are stored as float32.
"""
import os

import numpy as np
import onnx
from onnx import numpy_helper


def write_case(root, name, model, datasets):
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    onnx.save(model, os.path.join(d, "model.onnx"))
    for k, (ins, outs) in enumerate(datasets):
        ds = os.path.join(d, "test_data_set_%d" % k)
        os.makedirs(ds, exist_ok=True)
        for kind, items, cast in (("input", ins, False), ("output", outs, True)):
            for i, (nm, v) in enumerate(items):
                arr = np.asarray(v, dtype=np.float32) if cast else np.asarray(v)
                with open(os.path.join(ds, "%s_%d.pb" % (kind, i)), "wb") as f:
                    f.write(numpy_helper.from_array(arr, nm).SerializeToString())
