/*
 * dbx.c - the server's queries over the metadata store: the srv_* tables
 * (created by the store's versioned migrations, src/store/meta.c) and the
 * paged list queries, through the narrow interface of sbx/sql.h. Same
 * rules as the store: parameterised SQL only, the tenant id in every
 * statement. The database layer of the server: it calls nothing above it
 * (callers drop cached roles themselves, authcache.h).
 */
#include "dbx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sbx/sql.h"

static int row_count(void *ctx, const sbx_sql_row *r) {
  *(int64_t *)ctx = sbx_sql_col_int(r, 0);
  return 0;
}

static int fill_text(void *ctx, const sbx_sql_row *r) {
  return sbx_sql_col_text(r, 0, ctx, SBX_KIND_MAX);
}

/* Upserts a tenant role (the caller drops cached roles). */
int sbx__dbx_tenant_role_set(sbx_meta *m, const char *t, const char *user,
                             const char *role) {
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(user), SBX_SQL_T(role)};
  int rc = sbx_sql_exec(m,
                        "INSERT INTO srv_tenant_roles (tenant_id, user_id, "
                        "role) VALUES ($1, $2, $3) ON CONFLICT (tenant_id, "
                        "user_id) DO UPDATE SET role = excluded.role",
                        v, 3, NULL, NULL, NULL);
  return rc;
}

int sbx__dbx_apikey_issuer_set(sbx_meta *m, const char *t, const char *id,
                               const char *issuer) {
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(id), SBX_SQL_T(issuer)};
  return sbx_sql_exec(m,
                      "INSERT INTO srv_api_key_issuers (tenant_id, key_id, "
                      "issued_by) VALUES ($1, $2, $3)",
                      v, 3, NULL, NULL, NULL);
}

static int fill_id(void *ctx, const sbx_sql_row *r);

int sbx__dbx_apikey_issuer_get(sbx_meta *m, const char *t, const char *id,
                               char issuer[SBX_ID_MAX]) {
  issuer[0] = 0;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(id)};
  return sbx_sql_exec(m,
                      "SELECT issued_by FROM srv_api_key_issuers WHERE "
                      "tenant_id = $1 AND key_id = $2",
                      v, 2, fill_id, issuer, NULL);
}

int sbx__dbx_tenant_role_get(sbx_meta *m, const char *t, const char *user,
                             char role[SBX_KIND_MAX]) {
  role[0] = 0;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(user)};
  return sbx_sql_exec(m,
                      "SELECT role FROM srv_tenant_roles WHERE tenant_id = $1 "
                      "AND user_id = $2",
                      v, 2, fill_text, role, NULL);
}

int sbx__dbx_project_exists(sbx_meta *m, const char *t, const char *pid) {
  int64_t n = 0;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(pid)};
  int rc = sbx_sql_exec(m,
                        "SELECT COUNT(*) FROM projects WHERE tenant_id = $1 "
                        "AND id = $2",
                        v, 2, row_count, &n, NULL);
  return rc ? rc : (n ? SBX_OK : SBX_ENOTFOUND);
}

/* ---- paged lists ---- */

typedef struct list_spec {
  const char *what;
  const char *sql;  /* $1 tenant, $2 cursor, $3 limit, $4 scope */
  const char *cols; /* one letter per column: t text, i int, h hex blob,
                       s sealable text: the clear column, followed by its
                       sealed twin '-' whose name is the associated-data
                       label (sbx_meta_field_text; row id: column 0) */
  const char *names[10];
  int int_cursor;
} list_spec;

