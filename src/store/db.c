/*
 * db.c - SQLite and PostgreSQL (libpq) behind the sbx__db interface.
 */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "db.h"

#define STMT_CACHE 96
#define MAX_PARAMS 32

struct sbx__db {
  int backend;
  sqlite3 *lite;
  PGconn *pg;
  int depth;  /* transaction nesting */
  int doomed; /* an inner level rolled back */
  struct {
    const char *sql; /* found by pointer, checked against text */
    char *text;      /* malloc'd copy */
    sqlite3_stmt *st;
  } cache[STMT_CACHE];
  /* PostgreSQL: statements prepared once per connection (named "s<i>"),
   * found by pointer and checked against a copy of the text; parsing and
   * planning the queue's statements cost more than executing them */
  struct {
    const char *sql;
    char *text; /* malloc'd copy */
  } pgcache[STMT_CACHE];
  char err[512];
};

/* ---- columns ---- */

static uint64_t be_load(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++)
    v = v << 8 | p[i];
  return v;
}

int sbx__row_ncols(const sbx__row *r) {
  return r->backend == 1 ? sqlite3_column_count(r->h) : PQnfields(r->h);
}

int sbx__col_null(const sbx__row *r, int col) {
  if (r->backend == 1)
    return sqlite3_column_type(r->h, col) == SQLITE_NULL;
  return PQgetisnull(r->h, r->row, col);
}

int64_t sbx__col_int(const sbx__row *r, int col) {
  if (r->backend == 1)
    return sqlite3_column_int64(r->h, col);
  if (PQgetisnull(r->h, r->row, col))
    return 0;
  const uint8_t *p = (const uint8_t *)PQgetvalue(r->h, r->row, col);
  int n = PQgetlength(r->h, r->row, col);
  uint64_t u = be_load(p, (size_t)n);
  switch (n) { /* binary int2/int4/int8, sign-extended */
  case 2:
    return (int16_t)u;
  case 4:
    return (int32_t)u;
  default:
    return (int64_t)u;
  }
}

const void *sbx__col_bytes(const sbx__row *r, int col, size_t *n) {
  if (r->backend == 1) {
    const void *p = sqlite3_column_blob(r->h, col);
    *n = (size_t)sqlite3_column_bytes(r->h, col);
    return p ? p : "";
  }
  *n = (size_t)PQgetlength(r->h, r->row, col);
  return PQgetvalue(r->h, r->row, col);
}

int sbx__col_text(const sbx__row *r, int col, char *out, size_t cap) {
  size_t n;
  const void *p = sbx__col_bytes(r, col, &n);
  if (n + 1 > cap) {
    if (cap)
      out[0] = 0;
    return SBX_ELIMIT;
  }
  memcpy(out, p, n);
  out[n] = 0;
  return SBX_OK;
}

int sbx__col_fixed(const sbx__row *r, int col, void *out, size_t n) {
  size_t got;
  const void *p = sbx__col_bytes(r, col, &got);
  if (got != n) {
    memset(out, 0, n);
    return SBX_EFORMAT;
  }
  memcpy(out, p, n);
  return SBX_OK;
}

/* ---- errors ---- */

static int lite_status(sbx__db *db, int rc) {
  snprintf(db->err, sizeof db->err, "sqlite: %s", sqlite3_errmsg(db->lite));
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_DONE:
  case SQLITE_ROW:
    return SBX_OK;
  case SQLITE_CONSTRAINT:
    return SBX_EEXIST;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return SBX_EBUSY;
  case SQLITE_FULL:
    return SBX_ENOSPC;
  case SQLITE_PERM:
  case SQLITE_READONLY:
  case SQLITE_CANTOPEN:
  case SQLITE_AUTH:
    return SBX_EPERM;
  case SQLITE_NOMEM:
    return SBX_ENOMEM;
  case SQLITE_IOERR:
    return SBX_EIO;
  case SQLITE_TOOBIG:
    return SBX_ELIMIT;
  default:
    return SBX_EBACKEND;
  }
}

static int pg_status(sbx__db *db, PGresult *res) {
  const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
  snprintf(db->err, sizeof db->err, "postgres: %s",
           res ? PQresultErrorMessage(res) : PQerrorMessage(db->pg));
  if (!st)
    return PQstatus(db->pg) == CONNECTION_OK ? SBX_EBACKEND : SBX_EBACKEND;
  if (!strcmp(st, "23505"))
    return SBX_EEXIST;
  if (!strncmp(st, "23", 2))
    return SBX_ECONFLICT;
  if (!strcmp(st, "40001") || !strcmp(st, "40P01"))
    return SBX_ECONFLICT;
  if (!strcmp(st, "53100"))
    return SBX_ENOSPC;
  if (!strcmp(st, "53200"))
    return SBX_ENOMEM;
  if (!strcmp(st, "42501"))
    return SBX_EPERM;
  if (!strncmp(st, "58", 2))
    return SBX_EIO;
  return SBX_EBACKEND;
}

