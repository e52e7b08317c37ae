/*
 * audit_ops.c - audit you can prove (audit_ops.h, sbx/server.h): verify
 * every tenant's hash chain to its first broken row, anchor chain heads
 * outside the database (the log stream, a file on another volume) so a cut
 * tail is detected, export rows as JSON lines.
 *
 * Anchor line (file and log): {"time":RFC 3339,"level":"info",
 * "event":"audit.anchor","ts":unix,"tenant":ID,"seq":N,"hash":hex}. The
 * verifier uses the line of each tenant with the highest seq.
 */
#include "audit_ops.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hutil.h"
#include "log.h"
#include "reply.h"
#include "reqlog.h"
#include "sbx/crypto.h"
#include "sbx/meta.h"
#include "sbx/server.h"
#include "sbx/store.h"
#include "util.h"

/* RFC 3339 UTC of a unix time into out (at least 32 bytes). */
static void rfc3339(int64_t t, char out[32]) {
  time_t tt = (time_t)t;
  struct tm tm;
  gmtime_r(&tt, &tm);
  strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- anchors ---- */

/* The last anchor of tenant in file (the line with the highest seq):
 * 0 found, SBX_ENOTFOUND none (or no file), SBX_EFORMAT a bad line. */
static int anchor_read(const char *file, const char *tenant, int64_t *seq,
                       uint8_t hash[32]) {
  *seq = 0;
  FILE *f = fopen(file, "r");
  if (!f)
    return errno == ENOENT ? SBX_ENOTFOUND : SBX_EIO;
  char line[1024];
  int rc = SBX_ENOTFOUND;
  while (fgets(line, sizeof line, f)) {
    json_t *j = json_loads(line, 0, NULL);
    const char *t = json_string_value(json_object_get(j, "tenant"));
    const char *h = json_string_value(json_object_get(j, "hash"));
    json_int_t s = json_integer_value(json_object_get(j, "seq"));
    if (!j || !t || !h || strlen(h) != 64) {
      json_decref(j);
      rc = SBX_EFORMAT;
      break;
    }
    if (!strcmp(t, tenant) && s > *seq) {
      uint8_t tmp[32];
      int ok = 1;
      for (int i = 0; i < 32 && ok; i++) {
        unsigned v;
        ok = sscanf(h + 2 * i, "%2x", &v) == 1;
        tmp[i] = (uint8_t)v;
      }
      if (ok) {
        *seq = s;
        memcpy(hash, tmp, 32);
        rc = 0;
      }
    }
    json_decref(j);
  }
  fclose(f);
  return rc;
}

typedef struct anchor_ctx {
  sbx_meta *m;
  FILE *file;      /* may be NULL */
  FILE *echo;      /* may be NULL */
  sbx_server *log; /* also to this server's log stream (may be NULL) */
  int rc;
} anchor_ctx;

/* One tenant's head: one line to the file, the echo stream and the log. */
static int anchor_one(void *ctx, const char *tenant) {
  anchor_ctx *a = ctx;
  int64_t seq = 0;
  uint8_t h[32];
  int rc = sbx_meta_audit_head(a->m, tenant, &seq, h);
  if (rc)
    return rc;
  if (seq == 0)
    return 0; /* nothing to anchor yet */
  char hex[65], when[32];
  sbx_hex(h, 32, hex);
  int64_t now = sbx__now();
  rfc3339(now, when);
  char line[512];
  snprintf(line, sizeof line,
           "{\"time\":\"%s\",\"level\":\"info\",\"event\":\"audit.anchor\","
           "\"ts\":%lld,"
           "\"tenant\":\"%s\",\"seq\":%lld,\"hash\":\"%s\"}",
           when, (long long)now, tenant, (long long)seq, hex);
  if (a->file && fprintf(a->file, "%s\n", line) < 0)
    a->rc = SBX_EIO;
  if (a->echo)
    fprintf(a->echo, "%s\n", line);
  if (a->log)
    sbx__reqlog_line(a->log, line);
  return 0;
}

/* Anchors every tenant of m: to file (NULL: none; appended and fsynced),
 * echo (may be NULL) and the log stream of server log (may be NULL). */
static int anchor_all(sbx_meta *m, const char *file, FILE *echo,
                      sbx_server *log) {
  anchor_ctx a = {m, NULL, echo, log, 0};
  if (file && !(a.file = fopen(file, "a")))
    return SBX_EIO;
  int rc = sbx_meta_audit_tenants(m, anchor_one, &a);
  if (a.file) {
    if (fflush(a.file) || fsync(fileno(a.file)))
      a.rc = SBX_EIO;
    if (fclose(a.file))
      a.rc = SBX_EIO;
  }
  return rc ? rc : a.rc;
}

/* ---- verify ---- */

/* Checks one tenant against its anchor in file (may be NULL) into *c; the
 * anchor's seq goes to *aseq (0: none). */
static int verify_tenant(sbx_meta *m, const char *tenant, const char *file,
                         sbx_audit_check *c, int64_t *aseq) {
  uint8_t ah[32];
  *aseq = 0;
  if (file) {
    int rc = anchor_read(file, tenant, aseq, ah);
    if (rc && rc != SBX_ENOTFOUND) {
      memset(c, 0, sizeof *c);
      return rc;
    }
  }
  return sbx_meta_audit_check(m, tenant, *aseq, *aseq ? ah : NULL, c);
}

/* The report of one tenant as a JSON object (new reference). */
static json_t *verify_json(const char *tenant, int rc, const sbx_audit_check *c,
                           int64_t aseq) {
  char hex[65];
  sbx_hex(c->head_hash, 32, hex);
  json_t *o = json_pack("{s:s,s:b,s:I,s:I,s:s,s:I}", "tenant", tenant, "ok",
                        rc == 0, "rows", (json_int_t)c->count, "head_seq",
                        (json_int_t)c->head_seq, "head_hash", hex, "anchor_seq",
                        (json_int_t)aseq);
  if (o && rc) {
    json_object_set_new(o, "bad_seq", json_integer(c->bad_seq));
    json_object_set_new(
        o, "reason", json_string(c->reason[0] ? c->reason : sbx_strerror(rc)));
  }
  return o;
}

typedef struct verify_ctx {
  sbx_meta *m;
  const char *file;
  FILE *out;
  int rc;
} verify_ctx;

/* Tenant callback of the offline verify: one JSON line each. */
static int verify_one(void *ctx, const char *tenant) {
  verify_ctx *v = ctx;
  sbx_audit_check c;
  int64_t aseq = 0;
  int rc = verify_tenant(v->m, tenant, v->file, &c, &aseq);
  json_t *o = verify_json(tenant, rc, &c, aseq);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  if (s)
    fprintf(v->out, "%s\n", s);
  free(s);
  json_decref(o);
  if (rc && (!v->rc || rc == SBX_ECRYPTO))
    v->rc = rc;
  return 0;
}

int sbx_server_audit_verify(const sbx_server_params *p, const char *anchor_file,
                            FILE *out) {
  if (!p || !out)
    return SBX_EINVAL;
  sbx_store *st = NULL;
  int rc = sbx_server_store_open(p, &st);
  if (rc)
    return rc;
  verify_ctx v = {sbx_store_meta(st),
                  anchor_file ? anchor_file : p->audit_anchor_file, out, 0};
  rc = sbx_meta_audit_tenants(v.m, verify_one, &v);
  sbx_store_close(st);
  return rc ? rc : v.rc;
}

int sbx_server_audit_anchor(const sbx_server_params *p, const char *anchor_file,
                            FILE *out) {
  if (!p || !(anchor_file || p->audit_anchor_file))
    return SBX_EINVAL;
  sbx_store *st = NULL;
  int rc = sbx_server_store_open(p, &st);
  if (rc)
    return rc;
  rc = anchor_all(sbx_store_meta(st),
                  anchor_file ? anchor_file : p->audit_anchor_file, out, NULL);
  sbx_store_close(st);
  return rc;
}

/* ---- export ---- */

/* Row callback of the export: one JSON line. */
static int export_one(void *ctx, const char *tenant, const sbx_audit_event *e) {
  FILE *out = ctx;
  char prev[65], hash[65], when[32];
  sbx_hex(e->prev_hash, 32, prev);
  sbx_hex(e->hash, 32, hash);
  rfc3339(e->ts, when);
  json_t *o =
      json_pack("{s:s,s:I,s:s,s:I,s:s,s:s,s:s,s:s,s:s}", "tenant", tenant,
                "seq", (json_int_t)e->seq, "time", when, "ts",
                (json_int_t)e->ts, "actor", e->actor, "action", e->action,
                "target", e->target, "prev_hash", prev, "hash", hash);
  char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  if (!s)
    return SBX_ENOMEM;
  int bad = fprintf(out, "%s\n", s) < 0;
  free(s);
  return bad ? SBX_EIO : 0;
}

int sbx_server_audit_export(const sbx_server_params *p, const char *tenant,
                            int64_t since, int64_t until, FILE *out) {
  if (!p || !out)
    return SBX_EINVAL;
  sbx_store *st = NULL;
  int rc = sbx_server_store_open(p, &st);
  if (rc)
    return rc;
  rc = sbx_meta_audit_list(sbx_store_meta(st), tenant, since, until, export_one,
                           out);
  sbx_store_close(st);
  if (!rc && fflush(out))
    rc = SBX_EIO;
  return rc;
}

/* ---- the route ---- */

int sbx__h_audit_verify(sbx__req *r) {
  sbx_audit_check c;
  int64_t aseq = 0;
  int rc = verify_tenant(sbx__meta(r), sbx__tenant(r),
                         r->srv->p.audit_anchor_file, &c, &aseq);
  if (rc && rc != SBX_ECRYPTO)
    return sbx__problem_rc(r, rc);
  return sbx__reply_json(r, 200, verify_json(sbx__tenant(r), rc, &c, aseq));
}

/* ---- the periodic anchor ---- */

struct sbx__anchor {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  pthread_t thread;
  int stop, running;
  sbx_store *st;
  const char *file;
  int interval_s;
  sbx_server *s;
};

/* The anchor thread: a line per tenant every interval, and at the stop. */
static void *anchor_main(void *arg) {
  struct sbx__anchor *a = arg;
  pthread_mutex_lock(&a->mu);
  for (;;) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += a->interval_s;
    while (!a->stop &&
           pthread_cond_timedwait(&a->cv, &a->mu, &until) != ETIMEDOUT)
      ;
    int stop = a->stop;
    pthread_mutex_unlock(&a->mu);
    int rc = anchor_all(sbx_store_meta(a->st), a->file, NULL, a->s);
    if (rc)
      sbx__log("audit anchor failed: %s", sbx_strerror(rc));
    if (stop)
      return NULL;
    pthread_mutex_lock(&a->mu);
  }
}

