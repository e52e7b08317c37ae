#!/usr/bin/python3
"""Per-channel clip bounds (issue 13 item 3) through `aisbx attack`: every
one of the 13 attacks on a 3-channel image model (tests/fixtures/inputs/
image_norm.onnx with its --mean/--std) keeps every adversarial value inside
its channel's [clip_min, clip_max], with channel 1's box tight so that it
binds; the bounds are recorded in the result; bad bound lists and data
outside the domain are exit 2 with the reason.
Usage: test_clip.py AISBX FIXTURE_DIR (needs numpy)."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "common"))
from aisbx_api import check, fails  # noqa: E402

aisbx, fix = sys.argv[1], os.path.join(sys.argv[2], "inputs")
tmp = tempfile.mkdtemp()
LO = np.array([0.0, 0.3, 0.05], np.float32)
HI = np.array([1.0, 0.5, 0.95], np.float32)
mean = ",".join("%.9g" % v for v in np.load(os.path.join(fix, "image_mean.npy")).ravel())
std = ",".join("%.9g" % v for v in np.load(os.path.join(fix, "image_std.npy")).ravel())
norm = ("--mean", mean, "--std", std)
clip = ("--clip-min", "0,0.3,0.05", "--clip-max", "1,0.5,0.95")


def run(*args, want=0, err_has=()):
    r = subprocess.run([aisbx, *args], capture_output=True, text=True, timeout=120)
    if r.returncode != want:
        print(r.stdout, r.stderr)
    check(r.returncode == want, "exit %d for %s" % (want, " ".join(args[:6])))
    for s in err_has:
        check(s in r.stderr, "stderr names %r: %s" % (s, r.stderr.strip()[:200]))
    return r


d = np.load(os.path.join(fix, "image_data.npz"))
x = np.clip(d["x"], LO[None, :, None, None], HI[None, :, None, None]).astype(np.float32)
data = os.path.join(tmp, "clipped.npz")
np.savez(data, x=x, y=d["y"])
raw = os.path.join(fix, "image_data.npz")  # channel 1 has values outside

# (attack, extra options): budgets large enough that the boxes bind
ATTACKS = (
    ("fgsm", ("--eps", "0.3")),
    ("bim", ("--eps", "0.3", "--steps", "5")),
    ("pgd", ("--eps", "0.3", "--steps", "5")),
    ("mifgsm", ("--eps", "0.3", "--steps", "5")),
    ("apgd-ce", ("--eps", "0.3", "--steps", "10")),
    ("apgd-dlr", ("--eps", "0.3", "--steps", "10")),
    ("apgd-t", ("--eps", "0.3", "--steps", "10", "--n-target-classes", "2")),
    ("fab", ("--eps", "0.3", "--steps", "10")),
    ("fab-t", ("--eps", "0.3", "--steps", "10", "--n-target-classes", "2")),
    ("cw", ("--steps", "20", "--binary-steps", "2", "--step-size", "0.5")),
    ("deepfool", ("--steps", "20", "--overshoot", "0.5")),
    ("square", ("--eps", "0.3", "--queries", "60")),
    ("hsj", ("--queries", "300", "--steps", "4")),
)
box_lo, box_hi = LO[None, :, None, None], HI[None, :, None, None]
bound_hits = 0
for name, extra in ATTACKS:
    out, adv = os.path.join(tmp, name + ".json"), os.path.join(tmp, name + ".npy")
    run("attack", "--model", os.path.join(fix, "image_norm.onnx"), "--data", data,
        "--attack", name, "--seed", "3", "--out", out, "--adv", adv, "--quiet",
        *norm, *clip, *extra)
    if not (os.path.exists(out) and os.path.exists(adv)):
        continue
    a = np.load(adv)
    res = json.load(open(out))
    inside = bool(np.all(a >= box_lo) and np.all(a <= box_hi))
    check(inside and a.shape == x.shape,
          "%s: every adversarial value inside its channel's bounds (worst excess %.3g)"
          % (name, max(float((box_lo - a).max()), float((a - box_hi).max()))))
    check(res["params"]["clip_min"] == [0, 0.3, 0.05] or
          np.allclose(res["params"]["clip_min"], LO),
          "%s: result records clip_min per channel" % name)
    check(np.allclose(res["params"]["clip_max"], HI),
          "%s: result records clip_max per channel" % name)
    hit = np.isclose(a[:, 1], 0.5, atol=0) | np.isclose(a[:, 1], 0.3, atol=0)
    bound_hits += int(hit.sum())
    if name == "pgd":
        # the tight box binds on channel 1 while channel 0 goes beyond it
        check(hit.sum() > 0, "pgd: channel 1 reaches its tight bound 0.3 or 0.5")
        check(bool(np.any(a[:, 0] > 0.5)) or bool(np.any(a[:, 0] < 0.3)),
              "pgd: channel 0 is not held to channel 1's box")
check(bound_hits > 0, "the tight bound binds (%d values on it)" % bound_hits)

# a scalar bound beside a list broadcasts
out = os.path.join(tmp, "mixed.json")
adv = os.path.join(tmp, "mixed.npy")
run("attack", "--model", os.path.join(fix, "image_norm.onnx"), "--data", data,
    "--attack", "pgd", "--eps", "0.3", "--steps", "3", "--out", out, "--adv", adv,
    "--quiet", *norm, "--clip-min", "0,0.3,0.05", "--clip-max", "1")
if os.path.exists(adv):
    a = np.load(adv)
    check(a.min() >= 0 and a.max() <= 1 and a[:, 1].min() >= np.float32(0.3),
          "scalar clip_max with per-channel clip_min")
    check(json.load(open(out))["params"]["clip_max"] == [1, 1, 1],
          "the broadcast scalar is recorded per channel")

# errors: data outside its channel's domain, counts, min >= max
base = ("attack", "--model", os.path.join(fix, "image_norm.onnx"), "--attack", "pgd",
        "--out", os.path.join(tmp, "e.json"), *norm)
run(*base, "--data", raw, *clip, want=2, err_has=("outside [clip_min, clip_max]",
                                                   "channel"))
run(*base, "--data", data, "--clip-min", "0,0.3", "--clip-max", "1,0.5", want=2,
    err_has=("2 per-channel values", "3 channels"))
run(*base, "--data", data, "--clip-min", "0,0.3,0.05", "--clip-max", "1,0.5",
    want=2, err_has=("clip-max",))
run(*base, "--data", data, "--clip-min", "0,0.6,0", "--clip-max", "1,0.5,1",
    want=2, err_has=("clip-max", "channel 1"))

print("%d failure(s)" % len(fails))
sys.exit(1 if fails else 0)