/* ---- open / close ---- */

/* The handle's message to the caller's buffer, then the handle closed. */
static void fail_close(sbx__db *db, char *err, size_t cap) {
  if (err && cap && db->err[0])
    snprintf(err, cap, "%s", db->err);
  sbx__db_close(db);
}

int sbx__db_open_sqlite(const char *path, int busy_ms, sbx__db **out, char *err,
                        size_t err_cap) {
  *out = NULL;
  if (!path)
    return SBX_EINVAL;
  /* create the file ourselves so it is 0600 (SQLite gives the -wal and
   * -shm files the same mode). Only when it is missing: close() on any
   * descriptor of the file drops every POSIX lock this process holds on it,
   * including those of connections already open (a server's handle pool);
   * another process closing its connection would then think it is the
   * last one, checkpoint and delete the WAL under our feet. */
  struct stat sb;
  int fd = stat(path, &sb) == 0
               ? INT_MAX
               : open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return errno == EACCES || errno == EPERM || errno == EROFS ? SBX_EPERM
           : errno == ENOSPC                                   ? SBX_ENOSPC
           : errno == ENOENT                                   ? SBX_ENOTFOUND
                                                               : SBX_EIO;
  if (fd != INT_MAX)
    close(fd);
  sbx__db *db = calloc(1, sizeof *db);
  if (!db)
    return SBX_ENOMEM;
  db->backend = 1;
  int rc = sqlite3_open_v2(path, &db->lite,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL);
  if (rc != SQLITE_OK) {
    rc = db->lite ? lite_status(db, rc) : SBX_ENOMEM;
    fail_close(db, err, err_cap);
    return rc;
  }
  sqlite3_busy_timeout(db->lite, busy_ms > 0 ? busy_ms : 5000);
  sqlite3_extended_result_codes(db->lite, 1);
  const char *pragmas = "PRAGMA journal_mode=WAL;"
                        "PRAGMA synchronous=FULL;"
                        "PRAGMA foreign_keys=ON;"
                        "PRAGMA secure_delete=ON;"
                        "PRAGMA trusted_schema=OFF;";
  rc = sqlite3_exec(db->lite, pragmas, NULL, NULL, NULL);
  if (rc != SQLITE_OK) {
    rc = lite_status(db, rc);
    fail_close(db, err, err_cap);
    return rc;
  }
  *out = db;
  return SBX_OK;
}

int sbx__db_open_pg(const char *conninfo, sbx__db **out, char *err,
                    size_t err_cap) {
  *out = NULL;
  if (!conninfo)
    return SBX_EINVAL;
  sbx__db *db = calloc(1, sizeof *db);
  if (!db)
    return SBX_ENOMEM;
  db->backend = 2;
  db->pg = PQconnectdb(conninfo);
  if (!db->pg || PQstatus(db->pg) != CONNECTION_OK) {
    if (db->pg)
      snprintf(db->err, sizeof db->err, "postgres: %s", PQerrorMessage(db->pg));
    fail_close(db, err, err_cap);
    return SBX_EBACKEND;
  }
  PGresult *res = PQexec(db->pg, "SET client_min_messages=warning");
  PQclear(res);
  *out = db;
  return SBX_OK;
}

void sbx__db_close(sbx__db *db) {
  if (!db)
    return;
  for (int i = 0; i < STMT_CACHE; i++)
    if (db->cache[i].st)
      sqlite3_finalize(db->cache[i].st);
  for (int i = 0; i < STMT_CACHE; i++)
    free(db->cache[i].text);
  if (db->lite)
    sqlite3_close(db->lite);
  if (db->pg)
    PQfinish(db->pg);
  for (int i = 0; i < STMT_CACHE; i++)
    free(db->pgcache[i].text);
  free(db);
}

int sbx__db_backend(const sbx__db *db) {
  return db->backend;
}

const char *sbx__db_errmsg(const sbx__db *db) {
  return db->err;
}

/* ---- exec ---- */

