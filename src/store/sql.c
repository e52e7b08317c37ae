/*
 * sql.c - sbx/sql.h: the public face of the internal driver (db.h) for
 * service modules with tables of their own. Values and rows are passed
 * through unchanged; nothing here knows a table.
 */
#include "sbx/sql.h"

#include "db.h"

#define SQL_MAX_VALS 16

/* The user's callback, called with the driver's row seen as a public one
 * (the public type is opaque: the accessors below cast it back). */
typedef struct fwd_ctx {
  sbx_sql_row_fn fn;
  void *ctx;
} fwd_ctx;

static int fwd_row(void *ctx, const sbx__row *r) {
  fwd_ctx *f = ctx;
  return f->fn(f->ctx, (const sbx_sql_row *)r);
}

static const sbx__row *R(const sbx_sql_row *r) {
  return (const sbx__row *)r;
}

int sbx_sql_exec(sbx_meta *m, const char *sql, const sbx_sql_val *v, int nv,
                 sbx_sql_row_fn fn, void *ctx, int64_t *changes) {
  sbx__val dv[SQL_MAX_VALS];
  if (!m || !sql || nv < 0 || nv > SQL_MAX_VALS || (nv && !v))
    return SBX_EINVAL;
  for (int i = 0; i < nv; i++) {
    dv[i].t = v[i].t == SBX_SQL_INT    ? SBX__T_INT
              : v[i].t == SBX_SQL_TEXT ? SBX__T_TEXT
              : v[i].t == SBX_SQL_BLOB ? SBX__T_BLOB
                                       : SBX__T_NULL;
    dv[i].i = v[i].i;
    dv[i].p = v[i].p;
    dv[i].n = v[i].n;
  }
  fwd_ctx f = {fn, ctx};
  return sbx__db_exec(sbx__meta_db(m), sql, dv, nv, fn ? fwd_row : NULL,
                      fn ? &f : NULL, changes);
}

int sbx_sql_col_null(const sbx_sql_row *r, int col) {
  return sbx__col_null(R(r), col);
}

int64_t sbx_sql_col_int(const sbx_sql_row *r, int col) {
  return sbx__col_int(R(r), col);
}

const void *sbx_sql_col_bytes(const sbx_sql_row *r, int col, size_t *n) {
  return sbx__col_bytes(R(r), col, n);
}

int sbx_sql_col_text(const sbx_sql_row *r, int col, char *out, size_t cap) {
  return sbx__col_text(R(r), col, out, cap);
}

int sbx_sql_col_fixed(const sbx_sql_row *r, int col, void *out, size_t n) {
  return sbx__col_fixed(R(r), col, out, n);
}
