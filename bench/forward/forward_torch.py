#!/usr/bin/python3
"""PyTorch side of bench/forward: inference images/s of the real PyTorch
module (eval mode, torch.no_grad()) at the given batch sizes and thread
count, timed with the same adaptive loop as bench_forward.

For every batch B it writes REF_PREFIX_b<B>.npz (x: the input, logits: the
PyTorch output on it) so that bench_forward runs the same input and reports
how far its logits are from these.

    /usr/bin/python3 bench/forward/forward_torch.py --model mnist_cnn \
        --batches 1,128 --threads 2 --min-time 1.5 --ref-out /tmp/x/mnist_cnn

Prints one JSON line per batch on stdout (side "torch").
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
import bench_common as bc  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True, choices=bc.MODELS)
    ap.add_argument("--batches", default="1,128")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--min-time", type=float, default=1.5)
    ap.add_argument("--ref-out", help="write REF_OUT_b<B>.npz (x, logits)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = bc.build_model(a.model)
    model.eval()
    for b in bc.parse_batches(a.batches):
        xn, _ = bc.make_input(a.model, b)
        x = torch.from_numpy(xn)
        with torch.no_grad():
            t = bc.time_fn(lambda: model(x), a.min_time)
            z = model(x).numpy()
        if a.ref_out:
            np.savez("%s_b%d.npz" % (a.ref_out, b), x=xn, logits=z)
        for mode, tm in bc.modes(t):
            rec = {"bench": "forward", "side": "torch", "model": a.model, "batch": b,
                     "threads": torch.get_num_threads(), "images_per_s": b / tm["median_s"],
                     "best_images_per_s": b / tm["best_s"], "ms_per_call": tm["median_s"] * 1e3,
                     "warmup": tm["warmup"], "reps": tm["reps"], "iters_per_rep": tm["iters_per_rep"],
                     "timed_s": tm["timed_s"], "cpu_s": tm["cpu_s"], "peak_rss_kb": bc.peak_rss_kb(),
                     "torch": torch.__version__}
            if mode:
                rec["load"] = mode
            bc.emit(rec)
        ips = b / t["median_s"]
        print("  torch %-16s b%-4d %10.1f img/s  (%.3f ms/call, %dx%d)"
              % (a.model, b, ips, t["median_s"] * 1e3, t["reps"], t["iters_per_rep"]),
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