int sbx__anchor_start(sbx_server *s) {
  if (s->p.audit_anchor_interval_s <= 0)
    return 0;
  struct sbx__anchor *a = calloc(1, sizeof *a);
  if (!a)
    return SBX_ENOMEM;
  pthread_mutex_init(&a->mu, NULL);
  pthread_cond_init(&a->cv, NULL);
  a->file = s->p.audit_anchor_file;
  a->interval_s = s->p.audit_anchor_interval_s;
  a->s = s;
  int rc = sbx_server_store_open(&s->p, &a->st);
  if (rc) {
    sbx_store_close(a->st);
    pthread_cond_destroy(&a->cv);
    pthread_mutex_destroy(&a->mu);
    free(a);
    return rc;
  }
  s->anchor = a;
  return 0;
}

int sbx__anchor_run(sbx_server *s) {
  struct sbx__anchor *a = s->anchor;
  if (!a)
    return 0;
  if (pthread_create(&a->thread, NULL, anchor_main, a))
    return SBX_ENOMEM;
  a->running = 1;
  return 0;
}

void sbx__anchor_stop(sbx_server *s) {
  struct sbx__anchor *a = s->anchor;
  if (!a)
    return;
  pthread_mutex_lock(&a->mu);
  a->stop = 1;
  pthread_cond_signal(&a->cv);
  pthread_mutex_unlock(&a->mu);
  if (a->running)
    pthread_join(a->thread, NULL);
  sbx_store_close(a->st);
  pthread_cond_destroy(&a->cv);
  pthread_mutex_destroy(&a->mu);
  free(a);
  s->anchor = NULL;
}
