#!/usr/bin/python3
"""aisbx end to end (issue 10): a model with symbolic H/W runs predict,
grad, attack and evaluate; predict --logits equals PyTorch's logits;
seeds are recorded exactly and out-of-range seeds are refused; every job
option reaches the result; bad values exit 2 naming the option.
References are PyTorch's outputs (fixtures) and the fixed-shape model's
own results, never numbers typed in from our runs.
Usage: test_cli.py AISBX FIXTURE_DIR (needs numpy and onnx)."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
import onnx.numpy_helper

aisbx, fix = sys.argv[1], sys.argv[2]
model = os.path.join(fix, "mnist_cnn.onnx")
softmax_model = os.path.join(fix, "mnist_cnn_softmax.onnx")
batch = os.path.join(fix, "mnist_batch.npz")
tmp = tempfile.mkdtemp()
fails = 0


def check(cond, msg):
    global fails
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        fails += 1


def run(*args, want=0, err_has=None):
    r = subprocess.run([aisbx, *args], capture_output=True, text=True, timeout=300)
    if r.returncode != want:
        print(r.stdout, r.stderr)
    check(r.returncode == want, "exit %d for %s" % (want, " ".join(args[:6])))
    if err_has is not None:
        check(err_has in r.stderr, "stderr names %r: %s" % (err_has, r.stderr.strip()[:160]))
    return r


def T(name):
    return os.path.join(tmp, name)


def strip(res):
    """The result without what legitimately differs between two models."""
    res = dict(res)
    for k in ("model", "wall_time_s"):
        res.pop(k, None)
    for c in res.get("curve", []):
        for p in c["per_attack"]:
            p.pop("time_s", None)
    return res


# ---- a symbolic-H/W copy of the MNIST model (input N x 1 x H x W)
sym = T("mnist_sym.onnx")
m = onnx.load(model)
dims = m.graph.input[0].type.tensor_type.shape.dim
for k, name in ((2, "H"), (3, "W")):
    dims[k].ClearField("dim_value")
    dims[k].dim_param = name
del m.graph.value_info[:]
onnx.save(m, sym)

ref_logits = np.load(os.path.join(fix, "mnist_cnn_logits.npy"))  # PyTorch, on mnist_batch
for mdl, tag in ((model, "fixed"), (sym, "symbolic"), (softmax_model, "softmax")):
    lo, pr = T(tag + "_logits.npy"), T(tag + "_pred.npy")
    run("predict", "--model", mdl, "--data", batch, "--logits", lo, "--out", pr)
    if os.path.exists(lo):
        z = np.load(lo)
        check(z.dtype == np.float32 and z.shape == ref_logits.shape,
              "%s: --logits is float32 N x K" % tag)
        check(np.allclose(z, ref_logits, rtol=1e-4, atol=1e-4),
              "%s: --logits equal PyTorch's pre-softmax logits (max diff %.2g)"
              % (tag, np.abs(z - ref_logits).max()))
        check(np.array_equal(np.load(pr), z.argmax(1)), "%s: --out labels = argmax" % tag)

# grad, attack and evaluate on the symbolic model equal the fixed model's
for mdl, tag in ((model, "fixed"), (sym, "symbolic")):
    run("grad", "--model", mdl, "--data", batch, "--loss", "ce", "--n", "8",
        "--out", T(tag + "_g.npy"))
    run("attack", "--model", mdl, "--data", batch, "--attack", "apgd-ce", "--eps", "0.1",
        "--steps", "10", "--n", "16", "--seed", "3", "--out", T(tag + "_a.json"), "--quiet")
    run("evaluate", "--model", mdl, "--data", batch, "--eps", "0.1", "--steps", "5",
        "--queries", "50", "--n", "12", "--seed", "3", "--out", T(tag + "_e.json"), "--quiet")
if os.path.exists(T("symbolic_g.npy")):
    check(np.array_equal(np.load(T("fixed_g.npy")), np.load(T("symbolic_g.npy"))),
          "symbolic model: same gradients")
for k in "ae":
    f, s = T("fixed_%s.json" % k), T("symbolic_%s.json" % k)
    if os.path.exists(f) and os.path.exists(s):
        check(strip(json.load(open(f))) == strip(json.load(open(s))),
              "symbolic model: %s result equals the fixed model's" % k)

# ---- seeds: 64-bit exact, strtoull-strict
for seed in ("9007199254740993", "18446744073709551615"):
    o = T("seed.json")
    run("attack", "--model", model, "--data", batch, "--attack", "fgsm", "--n", "4",
        "--seed", seed, "--out", o, "--quiet")
    with open(o) as fh:
        raw = fh.read()
    check('"seed":%s,' % seed in raw, "--seed %s recorded exactly" % seed)
for bad in ("1e19", "-1", "18446744073709551616", "1.5", "0x10"):
    run("attack", "--model", model, "--data", batch, "--attack", "fgsm", "--seed", bad,
        "--out", T("x.json"), want=2, err_has="--seed")

# ---- option errors name the option, exit 2 everywhere
run("attack", "--model", model, "--data", batch, "--attack", "pgd", "--steps", "2.5",
    "--out", T("x.json"), want=2, err_has="--steps")
run("attack", "--model", model, "--data", batch, "--attack", "pgd", "--step-size", "nan",
    "--out", T("x.json"), want=2, err_has="--step-size")
run("attack", "--model", model, "--data", batch, "--attack", "cw", "--norm", "inf",
    "--out", T("x.json"), want=2, err_has="--norm")
run("attack", "--model", model, "--data", batch, "--attack", "apgd-ce", "--targeted",
    "--out", T("x.json"), want=2, err_has="--targeted")
run("evaluate", "--model", model, "--data", batch, "--suite", "custom",
    "--out", T("x.json"), want=2, err_has="--attacks")
run("evaluate", "--model", model, "--data", batch, "--eps-sweep", "0.1,", "--out",
    T("x.json"), want=2, err_has="--eps-sweep")
run("grad", "--model", model, "--data", batch, "--loss", "ce", "--n", "1e3", "--out",
    T("x.npy"), want=2, err_has="--n")
run("predict", "--model", model, "--data", batch, "--threads", "0", want=2,
    err_has="--threads")
run("predict", "--model", model, "--data", batch, "--frobnicate", "1", want=2,
    err_has="unknown option --frobnicate")

# ---- every new job option reaches the result; documented default norms
def params_of(*args):
    o = T("p.json")
    run("attack", "--model", model, "--data", batch, "--n", "4", "--out", o, "--quiet", *args)
    return json.load(open(o))["params"]


p = params_of("--attack", "cw", "--steps", "5", "--binary-steps", "2", "--confidence", "0.5",
              "--initial-const", "0.25")
check(p["binary_steps"] == 2 and p["kappa"] == 0.5 and p["norm"] == "2",
      "cw: --binary-steps/--confidence recorded, L2 by default")
p = params_of("--attack", "deepfool", "--overshoot", "0.05", "--steps", "5")
check(np.float32(p["overshoot"]) == np.float32(0.05) and p["norm"] == "2",
      "deepfool: --overshoot recorded, L2 by default (docs)")
p = params_of("--attack", "hsj", "--queries", "60", "--steps", "2")
check(p["norm"] == "2", "hsj: L2 by default (docs)")
p = params_of("--attack", "square", "--p-init", "0.3", "--queries", "20", "--eps", "0.1")
check(np.float32(p["p_init"]) == np.float32(0.3) and p["resc_schedule"] is True,
      "square: --p-init recorded, standalone Square rescales its schedule")
p = params_of("--attack", "apgd-t", "--n-target-classes", "3", "--steps", "5")
check(p["n_target_classes"] == 3 and p["targeted"] is True, "apgd-t: --n-target-classes")
p = params_of("--attack", "deepfool", "--norm", "inf", "--steps", "5")
check(p["norm"] == "inf", "deepfool: --norm inf honoured")

# AutoAttack-standard runs Square with resc_schedule=False (autoattack.py)
e = json.load(open(T("fixed_e.json")))
sq = [a for a in e["attacks"] if a["attack"] == "square"]
check(len(sq) == 1 and sq[0]["params"]["resc_schedule"] is False,
      "autoattack-standard: square with resc_schedule false")

# random targets: reproducible from the seed, never the label
outs = []
for i in range(2):
    o = T("t%d.json" % i)
    run("attack", "--model", model, "--data", batch, "--attack", "fgsm", "--targeted",
        "--n", "32", "--seed", "11", "--out", o, "--quiet")
    outs.append(json.load(open(o))["per_sample"])
check(outs[0]["target"] == outs[1]["target"], "random targets reproducible")
check(all(t != l and 0 <= t < 10 for t, l in zip(outs[0]["target"], outs[0]["label"])),
      "random targets are wrong classes")

# shards: the slice of the data the spec names
o = T("shard.json")
run("attack", "--model", model, "--data", batch, "--attack", "fgsm", "--shard-offset", "10",
    "--shard-count", "5", "--out", o, "--quiet")
r = json.load(open(o))
y = np.load(batch)["y"]
check(r["data"]["n"] == 5 and r["data"]["offset"] == 10 and
      r["per_sample"]["label"] == [int(v) for v in y[10:15]], "shard slice recorded")
run("attack", "--model", model, "--data", batch, "--attack", "fgsm", "--shard-offset", "64",
    "--out", T("x.json"), want=2, err_has="--shard-offset")

# shards see the same random streams as the whole run (ids = dataset
# indices): the per-sample outcomes of a shard equal the whole run's slice
for cmd, extra in (("attack", ["--attack", "apgd-ce", "--steps", "10"]),
                   ("evaluate", ["--steps", "5", "--queries", "50"])):
    full, part = T(cmd + "_full.json"), T(cmd + "_part.json")
    common = [cmd, "--model", model, "--data", batch, "--eps", "0.1", "--seed", "4",
              "--quiet", *extra]
    run(*common, "--n", "24", "--out", full, "--adv", T("full.npy"))
    run(*common, "--shard-offset", "8", "--shard-count", "16", "--out", part,
        "--adv", T("part.npy"))
    a, b = json.load(open(full))["per_sample"], json.load(open(part))["per_sample"]
    # (an attack's per-sample "queries" is the call's mean for white-box
    # attacks, so it legitimately depends on the call)
    check(all(a[k][8:24] == b[k] for k in b if k != "queries"),
          "%s: a shard's per-sample results = the slice" % cmd)
    check(np.array_equal(np.load(T("full.npy"))[8:24], np.load(T("part.npy"))),
          "%s: a shard's adversarials = the slice" % cmd)

# a model with NaN weights is refused with the reason (exit 2), not attacked
nanm = T("nan.onnx")
m = onnx.load(model)
w = m.graph.initializer[-1]  # the last layer's bias: NaN reaches the logits
arr = onnx.numpy_helper.to_array(w).copy()
arr.flat[0] = np.nan
w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
onnx.save(m, nanm)
for cmd in (["attack", "--attack", "fgsm"], ["evaluate"]):
    run(*cmd, "--model", nanm, "--data", batch, "--n", "4", "--out", T("x.json"), want=2,
        err_has="not finite")

print("%d failed" % fails)
sys.exit(1 if fails else 0)
