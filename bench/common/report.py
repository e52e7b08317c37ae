#!/usr/bin/env python3
"""Turn the JSON lines of a benchmark run (both sides) into a table.

    report.py forward RESULTS.jsonl
    report.py grad RESULTS.jsonl

Pairs records of side "adv" (ours) and "torch" by (model, batch). With
several rounds per side the best round (highest images/s) is shown, and the
"spread" column gives (best - worst) / best of each side, ours / PyTorch,
as a measure of how noisy the machine was; peak RSS is the largest of the
rounds; for grad, "dx agree" counts the samples whose gradient is within
1e-3 (max abs error / max abs value of the sample) of PyTorch's float32 one,
and the last column is the median of that error against a float64 PyTorch
gradient of the first 16 samples, for each side. Ratios are ours / PyTorch; targets (from the issues): forward
>= 3x at batch 1 and >= 1x at batch 128; grad >= 1.5x on mnist_cnn and
fashion_resnet and >= 1x on resnet18_cifar at batch 128; peak RSS <= 1x
everywhere. That table uses the idle records (no "load" field, or "load":
"idle"); when the run also has "loaded" records (bench/common/lib.sh's
BURNERS), a second table puts each side's loaded/idle slowdown side by side
(medians of the rounds; target: ours no worse than PyTorch's), with the
cores each side kept busy (CPU seconds / wall seconds of the timed part). Standard library only (any python3).
"""
import json
import sys

MODEL_ORDER = {"mnist_cnn": 0, "fashion_resnet": 1, "resnet18_cifar": 2}


def load(path, bench, mode="idle"):
    """{(model, batch): {side: [records...]}} in model order, of one load mode
    ("idle", or "loaded": run with background CPU burners; records without a
    "load" field are idle ones)."""
    recs = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r.get("bench") != bench or r.get("load", "idle") != mode:
                continue
            recs.setdefault((r["model"], r["batch"]), {}).setdefault(r["side"], []).append(r)
    return dict(sorted(recs.items(), key=lambda kv: (MODEL_ORDER.get(kv[0][0], 9), kv[0])))


def best(rs):
    return max(rs, key=lambda r: r["images_per_s"]) if rs else None


def spread(rs):
    if not rs or len(rs) < 2:
        return None
    v = [r["images_per_s"] for r in rs]
    return (max(v) - min(v)) / max(v)


def median(v):
    v = sorted(v)
    n = len(v)
    return None if not n else v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def med_rate(rs):
    """Median images/s of the rounds."""
    return median([r["images_per_s"] for r in rs])


def med_cores(rs):
    """Median CPU seconds per wall second of the timed part (cores kept busy;
    records without cpu_s give None)."""
    return median([r["cpu_s"] / r["timed_s"] for r in rs if r.get("cpu_s") is not None
                   and r.get("timed_s")])


def loaded_table(idle, loaded):
    """Loaded vs idle: per (model, batch) and side, the median images/s of
    the rounds idle and with burners, the slowdown idle rate / loaded rate
    (= loaded time / idle time), and the cores each side kept busy. The
    target is ours <= PyTorch's slowdown. Returns the number of misses."""
    head = ["model", "batch", "ours idle img/s", "ours loaded img/s", "ours loaded/idle",
            "PyTorch idle img/s", "PyTorch loaded img/s", "PyTorch loaded/idle",
            "target ours <= PyTorch", "", "cores busy ours idle/loaded",
            "cores busy PyTorch idle/loaded"]
    print(row(head))
    print(row(["---"] * len(head)))
    misses = 0
    for key, lsides in loaded.items():
        isides = idle.get(key, {})
        cells = [key[0], str(key[1])]
        slow = {}
        for side in ("adv", "torch"):
            ri, rl = med_rate(isides.get(side, [])), med_rate(lsides.get(side, []))
            slow[side] = ri / rl if ri and rl else None
            cells += [fmt_rate(ri), fmt_rate(rl),
                      "-" if slow[side] is None else "%.2fx" % slow[side]]
        ok = None
        if slow["adv"] is not None and slow["torch"] is not None:
            ok = slow["adv"] <= slow["torch"]
            misses += not ok
        cells += ["%.2f" % (slow["adv"] / slow["torch"]) if ok is not None else "-",
                  "" if ok is None else "ok" if ok else "MISS"]
        for side in ("adv", "torch"):
            ci, cl = med_cores(isides.get(side, [])), med_cores(lsides.get(side, []))
            cells.append("%s / %s" % ("-" if ci is None else "%.2f" % ci,
                                      "-" if cl is None else "%.2f" % cl))
        print(row(cells))
    return misses


