#!/usr/bin/python3
"""Scale-out on PostgreSQL (issue 11 item 7).

  pg_run.sh scale_jobs.py BUILD_DIR FIXTURES     (SBX_TEST_PG from pg_run.sh)

Two `aisbxd` processes share one PostgreSQL database (AISBXD_PG_CONNINFO)
and one data dir (master key, blob store, TLS certificate, JWT key); four
`aisbx-worker` processes, two per server. Checks, through the API only:
- 200 small jobs submitted across both servers and two tenants each complete
  exactly once: every job `succeeded`, its event log has exactly one
  shard `running -> succeeded` and one job-level succeeded, one attempt, and
  its result equals `aisbx attack` on the same files and seed;
- kill -9 of the worker running a job: the lease (job_lease_s = 3) expires,
  the job is re-queued ("lease expired" event, attempt 2) and completes;
- kill -9 of a server with jobs queued and running, then a restart on the
  same port: every job submitted to either server completes exactly once;
- an evaluation sharded 4 ways: every shard's result is `aisbx evaluate
  --shard-offset/--shard-count` on its slice, and the shards' per-sample
  numbers concatenated (and the per-eps counts summed) equal the unsharded
  run's with the same seed. The server-side merge is checked when the server
  serves one (GET .../results 200); while it answers 409 the test says so.
Debian's python3, stdlib only (the approach of tests/e2e/e2e_jobs.py).
"""
import json, os, signal, subprocess, sys, tempfile, time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "common"))
from aisbx_api import (Api, TERMINAL, check, finish, free_port, init_tenants,  # noqa: E402
                       start_aisbxd, stop, strip)

B, FIX = sys.argv[1], sys.argv[2]
AISBXD, WORKER, AISBX = (os.path.join(B, n) for n in ("aisbxd", "aisbx-worker", "aisbx"))
MODEL = os.path.join(FIX, "mnist_cnn.onnx")
DATA = os.path.join(FIX, "demo_mnist.npz")
LEASE = 3


