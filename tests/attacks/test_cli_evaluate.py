#!/usr/bin/python3
"""aisbx attack / evaluate end to end: the JSON result schema, robust
accuracy non-increasing over an eps sweep, determinism from the seed, the
adversarial NPY, and exit codes on bad input. Usage: AISBX FIXTURE_DIR"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

aisbx, fix = sys.argv[1], sys.argv[2]
model = os.path.join(fix, "mnist_cnn.onnx")
data = os.path.join(fix, "demo_mnist.npz")
tmp = tempfile.mkdtemp()
fails = 0


def check(cond, msg):
    global fails
    print(("ok   " if cond else "FAIL ") + msg)
    if not cond:
        fails += 1


def run(*args, want=0):
    r = subprocess.run([aisbx, *args], capture_output=True, text=True, timeout=600)
    if r.returncode != want:
        print(r.stdout, r.stderr)
    check(r.returncode == want, "exit %d for %s" % (want, " ".join(args[:3])))
    return r


# eps sweep with a custom white-box suite (fast), 60 images
out = os.path.join(tmp, "sweep.json")
run("evaluate", "--model", model, "--data", data, "--suite", "custom", "--attacks",
    "apgd-ce,apgd-t", "--eps-sweep", "0.3,0.05,0.1,0.2", "--steps", "20", "--n", "60",
    "--seed", "1", "--out", out, "--quiet")
res = json.load(open(out))
for k in ["clean_accuracy", "robust_accuracy", "model", "data", "curve", "per_sample",
          "engine_version", "attacks", "queries", "wall_time_s", "warnings"]:
    check(k in res, "evaluate result has '%s'" % k)
check(len(res["model"]["sha256"]) == 64, "model sha256")
curve = res["curve"]
eps = [c["eps"] for c in curve]
ra = [c["robust_accuracy"] for c in curve]
check(eps == sorted(eps), "curve sorted by eps")
check(all(a >= b for a, b in zip(ra, ra[1:])), "robust accuracy non-increasing: %s" % ra)
check(0 <= res["robust_accuracy"] <= res["clean_accuracy"] <= 1, "fractions in [0,1]")
check(ra[-1] < ra[0], "larger eps breaks more points")
check(len(res["per_sample"]["robust"]) == 60, "per-sample outcomes")

# attack: determinism and the adversarial examples file
outs = []
for i in range(2):
    o = os.path.join(tmp, "a%d.json" % i)
    a = os.path.join(tmp, "a%d.npy" % i)
    run("attack", "--model", model, "--data", data, "--attack", "pgd", "--eps", "0.1",
        "--steps", "10", "--n", "40", "--seed", "5", "--out", o, "--adv", a, "--quiet")
    outs.append((json.load(open(o)), np.load(a)))
check(np.array_equal(outs[0][1], outs[1][1]), "same seed => identical adversarial bytes")
r0 = outs[0][0]
check(r0["params"]["seed"] == 5 and r0["attack"] == "pgd", "params recorded")
xadv = outs[0][1]
x = np.load(data)["x"][:40].astype(np.float32) / 255.0
check(xadv.shape == x.shape, "adv shape")
check(np.abs(xadv - x).max() <= 0.1 + 1e-6, "within eps")
check(xadv.min() >= 0 and xadv.max() <= 1, "within [0,1]")
for k in ["clean_accuracy", "robust_accuracy", "attack_success_rate", "norms", "queries",
          "per_sample", "wall_time_s"]:
    check(k in r0, "attack result has '%s'" % k)
for k in ["linf", "l2", "l0"]:
    check(set(r0["norms"][k]) >= {"mean", "median", "max"}, "norm stats " + k)

# bad inputs
run("attack", "--model", model, "--data", data, "--attack", "nope", "--out",
    os.path.join(tmp, "x.json"), want=2)
run("attack", "--model", model, "--data", data, "--attack", "pgd", "--eps", "-1", "--out",
    os.path.join(tmp, "x.json"), want=2)
run("evaluate", "--model", model, "--data", data, "--suite", "nope", "--out",
    os.path.join(tmp, "x.json"), want=2)
run("evaluate", "--model", model, "--data", data, "--eps-sweep", "0.1,abc", "--out",
    os.path.join(tmp, "x.json"), want=2)
print("%d passed, %d failed" % (0 if fails else 1, fails))
sys.exit(1 if fails else 0)
