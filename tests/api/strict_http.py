#!/usr/bin/python3
"""Issue 12 item 6 (strict HTTP): raw requests over TLS against a real aisbxd.

    strict_http.py AISBXD [CASE ...]

Every case writes bytes no HTTP library would send (two Content-Length
headers, Content-Length with Transfer-Encoding, a bare CR, an obs-fold,
%00 in a path, ...) on a fresh TLS connection and checks the status line of
the answer, that it comes at once (no hang) and, where request smuggling is
possible, that the server closes the connection after it (no keep-alive).
The references are RFC 9110/9112's required answers, not our output.
Debian's python3, stdlib only. Exit 0 when every case passes, 1 otherwise.
"""
import json, os, shutil, signal, socket, ssl, subprocess, sys, tempfile, time

AISBXD = sys.argv[1]
ONLY = set(sys.argv[2:])
fails = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        fails.append(what)


def recv_until(t, buf, done, deadline):
    """Reads from TLS socket t onto buf until done(buf) or the deadline;
    returns (buf, why): why None when done, else "eof" or "timeout"."""
    while not done(buf):
        t.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = t.recv(65536)
        except (socket.timeout, ssl.SSLError, OSError):
            return buf, "timeout"
        if not chunk:
            return buf, "eof"
        buf += chunk
    return buf, None


class Server:
    """aisbxd on 127.0.0.1, a free port and a temp data dir."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="aisbx-strict-")
        os.chmod(self.dir, 0o711)  # aisbxd started as root runs as nobody (confinement)
        data = os.path.join(self.dir, "srv")
        cfg = os.path.join(self.dir, "aisbxd.conf")
        with open(cfg, "w") as f:
            f.write("blob_fsync = 0\nrate_ip_per_s = 100000\nrate_ip_burst = 100000\n"
                    "rate_key_per_s = 100000\nrate_key_burst = 100000\n"
                    "tls_handshake_timeout_s = 60\nhead_timeout_s = 60\n")
        out = subprocess.run([AISBXD, "init", "--data-dir", data, "--config", cfg,
                              "--tenant", "t1"], check=True, capture_output=True,
                             text=True).stdout
        self.key = [l.split(": ", 1)[1] for l in out.splitlines()
                    if l.startswith("admin-api-key: ")][0]
        self.log = open(os.path.join(self.dir, "aisbxd.log"), "w")
        self.proc = subprocess.Popen([AISBXD, "--data-dir", data, "--config", cfg,
                                      "--listen", "127.0.0.1:0", "--workers", "0"],
                                     stdout=self.log, stderr=self.log)
        pf = os.path.join(data, "aisbxd.port")
        for _ in range(400):
            if os.path.exists(pf) and open(pf).read().strip():
                break
            if self.proc.poll() is not None:
                raise SystemExit("aisbxd did not start")
            time.sleep(0.05)
        self.port = int(open(pf).read())
        self.ctx = ssl.create_default_context(cafile=os.path.join(data, "tls-cert.pem"))
        self.ctx.check_hostname = False

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.log.close()
        # 0: a clean stop (under ASan: no error or leak report either)
        check(rc == 0, f"aisbxd stopped cleanly (exit {rc})")
        if not fails:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            print("kept " + self.dir)

    def raw(self, data, timeout=5.0):
        """Sends data on a fresh TLS connection; returns (status, headers,
        body, closed): status None when no answer came within timeout;
        closed: the server ended the connection after its answer."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        t = self.ctx.wrap_socket(s)
        try:
            t.sendall(data)
            deadline = time.monotonic() + timeout
            buf, why = recv_until(t, b"", lambda b: b"\r\n\r\n" in b, deadline)
            if why:
                return None, {}, b"", why == "eof"
            head, body = buf.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            hdrs = {}
            for l in lines[1:]:
                k, v = l.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
            n = int(hdrs.get("content-length", "0"))
            body, _ = recv_until(t, body, lambda b: len(b) >= n, deadline)
            # after the answer: EOF (closed) or nothing within 1 s (kept)
            closed = False
            t.settimeout(1.0)
            try:
                closed = t.recv(1) == b""
            except socket.timeout:
                closed = False
            except (ssl.SSLError, OSError):
                closed = True
            return status, hdrs, body, closed
        finally:
            t.close()

    def req(self, method, path, body=b"", extra=""):
        """A well-formed request with the admin key (status, body)."""
        data = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: Bearer {self.key}\r\nConnection: close\r\n"
                f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body
        st, _, b, _ = self.raw(data)
        return st, b


def head(srv, method, path, lines, body=b""):
    """A request head of our own lines (each without CRLF) and body."""
    return (f"{method} {path} HTTP/1.1\r\n".encode() + b"".join(
        l + b"\r\n" for l in lines) + b"\r\n" + body)


