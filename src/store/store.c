/*
 * store.c - envelope encryption + two-phase durable puts over sbx_meta and
 * sbx_blob. See include/sbx/store.h and docs/storage.md.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "db.h"
#include "hashq.h"
#include "sbx/sql.h"
#include "sbx/store.h"

#define SYS_TENANT "_sys"

/* Put pipeline (docs/storage.md): writes smaller than PUT_DIRECT_MIN are
 * copied into PUT_STAGE_SLOTS staging segments of PUT_SEG bytes, larger ones
 * are encrypted and hashed straight from the caller's buffer in PUT_SEG
 * steps; either way the encryptor runs at most PUT_LAG segments ahead of the
 * hash worker, so the worker reads data that is still in the cache. */
#define PUT_SEG ((size_t)1 << 20)
#define PUT_STAGE_SLOTS 4
#define PUT_DIRECT_MIN (4 * PUT_SEG)
#define PUT_LAG 2
/* Get pipeline: the decryptor rotates over GET_RING_BYTES / chunk size
 * plaintext buffers (2..16), so the hash worker may lag about that much. */
#define GET_RING_MIN 2
#define GET_RING_MAX 16
#define GET_RING_BYTES ((size_t)2 << 20)

struct sbx_store {
  sbx_meta *meta;
  sbx_blob_store *blobs;
  sbx_kek *master; /* software key or PKCS#11 token key */
  sbx_key pepper;
  unsigned chunk_shift;
  /* the last field key unwrapped, valid while the tenant's stored wrapped
   * field key is still these bytes (a rotation re-wraps it, a shred
   * overwrites it: either way the next use unwraps again or fails) */
  char fk_tenant[SBX_ID_MAX];
  uint8_t fk_wrapped[8 + SBX_WRAPPED_KEY_LEN];
  sbx_key fk;
};

struct sbx_store_writer {
  sbx_store *st;
  sbx_blob_writer *bw;
  sbx_stream *enc;
  sbx_sha256_ctx sha;
  sbx_hashq *hq; /* hash worker, once the object reached SBX_HASHQ_MIN_BYTES */
  int inline_only;                 /* no worker could be started: hash inline */
  uint8_t *stage[PUT_STAGE_SLOTS]; /* staging segments (allocated on use) */
  uint64_t stage_seq[PUT_STAGE_SLOTS]; /* hash sequence number per slot */
  unsigned stage_cur;
  size_t stage_fill; /* bytes in stage[stage_cur] not yet encrypted */
  sbx_object obj;
  sbx_key dek; /* wrapped into obj at commit, once size and digest are known */
  char tenant[SBX_ID_MAX];
  int replace;
  int status;
};

sbx_store_params sbx_store_default_params(void) {
  sbx_store_params p;
  memset(&p, 0, sizeof p);
  p.meta_backend = SBX_META_SQLITE;
  p.fsync = 1;
  return p;
}

static int64_t now_s(void) {
  return (int64_t)time(NULL);
}

/* contexts binding each wrapped key to its place */
static size_t ctx_tenant_key(char *b, size_t cap, const char *t, int64_t v) {
  return (size_t)snprintf(b, cap, "tenant-key|%s|%lld", t, (long long)v);
}
/* Objects written before issue 10 item 9: the data key is bound to the
 * object id only, and a get re-hashes the plaintext (legacy path). */
static size_t ctx_dek_v1(char *b, size_t cap, const char *t, const char *id) {
  return (size_t)snprintf(b, cap, "data-key|%s|%s", t, id);
}
/* Current objects: the data key is wrapped at commit, bound to the object
 * id, its size and its plaintext SHA-256, so editing any of them in the row
 * makes the key unwrap fail - a get needs no hash to prove the row. */
static size_t ctx_dek(char *b, size_t cap, const char *t, const sbx_object *o) {
  char hex[2 * SBX_SHA256_LEN + 1];
  sbx_hex(o->sha256, SBX_SHA256_LEN, hex);
  return (size_t)snprintf(b, cap, "data-key.v2|%s|%s|%lld|%s", t, o->id,
                          (long long)o->size, hex);
}
#define DEK_CTX_MAX 256
static size_t ctx_field_key(char *b, size_t cap, const char *t) {
  return (size_t)snprintf(b, cap, "field-key|%s", t);
}

/* ---- keys ---- */

static int load_pepper(sbx_store *st, int create, sbx_err *err) {
  uint8_t w[SBX_WRAPPED_KEY_LEN];
  size_t n = sizeof w;
  static const char ctx[] = "pepper|" SYS_TENANT;
  int rc = sbx_meta_secret_get(st->meta, SYS_TENANT, "pepper", w, &n);
  if (rc == SBX_ENOTFOUND && create) {
    rc = sbx_key_generate(&st->pepper);
    if (!rc)
      rc = sbx_kek_wrap(st->master, ctx, sizeof ctx - 1, &st->pepper, w);
    if (!rc)
      rc = sbx_meta_secret_put(st->meta, SYS_TENANT, "pepper", w, sizeof w,
                               now_s());
    if (rc == SBX_EEXIST) /* another process won the race */
      return load_pepper(st, 0, err);
    return rc;
  }
  if (rc)
    return rc;
  rc = sbx_kek_unwrap(st->master, ctx, sizeof ctx - 1, w, n, &st->pepper);
  if (rc == SBX_ECRYPTO) {
    uint8_t want[SBX_KEY_ID_LEN], have[SBX_KEY_ID_LEN];
    sbx_kek_id(st->master, have);
    if (!sbx_wrapped_kek_id(w, n, want) && memcmp(want, have, sizeof want))
      return sbx_err_set(err, SBX_EKEY,
                         "store: the master key does not match this data "
                         "(wrong key or rotation not finished)");
  }
  return rc;
}

/* Unwraps tenant key `version` (0 = active). SBX_EKEY if missing. */
static int tenant_key(sbx_store *st, const char *t, int64_t version, sbx_key *k,
                      int64_t *version_out) {
  sbx_tenant_key_row row;
  char ctx[160];
  int rc = sbx_meta_tenant_key_get(st->meta, t, version, &row);
  if (rc == SBX_ENOTFOUND)
    return SBX_EKEY;
  if (rc)
    return rc;
  size_t cl = ctx_tenant_key(ctx, sizeof ctx, t, row.version);
  rc = sbx_kek_unwrap(st->master, ctx, cl, row.wrapped, sizeof row.wrapped, k);
  if (!rc && version_out)
    *version_out = row.version;
  return rc;
}

