#!/usr/bin/env python3
"""A job run the way the worker runs it (supervisor + sandboxed runner,
tests/job/runjob) gives the same result document as `aisbx attack|evaluate`
on the same files and seed: every number equal, except wall times; the
adversarial NPY byte-identical. Paths and digests differ by design (the
service names its stored objects; the CLI names files)."""
import json, os, subprocess, sys, tempfile

aisbx, runner, runjob, fixtures = sys.argv[1:5]
default_model = os.path.join(fixtures, "mnist_cnn.onnx")
default_data = os.path.join(fixtures, "demo_mnist.npz")
TIMING = {"wall_time_s", "time_s", "seconds"}

def strip(o):
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items()
                if k not in TIMING and k not in ("path", "sha256")}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o

CASES = [
    (["attack", "--attack", "pgd", "--eps", "0.3", "--steps", "5", "--n", "20",
      "--seed", "9007199254740993"],
     {"kind": "attack", "attack": "pgd", "eps": 0.3, "steps": 5, "n": 20,
      "seed": 9007199254740993}),
    (["attack", "--attack", "square", "--eps", "0.2", "--queries", "50", "--n", "8",
      "--seed", "5"],
     {"kind": "attack", "attack": "square", "eps": 0.2, "queries": 50, "n": 8,
      "seed": 5}),
    (["evaluate", "--suite", "custom", "--attacks", "apgd-ce,square",
      "--eps-sweep", "0.05,0.3", "--steps", "10", "--queries", "40", "--n", "10",
      "--seed", "11"],
     {"kind": "evaluation", "suite": "custom", "attacks": ["apgd-ce", "square"],
      "eps_sweep": [0.05, 0.3], "steps": 10, "queries": 40, "n": 10,
      "seed": 11}),
    # issue 13: a model with several inputs (the attacked one by name, gain
    # from the data NPZ) and normalization in front of a model
    (["attack", "--attack", "pgd", "--eps", "0.1", "--steps", "5", "--seed", "3",
      "--input", "audio"],
     {"kind": "attack", "attack": "pgd", "eps": 0.1, "steps": 5, "seed": 3,
      "input": "audio"}, "inputs/audio_multi.onnx", "inputs/audio_multi_data.npz"),
    (["attack", "--attack", "pgd", "--eps", "0.03", "--steps", "5", "--seed", "3",
      "--mean", "0.485,0.456,0.406", "--std", "0.229,0.224,0.225"],
     {"kind": "attack", "attack": "pgd", "eps": 0.03, "steps": 5, "seed": 3,
      "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
     "inputs/image_norm.onnx", "inputs/image_data.npz"),
]

fails = 0
with tempfile.TemporaryDirectory() as d:
    for i, (argv, spec, *files) in enumerate(CASES):
        model, data = ([os.path.join(fixtures, f) for f in files] if files
                       else (default_model, default_data))
        cj, cn = os.path.join(d, f"c{i}.json"), os.path.join(d, f"c{i}.npy")
        rj, rn = os.path.join(d, f"r{i}.json"), os.path.join(d, f"r{i}.npy")
        subprocess.run([aisbx] + argv[:1] + ["--model", model, "--data", data,
                        "--out", cj, "--adv", cn, "--quiet"] + argv[1:],
                       check=True)
        p = subprocess.run([runjob, runner, model, data, json.dumps(spec), rj, rn],
                           capture_output=True, text=True)
        if p.returncode != 0:
            print(f"case {i}: runner job failed: {p.stdout} {p.stderr}")
            fails += 1
            continue
        a, b = json.load(open(cj)), json.load(open(rj))
        if strip(a) != strip(b):
            fails += 1
            sa, sb = strip(a), strip(b)
            for k in sorted(set(sa) | set(sb)):
                if sa.get(k) != sb.get(k):
                    print(f"case {i}: field {k} differs:\n  cli    {json.dumps(sa.get(k))[:300]}\n  runner {json.dumps(sb.get(k))[:300]}")
        elif open(cn, "rb").read() != open(rn, "rb").read():
            fails += 1
            print(f"case {i}: adversarial NPY differs")
        else:
            print(f"case {i} ({argv[0]} {spec.get('attack', spec.get('suite'))}): identical")
sys.exit(1 if fails else 0)
