/*
 * test_store.c - the encrypted store end to end on the local blob store and
 * the metadata backend chosen by the environment (SQLite by default;
 * PostgreSQL when SBX_TEST_PG holds a conninfo, see pg_run.sh):
 * round trips, tamper detection (blob byte, wrapped data key, wrapped
 * tenant key), key rotation, crypto-shredding, sealed fields, GC of orphans,
 * clear errors for disk-full and permissions, and the plaintext-window
 * proof over the data dir, the database files and the blobs.
 */
#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>
#include <libpq-fe.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include "harness.h"
#include "store_testutil.h"

static char root[] = "/tmp/sbx_store_XXXXXX";
static char keyspec[300], datadir[256];
static const char *pg;

static sbx_store *open_store_shift(unsigned shift) {
  sbx_store_params p = sbx_store_default_params();
  p.data_dir = datadir;
  p.master_key_spec = keyspec;
  p.chunk_shift = shift;
  if (pg) {
    p.meta_backend = SBX_META_POSTGRES;
    p.pg_conninfo = pg;
  }
  sbx_store *st = NULL;
  int rc = sbx_store_open(&p, &st);
  if (rc)
    fprintf(stderr, "sbx_store_open: %s\n", sbx_strerror(rc));
  return st;
}

static sbx_store *open_store(void) {
  return open_store_shift(12); /* 4 KiB chunks: many chunks in small tests */
}

static void blob_path(sbx_store *st, const char *t, const char *id, char *out) {
  sbx_blob_local_path(sbx_store_blobs(st), t, id, out, 1024);
}

TEST(roundtrip_and_isolation) {
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  CHECK_EQ_INT(sbx_store_tenant_create(st, "acme", "Acme"), 0);
  CHECK_EQ_INT(sbx_store_tenant_create(st, "acme", "Acme"), SBX_EEXIST);
  CHECK_EQ_INT(sbx_store_tenant_create(st, "globex", "Globex"), 0);
  size_t sizes[] = {0, 1, 4095, 4096, 4097, 100000};
  for (size_t i = 0; i < 6; i++) {
    uint8_t *d = malloc(sizes[i] + 1);
    tu_fill(d, sizes[i], i + 1);
    char name[32];
    snprintf(name, sizeof name, "m%zu.onnx", i);
    sbx_put_params pp = {"p1", "model", name, 0};
    sbx_object o;
    CHECK_EQ_INT(sbx_store_put(st, "acme", &pp, d, sizes[i], &o), 0);
    void *back;
    size_t n;
    CHECK_EQ_INT(sbx_store_get_alloc(st, "acme", o.id, 1 << 20, &back, &n), 0);
    CHECK(n == sizes[i] && (n == 0 || memcmp(back, d, n) == 0));
    free(back);
    /* the other tenant cannot see it, even knowing the id */
    CHECK_EQ_INT(sbx_store_get_alloc(st, "globex", o.id, 1 << 20, &back, &n),
                 SBX_ENOTFOUND);
    CHECK_EQ_INT(sbx_store_delete(st, "globex", o.id), SBX_ENOTFOUND);
    free(d);
  }
  int64_t cnt;
  CHECK_EQ_INT(sbx_meta_object_count(sbx_store_meta(st), "acme", &cnt), 0);
  CHECK_EQ_INT(cnt, 6);
  CHECK_EQ_INT(sbx_meta_object_count(sbx_store_meta(st), "globex", &cnt), 0);
  CHECK_EQ_INT(cnt, 0);
  /* duplicate name refused unless replace; replace is atomic */
  sbx_put_params pp = {"p1", "model", "m1.onnx", 0};
  sbx_object o1, o2;
  CHECK_EQ_INT(sbx_store_put(st, "acme", &pp, "x", 1, &o1), SBX_EEXIST);
  pp.replace = 1;
  CHECK_EQ_INT(sbx_store_put(st, "acme", &pp, "new", 3, &o2), 0);
  CHECK_EQ_INT(sbx_meta_object_find(sbx_store_meta(st), "acme", "p1", "model",
                                    "m1.onnx", &o1),
               0);
  CHECK(strcmp(o1.id, o2.id) == 0);
  CHECK_EQ_INT(sbx_meta_object_count(sbx_store_meta(st), "acme", &cnt), 0);
  CHECK_EQ_INT(cnt, 6);
  /* no temp files or orphans left behind */
  int64_t removed = -1;
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, 0);
  /* delete */
  CHECK_EQ_INT(sbx_store_delete(st, "acme", o2.id), 0);
  void *back;
  size_t n;
  CHECK_EQ_INT(sbx_store_get_alloc(st, "acme", o2.id, 100, &back, &n),
               SBX_ENOTFOUND);
  /* streaming writer, abort leaves nothing */
  sbx_store_writer *w;
  pp.name = "aborted";
  CHECK_EQ_INT(sbx_store_writer_open(st, "acme", &pp, &w), 0);
  CHECK_EQ_INT(sbx_store_writer_write(w, "abc", 3), 0);
  sbx_store_writer_abort(w);
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, 0);
  /* bad input */
  pp.name = "../../etc/passwd";
  CHECK_EQ_INT(sbx_store_put(st, "../x", &pp, "a", 1, NULL), SBX_EINVAL);
  CHECK_EQ_INT(sbx_store_put(st, "nobody", &pp, "a", 1, NULL), SBX_ENOTFOUND);
  sbx_store_close(st);
}