static int tenant_usable(sbx_store *st, const char *t) {
  sbx_tenant ten;
  int rc = sbx_meta_tenant_get(st->meta, t, &ten);
  if (rc)
    return rc;
  if (ten.state == SBX_TENANT_SHREDDED)
    return SBX_EKEY;
  if (ten.state == SBX_TENANT_FROZEN)
    return SBX_EPERM;
  return SBX_OK;
}

static int field_key(sbx_store *st, const char *t, sbx_key *fk) {
  uint8_t buf[8 + SBX_WRAPPED_KEY_LEN];
  size_t n = sizeof buf;
  char ctx[128];
  int rc = sbx_meta_secret_get(st->meta, t, "field-key", buf, &n);
  if (rc == SBX_ENOTFOUND)
    return SBX_EKEY;
  if (rc)
    return rc;
  if (n != sizeof buf)
    return SBX_ECRYPTO;
  if (!strcmp(st->fk_tenant, t) && !memcmp(st->fk_wrapped, buf, sizeof buf)) {
    *fk = st->fk;
    return SBX_OK;
  }
  int64_t v = 0;
  for (int i = 0; i < 8; i++)
    v = v << 8 | buf[i];
  sbx_key tk;
  if ((rc = tenant_key(st, t, v, &tk, NULL)))
    return rc;
  size_t cl = ctx_field_key(ctx, sizeof ctx, t);
  rc = sbx_key_unwrap(&tk, ctx, cl, buf + 8, SBX_WRAPPED_KEY_LEN, fk);
  sbx_key_wipe(&tk);
  if (!rc && strlen(t) < sizeof st->fk_tenant) {
    snprintf(st->fk_tenant, sizeof st->fk_tenant, "%s", t);
    memcpy(st->fk_wrapped, buf, sizeof buf);
    st->fk = *fk;
  }
  return rc;
}

/* ---- the metadata cipher (sbx_meta_set_cipher): sealed columns under
 * the tenant's field key, blind indexes under a key derived from it ---- */

static int cipher_seal(void *ctx, const char *t, const char *aad,
                       const void *pt, size_t n, uint8_t *out) {
  sbx_key fk;
  int rc = field_key(ctx, t, &fk);
  if (!rc)
    rc = sbx_seal(&fk, aad, strlen(aad), pt, n, out);
  sbx_key_wipe(&fk);
  return rc;
}

static int cipher_open(void *ctx, const char *t, const char *aad,
                       const uint8_t *in, size_t n, uint8_t *out,
                       size_t *outlen) {
  sbx_key fk;
  int rc = field_key(ctx, t, &fk);
  if (rc && rc != SBX_ENOMEM && rc != SBX_EIO)
    rc = SBX_EKEY; /* no usable field key: shredded */
  if (!rc)
    rc = sbx_open(&fk, aad, strlen(aad), in, n, out, outlen);
  sbx_key_wipe(&fk);
  return rc;
}

/* HMAC(HMAC(field key, "blind-index|" purpose), data): per tenant and per
 * purpose, gone with the tenant's keys. */
static int cipher_index(void *ctx, const char *t, const char *purpose,
                        const void *data, size_t n,
                        uint8_t out[SBX_SHA256_LEN]) {
  sbx_key fk;
  uint8_t bik[SBX_SHA256_LEN];
  char label[96];
  int l = snprintf(label, sizeof label, "blind-index|%s", purpose);
  if (l < 0 || (size_t)l >= sizeof label)
    return SBX_ELIMIT;
  int rc = field_key(ctx, t, &fk);
  if (!rc)
    rc = sbx_hmac_sha256(fk.b, SBX_KEY_LEN, label, (size_t)l, bik);
  if (!rc)
    rc = sbx_hmac_sha256(bik, sizeof bik, data, n, out);
  sbx_key_wipe(&fk);
  sbx_memwipe(bik, sizeof bik);
  return rc;
}

static int put_field_key(sbx_store *st, const char *t, const sbx_key *tk,
                         int64_t version, const sbx_key *fk) {
  uint8_t buf[8 + SBX_WRAPPED_KEY_LEN];
  char ctx[128];
  for (int i = 0; i < 8; i++)
    buf[i] = (uint8_t)((uint64_t)version >> (56 - 8 * i));
  size_t cl = ctx_field_key(ctx, sizeof ctx, t);
  int rc = sbx_key_wrap(tk, ctx, cl, fk, buf + 8);
  if (!rc)
    rc =
        sbx_meta_secret_put(st->meta, t, "field-key", buf, sizeof buf, now_s());
  return rc;
}

/* ---- e-mail indexes of older versions (users.email_index_v 0) ---- */

typedef struct old_user {
  char tenant[SBX_ID_MAX], id[SBX_ID_MAX];
  int has_password; /* a local account (OIDC users and an unused
                       bootstrap admin have none) */
  uint8_t sealed[SBX_NAME_MAX + SBX_SEAL_OVERHEAD];
  size_t n;
} old_user;

typedef struct old_users {
  old_user *v;
  size_t n, cap;
} old_users;

static int row_old_user(void *ctx, const sbx_sql_row *r) {
  old_users *u = ctx;
  if (u->n == u->cap) {
    size_t cap = u->cap ? 2 * u->cap : 16;
    old_user *q = realloc(u->v, cap * sizeof *q);
    if (!q)
      return SBX_ENOMEM;
    u->v = q;
    u->cap = cap;
  }
  old_user *w = &u->v[u->n];
  size_t n = 0;
  const void *p = sbx_sql_col_bytes(r, 2, &n);
  if (sbx_sql_col_text(r, 0, w->tenant, sizeof w->tenant) ||
      sbx_sql_col_text(r, 1, w->id, sizeof w->id) || n > sizeof w->sealed)
    return SBX_EFORMAT;
  memcpy(w->sealed, p, n);
  w->n = n;
  size_t pn = 0;
  sbx_sql_col_bytes(r, 3, &pn);
  w->has_password = pn > 0;
  u->n++;
  return 0;
}

/* The new index of one old row: for a local account (it has a password)
 * the tenant's blind index of the lower-case e-mail the way the server
 * computes it ("email"); else a placeholder by user id, as the server
 * writes them ("email-index-unset": the first admin before its bootstrap,
 * "email-index-oidc": OIDC users, never linked to local accounts by
 * e-mail): never looked up, only unique. Random bytes when the e-mail
 * cannot be read (shredded tenant: nothing to find any more). */
