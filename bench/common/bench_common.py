"""Shared code of the PyTorch peers (bench/forward/forward_torch.py,
bench/grad/grad_torch.py): the benchmark models, their inputs, the adaptive
timing loop (the same as bench_time() in bench_common.c) and JSON lines.

Needs Debian's /usr/bin/python3 (torch 1.13, numpy).
"""
import json
import math
import os
import resource
import signal
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(REPO, "tests", "fixtures")
sys.path.insert(0, os.path.join(REPO, "tools"))

PAIRED_REP_S = 0.5  # seconds per rep in the paired loaded mode (bench_common.c)
MODELS = ("mnist_cnn", "fashion_resnet", "resnet18_cifar")


def build_model(name):
    """The real PyTorch module of a benchmark model, eval mode."""
    if name == "resnet18_cifar":
        from make_bench_models import build_resnet18_cifar
        return build_resnet18_cifar(seed=0)
    from make_fixtures import load_model
    return load_model(name, FIXTURES)


def make_input(name, batch):
    """Benchmark input x (float32, NCHW, [0,1]) and labels y (int64) of a model.

    mnist_cnn: the first `batch` images of demo_mnist.npz (real MNIST test
    digits); fashion_resnet: fashion_batch.npz (64 Fashion-MNIST test images)
    repeated; resnet18_cifar: uniform noise from default_rng(batch) with
    labels from the same generator.
    """
    if name == "mnist_cnn":
        d = np.load(os.path.join(FIXTURES, "demo_mnist.npz"))
        idx = np.arange(batch) % d["x"].shape[0]
        return (d["x"][idx].astype(np.float32) / np.float32(255)), d["y"][idx].astype(np.int64)
    if name == "fashion_resnet":
        d = np.load(os.path.join(FIXTURES, "fashion_batch.npz"))
        idx = np.arange(batch) % d["x"].shape[0]
        return np.ascontiguousarray(d["x"][idx], dtype=np.float32), d["y"][idx].astype(np.int64)
    if name == "resnet18_cifar":
        rng = np.random.default_rng(batch)
        x = rng.random((batch, 3, 32, 32), dtype=np.float32)
        return x, rng.integers(0, 10, batch).astype(np.int64)
    raise ValueError("unknown model %r" % name)


def time_fn(fn, min_time):
    """Adaptive timing, identical to bench_time() in bench_common.c.

    Warm-up until 0.3 s have passed (at least one call, two when a call
    takes under 0.5 s); t = the mean warm-up call after the first; then 5 reps of round(min_time/5/t) calls when a call
    takes t < min_time/5, else clamp(ceil(min_time/t), 3, 5) reps of one
    call. Returns a dict with median/best seconds per call, the counts, and
    the timed wall and CPU (process, all threads) seconds. In the paired
    loaded mode (BENCH_BURNERS set) every rep runs twice in a row, burners
    stopped then continued, and the dict of the loaded half is under
    "loaded".
    """
    t0 = time.perf_counter()
    warm = 0
    while True:
        a = time.perf_counter()
        fn()
        last = time.perf_counter() - a
        if warm == 0:
            first = last
        warm += 1
        el = time.perf_counter() - t0
        if el >= 0.3 and (warm >= 2 or last >= 0.5):
            break
    if warm >= 2:  # mean warm-up call after the first (one-off costs)
        last = (el - first) / (warm - 1)
    last = max(last, 1e-9)
    if last < min_time / 5:
        reps, iters = 5, max(1, int(min_time / 5 / last + 0.5))
    else:
        reps, iters = min(5, max(3, math.ceil(min_time / last))), 1
    burners = burner_pids()
    if burners and iters * last < PAIRED_REP_S:  # steady halves, as bench_common.c
        iters = max(1, int(PAIRED_REP_S / last + 0.5))
    per, total, cpu = ([], []), [0.0, 0.0], [0.0, 0.0]
    for r in range(reps * (2 if burners else 1)):
        loaded = 1 if burners and r % 2 else 0
        if loaded:
            signal_burners(burners, signal.SIGCONT)
        c0, a = time.process_time(), time.perf_counter()
        try:
            for _ in range(iters):
                fn()
        finally:
            el = time.perf_counter() - a
            cpu[loaded] += time.process_time() - c0
            if loaded:
                signal_burners(burners, signal.SIGSTOP)
        total[loaded] += el
        per[loaded].append(el / iters)

    def half(m):
        p = sorted(per[m])
        med = p[reps // 2] if reps % 2 else 0.5 * (p[reps // 2 - 1] + p[reps // 2])
        return {"median_s": med, "best_s": p[0], "warmup": warm, "reps": reps,
                "iters_per_rep": iters, "timed_s": total[m], "cpu_s": cpu[m]}
    t = half(0)
    if burners:
        t["loaded"] = half(1)
    return t


def burner_pids():
    """The burners of the paired loaded mode (BENCH_BURNERS, as in
    bench_common.c): pids the caller started and stopped with SIGSTOP."""
    return [int(v) for v in os.environ.get("BENCH_BURNERS", "").replace(",", " ").split()
            if v.isdigit() and int(v) > 1][:16]


def signal_burners(pids, sig):
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def modes(t):
    """(load tag or None, timing) per mode of a time_fn result: the one
    unpaired measurement, or its idle and loaded halves."""
    if "loaded" not in t:
        return [(None, t)]
    return [("idle", t), ("loaded", t["loaded"])]


def peak_rss_kb():
    """Peak RSS of this process so far, KiB (ru_maxrss on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def parse_batches(s):
    return [int(v) for v in s.split(",") if v]


def emit(rec):
    """One JSON record per line on stdout."""
    print(json.dumps(rec), flush=True)
