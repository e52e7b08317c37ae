#!/usr/bin/python3
"""Cross-check tests/fixtures without PyTorch.

Runs every exported ONNX model with a tiny, independent numpy interpreter
(float64) and compares against the PyTorch reference logits; recomputes the
attack losses from the logits with numpy; checks the PyTorch input gradients
by central finite differences through the ONNX graph; checks the PGD/FGSM
references for the eps-ball / [0,1] constraints and refs.json consistency.

    /usr/bin/python3 tools/check_fixtures.py [--dir tests/fixtures]

Needs numpy and onnx only. Exit status 0 when every check passes.
"""
import argparse
import json
import os
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAILS = []
N_OK = [0]


def check(cond, msg):
    print(("  ok    " if cond else "  FAIL  ") + msg)
    if cond:
        N_OK[0] += 1
    else:
        FAILS.append(msg)


# --------------------------------------------------------------------------
# Minimal ONNX interpreter (only the ops our fixtures use), float64
# --------------------------------------------------------------------------
def _im2col_conv(x, w, b, strides, pads, dil, group):
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    assert group == 1 and cg == c and tuple(dil) == (1, 1)
    pt, pl, pb, pr = pads
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    sh, sw = strides
    oh = (h + pt + pb - kh) // sh + 1
    ow = (wd + pl + pr - kw) // sw + 1
    cols = np.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, :, i, j] = xp[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
    y = np.tensordot(w.reshape(m, -1), cols.reshape(n, c * kh * kw, oh * ow), axes=([1], [1]))
    y = y.transpose(1, 0, 2).reshape(n, m, oh, ow)
    if b is not None:
        y = y + b.reshape(1, m, 1, 1)
    return y


def _pool(x, kernel, strides, pads, mode):
    n, c, h, w = x.shape
    kh, kw = kernel
    sh, sw = strides
    pt, pl, pb, pr = pads
    assert (pt, pl, pb, pr) == (0, 0, 0, 0)
    oh = (h - kh) // sh + 1
    ow = (w - kw) // sw + 1
    win = np.stack([x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
                    for i in range(kh) for j in range(kw)])
    return win.max(0) if mode == "max" else win.mean(0)


def run_onnx(model, x, tape=None):
    """Evaluate the graph on x (float64). If tape is a list, append (node, inputs, output)."""
    env = {t.name: numpy_helper.to_array(t).astype(np.float64)
           if numpy_helper.to_array(t).dtype.kind == "f" else numpy_helper.to_array(t)
           for t in model.graph.initializer}
    env[model.graph.input[0].name] = x.astype(np.float64)
    for nd in model.graph.node:
        a = {at.name: helper.get_attribute_value(at) for at in nd.attribute}
        i = [env[k] if k else None for k in nd.input]
        op = nd.op_type
        if op == "Constant":
            v = numpy_helper.to_array(a["value"])
            out = v.astype(np.float64) if v.dtype.kind == "f" else v
        elif op == "Conv":
            out = _im2col_conv(i[0], i[1], i[2] if len(i) > 2 else None, a.get("strides", [1, 1]),
                               a.get("pads", [0, 0, 0, 0]), a.get("dilations", [1, 1]),
                               a.get("group", 1))
        elif op == "Relu":
            out = np.maximum(i[0], 0)
        elif op == "Identity":
            out = i[0]
        elif op == "MaxPool":
            assert a.get("ceil_mode", 0) == 0
            out = _pool(i[0], a["kernel_shape"], a["strides"], a.get("pads", [0] * 4), "max")
        elif op == "AveragePool":
            assert a.get("ceil_mode", 0) == 0
            out = _pool(i[0], a["kernel_shape"], a["strides"], a.get("pads", [0] * 4), "avg")
        elif op == "GlobalAveragePool":
            out = i[0].mean(axis=(2, 3), keepdims=True)
        elif op == "Pad":
            pads = i[1].astype(np.int64)
            r = len(pads) // 2
            assert a.get("mode", b"constant") in (b"constant", "constant")
            assert (pads >= 0).all()
            cv = i[2].item() if len(i) > 2 and i[2] is not None else 0.0
            out = np.pad(i[0], [(pads[k], pads[k + r]) for k in range(r)], constant_values=cv)
        elif op == "BatchNormalization":
            assert len(nd.output) == 1 and a.get("training_mode", 0) == 0
            xx, sc, bi, mu, var = i
            sh = (1, -1) + (1,) * (xx.ndim - 2)
            out = (xx - mu.reshape(sh)) / np.sqrt(var.reshape(sh) + a.get("epsilon", 1e-5)) \
                * sc.reshape(sh) + bi.reshape(sh)
        elif op == "Add":
            out = i[0] + i[1]
        elif op == "Shape":
            out = np.array(i[0].shape, dtype=np.int64)
        elif op == "Gather":
            out = np.take(i[0], i[1], axis=a.get("axis", 0))
        elif op == "Unsqueeze":
            axes = a["axes"] if "axes" in a else list(i[1])
            out = i[0]
            for ax in sorted(axes):
                out = np.expand_dims(out, ax)
        elif op == "Concat":
            out = np.concatenate(i, axis=a["axis"])
        elif op == "Reshape":
            shape = [int(s) for s in i[1]]
            shape = [i[0].shape[k] if s == 0 else s for k, s in enumerate(shape)]
            out = i[0].reshape(shape)
        elif op == "Flatten":
            ax = a.get("axis", 1)
            out = i[0].reshape(int(np.prod(i[0].shape[:ax])), -1)
        elif op == "Gemm":
            A = i[0].T if a.get("transA", 0) else i[0]
            B = i[1].T if a.get("transB", 0) else i[1]
            out = a.get("alpha", 1.0) * (A @ B)
            if len(i) > 2 and i[2] is not None:
                out = out + a.get("beta", 1.0) * i[2]
        elif op == "Softmax":
            ax = a.get("axis", -1 if model.opset_import[0].version >= 13 else 1)
            e = np.exp(i[0] - i[0].max(axis=ax, keepdims=True))
            out = e / e.sum(axis=ax, keepdims=True)
        else:
            raise NotImplementedError(op)
        env[nd.output[0]] = out
        if tape is not None:
            tape.append((nd, a, i, out))
    return env[model.graph.output[0].name]


def backprop_onnx(model, x, dz):
    """Reverse mode through the graph: d(sum(dz * f(x)))/dx, float64.

    Uses PyTorch's conventions at non-differentiable points: ReLU'(0) = 0;
    MaxPool sends the gradient to the first maximum of the window in
    row-major order.
    """
    tape = []
    run_onnx(model, x, tape)
    grads = {model.graph.output[0].name: dz.astype(np.float64)}

    def acc(name, g):
        grads[name] = grads[name] + g if name in grads else g

    for nd, a, i, out in reversed(tape):
        go = grads.get(nd.output[0])
        if go is None:
            continue
        op, xin = nd.op_type, nd.input[0]
        if op == "Relu":
            acc(xin, go * (out > 0))
        elif op == "Add":
            for k in range(2):
                g = go
                while g.ndim > i[k].ndim:
                    g = g.sum(0)
                acc(nd.input[k], g.reshape(i[k].shape) if g.shape == i[k].shape else
                    np.broadcast_to(g, go.shape).sum(
                        axis=tuple(d for d in range(go.ndim) if i[k].shape[d] == 1),
                        keepdims=True))
        elif op == "Gemm":
            assert not a.get("transA", 0) and a.get("transB", 0)
            acc(xin, a.get("alpha", 1.0) * go @ i[1])
        elif op in ("Reshape", "Flatten"):
            acc(xin, go.reshape(i[0].shape))
        elif op == "GlobalAveragePool":
            hw = i[0].shape[2] * i[0].shape[3]
            acc(xin, np.broadcast_to(go, i[0].shape) / hw)
        elif op == "Pad":
            pads = i[1].astype(np.int64)
            r = len(pads) // 2
            acc(xin, go[tuple(slice(pads[k], go.shape[k] - pads[k + r]) for k in range(r))])
        elif op == "BatchNormalization":
            sh = (1, -1) + (1,) * (i[0].ndim - 2)
            acc(xin, go * (i[1] / np.sqrt(i[4] + a.get("epsilon", 1e-5))).reshape(sh))
        elif op in ("MaxPool", "AveragePool"):
            kh, kw = a["kernel_shape"]
            sh_, sw = a["strides"]
            n, c, oh, ow = out.shape
            gx = np.zeros_like(i[0])
            if op == "AveragePool":
                for p in range(kh):
                    for q in range(kw):
                        gx[:, :, p:p + sh_ * oh:sh_, q:q + sw * ow:sw] += go / (kh * kw)
            else:
                win = np.stack([i[0][:, :, p:p + sh_ * oh:sh_, q:q + sw * ow:sw]
                                for p in range(kh) for q in range(kw)])
                first = win.argmax(0)  # first maximum, row-major in the window
                for idx in range(kh * kw):
                    p, q = divmod(idx, kw)
                    gx[:, :, p:p + sh_ * oh:sh_, q:q + sw * ow:sw] += go * (first == idx)
            acc(xin, gx)
        elif op == "Conv":
            w = i[1]
            n, c, h, wd = i[0].shape
            m, _, kh, kw = w.shape
            pt, pl, pb, pr = a.get("pads", [0] * 4)
            sh_, sw = a.get("strides", [1, 1])
            oh, ow = go.shape[2], go.shape[3]
            dcols = np.tensordot(w.reshape(m, -1), go.reshape(n, m, oh * ow), axes=([0], [1]))
            dcols = dcols.transpose(1, 0, 2).reshape(n, c, kh, kw, oh, ow)
            gp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
            for p in range(kh):
                for q in range(kw):
                    gp[:, :, p:p + sh_ * oh:sh_, q:q + sw * ow:sw] += dcols[:, :, p, q]
            acc(xin, gp[:, :, pt:pt + h, pl:pl + wd])
        elif op in ("Shape", "Gather", "Unsqueeze", "Concat", "Constant"):
            pass
        else:
            raise NotImplementedError("backprop " + op)
    return grads[model.graph.input[0].name]


# --------------------------------------------------------------------------
# Attack losses, numpy float64 (same definitions as docs/fixtures.md)
# --------------------------------------------------------------------------
def np_losses(z, y, t, k):
    n = np.arange(z.shape[0])
    m = z.max(1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(1, keepdims=True)))[:, 0]

    def max_except(c):
        zz = z.copy()
        zz[n, c] = -np.inf
        return zz.max(1)

    zs = -np.sort(-z, axis=1)
    zy, zt, zk = z[n, y], z[n, t], z[n, k]
    return {
        "ce": lse - zy, "ce_t": lse - zt,
        "cw": max_except(y) - zy, "cw_t": zt - max_except(t),
        "dlr": -(zy - max_except(y)) / (zs[:, 0] - zs[:, 2] + 1e-12),
        "dlr_t": -(zy - zt) / (zs[:, 0] - (zs[:, 2] + zs[:, 3]) / 2 + 1e-12),
        "logit": zk,
    }