static int reindex_user(sbx_store *st, const old_user *w,
                        uint8_t idx[SBX_SHA256_LEN]) {
  char ctx[96], email[SBX_NAME_MAX];
  size_t n = 0;
  snprintf(ctx, sizeof ctx, "users.email|%s", w->id);
  int rc =
      cipher_open(st, w->tenant, ctx, w->sealed, w->n, (uint8_t *)email, &n);
  if (rc == SBX_EKEY || rc == SBX_ECRYPTO) /* shredded (or unreadable) */
    return sbx_random(idx, SBX_SHA256_LEN);
  if (rc)
    return rc;
  for (size_t i = 0; i < n; i++)
    email[i] = (char)tolower((unsigned char)email[i]);
  if (w->has_password)
    rc = cipher_index(st, w->tenant, "email", email, n, idx);
  else
    rc = cipher_index(st, w->tenant,
                      n ? "email-index-oidc" : "email-index-unset", w->id,
                      strlen(w->id), idx);
  sbx_memwipe(email, sizeof email);
  return rc;
}

static int reindex_emails(sbx_store *st) {
  old_users u = {NULL, 0, 0};
  int rc = sbx_meta_begin(st->meta);
  if (rc)
    return rc;
  rc = sbx_sql_exec(st->meta,
                    "SELECT tenant_id, id, email_sealed, password_hash FROM "
                    "users WHERE email_index_v = 0",
                    NULL, 0, row_old_user, &u, NULL);
  for (size_t i = 0; !rc && i < u.n; i++) {
    uint8_t idx[SBX_SHA256_LEN];
    rc = reindex_user(st, &u.v[i], idx);
    sbx_sql_val v[] = {SBX_SQL_T(u.v[i].tenant), SBX_SQL_T(u.v[i].id),
                       SBX_SQL_B(idx, sizeof idx)};
    if (!rc)
      rc = sbx_sql_exec(st->meta,
                        "UPDATE users SET email_index = $3, email_index_v = 1 "
                        "WHERE tenant_id = $1 AND id = $2 AND "
                        "email_index_v = 0",
                        v, 3, NULL, NULL, NULL);
  }
  if (u.v) {
    sbx_memwipe(u.v, u.cap * sizeof *u.v);
    free(u.v);
  }
  if (rc) {
    sbx_meta_rollback(st->meta);
    return rc;
  }
  return sbx_meta_commit(st->meta);
}

/* ---- open / close ---- */

int sbx_store_open(const sbx_store_params *p, sbx_store **out) {
  if (!out)
    return SBX_EINVAL;
  *out = NULL;
  if (!p || !p->data_dir || (!p->master_key_spec && !p->master_key))
    return SBX_EINVAL;
  sbx_store *st = calloc(1, sizeof *st);
  if (!st)
    return SBX_ENOMEM;
  st->chunk_shift = p->chunk_shift ? p->chunk_shift : SBX_STREAM_DEFAULT_SHIFT;
  int rc = SBX_OK;
  if (p->master_key)
    rc = sbx_kek_from_key(p->master_key, &st->master);
  else
    rc = sbx_kek_open(p->master_key_spec, &st->master);
  if (rc)
    sbx_err_set(p->err, rc, "store: cannot load the master key: %s",
                sbx_strerror(rc));
  char path[PATH_MAX];
  if (!rc && mkdir(p->data_dir, 0700) && errno != EEXIST) {
    int e = errno;
    rc = e == ENOSPC                                 ? SBX_ENOSPC
         : (e == EACCES || e == EPERM || e == EROFS) ? SBX_EPERM
                                                     : SBX_EIO;
    sbx_err_set(p->err, rc, "store: mkdir %s: %s", p->data_dir, strerror(e));
  }
  if (!rc) {
    sbx_blob_params bp = sbx_blob_default_params();
    if (p->blob) {
      bp = *p->blob;
    } else {
      snprintf(path, sizeof path, "%s/blobs", p->data_dir);
      bp.root = path;
      bp.fsync = p->fsync;
    }
    bp.err = p->err;
    rc = sbx_blob_open(&bp, &st->blobs);
  }
  if (!rc) {
    sbx_meta_params mp = sbx_meta_default_params();
    mp.backend = p->meta_backend ? p->meta_backend : SBX_META_SQLITE;
    snprintf(path, sizeof path, "%s/meta.db", p->data_dir);
    mp.sqlite_path = path;
    mp.pg_conninfo = p->pg_conninfo;
    rc = sbx_meta_open(&mp, &st->meta);
  }
  if (!rc)
    rc = load_pepper(st, 1, p->err);
  if (!rc) {
    sbx_meta_cipher c = {st, cipher_seal, cipher_open, cipher_index};
    sbx_meta_set_cipher(st->meta, &c);
    rc = sbx_meta_seal_legacy(st->meta, NULL);
    if (!rc)
      rc = reindex_emails(st);
    if (rc)
      sbx_err_set(p->err, rc, "store: sealing plaintext metadata: %s",
                  sbx_strerror(rc));
  }
  if (rc) {
    sbx_store_close(st);
    return rc;
  }
  *out = st;
  return SBX_OK;
}

void sbx_store_close(sbx_store *st) {
  if (!st)
    return;
  sbx_meta_close(st->meta);
  sbx_blob_close(st->blobs);
  sbx_kek_free(st->master);
  sbx_key_wipe(&st->pepper);
  sbx_key_wipe(&st->fk);
  free(st);
}

sbx_meta *sbx_store_meta(sbx_store *st) {
  return st->meta;
}
sbx_blob_store *sbx_store_blobs(sbx_store *st) {
  return st->blobs;
}
const sbx_err *sbx_store_err(const sbx_store *st) {
  return sbx_blob_err(st ? st->blobs : NULL);
}

/* ---- tenants ---- */

