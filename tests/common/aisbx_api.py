"""A small client of aisbxd's HTTPS API for the Python end-to-end tests
(tests/e2e, tests/scale) and bench/jobs: Debian's python3 stdlib only.

  api = Api("https://127.0.0.1:PORT", "DIR/tls-cert.pem", admin_key)
  m = api.upload("p", "models", "mnist_cnn.onnx", blob)
  j = api.job("p", m, d, {"kind": "attack", "attack": "pgd"}, limits={...})
  o = api.wait("p", j)              # the job once it is terminal (or timeout)
"""
import json, ssl, time
import urllib.error, urllib.request

TIMING = {"wall_time_s", "time_s", "seconds"}
TERMINAL = ("succeeded", "failed", "cancelled", "timed_out")
fails = []


def check(cond, what):
    """Prints `ok   what` or `FAIL what` and records a failure."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        fails.append(what)


def strip(o):
    """A result document without what differs by design between the CLI and
    the service: wall times, file paths and digests."""
    if isinstance(o, dict):
        return {k: strip(v) for k, v in o.items()
                if k not in TIMING and k not in ("path", "sha256")}
    if isinstance(o, list):
        return [strip(v) for v in o]
    return o


class Api:
    def __init__(self, base, ca, key):
        self.base, self.key = base, key
        self.ctx = ssl.create_default_context(cafile=ca)
        self.ctx.check_hostname = False  # the embedded cert names 127.0.0.1 / localhost

    def req(self, method, path, body=None, ctype="application/json", raw=False, timeout=60):
        """(HTTP status, parsed JSON | raw bytes); HTTP errors are answers. A
        503 with Retry-After (a sharded job's results being merged) is
        retried as a client should, up to 10 times."""
        for _ in range(10):
            st, o, retry = self._req(method, path, body, ctype, raw, timeout)
            if st != 503 or retry is None:
                break
            time.sleep(min(float(retry), 5.0))
        return st, o

    def _req(self, method, path, body, ctype, raw, timeout):
        """One request: (status, body, Retry-After or None)."""
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        r = urllib.request.Request(self.base + path, data=data, method=method)
        r.add_header("Authorization", "Bearer " + self.key)
        if data is not None:
            r.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(r, context=self.ctx, timeout=timeout) as f:
                b = f.read()
                return f.status, (b if raw else (json.loads(b) if b else None)), None
        except urllib.error.HTTPError as e:
            b = e.read()
            try:
                return e.code, json.loads(b), e.headers.get("Retry-After")
            except Exception:
                return e.code, b, e.headers.get("Retry-After")

    def upload(self, proj, kind, name, blob):
        st, o = self.req("POST", f"/api/v1/projects/{proj}/{kind}?name={name}", blob,
                         "application/octet-stream")
        assert st == 201, (st, o)
        return o["id"]

    def job(self, proj, model, dataset, spec, shards=None, limits=None):
        body = {"model_id": model, "dataset_id": dataset, "spec": spec}
        if shards:
            body["shards"] = shards
        if limits:
            body["limits"] = limits
        st, o = self.req("POST", f"/api/v1/projects/{proj}/jobs", body)
        assert st == 201, (st, o)
        return o["id"]

    def get(self, proj, job):
        st, o = self.req("GET", f"/api/v1/projects/{proj}/jobs/{job}")
        return o if st == 200 else {"state": f"http {st}"}

    def wait(self, proj, job, timeout=240, states=TERMINAL, pred=None, poll=0.1):
        """Polls the job until its state is in `states` (and pred(job) holds);
        returns the last answer, also after the timeout."""
        end = time.time() + timeout
        o = {}
        while time.time() < end:
            try:
                o = self.get(proj, job)
            except (OSError, urllib.error.URLError):
                o = {"state": "unreachable"}
            if o.get("state") in states and (pred is None or pred(o)):
                return o
            time.sleep(poll)
        return o

    def events(self, proj, job):
        """The job's transitions, read from its event stream (it ends with
        `event: end` once the job has ended)."""
        st, b = self.req("GET", f"/api/v1/projects/{proj}/jobs/{job}/events", raw=True)
        out, ev = [], None
        for line in b.decode().splitlines():
            if line.startswith("event: "):
                ev = line[7:]
            elif line.startswith("data: ") and ev == "state":
                out.append(json.loads(line[6:]))
        return out


def free_port():
    """A free TCP port on 127.0.0.1 (closed again: a small race, fine here)."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_aisbxd(aisbxd, data_dir, port, env, log_path, extra=()):
    """Starts aisbxd on data_dir listening on 127.0.0.1:port (output appended
    to log_path) and waits for it to write DATA_DIR/aisbxd.port. Start
    servers sharing a data dir one at a time: each writes that file, and the
    first creates the TLS certificate and JWT key the others share."""
    import os, subprocess
    pf = os.path.join(data_dir, "aisbxd.port")
    if os.path.exists(pf):
        os.unlink(pf)
    log = open(log_path, "a")
    p = subprocess.Popen([aisbxd, "--data-dir", data_dir, "--listen", f"127.0.0.1:{port}",
                          "--workers", "0", *extra], env=env, stdout=log, stderr=log)
    for _ in range(400):
        if os.path.exists(pf) and open(pf).read().strip():
            break
        time.sleep(0.05)
    assert int(open(pf).read()) == port, "server did not start"
    return p


def stop(procs):
    """SIGTERM to every process still running, then waits up to 10 s for
    each (SIGKILL after that)."""
    import signal, subprocess
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def finish(d, logs, lines=20):
    """After a test: on failures prints the tail of each log in d (names, or
    None: every *.log) and exits 1; otherwise removes d."""
    import os, subprocess, sys
    if fails:
        print("logs in", d)
        for f in logs or sorted(n for n in os.listdir(d) if n.endswith(".log")):
            print(f"--- {f} (tail)")
            print("".join(open(os.path.join(d, f), errors="replace").readlines()[-lines:]))
        sys.exit(1)
    subprocess.run(["rm", "-rf", d])


def init_tenants(aisbxd, data_dir, tenants, env=None):
    """`aisbxd init` of each tenant in data_dir: {tenant: admin API key}."""
    import subprocess
    keys = {}
    for t in tenants:
        out = subprocess.run([aisbxd, "init", "--data-dir", data_dir, "--tenant", t], env=env,
                             check=True, capture_output=True, text=True).stdout
        keys[t] = [l.split(": ", 1)[1] for l in out.splitlines() if l.startswith("admin-api-key: ")][0]
    return keys