static int lite_prepare(sbx__db *db, const char *sql, sqlite3_stmt **st) {
  int slot = -1;
  for (int i = 0; i < STMT_CACHE; i++) {
    if (db->cache[i].sql == sql && !strcmp(db->cache[i].text, sql)) {
      *st = db->cache[i].st;
      return SBX_OK;
    }
    if (!db->cache[i].sql && slot < 0)
      slot = i;
  }
  size_t n = strlen(sql);
  char *q = malloc(n + 1);
  if (!q)
    return SBX_ENOMEM;
  for (size_t i = 0; i <= n; i++) /* $N -> ?N */
    q[i] = (sql[i] == '$' && sql[i + 1] >= '0' && sql[i + 1] <= '9') ? '?'
                                                                     : sql[i];
  int rc = sqlite3_prepare_v3(
      db->lite, q, -1, slot >= 0 ? SQLITE_PREPARE_PERSISTENT : 0, st, NULL);
  free(q);
  if (rc != SQLITE_OK)
    return lite_status(db, rc);
  if (slot >= 0 && (db->cache[slot].text = strdup(sql)) != NULL) {
    db->cache[slot].sql = sql;
    db->cache[slot].st = *st;
  } else if (slot >= 0) {
    sqlite3_finalize(*st); /* out of memory: prepared again, uncached */
    *st = NULL;
    return SBX_ENOMEM;
  }
  return SBX_OK;
}

static int lite_exec(sbx__db *db, const char *sql, const sbx__val *v, int nv,
                     sbx__row_fn fn, void *ctx, int64_t *changes) {
  sqlite3_stmt *st;
  int rc = lite_prepare(db, sql, &st);
  if (rc)
    return rc;
  int cached = 0;
  for (int i = 0; i < STMT_CACHE; i++)
    cached |= db->cache[i].st == st;
  for (int i = 0; i < nv && rc == SQLITE_OK; i++) {
    switch (v[i].t) {
    case SBX__T_INT:
      rc = sqlite3_bind_int64(st, i + 1, v[i].i);
      break;
    case SBX__T_TEXT:
      rc = sqlite3_bind_text(st, i + 1, v[i].p, (int)v[i].n, SQLITE_STATIC);
      break;
    case SBX__T_BLOB:
      rc = sqlite3_bind_blob(st, i + 1, v[i].n ? v[i].p : "", (int)v[i].n,
                             SQLITE_STATIC);
      break;
    default:
      rc = sqlite3_bind_null(st, i + 1);
    }
  }
  int status = SBX_OK;
  if (rc != SQLITE_OK)
    status = lite_status(db, rc);
  sbx__row row = {1, st, 0};
  while (!status) {
    rc = sqlite3_step(st);
    if (rc == SQLITE_DONE)
      break;
    if (rc != SQLITE_ROW) {
      status = lite_status(db, rc);
      break;
    }
    if (fn) {
      int r = fn(ctx, &row);
      if (r < 0)
        status = r;
      if (r) {
        break;
      }
    }
    row.row++;
  }
  if (!status && changes)
    *changes = sqlite3_changes64(db->lite);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (!cached)
    sqlite3_finalize(st);
  return status;
}

/* The slot of sql in the prepared-statement cache, preparing it there on
 * first use; -1: run it unprepared (cache full, or the server refused to
 * prepare it: the unprepared run then reports that error). */
static int pg_slot(sbx__db *db, const char *sql) {
  int free_slot = -1;
  for (int i = 0; i < STMT_CACHE; i++) {
    if (db->pgcache[i].sql == sql && !strcmp(db->pgcache[i].text, sql))
      return i;
    if (!db->pgcache[i].sql && free_slot < 0)
      free_slot = i;
  }
  if (free_slot < 0)
    return -1;
  char name[16];
  snprintf(name, sizeof name, "s%d", free_slot);
  char *text = strdup(sql);
  if (!text)
    return -1;
  PGresult *res = PQprepare(db->pg, name, sql, 0, NULL);
  int ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
  PQclear(res);
  if (!ok) {
    free(text);
    return -1;
  }
  db->pgcache[free_slot].sql = sql;
  db->pgcache[free_slot].text = text;
  return free_slot;
}

/* Forgets slot i here, and on the server when it still has it. */
static void pg_forget(sbx__db *db, int i, int on_server) {
  char q[32];
  snprintf(q, sizeof q, "DEALLOCATE s%d", i);
  if (on_server)
    PQclear(PQexec(db->pg, q));
  free(db->pgcache[i].text);
  db->pgcache[i].text = NULL;
  db->pgcache[i].sql = NULL;
}

/* Runs sql with its parameters, prepared when it can be. A prepared
 * statement the server no longer has (26000), or whose cached plan no
 * longer fits a changed table (0A000), is dropped and the statement run
 * unprepared once; any other error is the statement's own. The caller
 * PQclear()s the result (NULL: out of memory). */
static PGresult *pg_run(sbx__db *db, const char *sql, int nv,
                        const char *const *vals, const int *lens,
                        const int *fmts) {
  int i = pg_slot(db, sql);
  if (i >= 0) {
    char name[16];
    snprintf(name, sizeof name, "s%d", i);
    PGresult *res = PQexecPrepared(db->pg, name, nv, vals, lens, fmts, 1);
    const char *st = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!st || (strcmp(st, "26000") && strcmp(st, "0A000")) || db->depth > 0)
      return res; /* in a transaction the error stands: it is aborted */
    int gone = !strcmp(st, "26000");
    PQclear(res);
    pg_forget(db, i, !gone);
  }
  return PQexecParams(db->pg, sql, nv, NULL, vals, lens, fmts, 1);
}