int sbx_store_tenant_create(sbx_store *st, const char *tenant_id,
                            const char *name) {
  if (!st || !sbx_id_valid(tenant_id))
    return SBX_EINVAL;
  sbx_key tk, fk;
  char ctx[160];
  sbx_tenant_key_row row;
  memset(&row, 0, sizeof row);
  row.version = 1;
  row.active = 1;
  row.created_at = now_s();
  int rc = sbx_key_generate(&tk);
  if (!rc)
    rc = sbx_key_generate(&fk);
  size_t cl = ctx_tenant_key(ctx, sizeof ctx, tenant_id, 1);
  if (!rc)
    rc = sbx_kek_wrap(st->master, ctx, cl, &tk, row.wrapped);
  if (!rc)
    rc = sbx_meta_begin(st->meta);
  if (rc)
    goto out;
  rc = sbx_meta_tenant_create(st->meta, tenant_id, name ? name : tenant_id,
                              row.created_at);
  if (!rc)
    rc = sbx_meta_tenant_key_insert(st->meta, tenant_id, &row);
  if (!rc)
    rc = put_field_key(st, tenant_id, &tk, 1, &fk);
  if (!rc) /* the name sealed under the key just made */
    rc = sbx__meta_tenant_seal_name(st->meta, tenant_id,
                                    name ? name : tenant_id);
  if (rc)
    sbx_meta_rollback(st->meta);
  else
    rc = sbx_meta_commit(st->meta);
out:
  sbx_key_wipe(&tk);
  sbx_key_wipe(&fk);
  return rc;
}

/* ---- put ---- */

int sbx_store_writer_open(sbx_store *st, const char *tenant_id,
                          const sbx_put_params *p, sbx_store_writer **out) {
  if (!out)
    return SBX_EINVAL;
  *out = NULL;
  if (!st || !p || !sbx_id_valid(tenant_id) || !p->kind || !p->name ||
      !*p->name || strlen(p->name) >= SBX_NAME_MAX ||
      strlen(p->kind) >= SBX_KIND_MAX || !sbx_id_valid(p->kind) ||
      (p->project_id && *p->project_id && !sbx_id_valid(p->project_id)))
    return SBX_EINVAL;
  int rc = tenant_usable(st, tenant_id);
  if (rc)
    return rc;
  sbx_store_writer *w = calloc(1, sizeof *w);
  if (!w)
    return SBX_ENOMEM;
  w->st = st;
  w->replace = p->replace;
  snprintf(w->tenant, sizeof w->tenant, "%s", tenant_id);
  sbx_object *o = &w->obj;
  snprintf(o->project_id, sizeof o->project_id, "%s",
           p->project_id ? p->project_id : "");
  snprintf(o->kind, sizeof o->kind, "%s", p->kind);
  snprintf(o->name, sizeof o->name, "%s", p->name);
  uint8_t rnd[16];
  sbx_key tk;
  rc = sbx_random(rnd, sizeof rnd);
  if (!rc) {
    sbx_hex(rnd, sizeof rnd, o->id);
    /* fail early if the tenant key is unusable; the version is recorded */
    rc = tenant_key(st, tenant_id, 0, &tk, &o->key_version);
    sbx_key_wipe(&tk);
  }
  if (!rc)
    rc = sbx_key_generate(&w->dek);
  if (!rc)
    rc = sbx_sha256_init(&w->sha);
  if (!rc)
    rc = sbx_blob_writer_open(st->blobs, tenant_id, o->id, &w->bw);
  if (!rc)
    rc = sbx_stream_encrypt_new(&w->enc, &w->dek, st->chunk_shift,
                                sbx_blob_sink, w->bw);
  if (rc) {
    sbx_store_writer_abort(w);
    return rc;
  }
  *out = w;
  return SBX_OK;
}

/* Encrypts the current staging segment (more = 1: more plaintext is known
 * to follow), queues it for hashing and moves to the next slot, waiting
 * until the worker is done with what that slot held. */
static int stage_flush(sbx_store_writer *w, int more) {
  uint8_t *seg = w->stage[w->stage_cur];
  size_t n = w->stage_fill;
  int rc = more ? sbx_stream_update_more(w->enc, seg, n)
                : sbx_stream_update(w->enc, seg, n);
  if (!rc)
    rc = sbx_hashq_push(w->hq, seg, n, &w->stage_seq[w->stage_cur]);
  w->stage_fill = 0;
  w->stage_cur = (w->stage_cur + 1) % PUT_STAGE_SLOTS;
  int wrc = sbx_hashq_wait(w->hq, w->stage_seq[w->stage_cur]);
  return rc ? rc : wrc;
}

/* A large write straight from the caller's buffer: PUT_SEG steps are
 * encrypted here and hashed by the worker, at most PUT_LAG steps behind.
 * Returns only when the worker is done with the buffer, also on error. */
static int write_direct(sbx_store_writer *w, const uint8_t *p, size_t n) {
  int rc = SBX_OK;
  uint64_t seq;
  for (size_t off = 0; off < n && !rc; off += PUT_SEG) {
    size_t len = n - off < PUT_SEG ? n - off : PUT_SEG;
    rc = off + len < n ? sbx_stream_update_more(w->enc, p + off, len)
                       : sbx_stream_update(w->enc, p + off, len);
    if (!rc)
      rc = sbx_hashq_push(w->hq, p + off, len, &seq);
    if (!rc && seq > PUT_LAG)
      rc = sbx_hashq_wait(w->hq, seq - PUT_LAG);
  }
  int wrc = sbx_hashq_wait(w->hq, sbx_hashq_pushed(w->hq));
  return rc ? rc : wrc;
}

/* Pipelined write (the worker runs): stage small writes, encrypt large ones
 * in place. */
static int write_pipelined(sbx_store_writer *w, const uint8_t *p, size_t n) {
  int rc;
  while (n > 0) {
    if (w->stage_fill == PUT_SEG && (rc = stage_flush(w, 1)))
      return rc;
    if (w->stage_fill == 0 && n >= PUT_DIRECT_MIN)
      return write_direct(w, p, n);
    uint8_t **slot = &w->stage[w->stage_cur];
    if (!*slot && !(*slot = malloc(PUT_SEG)))
      return SBX_ENOMEM;
    size_t take = PUT_SEG - w->stage_fill;
    if (take > n)
      take = n;
    memcpy(*slot + w->stage_fill, p, take);
    w->stage_fill += take;
    p += take;
    n -= take;
  }
  return SBX_OK;
}

/* Hashes and encrypts in the calling thread until the object reaches
 * SBX_HASHQ_MIN_BYTES (small objects never start a thread), then hands the
 * hash to a worker thread (falling back to inline if none can start). */
int sbx_store_writer_write(sbx_store_writer *w, const void *buf, size_t n) {
  if (!w)
    return SBX_EINVAL;
  if (w->status)
    return w->status;
  if (!n)
    return SBX_OK;
  if (!buf)
    return w->status = SBX_EINVAL;
  if (!w->hq && !w->inline_only &&
      (uint64_t)w->obj.size + n >= SBX_HASHQ_MIN_BYTES &&
      sbx_hashq_start(&w->sha, &w->hq))
    w->inline_only = 1;
  int rc;
  if (w->hq) {
    rc = write_pipelined(w, buf, n);
  } else {
    rc = sbx_sha256_update(&w->sha, buf, n);
    if (!rc)
      rc = sbx_stream_update(w->enc, buf, n);
  }
  if (!rc)
    w->obj.size += (int64_t)n;
  return w->status = rc;
}