/* replaces the metadata row of o->id with *o (a forged edit) */
static void put_row(sbx_meta *m, const char *t, const sbx_object *o) {
  CHECK_EQ_INT(sbx_meta_object_delete(m, t, o->id), 0);
  CHECK_EQ_INT(sbx_meta_object_insert(m, t, o), 0);
}

TEST(tamper_detected) {
  sbx_store *st = open_store();
  if (!st) {
    CHECK(0);
    return;
  }
  sbx_store_tenant_create(st, "tamper", "T");
  size_t n = 50000;
  uint8_t *d = malloc(n);
  tu_fill(d, n, 77);
  sbx_put_params pp = {"", "dataset", "d.npy", 0};
  sbx_object o;
  CHECK_EQ_INT(sbx_store_put(st, "tamper", &pp, d, n, &o), 0);
  char path[1024];
  blob_path(st, "tamper", o.id, path);
  void *back;
  size_t bn;
  /* one byte of the blob: header, a middle chunk, the last tag */
  long offs[] = {5, 20, 4000, 20000, -1};
  for (int i = 0; i < 5; i++) {
    CHECK_EQ_INT(tu_flip_byte(path, offs[i]), 0);
    CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
                 SBX_ECRYPTO);
    CHECK(back == NULL);
    CHECK_EQ_INT(tu_flip_byte(path, offs[i]), 0);
  }
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn), 0);
  free(back);
  /* truncation of the blob file */
  uint8_t *blob;
  size_t blen;
  tu_read_file(path, &blob, &blen);
  CHECK_EQ_INT(truncate(path, (off_t)blen - 4096 - 16), 0);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
               SBX_ECRYPTO);
  FILE *f = fopen(path, "wb");
  CHECK(f && fwrite(blob, 1, blen, f) == blen);
  fclose(f);
  free(blob);
  /* one byte of the wrapped data key in the row */
  sbx_meta *m = sbx_store_meta(st);
  sbx_object row;
  CHECK_EQ_INT(sbx_meta_object_get(m, "tamper", o.id, &row), 0);
  for (int i = 20; i < SBX_WRAPPED_KEY_LEN; i += 11) {
    uint8_t w[SBX_WRAPPED_KEY_LEN];
    memcpy(w, row.wrapped_dek, sizeof w);
    w[i] ^= 0x10;
    sbx_meta_object_rewrap(m, "tamper", o.id, row.key_version, w);
    CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
                 SBX_ECRYPTO);
  }
  sbx_meta_object_rewrap(m, "tamper", o.id, row.key_version, row.wrapped_dek);
  /* one byte of the wrapped tenant key */
  sbx_tenant_key_row tk;
  CHECK_EQ_INT(sbx_meta_tenant_key_get(m, "tamper", 0, &tk), 0);
  uint8_t w[SBX_WRAPPED_KEY_LEN];
  memcpy(w, tk.wrapped, sizeof w);
  w[40] ^= 0x01;
  sbx_meta_tenant_key_rewrap(m, "tamper", tk.version, w);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
               SBX_ECRYPTO);
  sbx_meta_tenant_key_rewrap(m, "tamper", tk.version, tk.wrapped);
  /* the recorded sha256 / size in the row: a get does not re-hash, the
   * data key is bound to both (store.c, ctx_dek) */
  row.sha256[3] ^= 1;
  put_row(m, "tamper", &row);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
               SBX_ECRYPTO);
  row.sha256[3] ^= 1;
  row.size -= 1;
  put_row(m, "tamper", &row);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
               SBX_ECRYPTO);
  row.size += 1;
  put_row(m, "tamper", &row);
  /* a blob swapped in from another object of the same tenant */
  sbx_object o2;
  pp.name = "other";
  CHECK_EQ_INT(sbx_store_put(st, "tamper", &pp, d, n, &o2), 0);
  char path2[1024], cmd[4200];
  blob_path(st, "tamper", o2.id, path2);
  snprintf(cmd, sizeof cmd, "cp '%s' '%s.save' && cp '%s' '%s'", path, path,
           path2, path);
  CHECK(system(cmd) == 0);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
               SBX_ECRYPTO);
  snprintf(cmd, sizeof cmd, "mv '%s.save' '%s'", path, path);
  CHECK(system(cmd) == 0);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn), 0);
  CHECK(bn == n && memcmp(back, d, n) == 0);
  free(back);
  free(d);
  sbx_store_close(st);
}