def fmt_rate(v):
    return "-" if v is None else ("%.0f" % v if v >= 100 else "%.1f" % v)


def fmt_pct(v):
    return "-" if v is None else "%.0f%%" % (100 * v)


def speed_target(bench, model, batch):
    if bench == "forward":
        return {1: 3.0, 128: 1.0}.get(batch)
    if batch == 128:
        return 1.0 if model == "resnet18_cifar" else 1.5
    return None


def verdict(ratio, target, higher_better=True):
    if ratio is None or target is None:
        return ""
    ok = ratio >= target if higher_better else ratio <= target
    return "ok" if ok else "MISS"


def row(cells):
    return "| " + " | ".join(cells) + " |"


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("forward", "grad"):
        sys.exit("usage: report.py forward|grad RESULTS.jsonl")
    bench, path = sys.argv[1], sys.argv[2]
    recs = load(path, bench)
    head = ["model", "batch", "ours img/s", "PyTorch img/s", "ours/PyTorch", "target", "",
            "spread ours/PyTorch"]
    if bench == "forward":
        head += ["max abs diff logits", "argmax agree"]
    else:
        head += ["ours peak RSS MiB", "PyTorch peak RSS MiB", "RSS ours/PyTorch", "",
                 "dx agree with PyTorch (rel err <= 1e-3)",
                 "median rel err dx vs float64 ours / PyTorch"]
    print(row(head))
    print(row(["---"] * len(head)))
    misses = 0
    for (model, batch), sides in recs.items():
        ra_all, rt_all = sides.get("adv", []), sides.get("torch", [])
        a, t = best(ra_all), best(rt_all)
        ra = a["images_per_s"] if a else None
        rt = t["images_per_s"] if t else None
        ratio = ra / rt if ra and rt else None
        tgt = speed_target(bench, model, batch)
        v = verdict(ratio, tgt)
        misses += v == "MISS"
        cells = [model, str(batch), fmt_rate(ra), fmt_rate(rt),
                 "-" if ratio is None else "%.2fx" % ratio,
                 "" if tgt is None else ">= %.1fx" % tgt, v,
                 "%s / %s" % (fmt_pct(spread(ra_all)), fmt_pct(spread(rt_all)))]
        if bench == "forward":
            d = max((r.get("max_abs_diff", -1) for r in ra_all), default=-1)
            ag = min((r.get("argmax_agree", -1) for r in ra_all), default=-1)
            cells += ["-" if d < 0 else "%.1e" % d, "-" if ag < 0 else "%d/%d" % (ag, batch)]
        else:
            ma = max((r["peak_rss_kb"] for r in ra_all), default=0) / 1024 or None
            mt = max((r["peak_rss_kb"] for r in rt_all), default=0) / 1024 or None
            mr = ma / mt if ma and mt else None
            mv = verdict(mr, 1.0, higher_better=False)
            misses += mv == "MISS"
            ag = min((r.get("dx_agree", -1) for r in ra_all), default=-1)
            ea = max((r.get("dx64_rel_median", -1) for r in ra_all), default=-1)
            et = max((r.get("dx64_rel_median", -1) for r in rt_all), default=-1)
            cells += ["-" if ma is None else "%.0f" % ma, "-" if mt is None else "%.0f" % mt,
                      "-" if mr is None else "%.2fx" % mr, mv,
                      "-" if ag < 0 else "%d/%d" % (ag, batch),
                      "%s / %s" % ("-" if ea < 0 else "%.1e" % ea, "-" if et < 0 else "%.1e" % et)]
        print(row(cells))
    loaded = load(path, bench, "loaded")
    if loaded:
        print("\nloaded (background CPU burners) vs idle, medians of the rounds; "
              "loaded/idle = idle img/s / loaded img/s:\n")
        misses += loaded_table(recs, loaded)
    print("\n%d target(s) missed" % misses)


if __name__ == "__main__":
    main()
