#!/usr/bin/python3
"""End to end: jobs through the API, run by a real aisbx-worker in sandboxed
runners.

  e2e_jobs.py BUILD_DIR FIXTURES [--sanitized]

Starts `aisbxd` (SQLite, local blob store, TLS) with no local workers on a
fresh data dir with two tenants, creates a worker token with `aisbxd
worker-token create`, starts `aisbx-worker` against it, and checks:
- an attack job's result document equals `aisbx attack` on the same files
  and seed in every number (paths, digests and wall times aside), and its
  adversarial.npy is byte-identical; the gallery PNGs are PNGs;
- the same for an evaluation (custom suite, eps sweep);
- hostile models and a lying NPZ fail their jobs with a clear reason (the
  sandbox tests cover the full hostile corpus) while another
  tenant's job beside them succeeds, and the worker survives;
- a running job is cancelled within 2 s of the request;
- an endless job ends timed_out at its wall-time limit and a job over its
  memory limit fails naming it, set per job through the API;
- a job whose worker is killed (-9) is re-queued and completed by another.
"""
import json, os, signal, subprocess, sys, tempfile, time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from aisbx_api import Api, check, finish, init_tenants, stop, strip  # noqa: E402

B, FIX = sys.argv[1], sys.argv[2]
# --sanitized (the asan label): an ASan+UBSan build, several times slower.
# It runs the attack job (== aisbx attack) and the hostile models through a
# real worker and its runners; the evaluations and the timing-bound parts
# (cancel within 2 s, limits, kill -9) are the release run's.
SANITIZED = "--sanitized" in sys.argv[3:]
AISBXD, WORKER, AISBX = (os.path.join(B, n) for n in ("aisbxd", "aisbx-worker", "aisbx"))
MODEL = os.path.join(FIX, "mnist_cnn.onnx")
DATA = os.path.join(FIX, "demo_mnist.npz")