static int pg_exec(sbx__db *db, const char *sql, const sbx__val *v, int nv,
                   sbx__row_fn fn, void *ctx, int64_t *changes) {
  const char *vals[MAX_PARAMS];
  int lens[MAX_PARAMS], fmts[MAX_PARAMS];
  char nums[MAX_PARAMS][24];
  if (nv > MAX_PARAMS)
    return SBX_EINVAL;
  for (int i = 0; i < nv; i++) {
    lens[i] = 0;
    fmts[i] = 0;
    switch (v[i].t) {
    case SBX__T_INT:
      snprintf(nums[i], sizeof nums[i], "%lld", (long long)v[i].i);
      vals[i] = nums[i];
      break;
    case SBX__T_TEXT:
      vals[i] = v[i].p; /* NUL-terminated by SBX_VT */
      break;
    case SBX__T_BLOB:
      vals[i] = v[i].n ? v[i].p : "";
      lens[i] = (int)v[i].n;
      fmts[i] = 1;
      break;
    default:
      vals[i] = NULL;
    }
  }
  PGresult *res = pg_run(db, sql, nv, vals, lens, fmts);
  ExecStatusType es = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  int status = SBX_OK;
  if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
    status = pg_status(db, res);
  } else {
    if (fn) {
      int nt = PQntuples(res);
      for (int i = 0; i < nt; i++) {
        sbx__row row = {2, res, i};
        int r = fn(ctx, &row);
        if (r < 0)
          status = r;
        if (r)
          break;
      }
    }
    if (!status && changes) {
      const char *c = PQcmdTuples(res);
      *changes = c && *c ? atoll(c) : 0;
    }
  }
  PQclear(res);
  return status;
}

int sbx__db_exec(sbx__db *db, const char *sql, const sbx__val *v, int nv,
                 sbx__row_fn fn, void *ctx, int64_t *changes) {
  if (!db || !sql)
    return SBX_EINVAL;
  if (changes)
    *changes = 0;
  return db->backend == 1 ? lite_exec(db, sql, v, nv, fn, ctx, changes)
                          : pg_exec(db, sql, v, nv, fn, ctx, changes);
}

int sbx__db_script(sbx__db *db, const char *sql) {
  if (db->backend == 1) {
    int rc = sqlite3_exec(db->lite, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? SBX_OK : lite_status(db, rc);
  }
  /* BLOB -> BYTEA for PostgreSQL */
  size_t n = strlen(sql), cnt = 0;
  for (const char *p = sql; (p = strstr(p, "BLOB")); p += 4)
    cnt++;
  char *q = malloc(n + cnt + 1), *o = q;
  if (!q)
    return SBX_ENOMEM;
  for (const char *p = sql; *p;) {
    if (!strncmp(p, "BLOB", 4)) {
      memcpy(o, "BYTEA", 5);
      o += 5;
      p += 4;
    } else {
      *o++ = *p++;
    }
  }
  *o = 0;
  PGresult *res = PQexec(db->pg, q);
  free(q);
  ExecStatusType es = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
  int status = (es == PGRES_COMMAND_OK || es == PGRES_TUPLES_OK)
                   ? SBX_OK
                   : pg_status(db, res);
  PQclear(res);
  return status;
}

/* ---- transactions ---- */

static int simple(sbx__db *db, const char *sql) {
  return sbx__db_exec(db, sql, NULL, 0, NULL, NULL, NULL);
}

int sbx__db_begin(sbx__db *db) {
  if (db->depth++ > 0)
    return SBX_OK;
  db->doomed = 0;
  int rc = simple(db, db->backend == 1 ? "BEGIN IMMEDIATE" : "BEGIN");
  if (rc)
    db->depth = 0;
  return rc;
}

int sbx__db_commit(sbx__db *db) {
  if (db->depth <= 0)
    return SBX_EINVAL;
  if (--db->depth > 0)
    return SBX_OK;
  if (db->doomed) {
    simple(db, "ROLLBACK");
    return SBX_EABORTED;
  }
  int rc = simple(db, "COMMIT");
  if (rc) {
    if (db->backend == 1) /* SQLite may leave the transaction open */
      simple(db, "ROLLBACK");
  }
  return rc;
}

int sbx__db_rollback(sbx__db *db) {
  if (db->depth <= 0)
    return SBX_EINVAL;
  if (--db->depth > 0) {
    db->doomed = 1;
    return SBX_OK;
  }
  return simple(db, "ROLLBACK");
}