void sbx_store_writer_abort(sbx_store_writer *w) {
  if (!w)
    return;
  sbx_hashq_stop(w->hq, 0); /* joins the worker before anything is freed */
  w->hq = NULL;
  for (unsigned i = 0; i < PUT_STAGE_SLOTS; i++) {
    if (w->stage[i]) {
      sbx_memwipe(w->stage[i], PUT_SEG);
      free(w->stage[i]);
    }
  }
  sbx_stream_free(w->enc);
  sbx_blob_writer_abort(w->bw);
  sbx_sha256_free(&w->sha);
  sbx_key_wipe(&w->dek);
  sbx_memwipe(w, sizeof *w);
  free(w);
}

int sbx_store_writer_commit(sbx_store_writer *w, sbx_object *out) {
  if (!w)
    return SBX_EINVAL;
  sbx_store *st = w->st;
  sbx_object *o = &w->obj;
  sbx_object old;
  int have_old = 0;
  int rc = w->status;
  if (!rc && w->hq && w->stage_fill)
    rc = stage_flush(w, 0);
  if (!rc && w->hq) {
    rc = sbx_hashq_stop(w->hq, 1); /* the hash is complete after this */
    w->hq = NULL;
  }
  if (!rc)
    rc = sbx_stream_final(w->enc);
  if (!rc)
    rc = sbx_sha256_final(&w->sha, o->sha256);
  if (!rc) { /* the data key, bound to the id, size and digest, under the
              * tenant key active now (a rotation may have run since open) */
    sbx_key tk;
    char ctx[DEK_CTX_MAX];
    rc = tenant_key(st, w->tenant, 0, &tk, &o->key_version);
    if (!rc)
      rc = sbx_key_wrap(&tk, ctx, ctx_dek(ctx, sizeof ctx, w->tenant, o),
                        &w->dek, o->wrapped_dek);
    sbx_key_wipe(&tk);
  }
  /* phase 1: the blob is complete, durable and renamed into place (but
   * invisible: no row yet) */
  if (!rc) {
    rc = sbx_blob_writer_commit(w->bw);
    w->bw = NULL; /* freed by commit either way */
  }
  if (rc) {
    sbx_store_writer_abort(w);
    return rc;
  }
  /* phase 2: the row makes it visible (replacing the old one atomically) */
  o->created_at = now_s();
  rc = sbx_meta_begin(st->meta);
  if (!rc && w->replace) {
    int f = sbx_meta_object_find(st->meta, w->tenant, o->project_id, o->kind,
                                 o->name, &old);
    if (f == SBX_OK) {
      have_old = 1;
      rc = sbx_meta_object_delete(st->meta, w->tenant, old.id);
    } else if (f != SBX_ENOTFOUND) {
      rc = f;
    }
  }
  if (!rc)
    rc = sbx_meta_object_insert(st->meta, w->tenant, o);
  if (rc)
    sbx_meta_rollback(st->meta);
  else
    rc = sbx_meta_commit(st->meta);
  if (rc) {
    /* no row: the blob is an orphan; remove it now (GC would later) */
    sbx_blob_remove(st->blobs, w->tenant, o->id);
  } else {
    if (have_old) /* old blob is now an orphan */
      sbx_blob_remove(st->blobs, w->tenant, old.id);
    if (out)
      *out = *o;
  }
  sbx_store_writer_abort(w);
  return rc;
}

int sbx_store_put(sbx_store *st, const char *tenant_id, const sbx_put_params *p,
                  const void *data, size_t n, sbx_object *out) {
  sbx_store_writer *w;
  int rc = sbx_store_writer_open(st, tenant_id, p, &w);
  if (rc)
    return rc;
  rc = sbx_store_writer_write(w, data, n);
  if (rc) {
    sbx_store_writer_abort(w);
    return rc;
  }
  return sbx_store_writer_commit(w, out);
}

/* ---- get ---- */

/* Unwraps the data key of row o with tenant key tk: the current binding
 * (id, size, digest) first, then the legacy one (id only), and tells which
 * one matched in *legacy. *dek is wiped on error. */
static int object_dek(const sbx_key *tk, const char *t, const sbx_object *o,
                      sbx_key *dek, int *legacy) {
  char ctx[DEK_CTX_MAX];
  *legacy = 0;
  int rc = sbx_key_unwrap(tk, ctx, ctx_dek(ctx, sizeof ctx, t, o),
                          o->wrapped_dek, sizeof o->wrapped_dek, dek);
  if (rc == SBX_ECRYPTO) {
    rc = sbx_key_unwrap(tk, ctx, ctx_dek_v1(ctx, sizeof ctx, t, o->id),
                        o->wrapped_dek, sizeof o->wrapped_dek, dek);
    *legacy = !rc;
  }
  return rc;
}

typedef struct get_ctx {
  sbx_stream *dec;
  int legacy; /* an object from before item 9: re-hash the plaintext */
  sbx_sha256_ctx sha;
  sbx_hashq *hq; /* hash worker for large legacy objects, else NULL */
  int64_t size;
  sbx_sink_fn sink;
  void *ctx;
} get_ctx;

/* Plaintext of one authenticated chunk, passed on. Legacy objects only: also
 * hashed (by the worker when there is one, overlapping the consumer and the
 * next decryption).
 * Before returning it waits until the worker is done with the buffer the
 * decryptor writes next (the chunk ring - 1 chunks back). */
static int get_plain(void *ctx, const void *buf, size_t n) {
  get_ctx *g = ctx;
  g->size += (int64_t)n;
  if (!g->legacy)
    return g->sink(g->ctx, buf, n);
  if (!g->hq) {
    int rc = sbx_sha256_update(&g->sha, buf, n);
    return rc ? rc : g->sink(g->ctx, buf, n);
  }
  uint64_t seq;
  uint64_t ring = sbx_stream_out_ring(g->dec); /* known once a chunk came */
  int rc = sbx_hashq_push(g->hq, buf, n, &seq);
  if (!rc)
    rc = g->sink(g->ctx, buf, n);
  int wrc = sbx_hashq_wait(g->hq, seq + 1 > ring ? seq + 1 - ring : 0);
  return rc ? rc : wrc;
}