def cli(argv, out):
    subprocess.run([AISBX] + argv[:1] + ["--model", MODEL, "--data", DATA, "--out", out] + argv[1:],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.load(open(out))


def once_succeeded(evs):
    """(shard completions, job completions, lease-expiry events) in an event list."""
    shard_ok = sum(1 for e in evs if e["shard"] >= 0 and e["to"] == "succeeded")
    job_ok = sum(1 for e in evs if e["shard"] < 0 and e["to"] == "succeeded")
    lost = sum(1 for e in evs if "lease expired" in (e.get("reason") or ""))
    return shard_ok, job_ok, lost


def main():
    t_start = time.time()
    d = tempfile.mkdtemp(prefix="aisbx-scale-")
    os.chmod(d, 0o711)  # aisbxd started as root runs as nobody (docs/security.md)
    srv = os.path.join(d, "srv")
    env = dict(os.environ, AISBXD_PG_CONNINFO=os.environ["SBX_TEST_PG"],
               AISBXD_JOB_LEASE_S=str(LEASE), AISBXD_BLOB_FSYNC="0",
               AISBXD_RATE_IP_PER_S="100000", AISBXD_RATE_IP_BURST="100000",
               AISBXD_RATE_KEY_PER_S="100000", AISBXD_RATE_KEY_BURST="100000")
    keys = init_tenants(AISBXD, srv, ("t1", "t2"), env)
    check(not os.path.exists(os.path.join(srv, "meta.db")) or
          os.path.getsize(os.path.join(srv, "meta.db")) == 0,
          "metadata lives in PostgreSQL (no SQLite meta.db in the data dir)")
    procs, servers, workers = [], {}, {}
    ports = {"A": free_port(), "B": free_port()}
    ca = os.path.join(srv, "tls-cert.pem")

    def start_server(name):
        # one at a time: both write DATA_DIR/aisbxd.port, and the first run
        # creates the TLS certificate and the JWT key that the other shares
        p = start_aisbxd(AISBXD, srv, ports[name], env, os.path.join(d, f"aisbxd-{name}.log"))
        procs.append(p)
        servers[name] = p
        return p

    try:
        start_server("A")
        start_server("B")
        base = {n: f"https://127.0.0.1:{ports[n]}" for n in ports}
        tok = subprocess.run([AISBXD, "worker-token", "create", "--data-dir", srv, "--name", "scale"],
                             env=env, check=True, capture_output=True, text=True).stdout
        token = [w for w in tok.split() if w.count(".") == 1 and "_" in w][0]
        tf = os.path.join(d, "worker.token")
        fd = os.open(tf, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, token.encode() + b"\n")
        os.close(fd)
        wlog = open(os.path.join(d, "workers.log"), "a")

        def start_worker(name, server):
            p = subprocess.Popen([WORKER, "--server", base[server], "--token-file", tf, "--ca-file", ca,
                                  "--slots", "1", "--name", name], stdout=wlog, stderr=wlog)
            procs.append(p)
            workers[name] = p
            return p

        for i, s in enumerate("AABB"):
            start_worker(f"w{i + 1}", s)
        api = {(t, s): Api(base[s], ca, keys[t]) for t in keys for s in base}
        ids = {}
        for t in keys:
            st, _ = api[(t, "A")].req("POST", "/api/v1/projects", {"id": "p", "name": "P"})
            assert st == 201, st
            # uploaded through A, used through B: one blob store, one database
            ids[t] = (api[(t, "A")].upload("p", "models", "mnist_cnn.onnx", open(MODEL, "rb").read()),
                      api[(t, "B")].upload("p", "datasets", "demo_mnist.npz", open(DATA, "rb").read()))

        quick = os.environ.get("SCALE_ONLY_SHARDS")  # debugging: section 4 only
        a = api[("t1", "A")]
        if not quick:
            # ---- 1. 200 small jobs across both servers and two tenants ----
            spec = {"kind": "attack", "attack": "fgsm", "eps": 0.2, "n": 2, "seed": 5}
            ref = strip(cli(["attack", "--attack", "fgsm", "--eps", "0.2", "--n", "2", "--seed", "5"],
                            os.path.join(d, "fgsm.json")))
            plan = [(("t1", "t2")[i % 2], "AB"[(i // 2) % 2]) for i in range(200)]
            t0 = time.time()

            def submit(ts):
                t, s = ts
                return t, s, api[(t, s)].job("p", *ids[t], spec)

            with ThreadPoolExecutor(8) as ex:
                jobs = list(ex.map(submit, plan))
            check(len({j for _, _, j in jobs}) == 200, "200 jobs submitted (100 per server, 2 tenants)")

            def settle(tsj):
                t, s, j = tsj
                a = api[(t, "AB"[s == "A"])]  # read through the other server
                o = a.wait("p", j, 150)
                evs = a.events("p", j) if o.get("state") in TERMINAL else []
                st, res = a.req("GET", f"/api/v1/projects/p/jobs/{j}/results")
                return o, evs, (strip(res) if st == 200 else None)

            with ThreadPoolExecutor(8) as ex:
                done = list(ex.map(settle, jobs))
            dt = time.time() - t0
            states = [o.get("state") for o, _, _ in done]
            check(states.count("succeeded") == 200,
                  f"200/200 jobs succeeded in {dt:.1f} s ({ {s: states.count(s) for s in set(states)} })")
            counts = [once_succeeded(evs) for _, evs, _ in done]
            odd = [(j, c, [(e.get("from"), e.get("to"), e.get("reason")) for e in evs])
                   for (_, _, j), c, (_, evs, _) in zip(jobs, counts, done) if c != (1, 1, 0)]
            for j, c, evs in odd[:3]:  # what went otherwise, for the log
                print(f"info job {j}: (shard ok, job ok, lease expiries) {c}; events {evs}")
            check(not odd,
                  "each job completed exactly once (one shard succeeded event, one job succeeded event, no re-queue)"
                  + (f": {len(odd)} did not" if odd else ""))
            check(all(o.get("shard_list") and o["shard_list"][0].get("attempts") == 1 for o, _, _ in done),
                  "each job's shard was claimed once (attempts 1)")
            check(all(r == ref for _, _, r in done), "every job's result equals aisbx attack on the same files and seed")
            by_worker = {}
            for o, _, _ in done:
                w = (o.get("shard_list") or [{}])[0].get("worker")
                by_worker[w] = by_worker.get(w, 0) + 1
            check(len(by_worker) == 4, f"all four workers ran jobs: {sorted(by_worker.values())}")

            # ---- 2. kill -9 the worker running a job: re-queued, completed ----

            long_spec = {"kind": "attack", "attack": "square", "eps": 0.05, "queries": 3000, "n": 40, "seed": 4}
            j = a.job("p", *ids["t1"], long_spec)
            o = a.wait("p", j, 60, states=("running",),
                       pred=lambda o: (o.get("shard_list") or [{}])[0].get("worker"))
            wid = o["shard_list"][0]["worker"]
            # the shard names the worker by its --name or its token id; find the process
            victim = [n for n in workers if n in str(wid)]
            name = victim[0] if victim else None
            check(name is not None, f"the running shard names its worker ({wid})")
            if name:
                workers[name].send_signal(signal.SIGKILL)
                workers[name].wait()
                t_kill = time.time()
                o = a.wait("p", j, 200)
                evs = a.events("p", j)
                sh_ok, job_ok, lost = once_succeeded(evs)
                check(o.get("state") == "succeeded" and lost >= 1 and sh_ok == 1 and job_ok == 1
                      and o["shard_list"][0]["attempts"] == 2 and o["shard_list"][0]["worker"] != wid,
                      f"job of the killed worker {name} re-queued after the lease and completed by "
                      f"{o.get('shard_list', [{}])[0].get('worker')} ({o.get('state')}, "
                      f"attempts {o.get('shard_list', [{}])[0].get('attempts')}, {time.time() - t_kill:.1f} s)")
                start_worker(name, "A" if name in ("w1", "w2") else "B")

            # ---- 3. kill -9 a server mid-flight and start it again ----
            mid = {"kind": "attack", "attack": "pgd", "eps": 0.1, "steps": 20, "n": 20, "seed": 7}
            js = [(t, s, api[(t, s)].job("p", *ids[t], mid)) for t in keys for s in "AB" for _ in range(10)]
            a.wait("p", js[0][2], 60, states=("running",) + TERMINAL)
            servers["B"].send_signal(signal.SIGKILL)
            servers["B"].wait()
            time.sleep(1)
            start_server("B")
            states, counts = [], []
            for t, s, j in js:
                o = api[(t, "A")].wait("p", j, 200)
                states.append(o.get("state"))
                sh_ok, job_ok, _ = once_succeeded(api[(t, "B")].events("p", j))
                counts.append((sh_ok, job_ok))
            check(states.count("succeeded") == len(js) and all(c == (1, 1) for c in counts),
                  f"server B killed -9 and restarted: {len(js)} jobs (half submitted to B) all completed "
                  f"exactly once ({ {s: states.count(s) for s in set(states)} })")

        # ---- 4. a sharded evaluation equals the unsharded run ----
        K, N = 4, 40
        ev = {"kind": "evaluation", "suite": "custom", "attacks": ["fgsm", "pgd"],
              "eps_sweep": [0.05, 0.15], "steps": 5, "n": N, "seed": 13}
        j1 = a.job("p", *ids["t1"], ev)
        jk = api[("t1", "B")].job("p", *ids["t1"], ev, shards=K)
        o1, ok = a.wait("p", j1), a.wait("p", jk)
        check(o1.get("state") == "succeeded" and ok.get("state") == "succeeded",
              f"unsharded and {K}-shard evaluations succeeded ({o1.get('state')}, {ok.get('state')})")
        sl = ok.get("shard_list") or []
        check([(s.get("sample_begin"), s.get("sample_end")) for s in sl] ==
              [(k * N // K, (k + 1) * N // K) for k in range(K)],
              f"shards are the contiguous slices [k*n/K, (k+1)*n/K): {[(s.get('sample_begin'), s.get('sample_end')) for s in sl]}")
        print(f"info shards ran on workers {sorted({s.get('worker') for s in sl})}")
        st, whole = a.req("GET", f"/api/v1/projects/p/jobs/{j1}/results")
        cli_whole = cli(["evaluate", "--suite", "custom", "--attacks", "fgsm,pgd", "--eps-sweep", "0.05,0.15",
                         "--steps", "5", "--n", str(N), "--seed", "13"], os.path.join(d, "ev.json"))
        check(st == 200 and strip(whole) == strip(cli_whole), "unsharded evaluation equals aisbx evaluate")
        parts = []
        for k in range(K):
            st, r = a.req("GET", f"/api/v1/projects/p/jobs/{jk}/results?shard={k}")
            parts.append(r if st == 200 else None)
            json.dump(r, open(os.path.join(d, f"shard{k}.json"), "w"))
        check(all(parts), "every shard's result is served (?shard=k)")
        if all(parts):
            lo = [k * N // K for k in range(K)]
            same = True
            for k in range(K):
                c = cli(["evaluate", "--suite", "custom", "--attacks", "fgsm,pgd", "--eps-sweep", "0.05,0.15",
                         "--steps", "5", "--n", str(N), "--seed", "13", "--shard-offset", str(lo[k]),
                         "--shard-count", str(N // K)], os.path.join(d, f"ev{k}.json"))
                same = same and strip(c) == strip(parts[k])
            check(same, "each shard's result equals aisbx evaluate --shard-offset/--shard-count on its slice")
            ps = whole["per_sample"]
            merged = {key: sum((p["per_sample"][key] for p in parts), []) for key in ps}
            check(merged == ps, f"per-sample numbers of the {K} shards concatenated equal the unsharded run "
                                f"({', '.join(sorted(ps))})")
            ok_counts = True
            for ci, c in enumerate(whole["curve"]):
                for ai, pa in enumerate(c["per_attack"]):
                    for key in ("newly_broken", "forward_queries", "backward_queries"):
                        if sum(p["curve"][ci]["per_attack"][ai][key] for p in parts) != pa[key]:
                            ok_counts = False
                            print(f"info eps {c['eps']} {pa['attack']} {key}: unsharded {pa[key]}, "
                                  f"shards sum {sum(p['curve'][ci]['per_attack'][ai][key] for p in parts)}")
            check(ok_counts, "per-eps, per-attack counts (newly broken, forward/backward queries) sum to the unsharded run's")
            robust = sum(sum(1 for r in p["per_sample"]["robust"] if r) for p in parts)
            check(abs(robust / N - whole["robust_accuracy"]) < 1e-6,
                  f"robust accuracy from the shards {robust}/{N} = the unsharded {whole['robust_accuracy']}")
        st, merged_doc = a.req("GET", f"/api/v1/projects/p/jobs/{jk}/results")
        if st == 200:
            check(strip(merged_doc) == strip(whole), "the server's merged result equals the unsharded run")
        else:
            print(f"info GET .../results of the sharded job: {st} (the server does not merge shards yet)")
        check(all(p.poll() is None for p in workers.values()), "all workers alive at the end")
        print(f"info total {time.time() - t_start:.1f} s")
    finally:
        stop(procs)
    finish(d, None)


main()
