/*
 * api_testutil.h - starts a real aisbxd (the binary of this build) on
 * 127.0.0.1 with a random port and a temp data dir, and talks to it over
 * TLS with libcurl (GnuTLS flavour), trusting only the generated cert.
 */
#ifndef SBX_API_TESTUTIL_H
#define SBX_API_TESTUTIL_H

#define _GNU_SOURCE
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct srv {
  pid_t pid;
  int port;
  char dir[256];
  char cacert[300];
  CURL *c; /* reused: keep-alive between requests */
} srv;

static const char *g_aisbxd; /* path of the binary, argv[1] */
static const char *api_src_ip; /* http(): local address to connect from
                                  (a 127.0.0.x alias), NULL: any */
static int api_chunked; /* http(): 1 = send the body chunked (no length) */

/* The start of a test's main: argv[1] is the aisbxd binary; SIGPIPE
 * ignored, libcurl initialised, a new temp data dir /tmp/sbx-<name>-XXXXXX
 * in dir and "<dir>.conf" in cfg. Returns 0, else 2 (usage, mkdtemp). */
static inline int api_main_setup(int argc, char **argv, const char *name,
                                 char dir[256], char cfg[300]) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s AISBXD\n", argv[0]);
    return 2;
  }
  g_aisbxd = argv[1];
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  snprintf(dir, 256, "/tmp/sbx-%s-XXXXXX", name);
  if (!mkdtemp(dir))
    return 2;
  snprintf(cfg, 300, "%s.conf", dir);
  return 0;
}

/* Runs `aisbxd init` and extracts the admin API key and bootstrap token. */
static int api_init_tenant(const char *dir, const char *cfg, const char *tenant,
                           char key[200], char boot[200]) {
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s init --data-dir %s --config %s --tenant %s",
           g_aisbxd, dir, cfg, tenant);
  FILE *p = popen(cmd, "r");
  if (!p)
    return -1;
  char line[512];
  key[0] = boot[0] = 0;
  while (fgets(line, sizeof line, p)) {
    line[strcspn(line, "\n")] = 0;
    if (!strncmp(line, "admin-api-key: ", 15))
      snprintf(key, 200, "%.199s", line + 15);
    if (!strncmp(line, "bootstrap-token: ", 17))
      snprintf(boot, 200, "%.199s", line + 17);
  }
  int st = pclose(p);
  return (st == 0 && key[0] && boot[0]) ? 0 : -1;
}

/* Writes the tests' configuration plus extra (may be NULL). strict_conn 0:
 * the connection guard's deadlines are relaxed (a TLS handshake under ASan
 * on a loaded 2-core host can take seconds); 1: the defaults, for the
 * slow-client test that measures them. */
static void api_write_config_conn(const char *path, const char *extra,
                                  int strict_conn) {
  FILE *f = fopen(path, "w");
  if (!f)
    return;
  fprintf(f,
          "# test configuration\n"
          "blob_fsync = 0\n"
          "max_upload_bytes = 1048576\n"
          "rate_ip_per_s = 100000\nrate_ip_burst = 100000\n"
          "rate_key_per_s = 100000\nrate_key_burst = 100000\n"
          "login_max_failures = 3\nlockout_s = 60\n"
          "%s%s",
          strict_conn ? ""
                      : "tls_handshake_timeout_s = 60\nhead_timeout_s = 60\n"
                        "idle_timeout_s = 120\n",
          extra ? extra : "");
  fclose(f);
}

static void api_write_config(const char *path, const char *extra) {
  api_write_config_conn(path, extra, 0);
}

/* Starts aisbxd on dir with config cfg, listening on listen
 * ("127.0.0.1:0": a free port), with workers = NULL: no local workers
 * (the tests act as the worker themselves), else e.g. {"--workers", "2",
 * "--worker-bin", path, NULL}; waits for the port file. */
