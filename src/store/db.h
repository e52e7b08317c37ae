/*
 * db.h - internal SQL driver layer under sbx_meta: one tiny interface over
 * SQLite and libpq so every query is written once. SQL uses $1..$N
 * placeholders (rewritten to ?N for SQLite); values are always bound as
 * parameters, never spliced into the SQL text.
 */
#ifndef SBX_STORE_DB_H
#define SBX_STORE_DB_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sbx/status.h"

enum { SBX__T_NULL, SBX__T_INT, SBX__T_TEXT, SBX__T_BLOB };

typedef struct sbx__val {
  int t;
  int64_t i;
  const void *p;
  size_t n;
} sbx__val;

#define SBX_VI(x) ((sbx__val){SBX__T_INT, (int64_t)(x), NULL, 0})
#define SBX_VT(s) ((sbx__val){SBX__T_TEXT, 0, (s), strlen(s)})
#define SBX_VB(ptr, len) ((sbx__val){SBX__T_BLOB, 0, (ptr), (len)})
#define SBX_VNULL ((sbx__val){SBX__T_NULL, 0, NULL, 0})

typedef struct sbx__row {
  int backend; /* 1 sqlite, 2 postgres */
  void *h;     /* sqlite3_stmt* or PGresult* */
  int row;
} sbx__row;

/* Row callback: return 0 to continue, 1 to stop early, <0 to fail. */
typedef int (*sbx__row_fn)(void *ctx, const sbx__row *r);

int sbx__col_null(const sbx__row *r, int col);
int64_t sbx__col_int(const sbx__row *r, int col);
/* Pointer valid until the callback returns. Text columns too. */
const void *sbx__col_bytes(const sbx__row *r, int col, size_t *n);
/* The number of columns of the row's result. */
int sbx__row_ncols(const sbx__row *r);
/* Copies a text column NUL-terminated; SBX_ELIMIT when it does not fit. */
int sbx__col_text(const sbx__row *r, int col, char *out, size_t cap);
/* Copies a blob column of exactly n bytes; SBX_EFORMAT otherwise. */
int sbx__col_fixed(const sbx__row *r, int col, void *out, size_t n);

typedef struct sbx__db sbx__db;

/* Opens a SQLite file (created 0600 if missing) in WAL mode with
 * synchronous=FULL, foreign_keys and secure_delete on. On error *out is
 * NULL and the driver's message, if any, is copied to err (NULL: none;
 * truncated to err_cap). Nothing is printed. */
int sbx__db_open_sqlite(const char *path, int busy_timeout_ms, sbx__db **out,
                        char *err, size_t err_cap);
/* Connects with a libpq conninfo string; errors as sbx__db_open_sqlite. */
int sbx__db_open_pg(const char *conninfo, sbx__db **out, char *err,
                    size_t err_cap);
void sbx__db_close(sbx__db *db);
int sbx__db_backend(const sbx__db *db);
const char *sbx__db_errmsg(const sbx__db *db);

/* Runs one parameterised statement; fn (may be NULL) sees each row;
 * *changes (may be NULL) gets the number of rows changed. Statements are
 * prepared once per handle and cached (found by the pointer sql, checked
 * against a copy of its text), so a hot statement is neither parsed nor
 * planned again; sql may be any buffer. */
int sbx__db_exec(sbx__db *db, const char *sql, const sbx__val *v, int nv,
                 sbx__row_fn fn, void *ctx, int64_t *changes);
/* Runs a parameter-less multi-statement script (migrations). "BLOB" in
 * the script is rewritten to BYTEA for PostgreSQL. */
int sbx__db_script(sbx__db *db, const char *sql);

/* Transactions (nestable by depth; an inner rollback dooms the outer). */
int sbx__db_begin(sbx__db *db);
int sbx__db_commit(sbx__db *db);
int sbx__db_rollback(sbx__db *db);

/* The driver handle under a metadata store (borrowed, valid until
 * sbx_meta_close). Used by sql.c, the public query interface (sbx/sql.h)
 * of service modules with tables of their own beside the store's. */
/* The chain hash of one audit row (meta.c; audit_verify.c recomputes it):
 * SHA-256(prev || seq || ts || len-prefixed tenant, actor, action, target).
 * Writes 32 bytes to out (zeros when the hash cannot be computed). */
void sbx__audit_hash(const char *tenant_id, int64_t seq, int64_t ts,
                     const char *actor, const char *action, const char *target,
                     const uint8_t prev[32], uint8_t out[32]);

struct sbx_meta;
sbx__db *sbx__meta_db(struct sbx_meta *m);

/* Sealed columns (meta.c; see sbx_meta_set_cipher). 1 when m has a cipher:
 * writers then store sealed values and blind indexes, else plaintext. */
int sbx__meta_sealing(struct sbx_meta *m);
/* Seals pt (n bytes) for "<column>|<tenant>|<row_id>" into a malloc'd
 * buffer (*out, caller frees, *outn bytes). */
int sbx__meta_seal(struct sbx_meta *m, const char *tenant_id,
                   const char *column, const char *row_id, const void *pt,
                   size_t n, uint8_t **out, size_t *outn);
/* The blind index text of s for purpose in tenant_id: "~" + 64 hex. */
#define SBX__INDEX_TEXT 66
int sbx__meta_index(struct sbx_meta *m, const char *tenant_id,
                    const char *purpose, const char *s,
                    char out[SBX__INDEX_TEXT]);
/* Seals tenant_id's name (as stored by sbx_meta_tenant_create) under its
 * own field key, once that key exists (sbx_store_tenant_create, in its
 * transaction); a no-op without a cipher. */
int sbx__meta_tenant_seal_name(struct sbx_meta *m, const char *tenant_id,
                               const char *name);
/* sbx_meta_field_text over column col_sealed (sealed) and col_plain
 * (clear) of a row. */
int sbx__meta_col_text(struct sbx_meta *m, const sbx__row *r, int col_sealed,
                       int col_plain, const char *tenant_id, const char *column,
                       const char *row_id, char *out, size_t cap);

#endif
