#!/usr/bin/python3
"""PyTorch side of bench/attacks: the same PGD-Linf and APGD-CE loops as
libadv (src/engine/attacks/pgd.c, apgd.c), written in plain PyTorch on the
real trained module (tools/make_fixtures.py load_model), timed on the same
images with the same thread count.

    /usr/bin/python3 bench/attacks/attacks_torch.py --attack pgd \
        --model mnist_cnn --data IMAGES --labels LABELS --n 1000 \
        --eps 0.3 --steps 20 --step-size 0.0375 --threads 2

Prints one JSON line (side "torch") on stdout; a short summary on stderr.

What is timed (like `aisbx attack`'s wall_time_s, which covers
adv_attack_run only): the clean forward pass, the attack, and the final
forward pass on the adversarials that gives the robust accuracy. Not timed:
importing torch, rebuilding the module, reading the data, and one warm-up
forward + backward at the chunk batch size (PyTorch's one-off lazy
initialisation; our side's session planning is inside its time).

PGD (pgd.c, kind PGD, 1 restart): uniform random start x + U(-eps, eps)
projected onto the eps-ball and [0, 1]; `steps` times
x <- clip_[0,1](clip_[x0-eps, x0+eps](x + alpha * sign(grad CE))); the
result is the final iterate. Points misclassified on the clean input keep
x_adv = x (the common epilogue of run.c). Our engine evaluates the final
iterate with a gradient pass; here it is a forward pass (the one that also
gives the robust accuracy), so our side does one more backward per image.

APGD-CE (apgd.c = autopgd_base.py of AutoAttack, Linf, 1 restart): only the
points classified correctly on the clean input are attacked (AutoAttack's
perturb). Start x + eps * t / max|t|, t ~ U(-1, 1), clipped; step 2*eps per
sample; momentum 0.75 (1 at the first step); checkpoints after 22% of the
iterations, then every (previous - 3%) down to 6%; at a checkpoint the step
is halved and the iterate + gradient reset to the best point when fewer
than 75% of the steps since the last checkpoint increased the loss, or when
the step was not halved at the previous checkpoint and the best loss did
not improve (loss_steps[-1] is the zero row, as in the reference).
  --variant active : as libadv: a point stops being iterated as soon as it
                     is misclassified (the state of the remaining points is
                     compacted, so every forward/backward runs only on the
                     still-robust points). Per point this is exactly the
                     reference trajectory up to the first misclassified
                     iterate; robust accuracy is the same by construction.
  --variant full   : autopgd_base.py as published: every attacked point runs
                     all iterations (a point counts as broken when any
                     iterate is misclassified).

Random starts: --rng libadv (default) computes libadv's exact random starts
(its xoshiro256** streams, replicated here in Python before the timer
starts), so both sides start from the same points and their per-sample
outcomes can be compared (the table's "agree" column; remaining differences
come from float rounding of the gradients flipping a sign). --rng torch uses
torch.manual_seed(seed) + torch.rand inside the timed loop.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tools"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from make_fixtures import load_model, read_idx  # noqa: E402


class Counter:
    def __init__(self):
        self.forwards = 0   # sample-forwards that were part of a gradient pass
        self.backwards = 0  # sample-backwards (input gradients)


def make_grad_fn(model, cnt):
    def grad_fn(xa, y):
        """CE per sample, logits and d(sum CE)/dx at xa."""
        xa = xa.detach().requires_grad_(True)
        z = model(xa)
        li = F.cross_entropy(z, y, reduction="none")
        (g,) = torch.autograd.grad(li.sum(), xa)
        cnt.forwards += xa.shape[0]
        cnt.backwards += xa.shape[0]
        return g, z.detach(), li.detach()
    return grad_fn


def project(xa, x, eps):
    """adv__project (L-inf): x + clamp(xa - x, -eps, eps), then [0, 1]."""
    return (x + (xa - x).clamp_(-eps, eps)).clamp_(0.0, 1.0)


# ------------------------------------------------ libadv's random starts
M64 = (1 << 64) - 1


def _splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def _seed(seed):
    s = []
    for _ in range(4):
        seed, v = _splitmix64(seed)
        s.append(v)
    return s


def _rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


def _uniform_stream(seed, count):
    """count doubles of adv__rng_uniform from one adv__rng_seed(seed) stream."""
    s0, s1, s2, s3 = _seed(seed & M64)
    out = np.empty(count, dtype=np.float64)
    for i in range(count):
        res = (_rotl((s1 * 5) & M64, 7) * 9) & M64
        t = (s1 << 17) & M64
        s2 ^= s0
        s3 ^= s1
        s1 ^= s2
        s0 ^= s3
        s2 ^= t
        s3 = _rotl(s3, 45)
        out[i] = (res >> 11) * (1.0 / 9007199254740992.0)
    return out


def _uniform_streams(seeds, count):
    """The same for many independent streams at once (numpy uint64, wraps)."""
    with np.errstate(over="ignore"):
        st = np.array([_seed(int(v) & M64) for v in seeds], dtype=np.uint64).T.copy()
        s0, s1, s2, s3 = st
        out = np.empty((len(seeds), count), dtype=np.float64)
        u = np.uint64
        for i in range(count):
            x = s1 * u(5)
            res = ((x << u(7)) | (x >> u(57))) * u(9)
            t = s1 << u(17)
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = (s3 << u(45)) | (s3 >> u(19))
            out[:, i] = (res >> u(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return out


def libadv_pgd_start(x, eps, seed):
    """pgd.c random_start (L-inf): one stream over all samples in order,
    x + (float)((2u - 1) * eps), then projected."""
    n, per = x.shape[0], x[0].numel()
    u = _uniform_stream(seed, n * per).reshape(x.shape)
    d = ((2 * u - 1) * float(np.float32(eps))).astype(np.float32)
    return project(x + torch.from_numpy(d), x, eps)


def libadv_apgd_start(x, idx, eps, seed, stream=1):
    """apgd.c init_point (L-inf): sample i (index in the attacked set) draws
    from stream seed ^ (stream * C1) ^ (i * C2); x + eps * t / max|t|."""
    per = x[0].numel()
    seeds = [(seed ^ ((stream * 0x9E3779B97F4A7C15) & M64) ^ ((int(i) * 0xD1B54A32D192ED03) & M64))
             for i in idx]
    t = 2 * _uniform_streams(seeds, per) - 1                 # double, as in C
    m = np.abs(t).max(axis=1, keepdims=True)                  # of the doubles
    prod = np.float32(eps) * t.astype(np.float32)             # float * float
    d = (prod.astype(np.float64) / (m + 1e-12)).astype(np.float32).reshape(x.shape)
    return (x + torch.from_numpy(d)).clamp(0.0, 1.0)


# ---------------------------------------------------------------- PGD
def pgd_chunk(grad_fn, x, y, eps, steps, alpha, start=None):
    xa = start if start is not None else project(x + (2 * torch.rand_like(x) - 1) * eps, x, eps)
    for _ in range(steps):
        g, _, _ = grad_fn(xa, y)
        xa = project(xa + alpha * torch.sign(g), x, eps)
    return xa


# ---------------------------------------------------------------- APGD
def apgd_chunk(grad_fn, x, y, eps, n_iter, variant, start=None):
    """One APGD-CE run (1 restart) over x (points to attack). Returns
    (x_best_adv, broken): the adversarial found for each broken point."""
    n = x.shape[0]
    n_iter_2 = max(int(0.22 * n_iter), 1)
    n_iter_min = max(int(0.06 * n_iter), 1)
    size_decr = max(int(0.03 * n_iter), 1)
    nd = (1,) * (x.dim() - 1)
    red = tuple(range(1, x.dim()))

    if start is not None:
        x_adv = start
    else:
        t = 2 * torch.rand_like(x) - 1
        x_adv = (x + eps * t / (t.abs().amax(dim=red, keepdim=True) + 1e-12)).clamp(0.0, 1.0)
    x_best_adv = x_adv.clone()
    broken = torch.zeros(n, dtype=torch.bool)
    grad, logits, loss = grad_fn(x_adv, y)
    x_best, grad_best, loss_best = x_adv.clone(), grad.clone(), loss.clone()
    step = torch.full((n,) + nd, 2.0 * eps)
    x_adv_old = x_adv.clone()
    loss_best_last = loss_best.clone()
    reduced_last = torch.ones(n, dtype=torch.bool)
    # row n_iter stays zero: the reference's loss_steps[-1] at the first check
    loss_steps = torch.zeros(n_iter + 1, n)
    idx = torch.arange(n)      # original index of every row of the state
    xs, ys = x, y              # x and y of the rows

    def compact(keep):
        nonlocal idx, xs, ys, x_adv, x_adv_old, grad, x_best, grad_best, loss_best
        nonlocal step, loss_best_last, reduced_last, loss_steps
        idx, xs, ys = idx[keep], xs[keep], ys[keep]
        x_adv, x_adv_old, grad = x_adv[keep], x_adv_old[keep], grad[keep]
        x_best, grad_best, loss_best = x_best[keep], grad_best[keep], loss_best[keep]
        step, loss_best_last, reduced_last = step[keep], loss_best_last[keep], reduced_last[keep]
        loss_steps = loss_steps[:, keep]

    fooled = logits.argmax(1) != ys
    if fooled.any():  # the random start already fools these points
        x_best_adv[idx[fooled]] = x_adv[fooled]
        broken[idx[fooled]] = True
        if variant == "active":
            compact(~fooled)
    k, counter3 = n_iter_2, 0
    for i in range(n_iter):
        if idx.numel() == 0:
            break
        a = 0.75 if i > 0 else 1.0
        grad2 = x_adv - x_adv_old
        x_adv_old = x_adv
        z = project(x_adv + step * torch.sign(grad), xs, eps)
        x_adv = project(x_adv + (z - x_adv) * a + grad2 * (1 - a), xs, eps)
        grad, logits, loss = grad_fn(x_adv, ys)
        fooled = logits.argmax(1) != ys
        if fooled.any():
            x_best_adv[idx[fooled]] = x_adv[fooled]
            broken[idx[fooled]] = True
        loss_steps[i] = loss
        better = loss > loss_best
        x_best[better] = x_adv[better]
        grad_best[better] = grad[better]
        loss_best[better] = loss[better]
        if variant == "active" and fooled.any():
            compact(~fooled)
        counter3 += 1
        if counter3 == k:
            inc = torch.zeros(idx.numel())
            for c in range(k):
                inc += (loss_steps[i - c] > loss_steps[i - c - 1]).float()
            fl = inc <= k * 0.75
            fl = fl | (~reduced_last & (loss_best_last >= loss_best))
            reduced_last = fl.clone()
            loss_best_last = loss_best.clone()
            if fl.any():
                step[fl] /= 2.0
                x_adv = x_adv.clone()
                x_adv[fl] = x_best[fl]
                grad[fl] = grad_best[fl]
            k = max(k - size_decr, n_iter_min)
            counter3 = 0
    return x_best_adv, broken


# ---------------------------------------------------------------- main
def load_data(images, labels, n):
    x = read_idx(images).reshape(-1, 1, 28, 28)[:n]
    y = read_idx(labels)[:n].astype(np.int64)
    # exactly as libadv's dataset loader: u8 * (1.0f / 255.0f)
    return (torch.from_numpy(x.astype(np.float32) * np.float32(1.0 / 255.0)),
            torch.from_numpy(y))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--attack", required=True, choices=("pgd", "apgd-ce"))
    ap.add_argument("--variant", default="active", choices=("active", "full"),
                    help="APGD: stop iterating broken points (as libadv) or not")
    ap.add_argument("--model", required=True, choices=("mnist_cnn", "fashion_resnet"))
    ap.add_argument("--data", required=True, help="IDX images (optionally .gz)")
    ap.add_argument("--labels", required=True, help="IDX labels (optionally .gz)")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--eps", type=float, required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--step-size", type=float, default=0.0, help="PGD alpha (0: 2.5*eps/steps)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--batch", type=int, default=0, help="chunk size (0: all n at once)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rng", default="libadv", choices=("libadv", "torch"),
                    help="random starts: libadv's exact ones (computed before the "
                         "timer starts) or torch.rand")
    ap.add_argument("--round", type=int, default=0)
    ap.add_argument("--tag", default="")
    ap.add_argument("--idle", type=float, default=-1, help="idle %% seen before (recorded)")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = load_model(a.model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x, y = load_data(a.data, a.labels, a.n)
    n = x.shape[0]
    B = a.batch if a.batch > 0 else n
    cnt = Counter()
    grad_fn = make_grad_fn(model, cnt)
    grad_fn(x[:B], y[:B])  # warm-up (not timed)
    cnt.forwards = cnt.backwards = 0
    alpha = a.step_size if a.step_size > 0 else 2.5 * a.eps / a.steps

    starts = None
    if a.rng == "libadv":  # not timed: pure-Python xoshiro256** (~1 s)
        with torch.no_grad():
            if a.attack == "pgd":
                starts = libadv_pgd_start(x, a.eps, a.seed)
            else:
                clean0 = model(x).argmax(1) == y
                todo0 = clean0.nonzero().flatten()
                starts = torch.zeros_like(x)
                starts[todo0] = libadv_apgd_start(x[todo0], todo0.tolist(), a.eps, a.seed)

    t0 = time.perf_counter()
    with torch.no_grad():
        clean_ok = torch.cat([model(x[s:s + B]).argmax(1) for s in range(0, n, B)]) == y
    if a.attack == "pgd":
        xadv = torch.cat([pgd_chunk(grad_fn, x[s:s + B], y[s:s + B], a.eps, a.steps, alpha,
                                    None if starts is None else starts[s:s + B])
                          for s in range(0, n, B)])
        xadv[~clean_ok] = x[~clean_ok]
    else:
        xadv = x.clone()
        todo = clean_ok.nonzero().flatten()
        for s in range(0, todo.numel(), B):
            ii = todo[s:s + B]
            xb, br = apgd_chunk(grad_fn, x[ii], y[ii], a.eps, a.steps, a.variant,
                                None if starts is None else starts[ii])
            xadv[ii[br]] = xb[br]
    with torch.no_grad():
        pred_adv = torch.cat([model(xadv[s:s + B]).argmax(1) for s in range(0, n, B)])
    wall = time.perf_counter() - t0

    robust = clean_ok & (pred_adv == y)
    linf = (xadv - x).abs().amax(dim=(1, 2, 3)).max().item()
    rec = {"bench": "attacks", "side": "torch", "tag": a.tag, "attack": a.attack,
           "variant": a.variant if a.attack == "apgd-ce" else "",
           "model": a.model, "n": n, "eps": a.eps, "steps": a.steps,
           "step_size": alpha if a.attack == "pgd" else 2 * a.eps,
           "threads": torch.get_num_threads(), "batch": B, "round": a.round,
           "wall_s": wall, "images_per_s": n / wall,
           "clean_accuracy": clean_ok.float().mean().item(),
           "robust_accuracy": robust.float().mean().item(),
           "forwards": cnt.forwards, "backwards": cnt.backwards,
           "max_linf": linf, "rng": a.rng, "idle_before_pct": a.idle,
           "robust_bits": "".join("1" if v else "0" for v in robust.tolist()),
           "torch": torch.__version__}
    print(json.dumps(rec), flush=True)
    print("  torch %-8s %-6s %-14s eps %-4g %7.2f s %7.1f img/s  robust %.4f  backwards %d  "
          "(idle before %d%%)" % (a.attack, rec["variant"], a.model, a.eps, wall, n / wall,
                                  rec["robust_accuracy"], cnt.backwards, a.idle),
          file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