def main():
    srv = Server()
    auth = f"Authorization: Bearer {srv.key}".encode()
    host = b"Host: 127.0.0.1"
    try:
        st, _ = srv.req("POST", "/api/v1/projects",
                        json.dumps({"id": "p", "name": "p"}).encode(),
                        "Content-Type: application/json\r\n")
        check(st == 201, f"setup: project p created ({st})")
        model = b"\x08\x07" + os.urandom(64)
        st, b = srv.req("POST", "/api/v1/projects/p/models?name=m.onnx", model,
                        "Content-Type: application/octet-stream\r\n")
        check(st == 201, f"setup: model uploaded ({st})")
        mid = json.loads(b)["id"] if st == 201 else "x"
        st, _ = srv.req("GET", f"/api/v1/projects/p/models/{mid}")
        check(st == 200, f"setup: the model is served by its id ({st})")

        def case(name):
            return not ONLY or name in ONLY

        def expect(name, data, want, closed=True):
            if not case(name):
                return
            t0 = time.monotonic()
            st, h, b, cl = srv.raw(data)
            dt = time.monotonic() - t0
            ok = st in want if isinstance(want, tuple) else st == want
            check(ok, f"{name}: status {st} (want {want}) in {dt:.2f} s")
            if closed is not None:
                check(cl == closed, f"{name}: the connection is "
                      + ("closed" if closed else "kept open") + " after the answer")

        js = json.dumps({"id": "q1", "name": "q"}).encode()
        # two different Content-Length: the first (the true length) won
        expect("two_content_length",
               head(srv, "POST", "/api/v1/projects",
                    [host, auth, b"Content-Type: application/json",
                     b"Content-Length: %d" % len(js), b"Content-Length: %d" % (len(js) + 40)],
                    js + b" " * 40), 400)
        # Content-Length with Transfer-Encoding: chunked won, keep-alive kept
        chunked = b"%x\r\n" % len(js) + js + b"\r\n0\r\n\r\n"
        expect("content_length_and_chunked",
               head(srv, "POST", "/api/v1/projects",
                    [host, auth, b"Content-Type: application/json",
                     b"Content-Length: %d" % len(chunked), b"Transfer-Encoding: chunked"],
                    chunked), 400)
        # a transfer coding other than plain chunked: 501 at once, no hang
        for name, te in (("te_gzip_chunked", b"gzip, chunked"), ("te_gzip", b"gzip"),
                         ("te_chunked_chunked", b"chunked, chunked"),
                         ("te_chunked_trailing_ws", b"chunked ")):
            expect(name, head(srv, "POST", "/api/v1/projects",
                              [host, auth, b"Content-Type: application/json",
                               b"Transfer-Encoding: " + te], chunked), 501)
        # plain chunked still works (and keeps the connection)
        expect("chunked_ok",
               head(srv, "POST", "/api/v1/projects",
                    [host, auth, b"Content-Type: application/json",
                     b"Transfer-Encoding: chunked"],
                    b"%x\r\n" % len(json.dumps({"id": "q2", "name": "q"})) +
                    json.dumps({"id": "q2", "name": "q"}).encode() + b"\r\n0\r\n\r\n"),
               201, closed=False)
        # a bare CR inside a header line
        expect("bare_cr_in_header",
               head(srv, "GET", "/api/v1/projects", [host, auth, b"X-A: a\rb"]), 400)
        expect("bare_cr_header_split",
               head(srv, "GET", "/api/v1/projects", [host, b"X-A: a\r" + auth]), 400)
        # obs-fold: a header continued on the next line
        expect("obs_fold",
               head(srv, "GET", "/api/v1/projects", [host, auth, b"X-A: a", b" b"]), 400)
        expect("obs_fold_tab",
               head(srv, "GET", "/api/v1/projects", [host, b"X-A: a", b"\tb", auth]), 400)
        # request line: absolute-form, garbage, a space or control char in it
        expect("absolute_form",
               head(srv, "GET", "https://127.0.0.1/api/v1/projects", [host, auth]), 400)
        expect("garbage_request_line", head(srv, "G@T", "/api/v1/projects", [host, auth]), 400)
        # no target at all: libmicrohttpd closes without an answer (None)
        expect("garbage_no_target", b"GARBAGE\r\n" + host + b"\r\n" + auth + b"\r\n\r\n",
               (400, None))
        expect("missing_host", head(srv, "GET", "/api/v1/projects", [auth]), 400)
        expect("http10_transfer_encoding",
               b"POST /api/v1/projects HTTP/1.0\r\nHost: 127.0.0.1\r\n" + auth +
               b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
               chunked, 400)
        expect("request_line_junk_target",
               head(srv, "GET", "api/v1/projects", [host, auth]), 400)
        # (libmicrohttpd's strict mode closes these without an answer: None)
        expect("request_line_space_in_target",
               head(srv, "GET", "/api/v1/pro jects", [host, auth]), (400, None))
        expect("request_line_ctl_in_target",
               head(srv, "GET", "/api/v1/projects\x01", [host, auth]), 400)
        # whitespace between a header name and its colon
        expect("space_before_colon",
               head(srv, "GET", "/api/v1/projects",
                    [host, b"Authorization : Bearer " + srv.key.encode()]), 400)
        expect("tab_before_colon",
               head(srv, "GET", "/api/v1/projects", [host, auth, b"X-A\t: 1"]), 400)
        # %00 in a path or query
        expect("nul_in_path",
               head(srv, "GET", f"/api/v1/projects/p/models/{mid}%00../../x", [host, auth]), 400)
        expect("nul_in_path_lower",
               head(srv, "GET", f"/api/v1/projects/p/models/{mid}%00", [host, auth]), 400)
        if case("nul_in_upload_name"):
            st, _ = srv.req("POST", "/api/v1/projects/p/models?name=a%00b.onnx", model,
                            "Content-Type: application/octet-stream\r\n")
            check(st == 400, f"nul_in_upload_name: status {st} (want 400)")
            st, b = srv.req("GET", "/api/v1/projects/p/models")
            names = [o.get("name") for o in json.loads(b).get("items", [])] if st == 200 else []
            check(st == 200 and "a" not in names and "a\0b.onnx" not in names,
                  f"nul_in_upload_name: no object named 'a' stored ({names})")
        # a raw NUL byte: MHD's strings end there, the rest was ignored
        expect("nul_raw_in_path",
               head(srv, "GET", f"/api/v1/projects/p/models/{mid}\0../../x", [host, auth]), 400)
        expect("nul_raw_in_method", head(srv, "GET\0X", "/api/v1/projects", [host, auth]), 400)
        expect("nul_raw_in_value", head(srv, "GET", "/api/v1/projects",
                                        [host + b"\0evil", auth]), 400)
        expect("nul_raw_in_last_value", head(srv, "GET", "/api/v1/projects",
                                             [host, auth + b"\0junk"]), 400)
        expect("nul_raw_in_name", head(srv, "GET", "/api/v1/projects",
                                       [host, b"X-A\0B: 1", auth]), 400)
        expect("nul_in_query_key",
               head(srv, "GET", "/api/v1/projects?lim%00it=5", [host, auth]), 400)
        # two Authorization headers (first valid): never "first wins"
        expect("two_authorization",
               head(srv, "GET", "/api/v1/projects",
                    [host, auth, b"Authorization: Bearer ak_forged.xxxxxxxx"]), 400)
        expect("two_authorization_same",
               head(srv, "GET", "/api/v1/projects", [host, auth, auth]), 400)
        expect("two_host", head(srv, "GET", "/api/v1/projects",
                                [host, b"Host: evil.example", auth]), 400)
        # the auth scheme is case-insensitive (RFC 9110 11.1)
        for name, scheme in (("scheme_lower", b"bearer"), ("scheme_upper", b"BEARER"),
                             ("scheme_mixed", b"bEaReR")):
            expect(name, head(srv, "GET", "/api/v1/projects",
                              [host, b"Authorization: " + scheme + b" " + srv.key.encode(),
                               b"Connection: close"]), 200, closed=None)
        expect("scheme_other", head(srv, "GET", "/api/v1/projects",
                                    [host, b"Authorization: Basic " + srv.key.encode()]),
               401, closed=None)
        # no false positives: what RFC 9110/9112 allow is still accepted
        expect("allowed_fields",
               head(srv, "GET", "/api/v1/projects?limit=5&cursor=",
                    [host, auth, b"X-Long:" + b" " * 300 + b"v", b"X-Empty:", b"X-Blank:   ",
                     b"X-Obs-Text: \xc3\xa9t\xe9", b"X-Tab:\tv\tw", b"Cookie: a=b; c=d",
                     b"Cookie: e=f", b"content-length: 0"]), 200, closed=False)
        expect("bare_lf_line_ends",
               b"GET /api/v1/projects HTTP/1.1\nHost: 127.0.0.1\n" + auth + b"\n\n", 200,
               closed=False)
        expect("leading_ws_first_field",
               head(srv, "GET", "/api/v1/projects", [b" X: y", host, auth]), 400)
        expect("big_head",
               head(srv, "GET", "/api/v1/projects",
                    [host] + [b"X-H%d: %s" % (i, b"v" * 1000) for i in range(45)] + [auth]),
               200, closed=False)
        if case("pipelined"):  # two requests in one write: both answered
            s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
            t = srv.ctx.wrap_socket(s)
            one = head(srv, "GET", "/api/v1/projects", [host, auth, b"X-A: 1"])
            t.sendall(one + one)
            buf, _ = recv_until(t, b"", lambda b: b.count(b"HTTP/1.1 200") >= 2,
                                time.monotonic() + 5)
            t.close()
            check(buf.count(b"HTTP/1.1 200") == 2,
                  f"pipelined: two 200 answers on one connection ({buf.count(b'HTTP/1.1 ')})")
        # a well-formed request on keep-alive is still kept open
        expect("plain_keepalive", head(srv, "GET", "/api/v1/projects", [host, auth]), 200,
               closed=False)
        # the server is still healthy
        st, _ = srv.req("GET", "/api/v1/projects")
        check(st == 200, f"after: the server still answers ({st})")
    finally:
        srv.stop()
    print(f"{len(fails)} failure(s)")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