TEST(rotation_and_shredding) {
  sbx_store *st = open_store();
  if (!st) {
    CHECK(0);
    return;
  }
  sbx_store_tenant_create(st, "rot", "R");
  sbx_store_tenant_create(st, "keep", "K");
  enum { N = 5 };
  sbx_object o[N], ko;
  uint8_t d[N][3000];
  for (int i = 0; i < N; i++) {
    char name[16];
    snprintf(name, sizeof name, "o%d", i);
    tu_fill(d[i], sizeof d[i], 100 + i);
    sbx_put_params pp = {"", "report", name, 0};
    CHECK_EQ_INT(sbx_store_put(st, "rot", &pp, d[i], sizeof d[i], &o[i]), 0);
  }
  sbx_put_params kp = {"", "report", "k", 0};
  CHECK_EQ_INT(sbx_store_put(st, "keep", &kp, d[0], sizeof d[0], &ko), 0);
  uint8_t sealed[64], plain[64];
  size_t pl;
  CHECK_EQ_INT(
      sbx_store_field_seal(st, "rot", "users.email|u1", "a@b.c", 5, sealed), 0);
  /* tenant key rotation: same blobs, new wrapped keys, nothing lost */
  sbx_meta *m = sbx_store_meta(st);
  sbx_object before, after;
  sbx_meta_object_get(m, "rot", o[0].id, &before);
  CHECK_EQ_INT(sbx_store_rotate_tenant_key(st, "rot"), 0);
  CHECK_EQ_INT(sbx_store_rotate_tenant_key(st, "rot"), 0);
  sbx_meta_object_get(m, "rot", o[0].id, &after);
  CHECK_EQ_INT(after.key_version, 3);
  CHECK(memcmp(before.wrapped_dek, after.wrapped_dek, SBX_WRAPPED_KEY_LEN));
  sbx_tenant_key_row tk;
  CHECK_EQ_INT(sbx_meta_tenant_key_get(m, "rot", 1, &tk), SBX_ENOTFOUND);
  for (int i = 0; i < N; i++) {
    void *b;
    size_t n;
    CHECK_EQ_INT(sbx_store_get_alloc(st, "rot", o[i].id, 1 << 20, &b, &n), 0);
    CHECK(n == sizeof d[i] && memcmp(b, d[i], n) == 0);
    free(b);
  }
  CHECK_EQ_INT(sbx_store_field_open(st, "rot", "users.email|u1", sealed,
                                    5 + SBX_SEAL_OVERHEAD, plain, &pl),
               0);
  CHECK(pl == 5 && memcmp(plain, "a@b.c", 5) == 0);
  CHECK_EQ_INT(sbx_store_field_open(st, "rot", "users.email|u2", sealed,
                                    5 + SBX_SEAL_OVERHEAD, plain, &pl),
               SBX_ECRYPTO);
  uint8_t h1[32], h2[32];
  CHECK_EQ_INT(sbx_store_keyed_hash(st, "api-key", "s3cret", 6, h1), 0);
  /* master key rotation: the store reopens only with the new key */
  sbx_key newmk;
  char newpath[256];
  snprintf(newpath, sizeof newpath, "%s/master2.key", root);
  CHECK_EQ_INT(sbx_master_key_create_file(newpath, &newmk), 0);
  CHECK_EQ_INT(sbx_store_rotate_master_key(st, &newmk), 0);
  sbx_store_close(st);
  st = open_store(); /* old key */
  CHECK(st == NULL);
  sbx_store_close(st);
  snprintf(keyspec, sizeof keyspec, "file:%s", newpath);
  st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  m = sbx_store_meta(st);
  CHECK_EQ_INT(sbx_store_keyed_hash(st, "api-key", "s3cret", 6, h2), 0);
  CHECK(memcmp(h1, h2, 32) == 0); /* the pepper survived rotation */
  for (int i = 0; i < N; i++) {
    void *b;
    size_t n;
    CHECK_EQ_INT(sbx_store_get_alloc(st, "rot", o[i].id, 1 << 20, &b, &n), 0);
    CHECK(n == sizeof d[i] && memcmp(b, d[i], n) == 0);
    free(b);
  }
  /* crypto-shredding */
  CHECK_EQ_INT(sbx_meta_tenant_key_get(m, "rot", 0, &tk), 0);
  CHECK_EQ_INT(sbx_store_shred_tenant(st, "rot"), 0);
  for (int i = 0; i < N; i++) {
    void *b;
    size_t n;
    CHECK_EQ_INT(sbx_store_get_alloc(st, "rot", o[i].id, 1 << 20, &b, &n),
                 SBX_EKEY);
  }
  CHECK_EQ_INT(sbx_store_field_open(st, "rot", "users.email|u1", sealed,
                                    5 + SBX_SEAL_OVERHEAD, plain, &pl),
               SBX_EKEY);
  sbx_put_params pp = {"", "report", "late", 0};
  CHECK_EQ_INT(sbx_store_put(st, "rot", &pp, "x", 1, NULL), SBX_EKEY);
  /* the other tenant is untouched */
  void *b;
  size_t n;
  CHECK_EQ_INT(sbx_store_get_alloc(st, "keep", ko.id, 1 << 20, &b, &n), 0);
  free(b);
  /* proof: the wrapped tenant key is nowhere in the data dir any more
   * (SQLite: secure_delete + WAL truncated), so even the master key plus
   * every file cannot recover the data */
  if (!pg) {
    tu_windows w;
    tu_windows_init(&w, tk.wrapped + 16, 32); /* nonce+start of ct */
    int files = 0;
    CHECK_EQ_INT(tu_windows_scan_tree(&w, datadir, &files), 0);
    CHECK(files >= 2);
    tu_windows_free(&w);
  }
  sbx_store_close(st);
  sbx_key_wipe(&newmk); /* keyspec stays on the new key for later tests */
}

