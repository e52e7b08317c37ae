/*
 * sbx/sql.h - a narrow query interface over the metadata store's database
 * (SQLite or PostgreSQL, sbx/meta.h) for service modules that keep tables
 * of their own beside the store's (aisbxd's srv_* tables). The tables
 * themselves are created by the store's versioned migrations (meta.c), not
 * here. Rules: parameterised SQL only ($1..$N; values are bound, never
 * spliced into the text) and the tenant id in every statement.
 *
 * All functions return 0 (SBX_OK) or a negative sbx_status.
 */
#ifndef SBX_SQL_H
#define SBX_SQL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sbx/meta.h"
#include "sbx/status.h"

enum { SBX_SQL_NULL, SBX_SQL_INT, SBX_SQL_TEXT, SBX_SQL_BLOB };

/* One bound value. Pointers are borrowed for the duration of the call. */
typedef struct sbx_sql_val {
  int t; /* SBX_SQL_* */
  int64_t i;
  const void *p;
  size_t n;
} sbx_sql_val;

#define SBX_SQL_I(x) ((sbx_sql_val){SBX_SQL_INT, (int64_t)(x), NULL, 0})
#define SBX_SQL_T(s) ((sbx_sql_val){SBX_SQL_TEXT, 0, (s), strlen(s)})
#define SBX_SQL_B(ptr, len) ((sbx_sql_val){SBX_SQL_BLOB, 0, (ptr), (len)})

/* A result row, valid only inside the row callback. */
typedef struct sbx_sql_row sbx_sql_row;
/* Row callback: return 0 to continue, 1 to stop early, < 0 to fail (the
 * value is returned by sbx_sql_exec). */
typedef int (*sbx_sql_row_fn)(void *ctx, const sbx_sql_row *r);

/* Runs one parameterised statement (nv <= 16 values) on m; fn (may be
 * NULL) sees each row; *changes (may be NULL) receives the number of rows
 * changed. On error the statement had no effect unless inside a
 * transaction (sbx_meta_begin), which the caller then rolls back;
 * sbx_meta_last_error(m) holds the driver's message. */
int sbx_sql_exec(sbx_meta *m, const char *sql, const sbx_sql_val *v, int nv,
                 sbx_sql_row_fn fn, void *ctx, int64_t *changes);

/* Column accessors (col from 0). */
int sbx_sql_col_null(const sbx_sql_row *r, int col);
int64_t sbx_sql_col_int(const sbx_sql_row *r, int col);
/* Pointer valid until the callback returns; text columns too. */
const void *sbx_sql_col_bytes(const sbx_sql_row *r, int col, size_t *n);
/* Copies a text column NUL-terminated; SBX_ELIMIT when it does not fit. */
int sbx_sql_col_text(const sbx_sql_row *r, int col, char *out, size_t cap);
/* Copies a blob column of exactly n bytes; SBX_EFORMAT otherwise. */
int sbx_sql_col_fixed(const sbx_sql_row *r, int col, void *out, size_t n);

#endif
