#!/usr/bin/env python3
"""bench/attacks helpers (standard library only).

  report.py ours RESULT.json --tag T --round R --outer-s S [--variant V]
      one JSON line (side "adv") from an `aisbx attack` result file
  report.py aa RESULT.json --round R --outer-s S
      one JSON line (side "adv", attack "autoattack") from an `aisbx evaluate`
      result file, with the per-attack breakdown
  report.py table RESULTS.jsonl
      the table: best round (lowest wall time) of each side per
      configuration, ratios ours / PyTorch, the spread of the rounds, the
      robust accuracy of both sides and the backward passes (work) of both.

Targets: ours / PyTorch >= 2x on images/s for PGD and APGD (the PyTorch
loop being the same algorithm: for APGD the "active" variant).
"""
import argparse
import json
import sys

TARGET = 2.0


def ours(a):
    d = json.load(open(a.result))
    p = d["params"]
    n = d["data"]["n"]
    rec = {"bench": "attacks", "side": "adv", "tag": a.tag, "attack": d["attack"],
           "variant": "active" if d["attack"].startswith("apgd") else "",
           "model": a.model, "n": n, "eps": round(p["eps"], 6), "steps": p["steps"],
           "step_size": p["step_size"], "threads": p["threads"], "batch": p["batch"],
           "round": a.round, "wall_s": d["wall_time_s"], "outer_s": a.outer_s,
           "images_per_s": n / d["wall_time_s"],
           "clean_accuracy": d["clean_accuracy"], "robust_accuracy": d["robust_accuracy"],
           "forwards": d["queries"]["forward"], "backwards": d["queries"]["backward"],
           "max_linf": d["norms"]["linf"]["max"], "idle_before_pct": a.idle,
           "engine": d["engine_version"]}
    ps = d["per_sample"]
    rec["robust_bits"] = "".join(
        "1" if c == l and not s else "0"
        for c, l, s in zip(ps["pred_clean"], ps["label"], ps["success"]))
    print(json.dumps(rec))


def idle(r):
    v = r.get("idle_before_pct", -1) if r else -1
    return "-" if v is None or v < 0 else "%.0f%%" % v


def agree(a, b):
    """Samples with the same outcome (robust / not) on both sides."""
    x, y = a.get("robust_bits"), b.get("robust_bits")
    if not x or not y or len(x) != len(y):
        return "-"
    return "%d/%d" % (sum(p == q for p, q in zip(x, y)), len(x))


def aa(a):
    d = json.load(open(a.result))
    c = d["curve"][-1]
    rec = {"bench": "attacks", "side": "adv", "tag": a.tag, "attack": "autoattack",
           "suite": d["suite"], "model": a.model, "n": d["data"]["n"], "eps": round(d["eps"], 6),
           "threads": d["attacks"][0]["params"]["threads"], "round": a.round,
           "wall_s": d["wall_time_s"], "outer_s": a.outer_s,
           "images_per_s": d["data"]["n"] / d["wall_time_s"],
           "clean_accuracy": d["clean_accuracy"], "robust_accuracy": d["robust_accuracy"],
           "forwards": d["queries"]["forward"], "backwards": d["queries"]["backward"],
           "per_attack": [{k: x[k] for k in ("attack", "newly_broken", "robust_accuracy_after",
                                              "forward_queries", "backward_queries", "time_s")}
                          for x in c["per_attack"]],
           "warnings": d.get("warnings", []), "idle_before_pct": a.idle,
           "engine": d["engine_version"]}
    print(json.dumps(rec))


def row(cells):
    return "| " + " | ".join(cells) + " |"


def spread(rs):
    if len(rs) < 2:
        return "-"
    v = [r["wall_s"] for r in rs]
    return "%.0f%%" % (100 * (max(v) - min(v)) / max(v))