def first_diff(a, b, path=""):
    """Where two JSON documents first differ, and the two values there."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k, "<absent>") != b.get(k, "<absent>"):
                return first_diff(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{path}.{k}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return first_diff(x, y, f"{path}[{i}]")
    return f"{path}: service {str(a)[:120]} / cli {str(b)[:120]}"


def cli(argv, out, adv, data=DATA):
    subprocess.run([AISBX] + argv[:1] + ["--model", MODEL, "--data", data, "--out", out,
                    "--adv", adv] + argv[1:], check=True, stdout=subprocess.DEVNULL)
    return json.load(open(out)), open(adv, "rb").read()


def main():
    d = tempfile.mkdtemp(prefix="aisbx-e2e-")
    os.chmod(d, 0o711)  # aisbxd started as root runs as nobody (docs/security.md)
    srv = os.path.join(d, "srv")
    keys = init_tenants(AISBXD, srv, ("t1", "t2"))
    log = open(os.path.join(d, "aisbxd.log"), "w")
    server = subprocess.Popen([AISBXD, "--data-dir", srv, "--listen", "127.0.0.1:0",
                               "--workers", "0"], stdout=log, stderr=log)
    procs = [server]
    try:
        pf = os.path.join(srv, "aisbxd.port")
        for _ in range(200):
            if os.path.exists(pf) and open(pf).read().strip():
                break
            time.sleep(0.05)
        port = int(open(pf).read())
        base, ca = f"https://127.0.0.1:{port}", os.path.join(srv, "tls-cert.pem")
        tok = subprocess.run([AISBXD, "worker-token", "create", "--data-dir", srv, "--name", "e2e"],
                             check=True, capture_output=True, text=True).stdout
        token = [w for w in tok.split() if w.count(".") == 1 and "_" in w][0]
        tf = os.path.join(d, "worker.token")
        fd = os.open(tf, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, token.encode() + b"\n")
        os.close(fd)
        wlog = open(os.path.join(d, "worker.log"), "w")

        def start_worker(name, slots=2):
            p = subprocess.Popen([WORKER, "--server", base, "--token-file", tf, "--ca-file", ca,
                                  "--slots", str(slots), "--name", name], stdout=wlog, stderr=wlog)
            procs.append(p)
            return p

        w1 = start_worker("w1")
        a1, a2 = Api(base, ca, keys["t1"]), Api(base, ca, keys["t2"])
        for a in (a1, a2):
            st, _ = a.req("POST", "/api/v1/projects", {"id": "p", "name": "P"})
            assert st == 201, st
        m1 = a1.upload("p", "models", "mnist_cnn.onnx", open(MODEL, "rb").read())
        d1 = a1.upload("p", "datasets", "demo_mnist.npz", open(DATA, "rb").read())

        # 1. attack job == aisbx attack
        spec = {"kind": "attack", "attack": "pgd", "eps": 0.3, "steps": 5, "n": 20,
                "seed": 9007199254740993}
        j = a1.job("p", m1, d1, spec)
        o = a1.wait("p", j)
        check(o["state"] == "succeeded", f"attack job succeeded ({o['state']}: {o.get('message')})")
        st, res = a1.req("GET", f"/api/v1/projects/p/jobs/{j}/results")
        st2, npy = a1.req("GET", f"/api/v1/projects/p/jobs/{j}/results/adversarial.npy", raw=True)
        ref, refnpy = cli(["attack", "--attack", "pgd", "--eps", "0.3", "--steps", "5", "--n", "20",
                           "--seed", "9007199254740993"], os.path.join(d, "c.json"), os.path.join(d, "c.npy"))
        check(st == 200 and strip(res) == strip(ref), "attack results equal aisbx attack in every number")
        check(st2 == 200 and npy == refnpy, "adversarial.npy byte-identical to aisbx attack --adv")
        st3, png = a1.req("GET", f"/api/v1/projects/p/jobs/{j}/results/gallery/0.png", raw=True)
        check(st3 == 200 and png[:8] == b"\x89PNG\r\n\x1a\n", "gallery/0.png is a PNG")
        st4, _ = a2.req("GET", f"/api/v1/projects/p/jobs/{j}/results")
        check(st4 in (403, 404), f"another tenant cannot read the results ({st4})")

        # 1b. an output-distance job on a dataset without labels (x only)
        with np.load(DATA) as z:
            xonly = os.path.join(d, "xonly.npz")
            np.savez(xonly, x=z["x"][:8])
        dx = a1.upload("p", "datasets", "xonly.npz", open(xonly, "rb").read())
        spec = {"kind": "attack", "attack": "pgd", "objective": "output-distance", "eps": 0.1,
                "steps": 3, "n": 8, "seed": 5}
        j = a1.job("p", m1, dx, spec)
        o = a1.wait("p", j)
        check(o["state"] == "succeeded",
              f"output-distance job on unlabelled data succeeded ({o['state']}: {o.get('message')})")
        st, res = a1.req("GET", f"/api/v1/projects/p/jobs/{j}/results")
        ref, _ = cli(["attack", "--attack", "pgd", "--objective", "output-distance", "--eps", "0.1",
                      "--steps", "3", "--n", "8", "--seed", "5"], os.path.join(d, "o.json"),
                     os.path.join(d, "o.npy"), data=xonly)
        # the distances come from the model's raw outputs, whose last bit
        # depends on the math kernels: the runner gets the worker's kernel
        # choice (OPENBLAS_CORETYPE etc., adv/threading.h), so they are equal
        # to the CLI's in the same environment, byte for byte
        check(st == 200 and strip(res) == strip(ref),
              "output-distance results equal aisbx attack in every number"
              + ("" if st != 200 or strip(res) == strip(ref)
                 else f": first difference {first_diff(strip(res), strip(ref))}"))

        if not SANITIZED:  # slow under the sanitizers; the release run covers it
            # 2. evaluation job == aisbx evaluate
            spec = {"kind": "evaluation", "suite": "custom", "attacks": ["apgd-ce", "square"],
                    "eps_sweep": [0.05, 0.3], "steps": 10, "queries": 40, "n": 10, "seed": 11}
            j = a1.job("p", m1, d1, spec)
            o = a1.wait("p", j)
            check(o["state"] == "succeeded", "evaluation job succeeded")
            st, res = a1.req("GET", f"/api/v1/projects/p/jobs/{j}/results")
            ref, _ = cli(["evaluate", "--suite", "custom", "--attacks", "apgd-ce,square", "--eps-sweep",
                          "0.05,0.3", "--steps", "10", "--queries", "40", "--n", "10", "--seed", "11"],
                         os.path.join(d, "e.json"), os.path.join(d, "e.npy"))
            check(st == 200 and strip(res) == strip(ref), "evaluation results equal aisbx evaluate in every number")

            # 2b. the same evaluation sharded across the workers (issue 11 item 7):
            # the server's merge equals the unsharded aisbx evaluate
            j = a1.job("p", m1, d1, spec, shards=3)
            o = a1.wait("p", j)
            check(o["state"] == "succeeded" and o.get("shards") == 3,
                  f"sharded evaluation job succeeded ({o['state']}: {o.get('message')})")
            if o["state"] != "succeeded":
                for k in range(3):
                    stk, dk = a1.req("GET", f"/api/v1/projects/p/jobs/{j}/results?shard={k}")
                    print(f"  shard {k}: {[(s['shard'], s.get('sample_begin'), s.get('sample_end')) for s in o.get('shard_list', [])][k:k+1]}"
                          f" document data: {dk.get('data') if stk == 200 else stk}")
            st, res = a1.req("GET", f"/api/v1/projects/p/jobs/{j}/results")
            st2, npy = a1.req("GET", f"/api/v1/projects/p/jobs/{j}/results/adversarial.npy", raw=True)
            check(st == 200 and strip(res) == strip(ref),
                  "sharded evaluation's merged results equal aisbx evaluate in every number")
            check(st2 == 200 and npy == open(os.path.join(d, "e.npy"), "rb").read(),
                  "sharded evaluation's merged adversarial.npy byte-identical to aisbx evaluate --adv")

        # 3. hostile models fail with a reason; tenant 2's job beside them succeeds
        m2 = a2.upload("p", "models", "mnist_cnn.onnx", open(MODEL, "rb").read())
        d2 = a2.upload("p", "datasets", "demo_mnist.npz", open(DATA, "rb").read())
        good = a2.job("p", m2, d2, {"kind": "attack", "attack": "fgsm", "eps": 0.1, "n": 50, "seed": 1})
        blob = open(MODEL, "rb").read()
        hostile = {"truncated.onnx": blob[: len(blob) // 3], "garbage.onnx": os.urandom(4096),
                   "empty.onnx": b""}
        hj = []
        for name, b in hostile.items():
            if not b:
                continue
            mid = a1.upload("p", "models", name, b)
            hj.append((name, a1.job("p", mid, d1, {"kind": "attack", "attack": "fgsm", "n": 5})))
        zip_bomb = os.path.join(d, "bad.npz")  # 300 MiB of zeros deflated to ~300 KiB
        import zipfile
        with zipfile.ZipFile(zip_bomb, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("x.npy", b"\x93NUMPY\x01\x00v\x00{'descr': '<f4', 'fortran_order': False, 'shape': (100000, 1, 28, 28), }" + b" " * 50 + b"\n" + b"\0" * (300 << 20))
        bomb = a1.upload("p", "datasets", "bomb.npz", open(zip_bomb, "rb").read())
        hj.append(("NPZ member larger than its header says", a1.job("p", m1, bomb, {"kind": "attack", "attack": "fgsm", "n": 5})))
        for name, jid in hj:
            o = a1.wait("p", jid)
            check(o["state"] == "failed" and o.get("message"), f"{name}: failed with a reason: {o.get('message')!r}")
        o = a2.wait("p", good)
        check(o["state"] == "succeeded", "tenant 2's job beside the hostile ones succeeded")
        check(w1.poll() is None, "the worker survived")

        if not SANITIZED:  # timing bounds: release build only
            # 4. cancel a running job: stopped within 2 s
            j = a1.job("p", m1, d1, {"kind": "attack", "attack": "square", "eps": 0.05, "queries": 100000,
                                     "n": 100, "seed": 2})
            a1.wait("p", j, 60, states=("running",))
            t0 = time.time()
            st, _ = a1.req("POST", f"/api/v1/projects/p/jobs/{j}/cancel")
            o = a1.wait("p", j, 30)
            dt = time.time() - t0
            check(st == 200 and o["state"] == "cancelled" and dt < 2.0,
                  f"running job cancelled in {dt:.2f} s ({o['state']})")

            # 5. limits through the API: an endless job stops at its wall-time
            # limit (timed_out), a job over its memory limit fails naming it,
            # and the worker survives both
            j = a1.job("p", m1, d1, {"kind": "attack", "attack": "square", "eps": 0.05,
                                     "queries": 1000000, "n": 100, "seed": 3},
                       limits={"wall_seconds": 3})
            t0 = time.time()
            o = a1.wait("p", j, 60)
            check(o["state"] == "timed_out" and o.get("message"),
                  f"endless job timed_out after {time.time() - t0:.1f} s: {o.get('message')!r}")
            j = a1.job("p", m1, d1, {"kind": "attack", "attack": "pgd", "eps": 0.1, "n": 100,
                                     "seed": 3}, limits={"memory_bytes": 8 << 20})
            o = a1.wait("p", j, 60)
            check(o["state"] == "failed" and "memory" in (o.get("message") or ""),
                  f"job over its 8 MiB memory limit failed: {o.get('message')!r}")
            check(w1.poll() is None, "the worker survived the limits")

            # 6. kill -9 the worker mid-job: re-queued, another worker completes it
            j = a1.job("p", m1, d1, {"kind": "attack", "attack": "square", "eps": 0.05, "queries": 3000,
                                     "n": 40, "seed": 4})
            a1.wait("p", j, 60, states=("running",))
            w1.send_signal(signal.SIGKILL)
            w1.wait()
            start_worker("w2")
            o = a1.wait("p", j, 300)
            check(o["state"] == "succeeded", f"job of a killed worker re-queued and completed ({o['state']})")
            st, ev = a1.req("GET", f"/api/v1/projects/p/jobs/{j}")
    finally:
        stop(procs)
    finish(d, ("aisbxd.log", "worker.log"), 30)


main()