static const list_spec LISTS[] = {
    {"projects",
     "SELECT id, name, name_sealed, created_at FROM projects WHERE tenant_id = "
     "$1 AND id > $2 ORDER BY id LIMIT $3",
     "ts-i",
     {"id", "name", "projects.name", "created_at"},
     0},
    {"project",
     "SELECT id, name, name_sealed, created_at FROM projects WHERE tenant_id = "
     "$1 AND id > $2 AND id = $4 LIMIT $3",
     "ts-i",
     {"id", "name", "projects.name", "created_at"},
     0},
    {"users",
     "SELECT id, disabled, created_at FROM users WHERE tenant_id = $1 AND id "
     "> $2 ORDER BY id LIMIT $3",
     "tii",
     {"id", "disabled", "created_at"},
     0},
    {"members",
     "SELECT user_id, role FROM memberships WHERE tenant_id = $1 AND user_id "
     "> $2 AND project_id = $4 ORDER BY user_id LIMIT $3",
     "tt",
     {"user_id", "role"},
     0},
    {"api_keys",
     "SELECT id, user_id, project_id, role, created_at, expires_at, "
     "revoked_at, last_used_at FROM api_keys WHERE tenant_id = $1 AND id > $2 "
     "ORDER BY id LIMIT $3",
     "ttttiiii",
     {"id", "user_id", "project_id", "role", "created_at", "expires_at",
      "revoked_at", "last_used_at"},
     0},
    {"model",
     "SELECT id, name, name_sealed, size, sha256, created_at FROM objects "
     "WHERE tenant_id = $1 AND id > $2 AND project_id = $4 AND kind = 'model' "
     "ORDER BY id LIMIT $3",
     "ts-ihi",
     {"id", "name", "objects.name", "size", "sha256", "created_at"},
     0},
    {"dataset",
     "SELECT id, name, name_sealed, size, sha256, created_at FROM objects "
     "WHERE tenant_id = $1 AND id > $2 AND project_id = $4 AND kind = "
     "'dataset' "
     "ORDER BY id LIMIT $3",
     "ts-ihi",
     {"id", "name", "objects.name", "size", "sha256", "created_at"},
     0},
    {"audit",
     "SELECT seq, ts, actor, actor_sealed, action, target, target_sealed, "
     "hash FROM audit_events WHERE tenant_id = $1 AND seq > $2 ORDER BY seq "
     "LIMIT $3",
     "iis-ts-h",
     {"seq", "ts", "actor", "audit_events.actor", "action", "target",
      "audit_events.target", "hash"},
     1},
};

typedef struct list_ctx {
  const list_spec *spec;
  json_t *items;
  sbx_meta *m;
  const char *tenant; /* NULL: no 's' columns */
} list_ctx;

/* The clear text of 's' column c of r (sealed twin in c + 1). */
static int sealed_text(sbx_meta *m, const char *t, const list_spec *spec,
                       const sbx_sql_row *r, int c, char *out, size_t cap) {
  char row_id[SBX_ID_MAX];
  size_t n = 0, pn = 0;
  if (!t)
    return SBX_EINVAL;
  if (spec->cols[0] == 'i') {
    snprintf(row_id, sizeof row_id, "%lld", (long long)sbx_sql_col_int(r, 0));
  } else if (sbx_sql_col_text(r, 0, row_id, sizeof row_id)) {
    return SBX_EFORMAT;
  }
  const void *p = sbx_sql_col_bytes(r, c, &pn);
  const void *sealed =
      sbx_sql_col_null(r, c + 1) ? NULL : sbx_sql_col_bytes(r, c + 1, &n);
  return sbx_meta_field_text(m, t, spec->names[c + 1], row_id, sealed, n, p, pn,
                             out, cap);
}

static int row_to_json(void *ctx, const sbx_sql_row *r) {
  list_ctx *lc = ctx;
  json_t *o = json_object();
  if (!o)
    return SBX_ENOMEM;
  for (int c = 0; lc->spec->cols[c]; c++) {
    const char *name = lc->spec->names[c];
    if (!name)
      break;
    size_t n = 0;
    const void *p;
    switch (lc->spec->cols[c]) {
    case 'i':
      json_object_set_new(o, name, json_integer(sbx_sql_col_int(r, c)));
      break;
    case 't':
      p = sbx_sql_col_bytes(r, c, &n);
      json_object_set_new(o, name, json_stringn(p ? p : "", n));
      break;
    case 'h': {
      p = sbx_sql_col_bytes(r, c, &n);
      char hex[2 * 64 + 1];
      if (n > 64)
        n = 64;
      sbx_hex(p, n, hex);
      json_object_set_new(o, name, json_string(hex));
      break;
    }
    case 's': {
      char text[SBX_NAME_MAX + 1];
      int rc =
          sealed_text(lc->m, lc->tenant, lc->spec, r, c, text, sizeof text);
      if (rc) {
        json_decref(o);
        return rc;
      }
      json_object_set_new(o, name, json_string(text));
      break;
    }
    }
  }
  json_array_append_new(lc->items, o);
  return 0;
}

/* Runs the list query of spec with fn on each row. */
static int list_exec(sbx_meta *m, const list_spec *spec, const char *t,
                     const char *scope, const char *cursor, int limit,
                     sbx_sql_row_fn fn, void *ctx) {
  sbx_sql_val v[4];
  v[0] = SBX_SQL_T(t);
  if (spec->int_cursor)
    v[1] = SBX_SQL_I(cursor && *cursor ? strtoll(cursor, NULL, 10) : 0);
  else
    v[1] = SBX_SQL_T(cursor ? cursor : "");
  v[2] = SBX_SQL_I(limit);
  v[3] = SBX_SQL_T(scope ? scope : "");
  int nv = strstr(spec->sql, "$4") ? 4 : 3;
  return sbx_sql_exec(m, spec->sql, v, nv, fn, ctx, NULL);
}

