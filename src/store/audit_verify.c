/*
 * audit_verify.c - proving the audit chain (sbx/meta.h): walking a tenant's
 * chain to the first broken row, against an external anchor too; the chain
 * heads, the tenants, and the rows in a time window (export).
 */
#include "db.h"
#include "sbx/crypto.h"
#include "sbx/meta.h"
#include "sbx/privacy.h"

#include <inttypes.h>
#include <stdio.h>

typedef struct check_ctx {
  const char *tenant_id;
  int64_t expect;
  uint8_t prev[32];
  int64_t anchor_seq;
  const uint8_t *anchor_hash;
  int anchor_seen;
  sbx_audit_check *out;
  char last_purge[SBX_NAME_MAX]; /* target of the newest audit.purge row */
  sbx_meta *m;
} check_ctx;

/* 0 when clear column col of a sealed field holds the blind index of the
 * opened text (an edited index would hide the row from lookups). */
static int index_matches(sbx_meta *m, const char *t, const sbx__row *r, int col,
                         const char *text) {
  char ix[SBX__INDEX_TEXT];
  size_t n = 0;
  const void *p = sbx__col_bytes(r, col, &n);
  if (sbx__meta_index(m, t, "audit.id", text, ix))
    return SBX_EKEY;
  return n == strlen(ix) && !memcmp(p, ix, n) ? SBX_OK : SBX_ECRYPTO;
}

/* Actor and target of an audit row: clear columns ca, ct, their sealed
 * twins in ca + 1, ct + 1 (see sbx_meta_audit_append), opened; with
 * check, the clear columns of sealed fields must be their blind index. */
static int audit_fields(sbx_meta *m, const char *t, const sbx__row *r, int ca,
                        int ct, int check, sbx_audit_event *e) {
  char row[24];
  snprintf(row, sizeof row, "%lld", (long long)e->seq);
  int rc = sbx__meta_col_text(m, r, ca + 1, ca, t, "audit_events.actor", row,
                              e->actor, sizeof e->actor);
  if (!rc)
    rc = sbx__meta_col_text(m, r, ct + 1, ct, t, "audit_events.target", row,
                            e->target, sizeof e->target);
  if (!rc && check && !sbx__col_null(r, ca + 1))
    rc = index_matches(m, t, r, ca, e->actor);
  if (!rc && check && !sbx__col_null(r, ct + 1))
    rc = index_matches(m, t, r, ct, e->target);
  return rc;
}

/* Marks the chain broken at seq, for why; stops the walk. */
static int broken(check_ctx *c, int64_t seq, const char *why) {
  c->out->bad_seq = seq;
  snprintf(c->out->reason, sizeof c->out->reason, "%s", why);
  return SBX_ECRYPTO;
}

/* One row of the walk: seq continuity, the link and the row's own hash. */
static int row_check(void *ctx, const sbx__row *r) {
  check_ctx *c = ctx;
  sbx_audit_event e;
  memset(&e, 0, sizeof e);
  e.seq = sbx__col_int(r, 0);
  e.ts = sbx__col_int(r, 1);
  c->out->count++;
  int rc = audit_fields(c->m, c->tenant_id, r, 2, 5, 1, &e);
  if (rc == SBX_EKEY)
    return broken(c, e.seq,
                  "actor/target unreadable: the tenant's key is "
                  "gone (shredded)");
  if (rc && rc != SBX_ELIMIT && rc != SBX_EFORMAT)
    return broken(c, e.seq,
                  "sealed actor/target or its index edited "
                  "(does not open / match)");
  if (rc || sbx__col_text(r, 4, e.action, sizeof e.action) ||
      sbx__col_fixed(r, 7, e.prev_hash, 32) || sbx__col_fixed(r, 8, e.hash, 32))
    return broken(c, e.seq, "row unreadable (field too long or wrong size)");
  if (e.seq != c->expect)
    return broken(c, c->expect, "row missing (gap in seq)");
  if (!sbx_ct_equal(e.prev_hash, c->prev, 32))
    return broken(c, e.seq, "prev_hash does not link to the row before");
  uint8_t h[32];
  sbx__audit_hash(c->tenant_id, e.seq, e.ts, e.actor, e.action, e.target,
                  c->prev, h);
  if (!sbx_ct_equal(h, e.hash, 32))
    return broken(c, e.seq, "row content does not match its hash");
  if (!strcmp(e.action, SBX_AUDIT_PURGE_ACTION))
    memcpy(c->last_purge, e.target, sizeof c->last_purge);
  if (c->anchor_seq == e.seq) {
    if (!sbx_ct_equal(h, c->anchor_hash, 32))
      return broken(c, e.seq, "hash differs from the anchored head");
    c->anchor_seen = 1;
  }
  memcpy(c->prev, h, 32);
  c->out->head_seq = e.seq;
  memcpy(c->out->head_hash, h, 32);
  c->expect++;
  return 0;
}

