#!/usr/bin/python3
"""The output-distance objective (issue 13 item 4) through `aisbx attack` on
a small regression model built here with Debian's python3-onnx helpers
(x [N, 6] -> Gemm -> Tanh (output 'h', N x 8) -> Gemm -> 'y', N x 4),
against numpy's forward pass written out here (never numbers from our own
runs): targeted attacks bring the output closer to the target (one target
broadcast, or one per sample), untargeted ones move it, --output picks the
measured output, HSJ's success is --min-distance, and the attacks and
commands that cannot take the objective refuse it with the reason.
Usage: test_objective.py AISBX (needs numpy and onnx)."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "common"))
from aisbx_api import check, fails  # noqa: E402

aisbx = sys.argv[1]
tmp = tempfile.mkdtemp()
rng = np.random.default_rng(4)
W1 = rng.normal(0, 1.0, (6, 8)).astype(np.float32)
B1 = rng.normal(0, 0.1, 8).astype(np.float32)
W2 = rng.normal(0, 1.0, (8, 4)).astype(np.float32)
B2 = rng.normal(0, 0.1, 4).astype(np.float32)


def forward(x):
    h = np.tanh(x.astype(np.float64) @ W1 + B1)
    return h @ W2 + B2, h


g = helper.make_graph(
    [helper.make_node("Gemm", ["x", "w1", "b1"], ["a"]),
     helper.make_node("Tanh", ["a"], ["h"]),
     helper.make_node("Gemm", ["h", "w2", "b2"], ["y"])],
    "regression",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 6])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4]),
     helper.make_tensor_value_info("h", TensorProto.FLOAT, ["N", 8])],
    [numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(B1, "b1"),
     numpy_helper.from_array(W2, "w2"), numpy_helper.from_array(B2, "b2")])
model = os.path.join(tmp, "regression.onnx")
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
m.ir_version = 8
onnx.checker.check_model(m)
onnx.save(m, model)

N = 6
x = rng.uniform(0.2, 0.8, (N, 6)).astype(np.float32)
data = os.path.join(tmp, "x.npz")
np.savez(data, x=x)  # no labels: the objective uses none
f0, h0 = forward(x)
t1 = forward(rng.uniform(0, 1, (1, 6)))[0][0].astype(np.float32)  # reachable
one = os.path.join(tmp, "t1.npy")
np.save(one, t1)
tn = forward(rng.uniform(0, 1, (N, 6)))[0].astype(np.float32)
per = os.path.join(tmp, "tn.npy")
np.save(per, tn)


def run(*args, want=0, err_has=()):
    r = subprocess.run([aisbx, *args], capture_output=True, text=True, timeout=120)
    if r.returncode != want:
        print(r.stdout, r.stderr)
    check(r.returncode == want, "exit %d for %s" % (want, " ".join(args[:10])))
    for s in err_has:
        check(s in r.stderr, "stderr names %r: %s" % (s, r.stderr.strip()[:200]))
    return r


def attack(tag, name, *extra, eps="0.2"):
    out, adv = os.path.join(tmp, tag + ".json"), os.path.join(tmp, tag + ".npy")
    run("attack", "--model", model, "--data", data, "--attack", name, "--eps", eps,
        "--objective", "output-distance", "--seed", "2", "--out", out, "--adv", adv,
        "--quiet", *extra)
    if not (os.path.exists(out) and os.path.exists(adv)):
        return None, None
    a = np.load(adv)
    check((float(eps) == 0 or np.abs(a - x).max() <= float(eps) + 1e-6) and
          a.min() >= 0 and a.max() <= 1, "%s: within eps and [0, 1]" % tag)
    return json.load(open(out)), a


# targeted: towards one target output (broadcast) and one per sample
for tag, name, tfile, t, extra in (
        ("pgd_t1", "pgd", one, t1[None, :], ("--steps", "30")),
        ("fgsm_t1", "fgsm", one, t1[None, :], ()),
        ("square_tn", "square", per, tn, ("--queries", "300")),
        ("pgd_tn", "pgd", per, tn, ("--steps", "30", "--norm", "2", "--eps", "0.5"))):
    res, a = attack(tag, name, "--target-output", tfile, *extra,
                    eps="0.5" if "--eps" in extra else "0.2")
    if res is None:
        continue
    fa = forward(a)[0]
    d_clean = np.linalg.norm(f0 - t, axis=1)
    d_adv = np.linalg.norm(fa - t, axis=1)
    ps = res["per_sample"]
    check(np.allclose(ps["target_distance"], d_adv, rtol=1e-4, atol=1e-5) and
          np.allclose(ps["target_distance_clean"], d_clean, rtol=1e-4, atol=1e-5),
          "%s: distances to the target equal numpy's" % tag)
    check(np.allclose(ps["output_distance"], np.linalg.norm(fa - f0, axis=1),
                      rtol=1e-4, atol=1e-5),
          "%s: output change equals numpy's" % tag)
    check(bool(np.all(d_adv <= d_clean + 1e-6)) and d_adv.mean() < 0.9 * d_clean.mean(),
          "%s: the distance to the target decreases (%.4f -> %.4f)"
          % (tag, d_clean.mean(), d_adv.mean()))
    check(res["objective"]["targeted"] is True and
          abs(res["objective"]["target_distance"]["mean"] - d_adv.mean()) < 1e-4,
          "%s: result summary of the targeted objective" % tag)

# untargeted: the output moves; --output measures another output
for tag, name, extra, ref in (("fgsm_u", "fgsm", (), f0),
                              ("apgd_u", "apgd-ce", ("--steps", "20"), f0),
                              ("pgd_h", "pgd", ("--steps", "20", "--output", "h"), h0)):
    res, a = attack(tag, name, *extra)
    if res is None:
        continue
    fa = forward(a)[1 if ref is h0 else 0]
    d = np.linalg.norm(fa - ref, axis=1)
    check(np.allclose(res["per_sample"]["output_distance"], d, rtol=1e-4, atol=1e-5)
          and bool(np.all(d > 0)), "%s: output distances equal numpy's, > 0" % tag)
    check(res["objective"]["output_floats"] == ref.shape[1],
          "%s: measured output has %d floats" % (tag, ref.shape[1]))
    if tag == "pgd_h":
        check(res["objective"]["output"] == "h", "pgd_h: the result names --output")
    # an iterative attack beats a random +-eps perturbation (FGSM's one
    # step from x has only the subgradient there: adv/adv.h)
    if name == "fgsm":
        continue
    rnd = np.clip(x + np.where(rng.random(x.shape) < 0.5, -0.2, 0.2), 0, 1)
    dr = np.linalg.norm(forward(rnd)[1 if ref is h0 else 0] - ref, axis=1)
    check(d.mean() > dr.mean(), "%s: moves the output more than random noise "
          "(%.4f > %.4f)" % (tag, d.mean(), dr.mean()))

# HSJ: adversarial = output distance >= --min-distance
res, a = attack("hsj", "hsj", "--min-distance", "0.5", "--queries", "400",
                "--steps", "5", eps="0")
if res is not None:
    d = np.linalg.norm(forward(a)[0] - f0, axis=1)
    succ = np.array(res["per_sample"]["success"])
    check(bool(np.all(d[succ] >= 0.5 - 1e-5)) and succ.any(),
          "hsj: successes are the samples whose output moved >= 0.5 (%s)" % d)
    check(res["attack_success_rate"] == succ.mean(), "hsj: success rate")

# refusals, with the reason
base = ("--model", model, "--data", data, "--out", os.path.join(tmp, "e.json"),
        "--objective", "output-distance")
run("attack", *base, "--attack", "hsj", want=2, err_has=("min-distance",))
run("attack", *base, "--attack", "cw", want=2, err_has=("cw", "output-distance"))
run("attack", *base, "--attack", "deepfool", want=2, err_has=("deepfool",))
run("evaluate", *base, "--suite", "autoattack-standard", want=2,
    err_has=("objective",))
run("attack", *base, "--attack", "pgd", "--output", "nope", want=2,
    err_has=("'nope'", "'y'", "'h'"))
bad = os.path.join(tmp, "bad.npy")
np.save(bad, np.zeros(5, np.float32))
run("attack", *base, "--attack", "pgd", "--target-output", bad, want=2,
    err_has=("target output", "5 floats"))
run("attack", "--model", model, "--data", data, "--out", os.path.join(tmp, "e.json"),
    "--attack", "pgd", "--target-output", one, want=2, err_has=("--objective",))
run("attack", *base, "--attack", "pgd", "--targeted", want=2,
    err_has=("target-output",))

print("%d failure(s)" % len(fails))
sys.exit(1 if fails else 0)