def np_loss_grads(z, y, t, k):
    """dL/dz per sample for every loss (ties: first index, like torch.max / sort)."""
    N, C = z.shape
    n = np.arange(N)
    E = np.eye(C)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)

    def argmax_except(c):
        zz = z.copy()
        zz[n, c] = -np.inf
        return zz.argmax(1)

    order = np.argsort(-z, axis=1, kind="stable")
    zs = z[n[:, None], order]
    my, mt = argmax_except(y), argmax_except(t)
    e1, e3, e4 = E[order[:, 0]], E[order[:, 2]], E[order[:, 3]]
    zy, zt = z[n, y], z[n, t]
    d = zs[:, 0] - zs[:, 2] + 1e-12
    dt = zs[:, 0] - (zs[:, 2] + zs[:, 3]) / 2 + 1e-12
    return {
        "ce": p - E[y], "ce_t": p - E[t],
        "cw": E[my] - E[y], "cw_t": E[t] - E[mt],
        "dlr": -(E[y] - E[my]) / d[:, None] + ((zy - z[n, my]) / d ** 2)[:, None] * (e1 - e3),
        "dlr_t": -(E[y] - E[t]) / dt[:, None]
                 + ((zy - zt) / dt ** 2)[:, None] * (e1 - (e3 + e4) / 2),
        "logit": E[k],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default=os.path.join(REPO, "tests", "fixtures"))
    args = ap.parse_args()
    D = lambda f: os.path.join(args.dir, f)  # noqa: E731
    rng = np.random.default_rng(0)
    refs = json.load(open(D("refs.json")))

    batches = {"mnist": np.load(D("mnist_batch.npz")), "fashion": np.load(D("fashion_batch.npz"))}
    for ds, b in batches.items():
        check(b["x"].dtype == np.float32 and b["x"].shape == (64, 1, 28, 28)
              and b["y"].dtype == np.int64 and b["y"].shape == (64,)
              and 0 <= b["x"].min() and b["x"].max() <= 1, "%s_batch.npz shapes/dtypes/range" % ds)

    print("== ONNX models vs PyTorch reference (numpy float64 interpreter)")
    cases = [("mnist_cnn.onnx", "mnist", "mnist_cnn_logits.npy", 13),
             ("mnist_cnn_op9.onnx", "mnist", "mnist_cnn_logits.npy", 9),
             ("mnist_cnn_softmax.onnx", "mnist", "mnist_cnn_softmax_probs.npy", 13),
             ("fashion_resnet.onnx", "fashion", "fashion_resnet_logits.npy", 17)]
    models = {}
    for fn, ds, ref, opset in cases:
        m = onnx.load(D(fn))
        onnx.checker.check_model(m)
        models[fn] = m
        check(m.opset_import[0].version == opset, "%s opset %d" % (fn, opset))
        check(os.path.getsize(D(fn)) < 1 << 20, "%s < 1 MB" % fn)
        check(m.graph.input[0].name == "input"
              and m.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch",
              "%s input 'input' with dynamic dim 'batch'" % fn)
        z = run_onnx(m, batches[ds]["x"])
        r = np.load(D(ref))
        err = np.abs(z - r).max()
        check(r.dtype == np.float32 and r.shape == (64, 10) and err < 1e-4,
              "%s vs %s: max abs err %.2e" % (fn, ref, err))
        # a different batch size through the dynamic batch axis
        z3 = run_onnx(m, batches[ds]["x"][5:8])
        check(np.abs(z3 - r[5:8]).max() < 1e-4, "%s batch of 3" % fn)
    nbn = sum(n.op_type == "BatchNormalization" for n in models["fashion_resnet.onnx"].graph.node)
    check(nbn == 5, "fashion_resnet.onnx keeps 5 BatchNormalization nodes")

    print("== full test set predictions")
    for name in ("mnist_cnn", "fashion_resnet"):
        p = np.load(D(name + "_pred10k.npy"))
        mg = np.load(D(name + "_margin10k.npy"))
        check(p.dtype == np.int64 and p.shape == (10000,) and mg.shape == (10000,),
              "%s_pred10k.npy int64 (10000,)" % name)
        b = batches[refs[name]["dataset"]]
        z = np.load(D(name + "_logits.npy"))
        check((z.argmax(1) == p[:64]).all(), "%s pred10k[:64] == argmax(logits)" % name)
        check(refs[name]["test_correct"] == int(round(refs[name]["test_accuracy"] * 10000)),
              "%s refs.json accuracy %.4f" % (name, refs[name]["test_accuracy"]))

    print("== losses and input gradients")
    for name, onx in (("mnist_cnn", "mnist_cnn.onnx"), ("fashion_resnet", "fashion_resnet.onnx")):
        g = np.load(D(name + "_grads.npz"))
        x, y, t, k = g["x"], g["y"], g["target"], g["logit_k"]
        check((t == (y + 1) % 10).all() and (k == (y + 3) % 10).all() and t.dtype == np.int64,
              "%s target/logit_k definitions" % name)
        z = run_onnx(models[onx], x)
        L = np_losses(z, y, t, k)
        dL = np_loss_grads(z, y, t, k)
        for ln in L:
            lv, gv = g["loss_" + ln], g["grad_" + ln]
            check(lv.dtype == np.float32 and gv.shape == x.shape and gv.dtype == np.float32,
                  "%s %s shapes" % (name, ln))
            lerr = np.abs(L[ln] - lv).max() / max(1.0, np.abs(lv).max())
            check(lerr < 1e-4, "%s loss_%s matches numpy (rel err %.1e)" % (name, ln, lerr))
            # independent numpy reverse mode through the ONNX graph
            gn = backprop_onnx(models[onx], x, dL[ln])
            gerr = np.abs(gn - gv).max() / max(1e-6, np.abs(gn).max())
            check(gerr < 1e-4, "%s grad_%s matches numpy backprop (err/max %.1e)"
                  % (name, ln, gerr))
            if name == "fashion_resnet":
                # central differences (no MaxPool ties in this model; tiny h avoids
                # crossing ReLU kinks)
                v = rng.standard_normal(x.shape)
                h = 1e-7
                lp = np_losses(run_onnx(models[onx], x + h * v), y, t, k)[ln]
                lm = np_losses(run_onnx(models[onx], x - h * v), y, t, k)[ln]
                fd = (lp - lm) / (2 * h)
                an = (gv.astype(np.float64) * v).reshape(len(x), -1).sum(1)
                rel = np.median(np.abs(fd - an) / (np.abs(fd) + np.abs(an) + 1e-3))
                check(rel < 1e-3, "%s grad_%s vs finite differences (median rel err %.1e)"
                      % (name, ln, rel))

    print("== PGD / FGSM reference")
    p = np.load(D("mnist_cnn_pgd.npz"))
    eps, step, steps = p["params"]
    x0 = batches["mnist"]["x"][:16]
    check(p["params"].dtype == np.float64 and (eps, step, steps) == (0.1, 0.01, 20.0), "params")
    for key in ("x_adv", "fgsm_adv"):
        xa = p[key]
        check(xa.dtype == np.float32 and xa.shape == x0.shape, "%s shape" % key)
        check(np.abs(xa - x0).max() <= eps + 1e-6 and xa.min() >= 0 and xa.max() <= 1,
              "%s in eps-ball and [0,1] (max |d| %.6f)" % (key, np.abs(xa - x0).max()))
    zz = run_onnx(models["mnist_cnn.onnx"], p["x_adv"])
    check((zz.argmax(1) == p["pred_adv"]).all(), "pred_adv == argmax ONNX(x_adv)")
    zz = run_onnx(models["mnist_cnn.onnx"], p["fgsm_adv"])
    check((zz.argmax(1) == p["pred_fgsm"]).all(), "pred_fgsm == argmax ONNX(fgsm_adv)")
    g = np.load(D("mnist_cnn_grads.npz"))
    fg = np.clip(x0 + np.float32(eps) * np.sign(g["grad_ce"]), 0, 1).astype(np.float32)
    check(np.abs(fg - p["fgsm_adv"]).max() < 1e-6, "fgsm_adv == clip(x + eps*sign(grad_ce))")

    print("== demo data")
    d = np.load(D("demo_mnist.npz"))
    check(d["x"].dtype == np.uint8 and d["x"].shape == (1000, 1, 28, 28)
          and d["y"].dtype == np.int64 and d["y"].shape == (1000,), "demo_mnist.npz shapes")
    check(np.abs(d["x"][:64].astype(np.float32) / np.float32(255) - batches["mnist"]["x"]).max() == 0,
          "demo_mnist.npz[:64]/255 == mnist_batch.npz x")

    total = sum(os.path.getsize(D(f)) for f in os.listdir(args.dir))
    check(total < 5 << 20, "fixtures total %.2f MB < 5 MB" % (total / 1e6))
    print("check_fixtures: %d passed, %d failed" % (N_OK[0], len(FAILS)))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