static int get_cipher(void *ctx, const void *buf, size_t n) {
  get_ctx *g = ctx;
  return sbx_stream_update(g->dec, buf, n);
}

static int is_tamper(int rc) {
  return rc == SBX_ECRYPTO || rc == SBX_EFORMAT || rc == SBX_EUNSUPPORTED;
}

/* Sets up the get pipeline for an object of `size` bytes encrypted with
 * chunk size 2^shift (from the row and the store's setting; the real chunk
 * size comes from the blob header, the ring only needs an estimate). */
static void get_pipeline(get_ctx *g, int64_t size, unsigned shift) {
  if (size < (int64_t)SBX_HASHQ_MIN_BYTES)
    return;
  size_t chunk = (size_t)1 << shift;
  size_t want = GET_RING_BYTES / chunk;
  unsigned ring = want < GET_RING_MIN   ? GET_RING_MIN
                  : want > GET_RING_MAX ? GET_RING_MAX
                                        : (unsigned)want;
  if (sbx_stream_set_out_ring(g->dec, ring))
    return;
  if (sbx_hashq_start(&g->sha, &g->hq)) {
    g->hq = NULL;
    sbx_stream_set_out_ring(g->dec, 1);
  }
}

int sbx_store_get(sbx_store *st, const char *tenant_id, const char *id,
                  sbx_sink_fn sink, void *ctx) {
  if (!st || !sink)
    return SBX_EINVAL;
  int rc = tenant_usable(st, tenant_id);
  if (rc)
    return rc;
  sbx_object o;
  if ((rc = sbx_meta_object_get(st->meta, tenant_id, id, &o)))
    return rc;
  sbx_key tk, dek;
  get_ctx g;
  memset(&g, 0, sizeof g);
  if ((rc = tenant_key(st, tenant_id, o.key_version, &tk, NULL)))
    return is_tamper(rc) ? SBX_ECRYPTO : rc;
  rc = object_dek(&tk, tenant_id, &o, &dek, &g.legacy);
  sbx_key_wipe(&tk);
  if (rc)
    return is_tamper(rc) ? SBX_ECRYPTO : rc;
  g.sink = sink;
  g.ctx = ctx;
  rc = g.legacy ? sbx_sha256_init(&g.sha) : SBX_OK;
  if (!rc)
    rc = sbx_stream_decrypt_new(&g.dec, &dek, get_plain, &g);
  sbx_key_wipe(&dek);
  if (!rc && g.legacy)
    get_pipeline(&g, o.size, st->chunk_shift);
  if (!rc)
    rc = sbx_blob_read(st->blobs, tenant_id, o.id, get_cipher, &g);
  if (!rc)
    rc = sbx_stream_final(g.dec);
  if (g.hq) { /* joined on every path before the plaintext is freed */
    int hrc = sbx_hashq_stop(g.hq, !rc);
    rc = rc ? rc : hrc;
    g.hq = NULL;
  }
  /* current objects: every chunk, the end of the stream and the row's size
   * and digest (through the data key's binding) are proven by now; the size
   * is compared anyway as it costs nothing */
  if (!rc && g.size != o.size)
    rc = SBX_ECRYPTO;
  if (!rc && g.legacy) {
    uint8_t d[SBX_SHA256_LEN];
    rc = sbx_sha256_final(&g.sha, d);
    if (!rc && !sbx_ct_equal(d, o.sha256, sizeof d))
      rc = SBX_ECRYPTO;
  }
  sbx_sha256_free(&g.sha);
  sbx_stream_free(g.dec);
  if (rc == SBX_ENOTFOUND) /* row without blob: must never happen */
    rc = SBX_EIO;
  return is_tamper(rc) ? SBX_ECRYPTO : rc;
}

typedef struct alloc_ctx {
  uint8_t *p;
  size_t n, cap, max;
} alloc_ctx;

static int alloc_sink(void *ctx, const void *buf, size_t n) {
  alloc_ctx *a = ctx;
  if (a->n + n > a->max)
    return SBX_ELIMIT;
  if (a->n + n > a->cap) {
    size_t cap = a->cap ? a->cap : 4096;
    while (cap < a->n + n)
      cap *= 2;
    if (cap > a->max)
      cap = a->max;
    uint8_t *q = realloc(a->p, cap);
    if (!q)
      return SBX_ENOMEM;
    a->p = q;
    a->cap = cap;
  }
  memcpy(a->p + a->n, buf, n);
  a->n += n;
  return SBX_OK;
}

int sbx_store_get_alloc(sbx_store *st, const char *tenant_id, const char *id,
                        size_t max, void **data, size_t *n) {
  if (!data || !n)
    return SBX_EINVAL;
  *data = NULL;
  *n = 0;
  alloc_ctx a = {NULL, 0, 0, max};
  sbx_object o;
  int rc = sbx_meta_object_get(st->meta, tenant_id, id, &o);
  if (!rc && (uint64_t)o.size > max)
    rc = SBX_ELIMIT;
  if (!rc && o.size > 0) {
    a.p = malloc((size_t)o.size);
    a.cap = (size_t)o.size;
    if (!a.p)
      rc = SBX_ENOMEM;
  }
  if (!rc)
    rc = sbx_store_get(st, tenant_id, id, alloc_sink, &a);
  if (rc) {
    if (a.p) {
      sbx_memwipe(a.p, a.n);
      free(a.p);
    }
    return rc;
  }
  *data = a.p ? a.p : malloc(1);
  if (!*data)
    return SBX_ENOMEM;
  *n = a.n;
  return SBX_OK;
}

int sbx_store_delete(sbx_store *st, const char *tenant_id, const char *id) {
  int rc = sbx_meta_object_delete(st->meta, tenant_id, id);
  if (rc)
    return rc;
  rc = sbx_blob_remove(st->blobs, tenant_id, id);
  return rc == SBX_ENOTFOUND ? SBX_OK : rc; /* GC catches the rest */
}

/* ---- garbage collection ---- */

typedef struct gc_ctx {
  sbx_store *st;
  int64_t cutoff, removed;
  int rc;
} gc_ctx;