def table(a):
    recs = [json.loads(l) for l in open(a.results) if l.startswith("{")]
    recs = [r for r in recs if r.get("bench") == "attacks"]
    loads = [r for r in recs if r.get("side") == "load"]
    confs = []
    for r in recs:
        if r.get("side") in ("adv", "torch") and r["attack"] != "autoattack" \
                and r["tag"] not in confs:
            confs.append(r["tag"])
    head = ["configuration", "n", "ours img/s", "PyTorch img/s", "ours/PyTorch", "target", "",
            "PyTorch full-APGD img/s", "ours/full", "ours s", "PyTorch s",
            "robust acc ours / PyTorch", "same outcome", "backwards ours / PyTorch",
            "spread ours / PyTorch", "idle before ours / PyTorch"]
    print(row(head))
    print(row(["---"] * len(head)))
    miss = 0
    for tag in confs:
        sel = [r for r in recs if r.get("tag") == tag]
        ra = [r for r in sel if r["side"] == "adv"]
        rt = [r for r in sel if r["side"] == "torch" and r["variant"] in ("", "active")]
        rf = [r for r in sel if r["side"] == "torch" and r["variant"] == "full"]
        ba = min(ra, key=lambda r: r["wall_s"]) if ra else None
        bt = min(rt, key=lambda r: r["wall_s"]) if rt else None
        bf = min(rf, key=lambda r: r["wall_s"]) if rf else None
        ratio = ba["images_per_s"] / bt["images_per_s"] if ba and bt else None
        rfull = ba["images_per_s"] / bf["images_per_s"] if ba and bf else None
        v = "" if ratio is None else ("ok" if ratio >= TARGET else "MISS")
        miss += v == "MISS"
        any_ = ba or bt or bf
        rob = "%s / %s" % ("-" if not ba else "%.3f" % ba["robust_accuracy"],
                           "-" if not bt else "%.3f" % bt["robust_accuracy"])
        if bf:
            rob += " (full %.3f)" % bf["robust_accuracy"]
        bw = "%s / %s" % ("-" if not ba else ba["backwards"], "-" if not bt else bt["backwards"])
        if bf:
            bw += " (full %d)" % bf["backwards"]
        print(row([tag, str(any_["n"]),
                   "-" if not ba else "%.1f" % ba["images_per_s"],
                   "-" if not bt else "%.1f" % bt["images_per_s"],
                   "-" if ratio is None else "%.2fx" % ratio, ">= %.0fx" % TARGET, v,
                   "-" if not bf else "%.1f" % bf["images_per_s"],
                   "-" if rfull is None else "%.2fx" % rfull,
                   "-" if not ba else "%.2f" % ba["wall_s"],
                   "-" if not bt else "%.2f" % bt["wall_s"],
                   rob, "-" if not (ba and bt) else agree(ba, bt), bw,
                   "%s / %s" % (spread(ra), spread(rt)),
                   "%s / %s" % (idle(ba), idle(bt))]))
    aa_tags = []
    for r in recs:
        if r.get("attack") == "autoattack" and r["tag"] not in aa_tags:
            aa_tags.append(r["tag"])
    for tag in aa_tags:
        aas = [r for r in recs if r.get("attack") == "autoattack" and r["tag"] == tag]
        b = min(aas, key=lambda r: r["wall_s"])
        main_run = tag == "aa-mnist-0.3"
        print()
        print("AutoAttack %s (%s, Linf eps %g, %s, %d images, %d threads): %.1f s wall "
              "(best of %d; process %.1f s)%s; clean %.3f, robust %.3f"
              % (tag, b["suite"], b["eps"], b["model"], b["n"], b["threads"], b["wall_s"],
                 len(aas), b["outer_s"],
                 (", target < 120 s: " + ("ok" if b["wall_s"] < 120 else "MISS"))
                 if main_run else "", b["clean_accuracy"], b["robust_accuracy"]))
        if main_run:
            miss += b["wall_s"] >= 120
        if b["suite"] != "autoattack-standard":
            print("NOTE: the standard suite failed; this is --suite %s" % b["suite"])
        print(row(["attack", "newly broken", "robust acc after", "forward", "backward",
                   "time s"]))
        print(row(["---"] * 6))
        for x in b["per_attack"]:
            print(row([x["attack"], str(x["newly_broken"]), "%.3f" % x["robust_accuracy_after"],
                       str(x["forward_queries"]), str(x["backward_queries"]),
                       "%.2f" % x["time_s"]]))
        for w in b.get("warnings", []):
            print("warning: " + w)
    for l in loads:
        print("load %s: %s" % (l["when"], l["uptime"]))
    print("\n%d target(s) missed" % miss)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("ours", "aa"):
        s = sub.add_parser(name)
        s.add_argument("result")
        s.add_argument("--tag", default="")
        s.add_argument("--model", default="")
        s.add_argument("--round", type=int, default=0)
        s.add_argument("--outer-s", type=float, default=0.0)
        s.add_argument("--idle", type=float, default=-1)
    s = sub.add_parser("table")
    s.add_argument("results")
    a = ap.parse_args()
    {"ours": ours, "aa": aa, "table": table}[a.cmd](a)


if __name__ == "__main__":
    main()
