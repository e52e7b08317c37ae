/*
 * test_migrate.c - the server's tables as migrations of the store: a data
 * dir written by the previous release (store schema 1, srv_ tables made by
 * the server's own CREATE TABLE IF NOT EXISTS scripts, with rows in them)
 * upgrades in place to schema 20 with every row kept; a fresh one gets the
 * same tables. Rows are read back through sbx/sql.h.
 */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../harness.h"
#include "sbx/meta.h"
#include "sbx/sql.h"

/* The previous release's scripts, verbatim (src/server/db_ext.c and
 * session.c before the tables became migration 20). */
static const char *OLD_SERVER_SQL =
    "CREATE TABLE IF NOT EXISTS srv_tenant_roles ("
    " tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,"
    " PRIMARY KEY (tenant_id, user_id));"
    "CREATE TABLE IF NOT EXISTS srv_jobs ("
    " tenant_id TEXT NOT NULL, id TEXT NOT NULL, project_id TEXT NOT NULL,"
    " attack TEXT NOT NULL, model_id TEXT NOT NULL, dataset_id TEXT NOT NULL,"
    " params TEXT NOT NULL, state TEXT NOT NULL, created_by TEXT NOT NULL,"
    " created_at BIGINT NOT NULL, updated_at BIGINT NOT NULL,"
    " PRIMARY KEY (tenant_id, id));"
    "CREATE TABLE IF NOT EXISTS srv_lockouts ("
    " tenant_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " failures BIGINT NOT NULL, locked_until BIGINT NOT NULL,"
    " PRIMARY KEY (tenant_id, user_id));"
    "CREATE TABLE IF NOT EXISTS srv_bootstrap ("
    " tenant_id TEXT NOT NULL, token_hash BLOB NOT NULL,"
    " user_id TEXT NOT NULL, expires_at BIGINT NOT NULL,"
    " used_at BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (tenant_id, token_hash));"
    "CREATE TABLE IF NOT EXISTS srv_migrations (version BIGINT PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS srv_api_key_issuers ("
    " tenant_id TEXT NOT NULL, key_id TEXT NOT NULL, issued_by TEXT NOT NULL,"
    " PRIMARY KEY (tenant_id, key_id));"
    "CREATE TABLE IF NOT EXISTS srv_sessions ("
    " tenant_id TEXT NOT NULL, id_hash BLOB NOT NULL, user_id TEXT NOT NULL,"
    " created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL,"
    " PRIMARY KEY (tenant_id, id_hash));"
    "CREATE TABLE IF NOT EXISTS srv_oidc_states ("
    " tenant_id TEXT NOT NULL, state_hash BLOB NOT NULL,"
    " binding_hash BLOB NOT NULL, nonce TEXT NOT NULL, verifier TEXT NOT NULL,"
    " expires_at BIGINT NOT NULL, used_at BIGINT NOT NULL DEFAULT 0,"
    " PRIMARY KEY (tenant_id, state_hash));"
    "CREATE TABLE IF NOT EXISTS srv_totp ("
    " tenant_id TEXT NOT NULL, user_id TEXT NOT NULL,"
    " secret_sealed BLOB NOT NULL, enabled BIGINT NOT NULL,"
    " last_step BIGINT NOT NULL, PRIMARY KEY (tenant_id, user_id));"
    "INSERT INTO srv_migrations (version) VALUES (1);"
    "INSERT INTO srv_tenant_roles VALUES ('t1', 'alice', 'admin');"
    "INSERT INTO srv_lockouts VALUES ('t1', 'bob', 3, 0);"
    "INSERT INTO srv_api_key_issuers VALUES ('t1', 'k1', 'alice');"
    "INSERT INTO srv_totp VALUES ('t1', 'alice', x'0102', 1, 55);";

static const char *SRV_TABLES[] = {"srv_tenant_roles", "srv_lockouts",
                                   "srv_bootstrap",    "srv_api_key_issuers",
                                   "srv_sessions",     "srv_oidc_states",
                                   "srv_totp"};
#define N_SRV_TABLES (sizeof SRV_TABLES / sizeof SRV_TABLES[0])

static char dir[] = "/tmp/sbx_migrate_XXXXXX";
static char path[256];

static sbx_meta *open_meta(void) {
  sbx_meta_params p = sbx_meta_default_params();
  p.sqlite_path = path;
  sbx_meta *m = NULL;
  int rc = sbx_meta_open(&p, &m);
  CHECK_EQ_INT(rc, 0);
  return m;
}

static int sql(const char *text) {
  sqlite3 *db = NULL;
  int rc = sqlite3_open(path, &db);
  if (rc == SQLITE_OK)
    rc = sqlite3_exec(db, text, NULL, NULL, NULL);
  if (rc != SQLITE_OK)
    fprintf(stderr, "sqlite: %s\n", db ? sqlite3_errmsg(db) : "open");
  sqlite3_close(db);
  return rc;
}

static int row_text(void *ctx, const sbx_sql_row *r) {
  return sbx_sql_col_text(r, 0, ctx, SBX_KIND_MAX);
}

static int row_ints(void *ctx, const sbx_sql_row *r) {
  int64_t *v = ctx;
  v[0] = sbx_sql_col_int(r, 0);
  v[1] = sbx_sql_col_int(r, 1);
  return 0;
}

/* Number of srv_ tables of migration 20 present in the file. */
static int srv_tables_present(sbx_meta *m) {
  int n = 0;
  for (size_t i = 0; i < N_SRV_TABLES; i++) {
    char name[SBX_KIND_MAX] = "";
    sbx_sql_val v[] = {SBX_SQL_T(SRV_TABLES[i])};
    CHECK_EQ_INT(sbx_sql_exec(m,
                              "SELECT name FROM sqlite_master WHERE type = "
                              "'table' AND name = $1",
                              v, 1, row_text, name, NULL),
                 0);
    n += !strcmp(name, SRV_TABLES[i]);
  }
  return n;
}

