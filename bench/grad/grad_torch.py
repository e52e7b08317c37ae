#!/usr/bin/python3
"""PyTorch side of bench/grad: input-gradient images/s of the real PyTorch
module (eval mode, parameters with requires_grad False) with autograd:

    x.requires_grad_(True)
    loss = F.cross_entropy(model(x), y, reduction='sum'); loss.backward()

timed with the same adaptive loop as bench_grad, and the peak RSS of this
process (resource.getrusage ru_maxrss; run one process per model and batch
so the peak belongs to that configuration: run.sh does).

For every batch B it writes REF_PREFIX_b<B>.npz (x, y, logits, dx = x.grad,
and dx64: the float64 gradient of the first 16 samples, from a float64 copy
of the module, as float32) so that bench_grad runs the same input and
compares its gradient with both.

    /usr/bin/python3 bench/grad/grad_torch.py --model mnist_cnn --batches 128 \
        --threads 2 --min-time 1.5 --ref-out /tmp/x/mnist_cnn

Prints one JSON line per batch on stdout (side "torch").
"""
import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import bench_common as bc  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


N64 = 16  # samples checked against a float64 gradient


def rel_err(g, ref):
    """max |g - ref| / max |ref| of one sample."""
    m = float(np.abs(ref).max())
    d = float(np.abs(g.astype(np.float64) - ref).max())
    return d / m if m > 0 else d


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=bc.MODELS)
    ap.add_argument("--batches", default="1,32,128")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--min-time", type=float, default=1.5)
    ap.add_argument("--ref-out", help="write REF_OUT_b<B>.npz (x, y, logits, dx)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = bc.build_model(a.model)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    model64 = None  # float64 copy, made after the peak RSS is taken
    for b in bc.parse_batches(a.batches):
        xn, yn = bc.make_input(a.model, b)
        x = torch.from_numpy(xn).requires_grad_(True)
        y = torch.from_numpy(yn)
        rss_setup = bc.peak_rss_kb()

        def step():
            x.grad = None
            loss = F.cross_entropy(model(x), y, reduction="sum")
            loss.backward()
            return loss

        t = bc.time_fn(step, a.min_time)
        x.grad = None
        z = model(x)
        F.cross_entropy(z, y, reduction="sum").backward()
        peak = bc.peak_rss_kb()  # before the float64 reference below
        # float64 reference gradient of the first N64 samples: the yardstick
        # for both float32 computations (where a sample's loss is tiny,
        # PyTorch's float32 softmax - onehot loses most of its digits)
        n64 = min(b, N64)
        if model64 is None:
            model64 = copy.deepcopy(model).double()
        x64 = torch.from_numpy(xn[:n64]).double().requires_grad_(True)
        F.cross_entropy(model64(x64), y[:n64], reduction="sum").backward()
        dx64 = x64.grad.numpy()
        err64 = sorted(rel_err(x.grad.numpy()[i], dx64[i]) for i in range(n64))
        if a.ref_out:
            np.savez("%s_b%d.npz" % (a.ref_out, b), x=xn, y=yn,
                     logits=z.detach().numpy(), dx=x.grad.numpy(),
                     dx64=dx64.astype(np.float32))
        for mode, tm in bc.modes(t):
            rec = {"bench": "grad", "side": "torch", "model": a.model, "batch": b,
                     "threads": torch.get_num_threads(), "images_per_s": b / tm["median_s"],
                     "best_images_per_s": b / tm["best_s"], "ms_per_call": tm["median_s"] * 1e3,
                     "warmup": tm["warmup"], "reps": tm["reps"], "iters_per_rep": tm["iters_per_rep"],
                     "timed_s": tm["timed_s"], "cpu_s": tm["cpu_s"], "rss_setup_kb": rss_setup, "peak_rss_kb": peak,
                     "dx64_rel_median": float(np.median(err64)), "dx64_rel_max": err64[-1],
                     "n64": n64,
                     "torch": torch.__version__}
            if mode:
                rec["load"] = mode
            bc.emit(rec)
        ips = b / t["median_s"]
        print("  torch %-16s b%-4d %10.1f img/s  (%.3f ms/call, %dx%d)  peak RSS %.1f MiB"
              % (a.model, b, ips, t["median_s"] * 1e3, t["reps"], t["iters_per_rep"],
                 peak / 1024), file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