TEST(gc_orphans) {
  sbx_store *st = open_store();
  if (!st) {
    CHECK(0);
    return;
  }
  sbx_store_tenant_create(st, "gc", "G");
  sbx_put_params pp = {"", "model", "real", 0};
  sbx_object o;
  CHECK_EQ_INT(sbx_store_put(st, "gc", &pp, "data", 4, &o), 0);
  /* an orphan blob (committed blob, no row) and a stale temp file */
  sbx_blob_writer *bw;
  CHECK_EQ_INT(sbx_blob_writer_open(sbx_store_blobs(st), "gc", "orphan1", &bw),
               0);
  sbx_blob_writer_write(bw, "zz", 2);
  CHECK_EQ_INT(sbx_blob_writer_commit(bw), 0);
  CHECK_EQ_INT(sbx_blob_writer_open(sbx_store_blobs(st), "gc", "tmp1", &bw), 0);
  sbx_blob_writer_write(bw, "zz", 2);
  /* leaked on purpose: simulate a crashed writer by not committing */
  int64_t removed = 0;
  CHECK_EQ_INT(sbx_store_gc(st, 3600, &removed), 0); /* too young */
  CHECK_EQ_INT(removed, 0);
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, 2);
  sbx_blob_writer_abort(bw);
  void *b;
  size_t n;
  CHECK_EQ_INT(sbx_store_get_alloc(st, "gc", o.id, 100, &b, &n), 0);
  free(b);
  sbx_store_close(st);
}

TEST(disk_full_and_permissions) {
  sbx_store *st = open_store();
  if (!st) {
    CHECK(0);
    return;
  }
  sbx_store_tenant_create(st, "full", "F");
  /* a file-size limit makes write() fail like a full disk (EFBIG) */
  pid_t pid = fork();
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {20000, 20000};
    setrlimit(RLIMIT_FSIZE, &rl);
    uint8_t *d = malloc(100000);
    tu_fill(d, 100000, 5);
    sbx_put_params pp = {"", "model", "big", 0};
    sbx_store *own = open_store(); /* never share a DB connection */
    int rc = own ? sbx_store_put(own, "full", &pp, d, 100000, NULL) : -999;
    /* the reason is reported to the caller (nothing printed) */
    const sbx_err *e = sbx_store_err(own);
    _exit(rc == SBX_ENOSPC && e->status == SBX_ENOSPC &&
                  strstr(e->msg, "blob: write ") &&
                  strstr(e->msg, "File too large")
              ? 0
              : 1);
  }
  int status;
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  int64_t cnt;
  CHECK_EQ_INT(sbx_meta_object_count(sbx_store_meta(st), "full", &cnt), 0);
  CHECK_EQ_INT(cnt, 0);
  int64_t removed = -1;
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, 0); /* the failed put cleaned up after itself */
  sbx_store_close(st);
  /* permission denied: a data dir the process may not write */
  char ro[700];
  snprintf(ro, sizeof ro, "%s/readonly", root);
  mkdir(ro, 0500);
  pid = fork();
  if (pid == 0) {
    if (geteuid() == 0 && (setgid(65534) || setuid(65534)))
      _exit(2);
    char dd[800];
    snprintf(dd, sizeof dd, "%s/data", ro);
    sbx_key k;
    sbx_key_generate(&k);
    sbx_store_params p = sbx_store_default_params();
    p.data_dir = dd;
    p.master_key = &k;
    sbx_store *s2 = NULL;
    sbx_err err = {0, ""};
    p.err = &err;
    int rc = sbx_store_open(&p, &s2);
    _exit(rc == SBX_EPERM && s2 == NULL && err.status == SBX_EPERM &&
                  strstr(err.msg, "store: mkdir ") &&
                  strstr(err.msg, "Permission denied")
              ? 0
              : 1);
  }
  waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void pg_checkpoint(void) {
  PGconn *c = PQconnectdb(pg);
  PGresult *r = PQexec(c, "CHECKPOINT");
  PQclear(r);
  PQfinish(c);
}