/* The schema version of a fresh data dir: 20 (the server's tables) or
 * later (the job queue's migrations, 30..). */
static int64_t fresh_version;

TEST(fresh_dir_has_the_tables) {
  sbx_meta *m = open_meta();
  if (!m)
    return;
  int64_t v = 0;
  CHECK_EQ_INT(sbx_meta_schema_version(m, &v), 0);
  CHECK(v >= 20);
  fresh_version = v;
  CHECK_EQ_INT(srv_tables_present(m), (int)N_SRV_TABLES);
  sbx_meta_close(m);
}

TEST(previous_release_upgrades_in_place) {
  /* back to what the previous release left: store schema 1 only, then
   * the server's own scripts with data in the tables */
  char drop[1024] = "DELETE FROM schema_migrations WHERE version >= 20 AND "
                    "version < 30;"; /* 30..: the job queue's, kept */
  for (size_t i = 0; i < N_SRV_TABLES; i++) {
    strcat(drop, "DROP TABLE ");
    strcat(drop, SRV_TABLES[i]);
    strcat(drop, ";");
  }
  CHECK_EQ_INT(sql(drop), SQLITE_OK);
  CHECK_EQ_INT(sql(OLD_SERVER_SQL), SQLITE_OK);
  sbx_meta *m = open_meta();
  if (!m)
    return;
  int64_t v = 0;
  CHECK_EQ_INT(sbx_meta_schema_version(m, &v), 0);
  CHECK_EQ_INT(v, fresh_version);
  CHECK_EQ_INT(srv_tables_present(m), (int)N_SRV_TABLES);
  /* the rows written by the previous release are all there */
  char role[SBX_KIND_MAX] = "";
  sbx_sql_val q[] = {SBX_SQL_T("t1"), SBX_SQL_T("alice")};
  CHECK_EQ_INT(sbx_sql_exec(m,
                            "SELECT role FROM srv_tenant_roles WHERE "
                            "tenant_id = $1 AND user_id = $2",
                            q, 2, row_text, role, NULL),
               0);
  CHECK(!strcmp(role, "admin"));
  int64_t ints[2] = {0, 0};
  CHECK_EQ_INT(sbx_sql_exec(m,
                            "SELECT enabled, last_step FROM srv_totp WHERE "
                            "tenant_id = $1 AND user_id = $2",
                            q, 2, row_ints, ints, NULL),
               0);
  CHECK(ints[0] == 1 && ints[1] == 55);
  char issuer[SBX_KIND_MAX] = "";
  sbx_sql_val k[] = {SBX_SQL_T("t1"), SBX_SQL_T("k1")};
  CHECK_EQ_INT(sbx_sql_exec(m,
                            "SELECT issued_by FROM srv_api_key_issuers WHERE "
                            "tenant_id = $1 AND key_id = $2",
                            k, 2, row_text, issuer, NULL),
               0);
  CHECK(!strcmp(issuer, "alice"));
  sbx_meta_close(m);
  /* and a second start applies nothing again (checksums match) */
  m = open_meta();
  if (!m)
    return;
  CHECK_EQ_INT(sbx_meta_schema_version(m, &v), 0);
  CHECK_EQ_INT(v, fresh_version);
  sbx_meta_close(m);
}

/* Failures come back through the params' err buffer (nothing printed): an
 * applied migration whose text changed, a database that cannot open. */
TEST(open_errors_in_err_buffer) {
  CHECK_EQ_INT(sql("UPDATE schema_migrations SET checksum = checksum + 1 "
                   "WHERE version = 20"),
               SQLITE_OK);
  char err[160] = "junk";
  sbx_meta_params p = sbx_meta_default_params();
  p.sqlite_path = path;
  p.err = err;
  p.err_cap = sizeof err;
  sbx_meta *m = NULL;
  CHECK_EQ_INT(sbx_meta_open(&p, &m), SBX_ECONFLICT);
  CHECK(m == NULL);
  CHECK(strstr(err, "migration 20 was edited") != NULL);
  CHECK_EQ_INT(sql("UPDATE schema_migrations SET checksum = checksum - 1 "
                   "WHERE version = 20"),
               SQLITE_OK);
  CHECK_EQ_INT(sbx_meta_open(&p, &m), 0);
  CHECK(err[0] == 0); /* cleared on success */
  sbx_meta_close(m);
  /* a file that is not a database */
  char bad[300];
  snprintf(bad, sizeof bad, "%s/not-a-db", dir);
  FILE *f = fopen(bad, "w");
  CHECK(f != NULL);
  if (f) {
    fputs("this is not an SQLite file, it is long enough to be read as a "
          "header by SQLite and refused as one...............",
          f);
    fclose(f);
  }
  p.sqlite_path = bad;
  CHECK(sbx_meta_open(&p, &m) != 0);
  CHECK(m == NULL);
  CHECK(err[0] != 0);
  unlink(bad);
}

int main(void) {
  if (!mkdtemp(dir))
    return 1;
  snprintf(path, sizeof path, "%s/meta.db", dir);
  RUN(fresh_dir_has_the_tables);
  RUN(previous_release_upgrades_in_place);
  RUN(open_errors_in_err_buffer);
  unlink(path);
  char side[300];
  snprintf(side, sizeof side, "%s-wal", path);
  unlink(side);
  snprintf(side, sizeof side, "%s-shm", path);
  unlink(side);
  rmdir(dir);
  return harness_report();
}
