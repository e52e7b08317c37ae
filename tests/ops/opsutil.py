"""opsutil.py - what the Python ops tests share (runbook_check.py,
syslog_check.py): check() and a real aisbxd on 127.0.0.1 with a free port,
driven over TLS (trusting only its generated certificate) by urllib."""
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request

FAILS = []


def check(cond, what):
    """Prints `ok   what` or `FAIL what` and records a failure."""
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


class Server:
    """aisbxd on data dir d with config cfg (no local workers); stderr is
    appended to d/aisbxd.err."""

    def __init__(self, aisbxd, d, cfg):
        self.aisbxd, self.d, self.cfg, self.p, self.port = aisbxd, d, cfg, None, 0

    def start(self):
        pf = os.path.join(self.d, "aisbxd.port")
        if os.path.exists(pf):
            os.unlink(pf)
        self.p = subprocess.Popen(
            [self.aisbxd, "--data-dir", self.d, "--listen", "127.0.0.1:0",
             "--config", self.cfg, "--workers", "0"],
            stdout=subprocess.DEVNULL,
            stderr=open(os.path.join(self.d, "aisbxd.err"), "a"))
        for _ in range(200):
            t = open(pf).read().strip() if os.path.exists(pf) else ""
            if t:
                self.port = int(t)
                self.ctx = ssl.create_default_context(
                    cafile=os.path.join(self.d, "tls-cert.pem"))
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit("aisbxd did not start")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=30)

    def url(self):
        return "https://127.0.0.1:%d" % self.port

    def req(self, method, path, token=None, body=None, raw=None):
        """(status, body bytes); body: JSON, raw: an octet-stream upload."""
        h = {}
        if token:
            h["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if raw is not None:
            data = raw
            h["Content-Type"] = "application/octet-stream"
        r = urllib.request.Request(self.url() + path, data=data, headers=h,
                                   method=method)
        try:
            with urllib.request.urlopen(r, context=self.ctx, timeout=30) as f:
                return f.status, f.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