static int gc_one(void *ctx, const char *t, const char *id, const char *tmp,
                  int64_t mtime) {
  gc_ctx *g = ctx;
  if (mtime > g->cutoff)
    return 0;
  if (tmp) {
    if (sbx_blob_remove_tmp(g->st->blobs, tmp) == SBX_OK)
      g->removed++;
    return 0;
  }
  sbx_object o;
  int rc = sbx_meta_object_get(g->st->meta, t, id, &o);
  if (rc == SBX_ENOTFOUND) {
    if (sbx_blob_remove(g->st->blobs, t, id) == SBX_OK)
      g->removed++;
  } else if (rc && rc != SBX_EINVAL) {
    g->rc = rc;
    return 1;
  }
  return 0;
}

int sbx_store_gc(sbx_store *st, int64_t grace_seconds, int64_t *removed) {
  gc_ctx g = {st, grace_seconds > 0 ? now_s() - grace_seconds : INT64_MAX, 0,
              0};
  int rc = sbx_blob_scan(st->blobs, gc_one, &g);
  if (!rc)
    rc = g.rc;
  if (removed)
    *removed = g.removed;
  return rc;
}

/* ---- rotation and shredding ---- */

typedef struct rewrap_ctx {
  sbx_store *st;
  const char *tenant;
  int64_t new_version;
  sbx_key new_tk;
  int64_t max_version;
  int64_t n;
  sbx_object *objs;
  size_t nobj, cap;
  int rc;
} rewrap_ctx;

static int collect_obj(void *ctx, const sbx_object *o) {
  rewrap_ctx *r = ctx;
  if (r->nobj == r->cap) {
    size_t cap = r->cap ? r->cap * 2 : 64;
    sbx_object *q = realloc(r->objs, cap * sizeof *q);
    if (!q)
      return SBX_ENOMEM;
    r->objs = q;
    r->cap = cap;
  }
  r->objs[r->nobj++] = *o;
  return 0;
}

static int max_version(void *ctx, const sbx_tenant_key_row *row) {
  rewrap_ctx *r = ctx;
  if (row->version > r->max_version)
    r->max_version = row->version;
  return 0;
}

int sbx_store_rotate_tenant_key(sbx_store *st, const char *tenant_id) {
  if (!st || !sbx_id_valid(tenant_id))
    return SBX_EINVAL;
  int rc = tenant_usable(st, tenant_id);
  if (rc)
    return rc;
  rewrap_ctx r;
  memset(&r, 0, sizeof r);
  r.st = st;
  r.tenant = tenant_id;
  char ctx[DEK_CTX_MAX];
  sbx_key fk, old_tk, dek;
  memset(&fk, 0, sizeof fk);
  if ((rc = sbx_meta_begin(st->meta)))
    return rc;
  rc = sbx_meta_tenant_key_list(st->meta, tenant_id, max_version, &r);
  if (!rc)
    rc = sbx_key_generate(&r.new_tk);
  sbx_tenant_key_row row;
  memset(&row, 0, sizeof row);
  row.version = r.max_version + 1;
  row.created_at = now_s();
  if (!rc) {
    size_t cl = ctx_tenant_key(ctx, sizeof ctx, tenant_id, row.version);
    rc = sbx_kek_wrap(st->master, ctx, cl, &r.new_tk, row.wrapped);
  }
  if (!rc)
    rc = sbx_meta_tenant_key_insert(st->meta, tenant_id, &row);
  /* field key: re-wrap under the new version */
  if (!rc)
    rc = field_key(st, tenant_id, &fk);
  if (!rc)
    rc = put_field_key(st, tenant_id, &r.new_tk, row.version, &fk);
  /* every data key */
  if (!rc)
    rc = sbx_meta_object_list(st->meta, tenant_id, NULL, collect_obj, &r);
  int64_t cached_v = -1;
  memset(&old_tk, 0, sizeof old_tk);
  for (size_t i = 0; !rc && i < r.nobj; i++) {
    sbx_object *o = &r.objs[i];
    if (o->key_version != cached_v) {
      sbx_key_wipe(&old_tk);
      rc = tenant_key(st, tenant_id, o->key_version, &old_tk, NULL);
      cached_v = rc ? -1 : o->key_version;
    }
    int legacy = 0;
    if (!rc)
      rc = object_dek(&old_tk, tenant_id, o, &dek, &legacy);
    /* re-wrapped with the binding it had (legacy objects stay legacy) */
    size_t cl = legacy ? ctx_dek_v1(ctx, sizeof ctx, tenant_id, o->id)
                       : ctx_dek(ctx, sizeof ctx, tenant_id, o);
    uint8_t w[SBX_WRAPPED_KEY_LEN];
    if (!rc)
      rc = sbx_key_wrap(&r.new_tk, ctx, cl, &dek, w);
    sbx_key_wipe(&dek);
    if (!rc)
      rc = sbx_meta_object_rewrap(st->meta, tenant_id, o->id, row.version, w);
  }
  if (!rc)
    rc = sbx_meta_tenant_key_activate(st->meta, tenant_id, row.version);
  for (int64_t v = 1; !rc && v <= r.max_version; v++) {
    int d = sbx_meta_tenant_key_delete(st->meta, tenant_id, v);
    if (d && d != SBX_ENOTFOUND)
      rc = d;
  }
  if (rc)
    sbx_meta_rollback(st->meta);
  else
    rc = sbx_meta_commit(st->meta);
  sbx_key_wipe(&old_tk);
  sbx_key_wipe(&fk);
  sbx_key_wipe(&r.new_tk);
  if (r.objs) {
    sbx_memwipe(r.objs, r.cap * sizeof *r.objs);
    free(r.objs);
  }
  return rc;
}

typedef struct ids_ctx {
  char (*ids)[SBX_ID_MAX];
  size_t n, cap;
} ids_ctx;

static int collect_tenant(void *ctx, const char *id) {
  ids_ctx *c = ctx;
  if (c->n == c->cap) {
    size_t cap = c->cap ? c->cap * 2 : 16;
    char(*q)[SBX_ID_MAX] = realloc(c->ids, cap * sizeof *q);
    if (!q)
      return SBX_ENOMEM;
    c->ids = q;
    c->cap = cap;
  }
  snprintf(c->ids[c->n++], SBX_ID_MAX, "%s", id);
  return 0;
}

typedef struct mk_ctx {
  sbx_store *st;
  const char *tenant;
  const sbx_key *new_mk;
  int rc;
} mk_ctx;