static int api_start_workers(srv *s, const char *dir, const char *cfg,
                             const char *listen, const char *const *workers) {
  memset(s, 0, sizeof *s);
  snprintf(s->dir, sizeof s->dir, "%s", dir);
  snprintf(s->cacert, sizeof s->cacert, "%s/tls-cert.pem", dir);
  char pf[300];
  snprintf(pf, sizeof pf, "%s/aisbxd.port", dir);
  unlink(pf);
  pid_t pid = fork();
  if (pid < 0)
    return -1;
  if (pid == 0) {
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0)
      dup2(null, 1);
    const char *argv[16] = {g_aisbxd, "--data-dir", dir, "--listen",
                            listen,   "--config",   cfg, "--workers",
                            "0",      NULL};
    for (int k = 0; workers && workers[k] && k < 6; k++)
      argv[7 + k] = workers[k];
    execv(g_aisbxd, (char *const *)argv);
    _exit(127);
  }
  s->pid = pid;
  for (int i = 0; i < 200; i++) { /* up to 20 s */
    FILE *f = fopen(pf, "r");
    if (f) {
      int ok = fscanf(f, "%d", &s->port) == 1;
      fclose(f);
      if (ok && s->port > 0)
        return 0;
    }
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) {
      s->pid = 0;
      return -1;
    }
    usleep(100000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  s->pid = 0;
  return -1;
}

static inline int api_start_listen(srv *s, const char *dir, const char *cfg,
                                   const char *listen) {
  return api_start_workers(s, dir, cfg, listen, NULL);
}

static inline int api_start(srv *s, const char *dir, const char *cfg) {
  return api_start_listen(s, dir, cfg, "127.0.0.1:0");
}

/* SIGTERM, then waits up to 10 s. Returns the exit status, -1 on timeout
 * (the child is then killed). */
static int api_stop(srv *s) {
  if (s->c)
    curl_easy_cleanup(s->c);
  s->c = NULL;
  if (!s->pid)
    return -1;
  kill(s->pid, SIGTERM);
  for (int i = 0; i < 100; i++) {
    int st;
    if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
      s->pid = 0;
      return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    usleep(100000);
  }
  kill(s->pid, SIGKILL);
  waitpid(s->pid, NULL, 0);
  s->pid = 0;
  return -1;
}

/* ---- HTTP client ---- */

#define RESP_CAP (4 << 20)
typedef struct resp {
  long status;
  int curl_rc;
  char *body;
  size_t len;
  char hdr[16384];
  size_t hlen;
} resp;

static size_t on_body(char *p, size_t sz, size_t n, void *ud) {
  resp *r = ud;
  size_t k = sz * n;
  if (r->len + k > RESP_CAP)
    return 0;
  char *nb = realloc(r->body, r->len + k + 1);
  if (!nb)
    return 0;
  memcpy(nb + r->len, p, k);
  r->body = nb;
  r->len += k;
  r->body[r->len] = 0;
  return k;
}

static size_t on_header(char *p, size_t sz, size_t n, void *ud) {
  resp *r = ud;
  size_t k = sz * n;
  if (r->hlen + k < sizeof r->hdr) {
    memcpy(r->hdr + r->hlen, p, k);
    r->hlen += k;
    r->hdr[r->hlen] = 0;
  }
  return k;
}

static void resp_free(resp *r) {
  free(r->body);
  memset(r, 0, sizeof *r);
}