TEST(no_plaintext_at_rest) {
  sbx_store *st = open_store();
  if (!st) {
    CHECK(0);
    return;
  }
  sbx_store_tenant_create(st, "proof", "P");
  /* a "model" and a "dataset" with high-entropy content, and the same
   * through the streaming writer in odd-sized pieces */
  size_t n = 300000;
  uint8_t *pt = malloc(2 * n);
  tu_fill(pt, 2 * n, 4242);
  sbx_put_params mp = {"p", "model", "net.onnx", 0};
  sbx_put_params dp = {"p", "dataset", "train.npz", 0};
  CHECK_EQ_INT(sbx_store_put(st, "proof", &mp, pt, n, NULL), 0);
  sbx_store_writer *w;
  CHECK_EQ_INT(sbx_store_writer_open(st, "proof", &dp, &w), 0);
  for (size_t off = 0; off < n; off += 7777)
    sbx_store_writer_write(w, pt + n + off, off + 7777 > n ? n - off : 7777);
  CHECK_EQ_INT(sbx_store_writer_commit(w, NULL), 0);
  /* personal data through the sealed-field helper */
  const char *email = "alice.sensitive.person@example.org-with-padding-to-"
                      "make-it-64-bytes-long";
  uint8_t sealed[200];
  CHECK_EQ_INT(sbx_store_field_seal(st, "proof", "users.email|u1", email,
                                    strlen(email), sealed),
               0);
  sbx_user u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "u1");
  sbx_store_keyed_hash(st, "email", email, strlen(email), u.email_index);
  memcpy(u.email_sealed, sealed, strlen(email) + SBX_SEAL_OVERHEAD);
  u.email_sealed_len = strlen(email) + SBX_SEAL_OVERHEAD;
  CHECK_EQ_INT(sbx_meta_user_insert(sbx_store_meta(st), "proof", &u), 0);
  sbx_store_close(st); /* SQLite checkpoints into the main file on close */
  /* sanity: the scanner does find plaintext when it is there */
  tu_windows win;
  tu_windows_init(&win, pt, 2 * n);
  CHECK(tu_windows_scan(&win, pt + 1000, 64) >= 1);
  int files = 0;
  CHECK_EQ_INT(tu_windows_scan_tree(&win, datadir, &files), 0);
  CHECK(files >= 3); /* meta.db + two blobs at least */
  tu_windows ew;
  tu_windows_init(&ew, (const uint8_t *)email, strlen(email));
  files = 0;
  CHECK_EQ_INT(tu_windows_scan_tree(&ew, datadir, &files), 0);
  const char *pgdata = getenv("SBX_TEST_PGDATA");
  if (pg && pgdata) {
    pg_checkpoint();
    files = 0;
    CHECK_EQ_INT(tu_windows_scan_tree(&win, pgdata, &files), 0);
    CHECK_EQ_INT(tu_windows_scan_tree(&ew, pgdata, &files), 0);
    CHECK(files > 10);
  }
  tu_windows_free(&win);
  tu_windows_free(&ew);
  free(pt);
}

typedef struct {
  size_t n, fail_at;
} count_ctx;

static int count_sink(void *ctx, const void *buf, size_t n) {
  count_ctx *c = ctx;
  (void)buf;
  c->n += n;
  return c->fail_at && c->n >= c->fail_at ? SBX_EIO : SBX_OK;
}

/* puts `n` bytes written in the pieces of `steps` (cycled), checks the
 * recorded SHA-256 against a one-shot hash and the round trip */
static void put_steps(sbx_store *st, const char *name, const uint8_t *d,
                      size_t n, const size_t *steps, size_t nsteps) {
  sbx_put_params pp = {"", "model", name, 0};
  sbx_store_writer *w;
  sbx_object o;
  CHECK_EQ_INT(sbx_store_writer_open(st, "pipe", &pp, &w), 0);
  for (size_t off = 0, i = 0; off < n; i++) {
    size_t len = steps[i % nsteps];
    if (len > n - off)
      len = n - off;
    CHECK_EQ_INT(sbx_store_writer_write(w, d + off, len), 0);
    off += len;
  }
  CHECK_EQ_INT(sbx_store_writer_commit(w, &o), 0);
  uint8_t want[SBX_SHA256_LEN];
  sbx_sha256(d, n, want);
  CHECK(memcmp(o.sha256, want, sizeof want) == 0);
  CHECK_EQ_INT(o.size, (int64_t)n);
  void *back = NULL;
  size_t bn = 0;
  CHECK_EQ_INT(sbx_store_get_alloc(st, "pipe", o.id, n + 1, &back, &bn), 0);
  CHECK(bn == n && (n == 0 || memcmp(back, d, n) == 0));
  free(back);
  CHECK_EQ_INT(sbx_store_delete(st, "pipe", o.id), 0);
}

/* Objects above SBX_HASHQ_MIN_BYTES go through the hash worker (store.c):
 * every write pattern (staged, in place, mixed, sizes around the
 * thresholds) keeps the plain SHA-256 and the bytes; tampering,
 * truncation, a failing consumer, abort and a full disk stay clean. */