/* The walk starts after the purge checkpoint (sbx/privacy.h): at seq
 * base + 1, linked to the checkpoint's hash; an anchor at or before the
 * checkpoint was purged legitimately (at the checkpoint it must match). At
 * the end the chain's newest audit.purge row must name the checkpoint. */
int sbx_meta_audit_check(sbx_meta *m, const char *tenant_id, int64_t anchor_seq,
                         const uint8_t *anchor_hash, sbx_audit_check *out) {
  if (!out)
    return SBX_EINVAL;
  memset(out, 0, sizeof *out);
  if (!m || !sbx_id_valid(tenant_id) || (anchor_seq > 0 && !anchor_hash))
    return SBX_EINVAL;
  check_ctx c = {tenant_id, 1, {0}, anchor_seq, anchor_hash, 0, out, "", m};
  int64_t base = 0;
  uint8_t base_hash[32];
  int rc = sbx_meta_audit_base(m, tenant_id, &base, base_hash);
  if (rc)
    return rc;
  memcpy(c.prev, base_hash, 32);
  c.expect = base + 1;
  if (base > 0) {
    out->head_seq = base;
    memcpy(out->head_hash, c.prev, 32);
  }
  if (anchor_seq > 0 && anchor_seq <= base) {
    if (anchor_seq == base && !sbx_ct_equal(anchor_hash, base_hash, 32))
      return broken(&c, base, "hash differs from the anchored head");
    c.anchor_seen = 1;
  }
  sbx__val v[] = {SBX_VT(tenant_id)};
  rc = sbx__db_exec(sbx__meta_db(m),
                    "SELECT seq, ts, actor, actor_sealed, action, target, "
                    "target_sealed, prev_hash, hash FROM audit_events WHERE "
                    "tenant_id = $1 ORDER BY seq",
                    v, 1, row_check, &c, NULL);
  if (rc)
    return out->bad_seq ? SBX_ECRYPTO : rc;
  if (base > 0) {
    char want[SBX_NAME_MAX], hex[65];
    sbx_hex(base_hash, 32, hex);
    snprintf(want, sizeof want, "through=%" PRId64 " hash=%s", base, hex);
    if (strcmp(c.last_purge, want))
      return broken(&c, base + 1,
                    "purge checkpoint not named by the chain's last "
                    "audit.purge row");
  }
  if (anchor_seq > 0 && !c.anchor_seen) {
    char why[96];
    snprintf(why, sizeof why, "chain ends before the anchored head (seq %lld)",
             (long long)anchor_seq);
    return broken(&c, out->head_seq + 1, why);
  }
  return 0;
}

/* Row callback of sbx_meta_audit_head. */
static int row_head(void *ctx, const sbx__row *r) {
  check_ctx *c = ctx;
  c->expect = sbx__col_int(r, 0);
  return sbx__col_fixed(r, 1, c->prev, 32) ? SBX_EFORMAT : 0;
}