/* Case-insensitive header lookup; copies the value into out. */
static int resp_header(const resp *r, const char *name, char *out, size_t cap) {
  size_t nl = strlen(name);
  const char *p = r->hdr;
  while (p && *p) {
    if (!strncasecmp(p, name, nl) && p[nl] == ':') {
      const char *v = p + nl + 1;
      while (*v == ' ')
        v++;
      size_t n = strcspn(v, "\r\n");
      if (out) {
        if (n >= cap)
          n = cap - 1;
        memcpy(out, v, n);
        out[n] = 0;
      }
      return 1;
    }
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  return 0;
}

/* The body of a chunked request, handed out in pieces of <= 256 bytes. */
typedef struct api_rdbuf {
  const char *p;
  size_t left;
} api_rdbuf;

static size_t on_read(char *dst, size_t sz, size_t n, void *ud) {
  api_rdbuf *b = ud;
  size_t k = sz * n < b->left ? sz * n : b->left;
  if (k > 256)
    k = 256;
  memcpy(dst, b->p, k);
  b->p += k;
  b->left -= k;
  return k;
}

typedef struct req_opts {
  const char *token;        /* Bearer token or NULL */
  const char *ctype;        /* Content-Type for bodies */
  const void *body;         /* NULL: no body */
  size_t len;               /* body length (0 with body: strlen) */
  const char *const *extra; /* extra raw header lines, NULL-terminated */
  long sslversion;          /* 0 default */
  int path_as_is;
} req_opts;

static long http(srv *s, const char *method, const char *path,
                 const req_opts *o, resp *out) {
  memset(out, 0, sizeof *out);
  if (!s->c)
    s->c = curl_easy_init();
  else
    curl_easy_reset(s->c);
  CURL *c = s->c;
  char url[8192];
  snprintf(url, sizeof url, "https://127.0.0.1:%d%s", s->port, path);
  struct curl_slist *h = NULL;
  char auth[4096 + 64];
  char *bigauth = NULL;
  if (o && o->token) {
    size_t tl = strlen(o->token);
    if (tl < 4096) {
      snprintf(auth, sizeof auth, "Authorization: Bearer %s", o->token);
      h = curl_slist_append(h, auth);
    } else {
      bigauth = malloc(tl + 32);
      snprintf(bigauth, tl + 32, "Authorization: Bearer %s", o->token);
      h = curl_slist_append(h, bigauth);
    }
  }
  char ct[128];
  if (o && o->ctype) {
    snprintf(ct, sizeof ct, "Content-Type: %s", o->ctype);
    h = curl_slist_append(h, ct);
  }
  for (int i = 0; o && o->extra && o->extra[i]; i++)
    h = curl_slist_append(h, o->extra[i]);
  api_rdbuf rd = {NULL, 0};
  if (api_chunked && o && o->body) {
    rd.p = o->body;
    rd.left = o->len ? o->len : strlen(o->body);
    h = curl_slist_append(h, "Transfer-Encoding: chunked");
  }
  h = curl_slist_append(h, "Expect:");
  curl_easy_setopt(c, CURLOPT_URL, url);
  curl_easy_setopt(c, CURLOPT_CAINFO, s->cacert);
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, out);
  curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  if (o && o->path_as_is)
    curl_easy_setopt(c, CURLOPT_PATH_AS_IS, 1L);
  if (api_src_ip)
    curl_easy_setopt(c, CURLOPT_INTERFACE, api_src_ip);
  if (o && o->sslversion)
    curl_easy_setopt(c, CURLOPT_SSLVERSION, o->sslversion);
  if (rd.p) {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &rd);
  } else if (o && o->body) {
    size_t n = o->len ? o->len : strlen(o->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, o->body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n);
  } else if (!strcmp(method, "GET")) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  }
  out->curl_rc = (int)curl_easy_perform(c);
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &out->status);
  curl_slist_free_all(h);
  free(bigauth);
  if (!out->body) {
    out->body = calloc(1, 1);
  }
  return out->status;
}

/* Shorthand: JSON request, returns status, body in out. */
static long jreq(srv *s, const char *method, const char *path,
                 const char *token, const char *json, resp *out) {
  req_opts o = {token, json ? "application/json" : NULL, json, 0, NULL, 0, 0};
  return http(s, method, path, &o, out);
}

/* Extracts a top-level string field from a JSON text (test helper, naive:
 * our responses are compact and the fields searched are unique). */
static int json_field(const char *js, const char *field, char *out,
                      size_t cap) {
  char pat[128];
  snprintf(pat, sizeof pat, "\"%s\":\"", field);
  const char *p = js ? strstr(js, pat) : NULL;
  if (!p)
    return 0;
  p += strlen(pat);
  size_t n = strcspn(p, "\"");
  if (n >= cap)
    return 0;
  memcpy(out, p, n);
  out[n] = 0;
  return 1;
}

#endif