static const list_spec *list_spec_of(const char *what) {
  for (size_t i = 0; i < sizeof LISTS / sizeof LISTS[0]; i++)
    if (!strcmp(LISTS[i].what, what))
      return &LISTS[i];
  return NULL;
}

int sbx__dbx_list(sbx_meta *m, const char *what, const char *t,
                  const char *scope, const char *cursor, int limit,
                  json_t *items) {
  list_ctx lc = {list_spec_of(what), items, m, t};
  if (!lc.spec)
    return SBX_EINVAL;
  return list_exec(m, lc.spec, t, scope, cursor, limit, row_to_json, &lc);
}

int sbx__dbx_query_json(sbx_meta *m, const char *sql, const sbx_sql_val *v,
                        int nv, const char *cols, const char *const *names,
                        json_t *items) {
  return sbx__dbx_query_json_t(m, NULL, sql, v, nv, cols, names, items);
}

int sbx__dbx_query_json_t(sbx_meta *m, const char *t, const char *sql,
                          const sbx_sql_val *v, int nv, const char *cols,
                          const char *const *names, json_t *items) {
  list_spec spec = {"query", sql, cols, {0}, 0};
  for (int i = 0; i < 10 && names[i]; i++)
    spec.names[i] = names[i];
  list_ctx lc = {&spec, items, m, t};
  return sbx_sql_exec(m, sql, v, nv, row_to_json, &lc, NULL);
}

typedef struct text_ctx {
  sbx_meta *m;
  const char *tenant;
  const list_spec *spec;
  sbx__buf *out;
  int limit, rows, more;
  char *cursor_out;
} text_ctx;

/* One row as a JSON object appended to the buffer: the same fields, order
 * and encodings as row_to_json + json_dumps(JSON_COMPACT). */
static int row_to_text(void *ctx, const sbx_sql_row *r) {
  text_ctx *tc = ctx;
  if (tc->rows == tc->limit) { /* the extra row: there is a next page */
    tc->more = 1;
    return 1;
  }
  sbx__buf *b = tc->out;
  sbx__buf_put(b, tc->rows ? ",{" : "{", tc->rows ? 2 : 1);
  for (int c = 0; tc->spec->cols[c] && tc->spec->names[c]; c++) {
    size_t n = 0;
    const void *p;
    if (tc->spec->cols[c] == '-') /* a sealed twin: read with its 's' */
      continue;
    if (c)
      sbx__buf_put(b, ",", 1);
    sbx__buf_put(b, "\"", 1);
    sbx__buf_str(b, tc->spec->names[c]);
    sbx__buf_put(b, "\":", 2);
    switch (tc->spec->cols[c]) {
    case 'i':
      sbx__buf_int(b, sbx_sql_col_int(r, c));
      break;
    case 't':
      p = sbx_sql_col_bytes(r, c, &n);
      sbx__buf_json_str(b, p ? p : "", p ? n : 0);
      break;
    case 'h': {
      p = sbx_sql_col_bytes(r, c, &n);
      char hex[2 * 64 + 1];
      if (!p || n > 64)
        n = p ? 64 : 0;
      sbx_hex(p ? p : "", n, hex);
      sbx__buf_json_str(b, hex, 2 * n);
      break;
    }
    case 's': {
      char text[SBX_NAME_MAX + 1];
      int rc =
          sealed_text(tc->m, tc->tenant, tc->spec, r, c, text, sizeof text);
      if (rc)
        return rc;
      sbx__buf_json_str(b, text, strlen(text));
      break;
    }
    }
  }
  sbx__buf_put(b, "}", 1);
  /* the cursor is the first column (id, user_id or seq) */
  if (tc->spec->cols[0] == 'i') {
    snprintf(tc->cursor_out, SBX_ID_MAX, "%lld",
             (long long)sbx_sql_col_int(r, 0));
  } else {
    size_t n = 0;
    const char *p = sbx_sql_col_bytes(r, 0, &n);
    if (!p || n >= SBX_ID_MAX)
      return SBX_EFORMAT;
    memcpy(tc->cursor_out, p, n);
    tc->cursor_out[n] = 0;
  }
  tc->rows++;
  return b->err ? SBX_ENOMEM : 0;
}