TEST(pipelined_large) {
  size_t big = (13u << 20) + 5;
  uint8_t *d = malloc(big);
  tu_fill(d, big, 99);
  unsigned shifts[] = {12, 0, 20};
  for (int si = 0; si < 3; si++) {
    sbx_store *st = open_store_shift(shifts[si]);
    CHECK(st != NULL);
    if (!st)
      break;
    if (si == 0)
      CHECK_EQ_INT(sbx_store_tenant_create(st, "pipe", "P"), 0);
    size_t sizes[] = {(1u << 20) - 1, 1u << 20,          (1u << 20) + 1,
                      4u << 20,       (4u << 20) + 4097, big};
    for (int i = 0; i < 6; i++) {
      size_t one = sizes[i];
      put_steps(st, "one", d, sizes[i], &one, 1);
    }
    size_t mixed[] = {100000, (3u << 20) + 7, 7, 9u << 20, 1u << 20, 4096};
    put_steps(st, "mixed", d, big, mixed, 6);
    size_t small[] = {65536};
    put_steps(st, "small", d, big, small, 1);
    size_t odd[] = {(1u << 20) + 3, 5u << 20, 1};
    put_steps(st, "odd", d, big, odd, 3);
    sbx_store_close(st);
  }
  sbx_store *st = open_store();
  if (!st) {
    CHECK(0);
    free(d);
    return;
  }
  sbx_put_params pp = {"", "model", "big", 0};
  sbx_object o;
  CHECK_EQ_INT(sbx_store_put(st, "pipe", &pp, d, big, &o), 0);
  char path[1024];
  blob_path(st, "pipe", o.id, path);
  count_ctx c = {0, 0};
  CHECK_EQ_INT(sbx_store_get(st, "pipe", o.id, count_sink, &c), 0);
  CHECK_EQ_INT(c.n, big);
  /* a failing consumer stops the get with its error */
  c = (count_ctx){0, 2u << 20};
  CHECK_EQ_INT(sbx_store_get(st, "pipe", o.id, count_sink, &c), SBX_EIO);
  /* one flipped byte in the middle, then truncation at a chunk boundary */
  long mid = 32 + 1000 * (4096 + 16) + 77;
  CHECK_EQ_INT(tu_flip_byte(path, mid), 0);
  c = (count_ctx){0, 0};
  CHECK_EQ_INT(sbx_store_get(st, "pipe", o.id, count_sink, &c), SBX_ECRYPTO);
  CHECK_EQ_INT(tu_flip_byte(path, mid), 0);
  CHECK_EQ_INT(truncate(path, 32 + 2000 * (4096 + 16)), 0);
  c = (count_ctx){0, 0};
  CHECK_EQ_INT(sbx_store_get(st, "pipe", o.id, count_sink, &c), SBX_ECRYPTO);
  CHECK_EQ_INT(sbx_store_delete(st, "pipe", o.id), 0);
  /* abort after large writes (staged and in place) leaves nothing */
  sbx_store_writer *w;
  CHECK_EQ_INT(sbx_store_writer_open(st, "pipe", &pp, &w), 0);
  CHECK_EQ_INT(sbx_store_writer_write(w, d, 3u << 20), 0);
  CHECK_EQ_INT(sbx_store_writer_write(w, d, 6u << 20), 0);
  CHECK_EQ_INT(sbx_store_writer_write(w, d, 12345), 0);
  sbx_store_writer_abort(w);
  int64_t removed = -1;
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, 0);
  /* a full disk in the middle of a large put (in place and staged) */
  for (int mode = 0; mode < 2; mode++) {
    pid_t pid = fork();
    if (pid == 0) {
      signal(SIGXFSZ, SIG_IGN);
      struct rlimit rl = {3u << 20, 3u << 20};
      setrlimit(RLIMIT_FSIZE, &rl);
      sbx_store *own = open_store();
      int rc = -999;
      if (own && mode == 0) {
        rc = sbx_store_put(own, "pipe", &pp, d, big, NULL);
      } else if (own) {
        sbx_store_writer *ww;
        rc = sbx_store_writer_open(own, "pipe", &pp, &ww);
        for (size_t off = 0; !rc && off < big; off += 65536)
          rc = sbx_store_writer_write(ww, d + off,
                                      big - off < 65536 ? big - off : 65536);
        rc = rc ? (sbx_store_writer_abort(ww), rc)
                : sbx_store_writer_commit(ww, NULL);
      }
      sbx_store_close(own);
      _exit(rc == SBX_ENOSPC ? 0 : 1);
    }
    int status;
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  int64_t cnt;
  CHECK_EQ_INT(sbx_meta_object_count(sbx_store_meta(st), "pipe", &cnt), 0);
  CHECK_EQ_INT(cnt, 0);
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, 0);
  sbx_store_close(st);
  free(d);
}

static uint8_t *fixture(const char *name, size_t *n) {
  char path[1024];
  uint8_t *p;
  snprintf(path, sizeof path, "%s/%s", SBX_STORE_FIXTURES, name);
  return tu_read_file(path, &p, n) ? NULL : p;
}

/* Inserts an object as the store wrote it before issue 10 item 9 under
 * tenant t: blob ct (a version 1 stream under dek), the data key wrapped
 * with the old context (id only), the given size and digest. */
