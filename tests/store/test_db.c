/*
 * test_db.c - the driver layer (src/store/db.c) on PostgreSQL (SBX_TEST_PG,
 * pg_run.sh) or SQLite: statements are prepared once per connection and
 * cached, and the cache must never change what a statement does:
 *  - a cached statement run again with other parameters returns their rows;
 *  - two different texts never share a slot, and more distinct statements
 *    than the cache holds still run (unprepared);
 *  - a table changed under a cached "SELECT *" (another connection adds a
 *    column) still answers, with the new column;
 *  - statements the server dropped behind our back (DEALLOCATE ALL) are
 *    prepared again;
 *  - a failing statement inside a transaction still fails it, and the
 *    rollback leaves nothing behind; a statement first prepared inside a
 *    transaction that rolled back still works in the next one;
 *  - constraint errors keep their status (SBX_EEXIST) when prepared.
 * Expected values are the rows the test itself inserted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "harness.h"
#include "sbx/status.h"
#include "store_testutil.h"

static const char *pg;
static char path[] = "/tmp/sbx_dbtest_XXXXXX";

static sbx__db *open_db(void) {
  sbx__db *db = NULL;
  char err[256] = "";
  int rc;
  if (pg) {
    rc = sbx__db_open_pg(pg, &db, err, sizeof err);
  } else {
    char f[300];
    snprintf(f, sizeof f, "%s/t.db", path);
    rc = sbx__db_open_sqlite(f, 5000, &db, err, sizeof err);
  }
  if (rc)
    fprintf(stderr, "open: %d %s\n", rc, err);
  CHECK_EQ_INT(rc, 0);
  return db;
}

typedef struct rows {
  int n;
  int64_t sum;
  int ncols;
} rows;

/* Counts rows, sums column 0, notes the column count. */
static int row_fn(void *ctx, const sbx__row *r) {
  rows *x = ctx;
  x->n++;
  x->sum += sbx__col_int(r, 0);
  x->ncols = sbx__row_ncols(r);
  return 0;
}

static const char *const SEL = "SELECT v FROM t WHERE k >= $1";
static const char *const STAR = "SELECT * FROM t WHERE k = $1";
static const char *const INS = "INSERT INTO t (k, v) VALUES ($1, $2)";

static rows sel(sbx__db *db, const char *sql, int64_t k) {
  rows x = {0, 0, 0};
  sbx__val v[] = {SBX_VI(k)};
  CHECK_EQ_INT(sbx__db_exec(db, sql, v, 1, row_fn, &x, NULL), 0);
  return x;
}

TEST(cache_keeps_meaning) {
  sbx__db *db = open_db();
  sbx__db *other = open_db();
  if (!db || !other)
    return;
  CHECK_EQ_INT(sbx__db_script(db, "DROP TABLE IF EXISTS t;"
                                  "CREATE TABLE t (k BIGINT PRIMARY KEY, v "
                                  "BIGINT NOT NULL)"),
               0);
  for (int64_t k = 1; k <= 10; k++) {
    sbx__val v[] = {SBX_VI(k), SBX_VI(k * 100)};
    CHECK_EQ_INT(sbx__db_exec(db, INS, v, 2, NULL, NULL, NULL), 0);
  }
  /* the same statement, other parameters: their own rows each time */
  for (int round = 0; round < 8; round++) {
    rows a = sel(db, SEL, 1), b = sel(db, SEL, 9);
    CHECK_EQ_INT(a.n, 10);
    CHECK_EQ_INT(a.sum, 5500);
    CHECK_EQ_INT(b.n, 2);
    CHECK_EQ_INT(b.sum, 1900);
  }
  /* the same text in another buffer: equal results, no mix-up */
  char copy[64];
  snprintf(copy, sizeof copy, "%s", SEL);
  CHECK_EQ_INT(sel(db, copy, 5).sum, 4500);
  snprintf(copy, sizeof copy, "SELECT v FROM t WHERE k <= $1");
  CHECK_EQ_INT(sel(db, copy, 5).sum, 1500); /* a new text: its own rows */
  /* more distinct statements than the cache holds */
  static char many[200][64];
  int64_t total = 0;
  for (int i = 0; i < 200; i++) {
    snprintf(many[i], sizeof many[i], "SELECT v + %d FROM t WHERE k = $1", i);
    total += sel(db, many[i], 1).sum;
  }
  CHECK_EQ_INT(total, 200 * 100 + 199 * 200 / 2);
  /* a column added by another connection under a cached SELECT * */
  rows s = sel(db, STAR, 3);
  CHECK_EQ_INT(s.ncols, 2);
  CHECK_EQ_INT(sbx__db_script(other, "ALTER TABLE t ADD COLUMN w BIGINT"), 0);
  s = sel(db, STAR, 3);
  CHECK_EQ_INT(s.n, 1);
  CHECK_EQ_INT(s.ncols, 3);
  /* prepared statements dropped on the server */
  if (pg)
    CHECK_EQ_INT(sbx__db_script(db, "DEALLOCATE ALL"), 0);
  CHECK_EQ_INT(sel(db, SEL, 1).sum, 5500);
  CHECK_EQ_INT(sel(db, SEL, 1).sum, 5500);
  /* errors keep their status; a failed transaction leaves nothing */
  sbx__val dup[] = {SBX_VI(1), SBX_VI(7)};
  CHECK_EQ_INT(sbx__db_exec(db, INS, dup, 2, NULL, NULL, NULL), SBX_EEXIST);
  CHECK_EQ_INT(sbx__db_begin(db), 0);
  sbx__val nv[] = {SBX_VI(11), SBX_VI(1100)};
  CHECK_EQ_INT(sbx__db_exec(db, INS, nv, 2, NULL, NULL, NULL), 0);
  CHECK_EQ_INT(sbx__db_exec(db, INS, dup, 2, NULL, NULL, NULL), SBX_EEXIST);
  CHECK_EQ_INT(sbx__db_rollback(db), 0);
  CHECK_EQ_INT(sel(db, SEL, 11).n, 0);
  CHECK_EQ_INT(sel(db, SEL, 1).n, 10);
  /* a statement first prepared inside a transaction that rolls back is
   * still usable, inside the next transaction too */
  static const char *const FRESH = "SELECT v FROM t WHERE k = $1 OR k = 2";
  CHECK_EQ_INT(sbx__db_begin(db), 0);
  CHECK_EQ_INT(sel(db, FRESH, 1).sum, 300);
  CHECK_EQ_INT(sbx__db_rollback(db), 0);
  CHECK_EQ_INT(sbx__db_begin(db), 0);
  CHECK_EQ_INT(sel(db, FRESH, 3).sum, 500);
  CHECK_EQ_INT(sbx__db_commit(db), 0);
  CHECK_EQ_INT(sbx__db_script(db, "DROP TABLE t"), 0);
  sbx__db_close(other);
  sbx__db_close(db);
}

int main(void) {
  pg = getenv("SBX_TEST_PG");
  if (pg && !*pg)
    pg = NULL;
  if (!pg && !mkdtemp(path))
    return 2;
  fprintf(stderr, "backend: %s\n", pg ? "postgres" : "sqlite");
  RUN(cache_keeps_meaning);
  if (!pg)
    tu_rm_rf(path);
  return harness_report();
}
