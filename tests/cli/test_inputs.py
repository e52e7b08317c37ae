#!/usr/bin/python3
"""aisbx on issue 13's inputs: models of any input rank (rank-2 tabular,
rank-3 audio), several model inputs (--input, extra inputs from NPZ keys
or their initializers), and the input domain (--mean/--std prepended to the
model, clip bounds). References: numpy's forward passes, written out here
from the ONNX files' weights (tests/fixtures/inputs, made by
tools/make_input_fixtures.py), never numbers from our own runs.
Usage: test_inputs.py AISBX FIXTURE_DIR (needs numpy and onnx)."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "common"))
from aisbx_api import check, fails  # noqa: E402

aisbx, fix = sys.argv[1], os.path.join(sys.argv[2], "inputs")
tmp = tempfile.mkdtemp()


def run(*args, want=0, err_has=()):
    r = subprocess.run([aisbx, *args], capture_output=True, text=True, timeout=120)
    if r.returncode != want:
        print(r.stdout, r.stderr)
    check(r.returncode == want, "exit %d for %s" % (want, " ".join(args[:8])))
    for s in err_has:
        check(s in r.stderr, "stderr names %r: %s" % (s, r.stderr.strip()[:200]))
    return r


def T(name):
    return os.path.join(tmp, name)


def F(name):
    return os.path.join(fix, name)


def weights(model):
    return {i.name: numpy_helper.to_array(i) for i in onnx.load(F(model)).graph.initializer}


def relu(a):
    return np.maximum(a, 0)


def tabular_ref(x):
    w = weights("tabular_mlp.onnx")
    return relu(x @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"]


def audio_ref(a, model="audio_conv1d.onnx", gain=1.0):
    w = weights(model)
    a = a * gain + w.get("offset", 0.0)
    t = a.shape[2]
    p = np.pad(a[:, 0], ((0, 0), (2, 2)))
    cols = np.stack([p[:, k:k + t] for k in range(5)], -1)
    c = np.einsum("ntk,ck->nct", cols, w["w"][:, 0]) + w["b"][None, :, None]
    return relu(c).mean(2) @ w["wf"] + w["bf"]


def predict_logits(model, data, *extra, tag):
    lo = T(tag + "_logits.npy")
    run("predict", "--model", F(model), "--data", data, "--logits", lo,
        "--out", T(tag + "_pred.npy"), *extra)
    return np.load(lo) if os.path.exists(lo) else None


def attack(model, data, eps, tag, *extra):
    out, adv = T(tag + ".json"), T(tag + ".npy")
    run("attack", "--model", F(model), "--data", data, "--attack", "pgd", "--eps",
        str(eps), "--steps", "20", "--seed", "7", "--out", out, "--adv", adv,
        "--quiet", *extra)
    if not os.path.exists(out) or not os.path.exists(adv):
        return None, None
    return json.load(open(out)), np.load(adv)


# ---- item 2 of issue 13: the model's declared input rank decides
for model, name, ref in (("tabular_mlp.onnx", "tabular", tabular_ref),
                         ("audio_conv1d.onnx", "audio", audio_ref)):
    data = F(name + "_data.npz")
    d = np.load(data)
    x, y = d["x"], d["y"]
    z = predict_logits(model, data, tag=name)
    check(z is not None and z.shape == (len(x), 3), "%s: rank-%d input predicts N x 3"
          % (name, x.ndim))
    if z is not None:
        check(np.allclose(z, ref(x), atol=1e-4), "%s: logits equal numpy's (max diff %.2g)"
              % (name, np.abs(z - ref(x)).max()))
    eps = 0.15
    res, adv = attack(model, data, eps, name + "_pgd")
    if res is None:
        continue
    check(adv.shape == x.shape, "%s: adversarials keep the data's shape %s"
          % (name, adv.shape))
    check(np.abs(adv - x).max() <= eps + 1e-6 and adv.min() >= 0 and adv.max() <= 1,
          "%s: adversarials within eps %g and [0, 1]" % (name, eps))
    za = ref(adv)
    ps = res["per_sample"]
    check(ps["pred_clean"] == list(ref(x).argmax(1)),
          "%s: clean predictions equal numpy's" % name)
    check(ps["pred_adv"] == list(za.argmax(1)),
          "%s: adversarial predictions equal numpy's on the returned x_adv" % name)
    check(res["attack_success_rate"] > 0,
          "%s: PGD flips some samples (success %.2f)" % (name, res["attack_success_rate"]))

# rank mismatches are exit 2 naming both shapes
run("predict", "--model", F("audio_conv1d.onnx"), "--data", F("tabular_data.npz"),
    want=2, err_has=("N x 8", "N x 1 x 64", "'audio'"))
run("attack", "--model", F("tabular_mlp.onnx"), "--data", F("audio_data.npz"),
    "--attack", "pgd", "--out", T("x.json"), want=2, err_has=("N x 1 x 64", "N x 8"))
# N x H x W data still fits an N x 1 x H x W model (MNIST IDX files)
mn = np.load(os.path.join(sys.argv[2], "mnist_batch.npz"))
np.save(T("mnist_nhw.npy"), mn["x"][:, 0])
np.save(T("mnist_y.npy"), mn["y"])
lo = T("nhw_logits.npy")
run("predict", "--model", os.path.join(sys.argv[2], "mnist_cnn.onnx"), "--data",
    T("mnist_nhw.npy"), "--labels", T("mnist_y.npy"), "--logits", lo, "--out", T("p.npy"))
if os.path.exists(lo):
    ref = np.load(os.path.join(sys.argv[2], "mnist_cnn_logits.npy"))  # PyTorch's
    check(np.allclose(np.load(lo), ref, atol=1e-4), "N x H x W data on an N x 1 x H x W model")

# ---- item 2: several model inputs. audio_multi.onnx takes gain (first,
# no default: the NPZ member 'gain'), audio and offset (initializer 0.05)
data = F("audio_multi_data.npz")
d = np.load(data)
x, gain = d["x"], d["gain"]
z = predict_logits("audio_multi.onnx", data, "--input", "audio", tag="multi")
ref_m = audio_ref(x, "audio_multi.onnx", gain)
if z is not None:
    check(np.allclose(z, ref_m, atol=1e-4),
          "multi: --input audio, gain from the NPZ, offset from its initializer "
          "(max diff %.2g)" % np.abs(z - ref_m).max())
res, adv = attack("audio_multi.onnx", data, 0.1, "multi_pgd", "--input", "audio")
if res is not None:
    check(adv.shape == x.shape and np.abs(adv - x).max() <= 0.1 + 1e-6,
          "multi: adversarials of the audio input within eps")
    check(res["per_sample"]["pred_adv"] ==
          list(audio_ref(adv, "audio_multi.onnx", gain).argmax(1)),
          "multi: adversarial predictions equal numpy's")
    check(res.get("input", {}).get("name") == "audio", "multi: result records the input")
# the default is the first float input (gain): then audio has no value
run("attack", "--model", F("audio_multi.onnx"), "--data", data, "--attack", "pgd",
    "--out", T("x.json"), want=2, err_has=("'audio'",))
run("attack", "--model", F("audio_multi.onnx"), "--data", F("audio_data.npz"),
    "--input", "audio", "--attack", "pgd", "--out", T("x.json"), want=2,
    err_has=("'gain'",))
run("attack", "--model", F("audio_multi.onnx"), "--data", data, "--input", "nope",
    "--attack", "pgd", "--out", T("x.json"), want=2, err_has=("--input", "'nope'"))

# ---- item 3: --mean/--std in front of the model, attacks in pixel space
mean = np.load(F("image_mean.npy"))
std = np.load(F("image_std.npy"))
norm = ("--mean", ",".join("%.9g" % v for v in mean), "--std",
        ",".join("%.9g" % v for v in std))
data = F("image_data.npz")
x = np.load(data)["x"]


def image_ref(px):
    w = weights("image_norm.onnx")
    xn = (px - mean[None, :, None, None]) / std[None, :, None, None]
    p = np.pad(xn, ((0, 0), (0, 0), (1, 1), (1, 1)))
    cols = np.stack([p[:, :, i:i + 4, j:j + 4] for i in range(3) for j in range(3)], -1)
    c = np.einsum("nchwk,ock->nohw", cols, w["w"].reshape(6, 3, 9))
    return relu(c + w["b"][None, :, None, None]).mean((2, 3)) @ w["wf"] + w["bf"]


z = predict_logits("image_norm.onnx", data, *norm, tag="norm")
if z is not None:
    check(np.allclose(z, image_ref(x), atol=1e-4),
          "norm: logits with --mean/--std equal numpy's on (x - mean) / std "
          "(max diff %.2g)" % np.abs(z - image_ref(x)).max())
for eps, clip in ((0.03, ("0", "1")), (0.05, ("-0.5", "1.5"))):
    res, adv = attack("image_norm.onnx", data, eps, "norm_pgd", "--clip-min", clip[0],
                      "--clip-max", clip[1], *norm)
    if res is None:
        continue
    lo, hi = float(clip[0]), float(clip[1])
    check(np.abs(adv - x).max() <= eps + 1e-6 and adv.min() >= lo and adv.max() <= hi,
          "norm: adversarials within eps %g of the pixels and within [%g, %g]"
          % (eps, lo, hi))
    check(res["per_sample"]["pred_adv"] == list(image_ref(adv).argmax(1)),
          "norm: adversarial predictions equal numpy's on normalized x_adv")
    check(res["attack_success_rate"] > 0, "norm: PGD in pixel space succeeds sometimes")
    dom = res.get("input", {})
    check(np.array_equal(np.float32(dom.get("mean", [])), mean) and
          np.array_equal(np.float32(dom.get("std", [])), std),
          "norm: result records mean and std: %s" % dom)
    check(res["params"]["clip_min"] == lo and res["params"]["clip_max"] == hi,
          "norm: result records the clip bounds")
# without the normalization the same attack sees another model
res0, _ = attack("image_norm.onnx", data, 0.03, "raw_pgd")
if res0 is not None:
    check("input" not in res0, "no domain set: the result has no input object")
run("attack", "--model", F("image_norm.onnx"), "--data", data, "--attack", "pgd",
    "--mean", "0.5,0.5", "--out", T("x.json"), want=2, err_has=("mean",))
run("attack", "--model", F("image_norm.onnx"), "--data", data, "--attack", "pgd",
    "--std", "0", "--out", T("x.json"), want=2, err_has=("--std",))

# ---- item 4 (part): a binary classifier with one sigmoid output is two
# classes, scores [0, s] with s the pre-sigmoid logit
data = F("binary_data.npz")
x = np.load(data)["x"]


def binary_logit(px):
    w = weights("binary_sigmoid.onnx")
    return (relu(px @ w["w1"] + w["b1"]) @ w["w2"] + w["b2"])[:, 0]


z = predict_logits("binary_sigmoid.onnx", data, tag="binary")
if z is not None:
    ref_b = np.stack([np.zeros(len(x)), binary_logit(x)], 1)
    check(z.shape == (len(x), 2) and np.allclose(z, ref_b, atol=1e-4),
          "binary: N x 1 sigmoid output read as two classes [0, logit]")
res, adv = attack("binary_sigmoid.onnx", data, 0.2, "binary_pgd")
if res is not None:
    check(res["per_sample"]["pred_adv"] == list((binary_logit(adv) > 0).astype(int)),
          "binary: adversarial predictions = numpy's sigmoid > 0.5 on x_adv")
    check(res["attack_success_rate"] > 0, "binary: PGD flips some decisions")

print("%d failure(s)" % len(fails))
sys.exit(1 if fails else 0)