static void put_legacy(sbx_store *st, const char *t, const char *id,
                       const sbx_key *dek, const uint8_t *ct, size_t cn,
                       int64_t size, const uint8_t sha[SBX_SHA256_LEN],
                       sbx_object *o) {
  sbx_key mk, tk;
  sbx_meta *m = sbx_store_meta(st);
  sbx_tenant_key_row tkr;
  char ctx[200];
  CHECK_EQ_INT(sbx_master_key_load(keyspec, &mk), 0);
  CHECK_EQ_INT(sbx_meta_tenant_key_get(m, t, 0, &tkr), 0);
  snprintf(ctx, sizeof ctx, "tenant-key|%s|%lld", t, (long long)tkr.version);
  CHECK_EQ_INT(sbx_key_unwrap(&mk, ctx, strlen(ctx), tkr.wrapped,
                              sizeof tkr.wrapped, &tk),
               0);
  memset(o, 0, sizeof *o);
  snprintf(o->id, sizeof o->id, "%s", id);
  snprintf(o->kind, sizeof o->kind, "model");
  snprintf(o->name, sizeof o->name, "old-%s", id);
  o->size = size;
  o->key_version = tkr.version;
  o->created_at = 1;
  memcpy(o->sha256, sha, SBX_SHA256_LEN);
  snprintf(ctx, sizeof ctx, "data-key|%s|%s", t, o->id);
  CHECK_EQ_INT(sbx_key_wrap(&tk, ctx, strlen(ctx), dek, o->wrapped_dek), 0);
  sbx_blob_writer *bw;
  CHECK_EQ_INT(sbx_blob_writer_open(sbx_store_blobs(st), t, o->id, &bw), 0);
  CHECK_EQ_INT(sbx_blob_writer_write(bw, ct, cn), 0);
  CHECK_EQ_INT(sbx_blob_writer_commit(bw), 0);
  CHECK_EQ_INT(sbx_meta_object_insert(m, t, o), 0);
  sbx_key_wipe(&mk);
  sbx_key_wipe(&tk);
}

/* A version 1 stream of pt[0..n) (chunk 2^shift) written with GnuTLS
 * directly, as the old stream.c did: AD = header | be64(i) | final. */
static uint8_t *v1_encrypt(const sbx_key *k, const uint8_t *pt, size_t n,
                           unsigned shift, size_t *out_n) {
  size_t chunk = (size_t)1 << shift;
  size_t nchunks = n ? (n + chunk - 1) / chunk : 1;
  uint8_t *out = malloc(SBX_STREAM_HEADER_LEN + n + nchunks * SBX_TAG_LEN);
  uint8_t hdr[SBX_STREAM_HEADER_LEN] = {'S', 'B', 'X',           'S',
                                        1,   1,   (uint8_t)shift};
  gnutls_aead_cipher_hd_t h;
  gnutls_datum_t kd = {(unsigned char *)k->b, SBX_KEY_LEN};
  if (!out || sbx_random(hdr + 8, 20) ||
      gnutls_aead_cipher_init(&h, GNUTLS_CIPHER_AES_256_GCM, &kd)) {
    free(out);
    return NULL;
  }
  memcpy(out, hdr, sizeof hdr);
  size_t o = sizeof hdr;
  for (size_t i = 0; i < nchunks; i++) {
    size_t len = i + 1 < nchunks ? chunk : n - i * chunk;
    uint8_t nonce[12], aad[SBX_STREAM_HEADER_LEN + 9];
    memcpy(nonce, hdr + 8, 4);
    memcpy(aad, hdr, sizeof hdr);
    for (int b = 0; b < 8; b++)
      nonce[4 + b] = aad[SBX_STREAM_HEADER_LEN + b] =
          (uint8_t)((uint64_t)i >> (56 - 8 * b));
    aad[SBX_STREAM_HEADER_LEN + 8] = (uint8_t)(i + 1 == nchunks);
    size_t olen = len + SBX_TAG_LEN;
    if (gnutls_aead_cipher_encrypt(h, nonce, 12, aad, sizeof aad, SBX_TAG_LEN,
                                   pt + i * chunk, len, out + o, &olen)) {
      free(out);
      out = NULL;
      break;
    }
    o += olen;
  }
  gnutls_aead_cipher_deinit(h);
  *out_n = o;
  return out;
}

/* Objects as the store wrote them before issue 10 item 9 (version 1
 * stream, data key bound to the id only) are still read, and, having no
 * bound digest, re-hashed: a wrong recorded digest is caught. A small one
 * from the committed fixture (tests/fixtures/store, written by
 * tools/make_stream_fixtures.py) and a 5 MiB one through the hash worker
 * and the decryptor's plaintext ring; both survive a tenant key rotation
 * next to a current object. */