int sbx__dbx_list_text(sbx_meta *m, const char *what, const char *t,
                       const char *scope, const char *cursor, int limit,
                       sbx__buf *out, int *more, char cursor_out[SBX_ID_MAX]) {
  text_ctx tc = {m, t, list_spec_of(what), out, limit, 0, 0, cursor_out};
  cursor_out[0] = 0;
  *more = 0;
  if (!tc.spec || limit < 1)
    return SBX_EINVAL;
  int rc = list_exec(m, tc.spec, t, scope, cursor, limit + 1, row_to_text, &tc);
  *more = tc.more;
  return rc;
}

/* ---- lockout, bootstrap, passwords ---- */

typedef struct two_ints {
  int64_t a, b;
} two_ints;
static int fill_two(void *ctx, const sbx_sql_row *r) {
  two_ints *x = ctx;
  x->a = sbx_sql_col_int(r, 0);
  x->b = sbx_sql_col_int(r, 1);
  return 0;
}

int sbx__dbx_lockout_get(sbx_meta *m, const char *t, const char *user,
                         int64_t *failures, int64_t *locked_until) {
  two_ints x = {0, 0};
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(user)};
  int rc = sbx_sql_exec(m,
                        "SELECT failures, locked_until FROM srv_lockouts WHERE "
                        "tenant_id = $1 AND user_id = $2",
                        v, 2, fill_two, &x, NULL);
  *failures = x.a;
  *locked_until = x.b;
  return rc;
}

int sbx__dbx_lockout_set(sbx_meta *m, const char *t, const char *user,
                         int64_t failures, int64_t locked_until) {
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(user), SBX_SQL_I(failures),
                     SBX_SQL_I(locked_until)};
  return sbx_sql_exec(m,
                      "INSERT INTO srv_lockouts (tenant_id, user_id, failures, "
                      "locked_until) VALUES ($1, $2, $3, $4) ON CONFLICT "
                      "(tenant_id, user_id) DO UPDATE SET failures = "
                      "excluded.failures, locked_until = excluded.locked_until",
                      v, 4, NULL, NULL, NULL);
}

int sbx__dbx_bootstrap_put(sbx_meta *m, const char *t, const char *user,
                           const uint8_t hash[32], int64_t expires) {
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_B(hash, 32), SBX_SQL_T(user),
                     SBX_SQL_I(expires)};
  return sbx_sql_exec(m,
                      "INSERT INTO srv_bootstrap (tenant_id, token_hash, "
                      "user_id, expires_at) VALUES ($1, $2, $3, $4)",
                      v, 4, NULL, NULL, NULL);
}

static int fill_id(void *ctx, const sbx_sql_row *r) {
  return sbx_sql_col_text(r, 0, ctx, SBX_ID_MAX);
}

int sbx__dbx_bootstrap_take(sbx_meta *m, const char *t, const uint8_t hash[32],
                            int64_t now, char user[SBX_ID_MAX]) {
  user[0] = 0;
  int64_t ch = 0;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_B(hash, 32), SBX_SQL_I(now)};
  int rc = sbx_meta_begin(m);
  if (rc)
    return rc;
  rc =
      sbx_sql_exec(m,
                   "UPDATE srv_bootstrap SET used_at = $3 WHERE tenant_id = $1 "
                   "AND token_hash = $2 AND used_at = 0 AND expires_at > $3",
                   v, 3, NULL, NULL, &ch);
  if (!rc && ch != 1)
    rc = SBX_EAUTH;
  if (!rc)
    rc = sbx_sql_exec(m,
                      "SELECT user_id FROM srv_bootstrap WHERE tenant_id = $1 "
                      "AND token_hash = $2",
                      v, 2, fill_id, user, NULL);
  if (rc) {
    sbx_meta_rollback(m);
    return rc;
  }
  return sbx_meta_commit(m);
}

int sbx__dbx_password_set(sbx_meta *m, const char *t, const char *user,
                          const char *hash) {
  int64_t ch = 0;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(user), SBX_SQL_T(hash)};
  int rc = sbx_sql_exec(m,
                        "UPDATE users SET password_hash = $3 WHERE tenant_id = "
                        "$1 AND id = $2",
                        v, 3, NULL, NULL, &ch);
  return rc ? rc : (ch ? SBX_OK : SBX_ENOTFOUND);
}

/* ---- refresh tokens (store schema, functions here) ---- */

