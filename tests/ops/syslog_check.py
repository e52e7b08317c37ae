#!/usr/bin/python3
"""syslog_check.py AISBXD - aisbxd forwards audit rows and security events
to Debian's rsyslog (started here with its own config, a test CA and a TLS
listener, imtcp + gtls) in RFC 5424 over TLS with RFC 5425 octet counting:
  - every received message is RFC 5424 (PRI, version 1, RFC 3339 time,
    host, app aisbxd, procid, MSGID audit|security|anchor, SD, MSG);
  - each audit row's fields and chain hashes equal the store's chain
    (`aisbxd audit export`, the reference);
  - the security events of the flow are there (login.failed, login.ok,
    auth.failed, audit.api_key.create), and no secret the flow created;
  - receiver down: requests are not slowed, the bounded queue drops its
    oldest messages and /metrics counts them; receiver back: aisbxd
    reconnects (backoff) and new rows arrive.
Exit 0 pass, 1 fail, 77 rsyslog (rsyslog-gnutls) missing."""
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opsutil import FAILS, Server, check  # noqa: E402

AISBXD = sys.argv[1]
RSYSLOGD = "/usr/sbin/rsyslogd"


def sh(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, text=True, **kw)


def make_pki(d):
    """A test CA and a receiver certificate for 127.0.0.1 signed by it."""
    ca_key, ca, key, csr, crt = (os.path.join(d, n) for n in
                                 ("ca.key", "ca.pem", "srv.key", "srv.csr", "srv.pem"))
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=aisbx test CA")
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1")
    ext = os.path.join(d, "ext.cnf")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    sh("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key,
       "-CAcreateserial", "-out", crt, "-days", "2", "-extfile", ext)
    return ca, crt, key


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Rsyslog:
    def __init__(self, d, port, ca, crt, key):
        self.d, self.out = d, os.path.join(d, "received.log")
        os.makedirs(os.path.join(d, "work"), exist_ok=True)
        self.conf = os.path.join(d, "rsyslog.conf")
        with open(self.conf, "w") as f:
            f.write(f'''global(workDirectory="{d}/work"
       DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{ca}"
       DefaultNetstreamDriverCertFile="{crt}"
       DefaultNetstreamDriverKeyFile="{key}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
       StreamDriver.AuthMode="anon")
input(type="imtcp" port="{port}" address="127.0.0.1")
template(name="raw" type="string" string="%rawmsg%\\n")
action(type="omfile" file="{self.out}" template="raw" asyncWriting="off"
       flushOnTXEnd="on")
''')
        self.p = None

    def start(self):
        self.p = subprocess.Popen([RSYSLOGD, "-n", "-f", self.conf, "-i",
                                   os.path.join(self.d, "rsyslog.pid")],
                                  stdout=subprocess.DEVNULL, stderr=open(
                                      os.path.join(self.d, "rsyslog.err"), "a"))
        time.sleep(1.0)
        check(self.p.poll() is None, "rsyslogd runs")

    def stop(self):
        self.p.send_signal(signal.SIGTERM)
        self.p.wait(timeout=20)

    def lines(self):
        try:
            return open(self.out, encoding="utf-8", errors="replace").read().splitlines()
        except FileNotFoundError:
            return []


RFC5424 = re.compile(
    r"^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (\S+) aisbxd (\d+) "
    r"(audit|security|anchor) (-|\[.*\])(?: (.*))?$")
SD_PARAM = re.compile(r'(\w+)="((?:[^"\\\]]|\\["\\\]])*)"')


def parse(line):
    m = RFC5424.match(line)
    if not m:
        return None
    pri, _, _, _, msgid, sd, msg = m.groups()
    params = dict(SD_PARAM.findall(sd)) if sd != "-" else {}
    return {"pri": int(pri), "msgid": msgid, "sd": sd, "params": params, "msg": msg}