TEST(legacy_object) {
  sbx_store *st = open_store();
  if (!st) {
    CHECK(0);
    return;
  }
  CHECK_EQ_INT(sbx_store_tenant_create(st, "legacy", "L"), 0);
  sbx_meta *m = sbx_store_meta(st);
  size_t pn, cn, kn, hn;
  uint8_t *pt = fixture("plain.bin", &pn);
  uint8_t *ct = fixture("stream_v1_3000.bin", &cn);
  uint8_t *khex = fixture("key.hex", &kn);
  uint8_t *shex = fixture("plain.sha256", &hn);
  size_t big = (5u << 20) + 123, bcn = 0;
  uint8_t *bd = malloc(big), *bct = NULL;
  CHECK(pt && ct && khex && shex && kn >= 64 && hn >= 64 && bd);
  if (!pt || !ct || !khex || !shex || kn < 64 || hn < 64 || !bd)
    goto out;
  sbx_key dek;
  uint8_t sha[SBX_SHA256_LEN], bsha[SBX_SHA256_LEN];
  CHECK_EQ_INT(sbx_unhex((char *)khex, 64, dek.b, SBX_KEY_LEN), 0);
  CHECK_EQ_INT(sbx_unhex((char *)shex, 64, sha, SBX_SHA256_LEN), 0);
  sbx_object o, ob;
  put_legacy(st, "legacy", "0123456789abcdef0123456789abcdef", &dek, ct, cn,
             (int64_t)pn, sha, &o);
  tu_fill(bd, big, 4242);
  CHECK_EQ_INT(sbx_sha256(bd, big, bsha), 0);
  bct = v1_encrypt(&dek, bd, big, 12, &bcn);
  CHECK(bct != NULL);
  if (!bct)
    goto out;
  put_legacy(st, "legacy", "big1", &dek, bct, bcn, (int64_t)big, bsha, &ob);
  void *back = NULL;
  size_t bn = 0;
  CHECK_EQ_INT(sbx_store_get_alloc(st, "legacy", o.id, pn, &back, &bn), 0);
  CHECK(back && bn == pn && memcmp(back, pt, pn) == 0);
  free(back);
  back = NULL;
  CHECK_EQ_INT(sbx_store_get_alloc(st, "legacy", ob.id, big, &back, &bn), 0);
  CHECK(back && bn == big && memcmp(back, bd, big) == 0);
  free(back);
  /* a consumer failing mid-get stops it with its error (worker joined) */
  count_ctx c = {0, 2u << 20};
  CHECK_EQ_INT(sbx_store_get(st, "legacy", ob.id, count_sink, &c), SBX_EIO);
  /* the legacy path still checks the recorded digest, small and large */
  sbx_object *rows[2] = {&o, &ob};
  for (int i = 0; i < 2; i++) {
    rows[i]->sha256[0] ^= 1;
    put_row(m, "legacy", rows[i]);
    CHECK_EQ_INT(
        sbx_store_get_alloc(st, "legacy", rows[i]->id, big, &back, &bn),
        SBX_ECRYPTO);
    rows[i]->sha256[0] ^= 1;
    put_row(m, "legacy", rows[i]);
  }
  /* a current object beside them; all survive a tenant key rotation */
  sbx_put_params pp = {"", "model", "new.onnx", 0};
  sbx_object o2;
  CHECK_EQ_INT(sbx_store_put(st, "legacy", &pp, pt, pn, &o2), 0);
  CHECK(memcmp(o2.sha256, o.sha256, SBX_SHA256_LEN) == 0);
  CHECK_EQ_INT(sbx_store_rotate_tenant_key(st, "legacy"), 0);
  const char *ids[3] = {o.id, o2.id, ob.id};
  for (int i = 0; i < 3; i++) {
    back = NULL;
    CHECK_EQ_INT(sbx_store_get_alloc(st, "legacy", ids[i], big, &back, &bn), 0);
    CHECK(back && bn == (i == 2 ? big : pn) &&
          memcmp(back, i == 2 ? bd : pt, bn) == 0);
    free(back);
  }
  sbx_key_wipe(&dek);
out:
  free(pt);
  free(ct);
  free(khex);
  free(shex);
  free(bd);
  free(bct);
  sbx_store_close(st);
}

int main(void) {
  if (!mkdtemp(root))
    return 2;
  chmod(root, 0755); /* the permission test's child must traverse it */
  pg = getenv("SBX_TEST_PG");
  if (pg && !*pg)
    pg = NULL;
  char keypath[256];
  snprintf(keypath, sizeof keypath, "%s/master.key", root);
  snprintf(keyspec, sizeof keyspec, "file:%s", keypath);
  snprintf(datadir, sizeof datadir, "%s/data", root);
  if (sbx_master_key_create_file(keypath, NULL))
    return 2;
  fprintf(stderr, "backend: %s\n", pg ? "postgres" : "sqlite");
  RUN(roundtrip_and_isolation);
  RUN(tamper_detected);
  RUN(rotation_and_shredding);
  RUN(gc_orphans);
  RUN(disk_full_and_permissions);
  RUN(no_plaintext_at_rest);
  RUN(pipelined_large);
  RUN(legacy_object);
  tu_rm_rf(root);
  return harness_report();
}