int sbx__dbx_refresh_insert(sbx_meta *m, const char *t, const char *id,
                            const char *family, const char *user,
                            const uint8_t hash[32], int64_t now,
                            int64_t expires) {
  sbx_sql_val v[] = {SBX_SQL_T(t),      SBX_SQL_T(id),       SBX_SQL_T(family),
                     SBX_SQL_T(user),   SBX_SQL_B(hash, 32), SBX_SQL_I(now),
                     SBX_SQL_I(expires)};
  return sbx_sql_exec(m,
                      "INSERT INTO refresh_tokens (tenant_id, id, family_id, "
                      "user_id, token_hash, created_at, expires_at) VALUES "
                      "($1, $2, $3, $4, $5, $6, $7)",
                      v, 7, NULL, NULL, NULL);
}

typedef struct rt_row {
  char *family, *user;
  uint8_t *hash;
  int64_t expires, used, revoked;
  int found;
} rt_row;
static int fill_rt(void *ctx, const sbx_sql_row *r) {
  rt_row *x = ctx;
  int rc = sbx_sql_col_text(r, 0, x->family, SBX_ID_MAX);
  if (!rc)
    rc = sbx_sql_col_text(r, 1, x->user, SBX_ID_MAX);
  if (!rc)
    rc = sbx_sql_col_fixed(r, 2, x->hash, 32);
  x->expires = sbx_sql_col_int(r, 3);
  x->used = sbx_sql_col_int(r, 4);
  x->revoked = sbx_sql_col_int(r, 5);
  x->found = 1;
  return rc;
}

int sbx__dbx_refresh_get(sbx_meta *m, const char *t, const char *id,
                         char family[SBX_ID_MAX], char user[SBX_ID_MAX],
                         uint8_t hash[32], int64_t *expires, int64_t *used,
                         int64_t *revoked) {
  rt_row x = {family, user, hash, 0, 0, 0, 0};
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(id)};
  int rc = sbx_sql_exec(m,
                        "SELECT family_id, user_id, token_hash, expires_at, "
                        "used_at, revoked_at FROM refresh_tokens WHERE "
                        "tenant_id = $1 AND id = $2",
                        v, 2, fill_rt, &x, NULL);
  if (!rc && !x.found)
    rc = SBX_ENOTFOUND;
  *expires = x.expires;
  *used = x.used;
  *revoked = x.revoked;
  return rc;
}

int sbx__dbx_refresh_use(sbx_meta *m, const char *t, const char *id,
                         int64_t now) {
  int64_t ch = 0;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(id), SBX_SQL_I(now)};
  int rc =
      sbx_sql_exec(m,
                   "UPDATE refresh_tokens SET used_at = $3 WHERE tenant_id "
                   "= $1 AND id = $2 AND used_at = 0 AND revoked_at = 0",
                   v, 3, NULL, NULL, &ch);
  return rc ? rc : (ch == 1 ? SBX_OK : SBX_ECONFLICT);
}

int sbx__dbx_refresh_revoke_family(sbx_meta *m, const char *t,
                                   const char *family, int64_t now) {
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(family), SBX_SQL_I(now)};
  return sbx_sql_exec(m,
                      "UPDATE refresh_tokens SET revoked_at = $3 WHERE "
                      "tenant_id = $1 AND family_id = $2 AND revoked_at = 0",
                      v, 3, NULL, NULL, NULL);
}

int sbx__dbx_apikey_set_expiry(sbx_meta *m, const char *t, const char *id,
                               int64_t expires_at) {
  int64_t ch = 0;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(id), SBX_SQL_I(expires_at)};
  int rc = sbx_sql_exec(m,
                        "UPDATE api_keys SET expires_at = $3 WHERE tenant_id = "
                        "$1 AND id = $2 AND revoked_at = 0",
                        v, 3, NULL, NULL, &ch);
  return rc ? rc : (ch ? SBX_OK : SBX_ENOTFOUND);
}

int sbx__dbx_user_set_email(sbx_meta *m, const char *t, const char *user,
                            const uint8_t index[32], const uint8_t *sealed,
                            size_t sealed_len) {
  int64_t ch = 0;
  sbx_sql_val v[] = {SBX_SQL_T(t), SBX_SQL_T(user), SBX_SQL_B(index, 32),
                     SBX_SQL_B(sealed, sealed_len)};
  int rc = sbx_sql_exec(m,
                        "UPDATE users SET email_index = $3, email_sealed = $4, "
                        "email_index_v = 1 WHERE tenant_id = $1 AND id = $2",
                        v, 4, NULL, NULL, &ch);
  return rc ? rc : (ch ? SBX_OK : SBX_ENOTFOUND);
}
