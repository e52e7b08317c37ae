/*
 * test_crash.c - crash safety: a writer child stores, replaces and deletes
 * objects in a loop and is killed with SIGKILL at a random moment, many
 * times. Afterwards every visible object must decrypt, match its recorded
 * SHA-256 and regenerate from its embedded seed; no row may lack its blob;
 * GC must remove every orphan, after which every blob has a row.
 * SBX_CRASH_ITERS overrides the iteration count (default 50).
 */
#include <signal.h>
#include <sys/wait.h>
#include <time.h>

#include "harness.h"
#include "store_testutil.h"

static char root[] = "/tmp/sbx_crash_XXXXXX";
static char datadir[256];
static sbx_key mk;
static const char *pg;

static sbx_store *open_store(void) {
  sbx_store_params p = sbx_store_default_params();
  p.data_dir = datadir;
  p.master_key = &mk;
  p.chunk_shift = 12;
  if (pg) {
    p.meta_backend = SBX_META_POSTGRES;
    p.pg_conninfo = pg;
  }
  sbx_store *st = NULL;
  int rc = sbx_store_open(&p, &st);
  if (rc)
    fprintf(stderr, "open: %s\n", sbx_strerror(rc));
  return st;
}

/* payload: 8-byte seed + 8-byte length + tu_fill(seed) */
static size_t make_payload(uint8_t *buf, uint64_t seed, size_t n) {
  memcpy(buf, &seed, 8);
  uint64_t len = n;
  memcpy(buf + 8, &len, 8);
  tu_fill(buf + 16, n - 16, seed);
  return n;
}

static int payload_ok(const uint8_t *buf, size_t n) {
  if (n < 16)
    return 0;
  uint64_t seed, len;
  memcpy(&seed, buf, 8);
  memcpy(&len, buf + 8, 8);
  if (len != n)
    return 0;
  uint8_t *exp = malloc(n);
  tu_fill(exp + 16, n - 16, seed);
  int ok = memcmp(exp + 16, buf + 16, n - 16) == 0;
  free(exp);
  return ok;
}

static void writer(uint64_t seed) {
  sbx_store *st = open_store();
  if (!st)
    _exit(3);
  uint8_t *buf = malloc(6u << 20);
  for (uint64_t i = 0;; i++) {
    uint64_t r = seed * 1000003 + i * 7919;
    size_t n = 16 + (size_t)(r % 200000);
    if (i % 7 == 6) /* through the hash worker: staged or in place */
      n = (1u << 20) + (size_t)(r % (5u << 20));
    make_payload(buf, r, n);
    char name[64];
    sbx_put_params pp = {"", "model", name, 0};
    if (i % 3 == 0) { /* replace one of a few fixed names */
      snprintf(name, sizeof name, "fixed-%u", (unsigned)(r % 4));
      pp.replace = 1;
    } else {
      snprintf(name, sizeof name, "w%llu-%llu", (unsigned long long)seed,
               (unsigned long long)i);
    }
    sbx_object o;
    int rc = sbx_store_put(st, "crash", &pp, buf, n, &o);
    if (rc)
      _exit(4);
    if (i % 5 == 4)
      sbx_store_delete(st, "crash", o.id);
  }
}

typedef struct check_ctx {
  sbx_store *st;
  int objects, bad;
} check_ctx;

static int check_obj(void *ctx, const sbx_object *o) {
  check_ctx *c = ctx;
  void *data;
  size_t n;
  c->objects++;
  int rc = sbx_store_get_alloc(c->st, "crash", o->id, 8u << 20, &data, &n);
  if (rc || !payload_ok(data, n)) {
    fprintf(stderr, "object %s (%s): %s\n", o->id, o->name, sbx_strerror(rc));
    c->bad++;
  }
  free(data);
  return 0;
}

typedef struct scan_ctx {
  sbx_store *st;
  int blobs, orphans, tmps;
} scan_ctx;

static int scan_blob(void *ctx, const char *t, const char *id,
                     const char *tmp, int64_t mtime) {
  scan_ctx *s = ctx;
  if (tmp) {
    s->tmps++;
    return 0;
  }
  s->blobs++;
  sbx_object o;
  if (sbx_meta_object_get(sbx_store_meta(s->st), t, id, &o) == SBX_ENOTFOUND)
    s->orphans++;
  return 0;
}

TEST(kill9_writer) {
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  CHECK_EQ_INT(sbx_store_tenant_create(st, "crash", "C"), 0);
  /* a few objects before the crashes, so the check never runs on nothing
   * even on a machine so slow that no writer commits before its kill */
  for (int i = 0; i < 3; i++) {
    uint8_t buf[5000];
    char name[16];
    snprintf(name, sizeof name, "pre%d", i);
    sbx_put_params pp = {"", "model", name, 0};
    make_payload(buf, 99 + (uint64_t)i, sizeof buf);
    CHECK_EQ_INT(sbx_store_put(st, "crash", &pp, buf, sizeof buf, NULL), 0);
  }
  sbx_store_close(st);
  const char *it = getenv("SBX_CRASH_ITERS");
  int iters = it ? atoi(it) : 50;
  srand((unsigned)time(NULL) ^ (unsigned)getpid());
  int died_early = 0;
  for (int i = 0; i < iters; i++) {
    pid_t pid = fork();
    if (pid == 0)
      writer((uint64_t)i + 1);
    struct timespec ts = {0, (long)(2 + rand() % 60) * 1000000L};
    nanosleep(&ts, NULL);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    if (!WIFSIGNALED(status)) {
      died_early++;
      fprintf(stderr, "writer exited by itself: %d\n", WEXITSTATUS(status));
    }
  }
  CHECK_EQ_INT(died_early, 0);
  st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  check_ctx c = {st, 0, 0};
  CHECK_EQ_INT(sbx_meta_object_list(sbx_store_meta(st), "crash", NULL,
                                    check_obj, &c),
               0);
  CHECK_EQ_INT(c.bad, 0);
  CHECK(c.objects >= 3);
  scan_ctx s = {st, 0, 0, 0};
  sbx_blob_scan(sbx_store_blobs(st), scan_blob, &s);
  fprintf(stderr, "%d iterations: %d visible objects, %d blobs, %d orphans, "
                  "%d temp files\n",
          iters, c.objects, s.blobs, s.orphans, s.tmps);
  /* every row has its blob (checked by get above) and the counts agree */
  CHECK_EQ_INT(s.blobs - s.orphans, c.objects);
  int64_t removed = 0;
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, s.orphans + s.tmps);
  scan_ctx s2 = {st, 0, 0, 0};
  sbx_blob_scan(sbx_store_blobs(st), scan_blob, &s2);
  CHECK_EQ_INT(s2.orphans, 0);
  CHECK_EQ_INT(s2.tmps, 0);
  CHECK_EQ_INT(s2.blobs, c.objects);
  /* at most one object per fixed name survived (replace is atomic) */
  for (int f = 0; f < 4; f++) {
    char name[32];
    snprintf(name, sizeof name, "fixed-%d", f);
    sbx_object o;
    int rc = sbx_meta_object_find(sbx_store_meta(st), "crash", "", "model",
                                  name, &o);
    CHECK(rc == SBX_OK || rc == SBX_ENOTFOUND);
  }
  sbx_store_close(st);
}

int main(void) {
  if (!mkdtemp(root))
    return 2;
  pg = getenv("SBX_TEST_PG");
  if (pg && !*pg)
    pg = NULL;
  snprintf(datadir, sizeof datadir, "%s/data", root);
  sbx_key_generate(&mk);
  RUN(kill9_writer);
  tu_rm_rf(root);
  return harness_report();
}