static int rewrap_tkey(void *ctx, const sbx_tenant_key_row *row) {
  mk_ctx *c = ctx;
  char kctx[160];
  sbx_key k;
  uint8_t w[SBX_WRAPPED_KEY_LEN];
  size_t cl = ctx_tenant_key(kctx, sizeof kctx, c->tenant, row->version);
  int rc = sbx_kek_unwrap(c->st->master, kctx, cl, row->wrapped,
                          sizeof row->wrapped, &k);
  if (!rc)
    rc = sbx_key_wrap(c->new_mk, kctx, cl, &k, w);
  sbx_key_wipe(&k);
  if (!rc) /* updating rows of the table being listed: done after, below */
    memcpy((uint8_t *)row->wrapped, w, sizeof w);
  return rc;
}

typedef struct tk_list {
  sbx_tenant_key_row rows[64];
  int n;
  mk_ctx *mk;
} tk_list;

static int collect_tkey(void *ctx, const sbx_tenant_key_row *row) {
  tk_list *l = ctx;
  if (l->n == 64)
    return SBX_ELIMIT;
  l->rows[l->n] = *row;
  int rc = rewrap_tkey(l->mk, &l->rows[l->n]);
  l->n++;
  return rc;
}

int sbx_store_rotate_master_key(sbx_store *st, const sbx_key *new_master) {
  if (!st || !new_master)
    return SBX_EINVAL;
  ids_ctx ids = {NULL, 0, 0};
  int rc = sbx_meta_begin(st->meta);
  if (rc)
    return rc;
  rc = sbx_meta_tenant_list(st->meta, collect_tenant, &ids);
  for (size_t i = 0; !rc && i < ids.n; i++) {
    mk_ctx c = {st, ids.ids[i], new_master, 0};
    tk_list *l = calloc(1, sizeof *l);
    if (!l) {
      rc = SBX_ENOMEM;
      break;
    }
    l->mk = &c;
    rc = sbx_meta_tenant_key_list(st->meta, ids.ids[i], collect_tkey, l);
    for (int j = 0; !rc && j < l->n; j++)
      rc = sbx_meta_tenant_key_rewrap(st->meta, ids.ids[i], l->rows[j].version,
                                      l->rows[j].wrapped);
    sbx_memwipe(l, sizeof *l);
    free(l);
  }
  uint8_t w[SBX_WRAPPED_KEY_LEN];
  static const char pctx[] = "pepper|" SYS_TENANT;
  if (!rc)
    rc = sbx_key_wrap(new_master, pctx, sizeof pctx - 1, &st->pepper, w);
  if (!rc)
    rc = sbx_meta_secret_put(st->meta, SYS_TENANT, "pepper", w, sizeof w,
                             now_s());
  if (rc)
    sbx_meta_rollback(st->meta);
  else
    rc = sbx_meta_commit(st->meta);
  free(ids.ids);
  sbx_kek *nk = NULL;
  if (!rc && !sbx_kek_from_key(new_master, &nk)) {
    sbx_kek_free(st->master);
    st->master = nk;
  }
  return rc;
}

int sbx_store_shred_tenant(sbx_store *st, const char *tenant_id) {
  if (!st || !sbx_id_valid(tenant_id))
    return SBX_EINVAL;
  int rc = sbx_meta_begin(st->meta);
  if (rc)
    return rc;
  memset(st->fk_tenant, 0, sizeof st->fk_tenant);
  sbx_key_wipe(&st->fk);
  rc = sbx_meta_tenant_key_delete(st->meta, tenant_id, 0);
  if (rc == SBX_ENOTFOUND)
    rc = SBX_OK; /* already shredded */
  if (!rc) {
    uint8_t zero[1] = {0};
    /* overwrite, then the field key is useless anyway (its KEK is gone) */
    rc =
        sbx_meta_secret_put(st->meta, tenant_id, "field-key", zero, 1, now_s());
  }
  if (!rc)
    rc = sbx_meta_tenant_set_state(st->meta, tenant_id, SBX_TENANT_SHREDDED);
  if (rc)
    sbx_meta_rollback(st->meta);
  else
    rc = sbx_meta_commit(st->meta);
  if (!rc)
    rc = sbx_meta_checkpoint(st->meta);
  return rc;
}

/* ---- fields and keyed hashes ---- */

int sbx_store_field_seal(sbx_store *st, const char *tenant_id, const char *ctx,
                         const void *pt, size_t n, uint8_t *out) {
  if (!st || !ctx)
    return SBX_EINVAL;
  int rc = tenant_usable(st, tenant_id);
  sbx_key fk;
  if (!rc)
    rc = field_key(st, tenant_id, &fk);
  if (rc)
    return rc;
  rc = sbx_seal(&fk, ctx, strlen(ctx), pt, n, out);
  sbx_key_wipe(&fk);
  return rc;
}

int sbx_store_field_open(sbx_store *st, const char *tenant_id, const char *ctx,
                         const uint8_t *in, size_t inlen, uint8_t *out,
                         size_t *outlen) {
  if (!st || !ctx)
    return SBX_EINVAL;
  int rc = tenant_usable(st, tenant_id);
  sbx_key fk;
  if (!rc)
    rc = field_key(st, tenant_id, &fk);
  if (rc)
    return rc;
  rc = sbx_open(&fk, ctx, strlen(ctx), in, inlen, out, outlen);
  sbx_key_wipe(&fk);
  return rc;
}

int sbx_store_blind_index(sbx_store *st, const char *tenant_id,
                          const char *purpose, const void *data, size_t n,
                          uint8_t out[SBX_SHA256_LEN]) {
  if (!st || !purpose || (n && !data) || !sbx_id_valid(tenant_id))
    return SBX_EINVAL;
  int rc = cipher_index(st, tenant_id, purpose, data, n, out);
  if (rc && rc != SBX_ENOMEM && rc != SBX_EIO && rc != SBX_ELIMIT)
    rc = SBX_EKEY;
  return rc;
}

int sbx_store_keyed_hash(sbx_store *st, const char *purpose, const void *data,
                         size_t n, uint8_t out[SBX_SHA256_LEN]) {
  if (!st || !purpose || (n && !data))
    return SBX_EINVAL;
  size_t pl = strlen(purpose);
  if (pl > 64 || n > (1u << 20))
    return SBX_ELIMIT;
  uint8_t *msg = malloc(pl + 1 + n);
  if (!msg)
    return SBX_ENOMEM;
  memcpy(msg, purpose, pl);
  msg[pl] = 0;
  if (n)
    memcpy(msg + pl + 1, data, n);
  int rc = sbx_hmac_sha256(st->pepper.b, SBX_KEY_LEN, msg, pl + 1 + n, out);
  sbx_memwipe(msg, pl + 1 + n);
  free(msg);
  return rc;
}