int sbx_meta_audit_head(sbx_meta *m, const char *tenant_id, int64_t *seq,
                        uint8_t hash[SBX_SHA256_LEN]) {
  if (!m || !sbx_id_valid(tenant_id) || !seq || !hash)
    return SBX_EINVAL;
  check_ctx c = {tenant_id, 0, {0}, 0, NULL, 0, NULL, "", m};
  sbx__val v[] = {SBX_VT(tenant_id)};
  int rc = sbx__db_exec(sbx__meta_db(m),
                        "SELECT seq, hash FROM audit_events WHERE tenant_id = "
                        "$1 ORDER BY seq DESC LIMIT 1",
                        v, 1, row_head, &c, NULL);
  *seq = rc ? 0 : c.expect;
  memcpy(hash, rc ? (const uint8_t[32]){0} : c.prev, 32);
  return rc;
}

typedef struct tenants_ctx {
  int (*fn)(void *ctx, const char *tenant_id);
  void *ctx;
} tenants_ctx;

/* Row callback of sbx_meta_audit_tenants. */
static int row_tenant(void *ctx, const sbx__row *r) {
  tenants_ctx *t = ctx;
  char id[SBX_ID_MAX];
  if (sbx__col_text(r, 0, id, sizeof id))
    return SBX_EFORMAT;
  return t->fn(t->ctx, id);
}

int sbx_meta_audit_tenants(sbx_meta *m,
                           int (*fn)(void *ctx, const char *tenant_id),
                           void *ctx) {
  if (!m || !fn)
    return SBX_EINVAL;
  tenants_ctx t = {fn, ctx};
  return sbx__db_exec(sbx__meta_db(m),
                      "SELECT id FROM tenants UNION SELECT tenant_id FROM "
                      "audit_events ORDER BY 1",
                      NULL, 0, row_tenant, &t, NULL);
}

typedef struct list_ctx {
  int (*fn)(void *ctx, const char *tenant_id, const sbx_audit_event *e);
  void *ctx;
  sbx_meta *m;
} list_ctx;

/* Row callback of sbx_meta_audit_list. */
static int row_list(void *ctx, const sbx__row *r) {
  list_ctx *l = ctx;
  char tenant[SBX_ID_MAX];
  sbx_audit_event e;
  memset(&e, 0, sizeof e);
  if (sbx__col_text(r, 0, tenant, sizeof tenant))
    return SBX_EFORMAT;
  e.seq = sbx__col_int(r, 1);
  e.ts = sbx__col_int(r, 2);
  int rc = audit_fields(l->m, tenant, r, 3, 6, 0, &e);
  if (rc == SBX_EKEY) { /* a shredded tenant's rows: ids and times only */
    e.actor[0] = e.target[0] = 0;
    rc = SBX_OK;
  }
  if (rc)
    return rc;
  if (sbx__col_text(r, 5, e.action, sizeof e.action) ||
      sbx__col_fixed(r, 8, e.prev_hash, 32) || sbx__col_fixed(r, 9, e.hash, 32))
    return SBX_EFORMAT;
  return l->fn(l->ctx, tenant, &e);
}

int sbx_meta_audit_list(sbx_meta *m, const char *tenant_id, int64_t since,
                        int64_t until,
                        int (*fn)(void *ctx, const char *tenant_id,
                                  const sbx_audit_event *e),
                        void *ctx) {
  if (!m || !fn || (tenant_id && !sbx_id_valid(tenant_id)))
    return SBX_EINVAL;
  list_ctx l = {fn, ctx, m};
  sbx__val v[] = {SBX_VI(since), SBX_VI(until > 0 ? until : INT64_MAX),
                  SBX_VT(tenant_id ? tenant_id : "")};
  return sbx__db_exec(sbx__meta_db(m),
                      "SELECT tenant_id, seq, ts, actor, actor_sealed, "
                      "action, target, target_sealed, prev_hash, hash FROM "
                      "audit_events WHERE ts >= $1 AND "
                      "ts < $2 AND ($3 = '' OR tenant_id = $3) ORDER BY "
                      "tenant_id, seq",
                      v, 3, row_list, &l, NULL);
}