def wait_for(pred, timeout):
    t = time.time() + timeout
    while time.time() < t:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def main():
    if not os.access(RSYSLOGD, os.X_OK) or not os.path.exists(
            "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so") and not os.path.exists(
            "/usr/lib/rsyslog/lmnsd_gtls.so"):
        print("SKIP: rsyslog / rsyslog-gnutls not installed")
        return 77
    d = tempfile.mkdtemp(prefix="sbx_syslog_")
    os.chmod(d, 0o711)  # aisbxd started as root runs as nobody (confinement)
    ca, crt, key = make_pki(d)
    port = free_port()
    rs = Rsyslog(d, port, ca, crt, key)
    rs.start()
    data = os.path.join(d, "data")
    cfg = os.path.join(d, "aisbxd.conf")
    tokf = os.path.join(d, "metrics.token")
    metrics_token = "mt-" + os.urandom(16).hex()
    with open(tokf, "w") as f:
        f.write(metrics_token + "\n")
    os.chmod(tokf, 0o600)
    with open(cfg, "w") as f:
        f.write(f"blob_fsync = 0\nrate_ip_per_s = 100000\nrate_ip_burst = 100000\n"
                f"rate_key_per_s = 100000\nrate_key_burst = 100000\n"
                f"syslog_url = tls://127.0.0.1:{port}\nsyslog_ca_file = {ca}\n"
                f"syslog_queue_max = 5\nmetrics_token_file = {tokf}\n")
    out = sh(AISBXD, "init", "--data-dir", data, "--config", cfg, "--tenant", "t1").stdout
    admin_key = re.search(r"admin-api-key: (\S+)", out).group(1)
    boot = re.search(r"bootstrap-token: (\S+)", out).group(1)
    s = Server(AISBXD, data, cfg)
    s.start()
    pw = "pw-" + os.urandom(8).hex()
    check(s.req("POST", "/api/v1/auth/bootstrap",
                body={"token": boot, "email": "boss@t1.example", "password": pw})[0] == 200,
          "bootstrap")
    st, b = s.req("POST", "/api/v1/auth/token", body={
        "grant_type": "password", "tenant": "t1", "email": "boss@t1.example",
        "password": "wrong-" + pw})
    check(st == 401, "failed login")
    st, b = s.req("POST", "/api/v1/auth/token", body={
        "grant_type": "password", "tenant": "t1", "email": "boss@t1.example", "password": pw})
    tok = json.loads(b)
    # API keys are created with a fresh login's token (step-up), never a key
    st, b = s.req("POST", "/api/v1/api-keys", tok["access_token"], {"role": "viewer"})
    new_key = json.loads(b)["key"]
    check(s.req("GET", "/api/v1/me", "garbage-token")[0] == 401, "bad credential")
    secrets = [admin_key, boot, pw, new_key, tok["access_token"], tok["refresh_token"],
               metrics_token, "Bearer", "boss@t1.example"]

    def has(pred):
        return any(pred(p) for p in (parse(x) for x in rs.lines()) if p)
    check(wait_for(lambda: has(lambda p: p["params"].get("action") == "api_key.create"), 15),
          "the api_key.create audit row arrived")
    check(wait_for(lambda: has(lambda p: p["msg"] and '"event":"auth.failed"' in p["msg"]), 15),
          "the last event (auth.failed) arrived")
    lines = rs.lines()
    parsed = [parse(x) for x in lines]
    bad = [x for x, p in zip(lines, parsed) if p is None]
    check(len(lines) >= 4 and not bad, "%d lines, all RFC 5424 (bad: %s)" % (len(lines), bad[:2]))
    check(all(p["pri"] in (83, 84, 86) for p in parsed if p), "PRI is authpriv.{err,warn,info}")
    for leak in secrets:
        check(not any(leak in x for x in lines), "no secret in the forwarded lines (%s...)" % leak[:6])
    events = [json.loads(p["msg"]) for p in parsed if p and p["msgid"] == "security"]
    names = {e.get("event") for e in events}
    for ev in ("login.failed", "login.ok", "auth.failed", "audit.api_key.create"):
        check(ev in names, "security event %s forwarded" % ev)
    # the audit rows against the store's own chain
    exp = {}
    for x in sh(AISBXD, "audit", "export", "--data-dir", data, "--config", cfg).stdout.splitlines():
        r = json.loads(x)
        exp[(r["tenant"], r["seq"])] = r
    audit = [p["params"] for p in parsed if p and p["msgid"] == "audit"]
    check(len(audit) >= 1, "%d audit rows forwarded" % len(audit))
    for a in audit:
        ref = exp.get((a["tenant"], int(a["seq"])))
        check(ref is not None and ref["hash"] == a["hash"] and ref["prev_hash"] == a["prev_hash"]
              and ref["action"] == a["action"] and ref["actor"] == a["actor"]
              and ref["ts"] == int(a["ts"]),
              "audit row %s/%s equals the chain (hash %s...)" % (a["tenant"], a["seq"],
                                                                 a["hash"][:12]))
    # ---- receiver down: requests unhindered, oldest dropped, counted ----
    rs.stop()
    t0 = time.time()
    for i in range(20):
        check(s.req("GET", "/api/v1/me", "garbage-%d" % i)[0] == 401, "request %d while down" % i) \
            if i in (0, 19) else s.req("GET", "/api/v1/me", "garbage-%d" % i)
    el = time.time() - t0
    check(el < 10, "20 requests with the receiver down took %.2f s" % el)
    st, m = s.req("GET", "/metrics", metrics_token)
    m = m.decode()
    dropped = re.search(r"^aisbxd_syslog_dropped_total (\d+)$", m, re.M)
    conn = re.search(r"^aisbxd_syslog_connected (\d+)$", m, re.M)
    check(st == 200 and dropped and int(dropped.group(1)) >= 10,
          "dropped counted: %s" % (dropped.group(1) if dropped else None))
    check(conn and conn.group(1) == "0", "not connected while down")
    # ---- receiver back: reconnect, new rows arrive ----
    before = len(rs.lines())
    rs.start()
    s.req("POST", "/api/v1/api-keys", tok["access_token"], {"role": "viewer"})
    check(wait_for(lambda: len(rs.lines()) > before and has(
        lambda p: p["params"].get("action") == "api_key.create"
        and int(p["params"]["seq"]) == max(k[1] for k in exp) + 1), 40),
        "after the receiver came back the next audit row arrived")
    after = [parse(x) for x in rs.lines()[before:]]
    check(all(after) and len(after) <= 5 + 2, "at most the queue (5) + new ones after the "
          "outage: %d" % len(after))
    st, m = s.req("GET", "/metrics", metrics_token)
    m = m.decode()
    check(re.search(r"^aisbxd_syslog_connected 1$", m, re.M) is not None, "connected again")
    s.stop()
    rs.stop()
    subprocess.run(["rm", "-rf", d])
    print("%d failed" % len(FAILS))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
