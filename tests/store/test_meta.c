/*
 * test_meta.c - the metadata store on SQLite, or on PostgreSQL when
 * SBX_TEST_PG holds a conninfo (see pg_run.sh): idempotent recorded
 * migrations, refusal of edited migrations, tenant scoping of every table,
 * users / projects / memberships / API keys / secrets, and the audit hash
 * chain.
 */
#include <libpq-fe.h>
#include <sqlite3.h>
#include <unistd.h>

#include "harness.h"
#include "sbx/meta.h"
#include "sbx/privacy.h"
#include "store_testutil.h"

/* the chain's row hash (src/store/db.h, internal to the store library) */
void sbx__audit_hash(const char *tenant_id, int64_t seq, int64_t ts,
                     const char *actor, const char *action, const char *target,
                     const uint8_t prev[32], uint8_t out[32]);

static char root[] = "/tmp/sbx_meta_XXXXXX";
static char dbpath[300];
static const char *pg;

static sbx_meta *open_meta(void) {
  sbx_meta_params p = sbx_meta_default_params();
  if (pg) {
    p.backend = SBX_META_POSTGRES;
    p.pg_conninfo = pg;
  } else {
    p.sqlite_path = dbpath;
  }
  sbx_meta *m = NULL;
  int rc = sbx_meta_open(&p, &m);
  if (rc)
    fprintf(stderr, "sbx_meta_open: %s\n", sbx_strerror(rc));
  return m;
}

/* runs SQL behind the API's back (an attacker with DB access) */
static int raw_exec(const char *sql) {
  if (pg) {
    PGconn *c = PQconnectdb(pg);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
  }
  sqlite3 *db;
  if (sqlite3_open(dbpath, &db) != SQLITE_OK)
    return -1;
  int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  sqlite3_close(db);
  return rc == SQLITE_OK ? 0 : -1;
}

static int count_rows(void *ctx, const char *id) {
  (*(int *)ctx)++;
  return 0;
}

TEST(migrations_idempotent) {
  sbx_meta *m = open_meta();
  CHECK(m != NULL);
  if (!m)
    return;
  int64_t v = 0;
  CHECK_EQ_INT(sbx_meta_schema_version(m, &v), 0);
  CHECK(v >= 1); /* the newest migration of any module */
  int64_t first = v;
  sbx_meta_close(m);
  m = open_meta(); /* second start: nothing re-applied */
  CHECK(m != NULL);
  if (!m)
    return;
  CHECK_EQ_INT(sbx_meta_schema_version(m, &v), 0);
  CHECK_EQ_INT(v, first);
  CHECK(strcmp(sbx_meta_backend_name(m), pg ? "postgres" : "sqlite") == 0);
  sbx_meta_close(m);
  if (!pg) {
    struct stat st;
    CHECK(stat(dbpath, &st) == 0 && (st.st_mode & 077) == 0);
  }
}

TEST(tenants_and_isolation) {
  sbx_meta *m = open_meta();
  if (!m) {
    CHECK(0);
    return;
  }
  CHECK_EQ_INT(sbx_meta_tenant_create(m, "t1", "One", 100), 0);
  CHECK_EQ_INT(sbx_meta_tenant_create(m, "t2", "Two", 100), 0);
  CHECK_EQ_INT(sbx_meta_tenant_create(m, "t1", "Dup", 100), SBX_EEXIST);
  CHECK_EQ_INT(sbx_meta_tenant_create(m, "_sys", "x", 100), SBX_EINVAL);
  CHECK_EQ_INT(sbx_meta_tenant_create(m, "a'; DROP TABLE tenants;--", "x", 1),
               SBX_EINVAL);
  sbx_tenant t;
  CHECK_EQ_INT(sbx_meta_tenant_get(m, "t1", &t), 0);
  CHECK(strcmp(t.name, "One") == 0 && t.created_at == 100);
  int n = 0;
  CHECK_EQ_INT(sbx_meta_tenant_list(m, count_rows, &n), 0);
  CHECK_EQ_INT(n, 2);
  /* names are data, never SQL */
  CHECK_EQ_INT(sbx_meta_project_create(m, "t1", "p1",
                                       "x'); DELETE FROM projects; --", 1),
               0);
  CHECK_EQ_INT(sbx_meta_project_create(m, "t2", "p1", "same id, t2", 1), 0);
  /* objects */
  sbx_object o;
  memset(&o, 0, sizeof o);
  snprintf(o.id, sizeof o.id, "obj1");
  snprintf(o.kind, sizeof o.kind, "model");
  snprintf(o.name, sizeof o.name, "m.onnx");
  o.size = 5;
  o.key_version = 1;
  CHECK_EQ_INT(sbx_meta_object_insert(m, "t1", &o), 0);
  CHECK_EQ_INT(sbx_meta_object_insert(m, "t1", &o), SBX_EEXIST);
  CHECK_EQ_INT(sbx_meta_object_insert(m, "t2", &o), 0); /* same id, t2 */
  sbx_object got;
  CHECK_EQ_INT(sbx_meta_object_get(m, "t1", "obj1", &got), 0);
  CHECK(got.size == 5 && strcmp(got.name, "m.onnx") == 0);
  CHECK_EQ_INT(sbx_meta_object_delete(m, "t2", "obj1"), 0);
  CHECK_EQ_INT(sbx_meta_object_get(m, "t2", "obj1", &got), SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_meta_object_get(m, "t1", "obj1", &got), 0);
  CHECK(sbx_meta_object_insert(m, "nope", &o) != 0); /* FK: no tenant */
  /* secrets */
  uint8_t buf[16];
  size_t bl = sizeof buf;
  CHECK_EQ_INT(sbx_meta_secret_put(m, "t1", "oidc", (const uint8_t *)"abc", 3,
                                   1),
               0);
  CHECK_EQ_INT(sbx_meta_secret_put(m, "t1", "oidc", (const uint8_t *)"abcd",
                                   4, 2),
               0);
  CHECK_EQ_INT(sbx_meta_secret_get(m, "t1", "oidc", buf, &bl), 0);
  CHECK(bl == 4 && memcmp(buf, "abcd", 4) == 0);
  bl = sizeof buf;
  CHECK_EQ_INT(sbx_meta_secret_get(m, "t2", "oidc", buf, &bl), SBX_ENOTFOUND);
  sbx_meta_close(m);
}

TEST(users_keys_memberships) {
  sbx_meta *m = open_meta();
  if (!m) {
    CHECK(0);
    return;
  }
  sbx_user u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "u1");
  memset(u.email_index, 7, 32);
  u.email_sealed_len = 40;
  memset(u.email_sealed, 9, 40);
  CHECK_EQ_INT(sbx_meta_user_insert(m, "t1", &u), 0);
  sbx_user g;
  CHECK_EQ_INT(sbx_meta_user_find_email(m, "t1", u.email_index, &g), 0);
  CHECK(strcmp(g.id, "u1") == 0 && g.email_sealed_len == 40);
  CHECK_EQ_INT(sbx_meta_user_find_email(m, "t2", u.email_index, &g),
               SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_meta_membership_set(m, "t1", "p1", "u1", "developer"), 0);
  CHECK_EQ_INT(sbx_meta_membership_set(m, "t1", "p1", "u1", "admin"), 0);
  char role[SBX_KIND_MAX];
  CHECK_EQ_INT(sbx_meta_membership_get(m, "t1", "p1", "u1", role), 0);
  CHECK(strcmp(role, "admin") == 0);
  CHECK_EQ_INT(sbx_meta_membership_get(m, "t2", "p1", "u1", role),
               SBX_ENOTFOUND);
  /* t2 has project p1 but no user u1: refused by the foreign key */
  CHECK(sbx_meta_membership_set(m, "t2", "p1", "u1", "viewer") != 0);
  sbx_api_key k;
  memset(&k, 0, sizeof k);
  snprintf(k.id, sizeof k.id, "sbx_ab12");
  snprintf(k.user_id, sizeof k.user_id, "u1");
  snprintf(k.role, sizeof k.role, "developer");
  memset(k.secret_hash, 3, 32);
  k.created_at = 10;
  k.expires_at = 1000;
  CHECK_EQ_INT(sbx_meta_api_key_insert(m, "t1", &k), 0);
  CHECK_EQ_INT(sbx_meta_api_key_touch(m, "t1", "sbx_ab12", 20), 0);
  CHECK_EQ_INT(sbx_meta_api_key_revoke(m, "t1", "sbx_ab12", 30), 0);
  CHECK_EQ_INT(sbx_meta_api_key_revoke(m, "t1", "sbx_ab12", 31),
               SBX_ENOTFOUND);
  sbx_api_key kg;
  CHECK_EQ_INT(sbx_meta_api_key_get(m, "t1", "sbx_ab12", &kg), 0);
  CHECK(kg.last_used_at == 20 && kg.revoked_at == 30 && kg.expires_at == 1000);
  CHECK_EQ_INT(sbx_meta_api_key_get(m, "t2", "sbx_ab12", &kg), SBX_ENOTFOUND);
  sbx_meta_close(m);
}

TEST(audit_chain) {
  sbx_meta *m = open_meta();
  if (!m) {
    CHECK(0);
    return;
  }
  int64_t seq = 0, cnt = 0;
  for (int i = 0; i < 20; i++) {
    char target[32];
    snprintf(target, sizeof target, "obj%d", i);
    CHECK_EQ_INT(sbx_meta_audit_append(m, "t1", 1000 + i, "u1", "object.put",
                                       target, &seq),
                 0);
  }
  CHECK_EQ_INT(seq, 20);
  CHECK_EQ_INT(sbx_meta_audit_append(m, "t2", 5, "u9", "login", "-", &seq), 0);
  CHECK_EQ_INT(seq, 1);
  CHECK_EQ_INT(sbx_meta_audit_verify(m, "t1", &cnt), 0);
  CHECK_EQ_INT(cnt, 20);
  sbx_meta_close(m);
  /* edit one event behind the API's back: the chain breaks */
  CHECK_EQ_INT(raw_exec("UPDATE audit_events SET target='forged' WHERE "
                        "tenant_id='t1' AND seq=7"),
               0);
  m = open_meta();
  if (!m)
    return;
  CHECK_EQ_INT(sbx_meta_audit_verify(m, "t1", &cnt), SBX_ECRYPTO);
  CHECK_EQ_INT(sbx_meta_audit_verify(m, "t2", &cnt), 0);
  sbx_meta_close(m);
}

TEST(transactions) {
  sbx_meta *m = open_meta();
  if (!m) {
    CHECK(0);
    return;
  }
  CHECK_EQ_INT(sbx_meta_begin(m), 0);
  CHECK_EQ_INT(sbx_meta_tenant_create(m, "tx1", "x", 1), 0);
  CHECK_EQ_INT(sbx_meta_begin(m), 0); /* nested */
  CHECK_EQ_INT(sbx_meta_tenant_create(m, "tx2", "x", 1), 0);
  CHECK_EQ_INT(sbx_meta_rollback(m), 0);
  CHECK_EQ_INT(sbx_meta_commit(m), SBX_EABORTED); /* doomed by the inner */
  sbx_tenant t;
  CHECK_EQ_INT(sbx_meta_tenant_get(m, "tx1", &t), SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_meta_tenant_get(m, "tx2", &t), SBX_ENOTFOUND);
  sbx_meta_close(m);
}

TEST(edited_migration_refused) {
  sbx_meta *m = open_meta();
  if (!m) {
    CHECK(0);
    return;
  }
  sbx_meta_close(m);
  CHECK_EQ_INT(raw_exec("UPDATE schema_migrations SET checksum=checksum+1"),
               0);
  m = open_meta();
  CHECK(m == NULL);
  sbx_meta_close(m);
  CHECK_EQ_INT(raw_exec("UPDATE schema_migrations SET checksum=checksum-1"),
               0);
  m = open_meta();
  CHECK(m != NULL);
  sbx_meta_close(m);
}

/* 30 rows at ts 2000..2029 in tenant tp (fresh per case: tp1, tp2...) */
static void fill_chain(sbx_meta *m, const char *t) {
  for (int i = 0; i < 30; i++) {
    char target[32];
    snprintf(target, sizeof target, "obj%d", i);
    CHECK_EQ_INT(
        sbx_meta_audit_append(m, t, 2000 + i, "u1", "object.put", target, NULL),
        0);
  }
}

/* Purging the oldest rows (retention): the rest still verifies, from the
 * checkpoint, against anchors before, at and after it; the head is never
 * purged; a second purge with the same cutoff does nothing. */
TEST(audit_purge) {
  sbx_meta *m = open_meta();
  if (!m) {
    CHECK(0);
    return;
  }
  fill_chain(m, "tp1");
  sbx_audit_check c;
  uint8_t h10[32], hb[32];
  int64_t seq = 0, n = -1;
  /* the head at seq 10, as an anchor written then would hold it */
  CHECK_EQ_INT(sbx_meta_audit_check(m, "tp1", 0, NULL, &c), 0);
  CHECK_EQ_INT(c.count, 30);
  CHECK_EQ_INT(sbx_meta_audit_purge(m, "tp1", 2010, 3000, &n), 0);
  CHECK_EQ_INT(n, 10);
  CHECK_EQ_INT(sbx_meta_audit_base(m, "tp1", &seq, hb), 0);
  CHECK_EQ_INT(seq, 10);
  memcpy(h10, hb, 32);
  /* the checkpoint is row 10's hash: recompute it from rows 1..10 */
  uint8_t prev[32] = {0};
  for (int i = 0; i < 10; i++) {
    char target[32];
    snprintf(target, sizeof target, "obj%d", i);
    sbx__audit_hash("tp1", i + 1, 2000 + i, "u1", "object.put", target, prev,
                    prev);
  }
  CHECK(memcmp(prev, h10, 32) == 0);
  CHECK_EQ_INT(sbx_meta_audit_check(m, "tp1", 0, NULL, &c), 0);
  CHECK_EQ_INT(c.count, 21); /* 20 kept + the audit.purge row */
  CHECK_EQ_INT(c.head_seq, 31);
  CHECK_EQ_INT(sbx_meta_audit_verify(m, "tp1", &n), 0);
  /* an anchor inside the purged range was purged legitimately; one at the
   * checkpoint must match it */
  CHECK_EQ_INT(sbx_meta_audit_check(m, "tp1", 5, h10, &c), 0);
  CHECK_EQ_INT(sbx_meta_audit_check(m, "tp1", 10, h10, &c), 0);
  uint8_t wrong[32];
  memcpy(wrong, h10, 32);
  wrong[0] ^= 1;
  CHECK_EQ_INT(sbx_meta_audit_check(m, "tp1", 10, wrong, &c), SBX_ECRYPTO);
  CHECK_EQ_INT(c.bad_seq, 10);
  CHECK_EQ_INT(sbx_meta_audit_purge(m, "tp1", 2010, 3000, &n), 0);
  CHECK_EQ_INT(n, 0);
  /* everything is old: all but the head go */
  CHECK_EQ_INT(sbx_meta_audit_purge(m, "tp1", INT64_MAX, 3000, &n), 0);
  CHECK_EQ_INT(n, 20);
  CHECK_EQ_INT(sbx_meta_audit_check(m, "tp1", 0, NULL, &c), 0);
  CHECK_EQ_INT(c.count, 2); /* the old head and the new audit.purge row */
  sbx_meta_close(m);
}

/* What an attacker with database access might do after a purge, each
 * detected and located: delete rows past the checkpoint and move the
 * checkpoint over them; delete the checkpoint; edit the purge record. */
TEST(audit_purge_tamper) {
  sbx_meta *m = open_meta();
  if (!m) {
    CHECK(0);
    return;
  }
  const char *ts[] = {"tq1", "tq2", "tq3"};
  for (int i = 0; i < 3; i++) {
    fill_chain(m, ts[i]);
    int64_t n = 0;
    CHECK_EQ_INT(sbx_meta_audit_purge(m, ts[i], 2010, 3000, &n), 0);
    CHECK_EQ_INT(n, 10);
  }
  sbx_meta_close(m);
  /* 1. rows 11..15 deleted, checkpoint moved to 15 with row 15's hash */
  CHECK_EQ_INT(raw_exec("UPDATE audit_purges SET through_seq = 15, "
                        "through_hash = (SELECT hash FROM audit_events WHERE "
                        "tenant_id='tq1' AND seq=15) WHERE tenant_id='tq1'"),
               0);
  CHECK_EQ_INT(raw_exec("DELETE FROM audit_events WHERE tenant_id='tq1' AND "
                        "seq <= 15"),
               0);
  /* 2. the checkpoint deleted */
  CHECK_EQ_INT(raw_exec("DELETE FROM audit_purges WHERE tenant_id='tq2'"), 0);
  /* 3. the purge record edited */
  CHECK_EQ_INT(raw_exec("UPDATE audit_events SET target='through=1 hash=00' "
                        "WHERE tenant_id='tq3' AND action='audit.purge'"),
               0);
  m = open_meta();
  if (!m)
    return;
  sbx_audit_check c;
  CHECK_EQ_INT(sbx_meta_audit_check(m, "tq1", 0, NULL, &c), SBX_ECRYPTO);
  CHECK_EQ_INT(c.bad_seq, 16);
  CHECK(strstr(c.reason, "audit.purge") != NULL);
  CHECK_EQ_INT(sbx_meta_audit_check(m, "tq2", 0, NULL, &c), SBX_ECRYPTO);
  CHECK_EQ_INT(c.bad_seq, 1);
  CHECK_EQ_INT(sbx_meta_audit_check(m, "tq3", 0, NULL, &c), SBX_ECRYPTO);
  CHECK_EQ_INT(c.bad_seq, 31);
  sbx_meta_close(m);
}

TEST(retention_settings) {
  sbx_meta *m = open_meta();
  if (!m) {
    CHECK(0);
    return;
  }
  sbx_retention r;
  CHECK_EQ_INT(sbx_meta_retention_get(m, "tr1", &r), 0);
  CHECK(r.jobs_s == 0 && r.audit_s == 0);
  sbx_retention w = {86400, 400 * 86400LL, 77};
  CHECK_EQ_INT(sbx_meta_retention_set(m, "tr1", &w), 0);
  w.jobs_s = 3600;
  CHECK_EQ_INT(sbx_meta_retention_set(m, "tr1", &w), 0); /* upsert */
  CHECK_EQ_INT(sbx_meta_retention_get(m, "tr1", &r), 0);
  CHECK(r.jobs_s == 3600 && r.audit_s == 400 * 86400LL && r.updated_at == 77);
  CHECK_EQ_INT(sbx_meta_retention_get(m, "tr2", &r), 0); /* per tenant */
  CHECK(r.jobs_s == 0);
  w.audit_s = -1;
  CHECK_EQ_INT(sbx_meta_retention_set(m, "tr1", &w), SBX_EINVAL);
  sbx_meta_close(m);
}

int main(void) {
  if (!mkdtemp(root))
    return 2;
  pg = getenv("SBX_TEST_PG");
  if (pg && !*pg)
    pg = NULL;
  snprintf(dbpath, sizeof dbpath, "%s/meta.db", root);
  fprintf(stderr, "backend: %s\n", pg ? "postgres" : "sqlite");
  RUN(migrations_idempotent);
  RUN(tenants_and_isolation);
  RUN(users_keys_memberships);
  RUN(audit_chain);
  RUN(transactions);
  RUN(audit_purge);
  RUN(audit_purge_tamper);
  RUN(retention_settings);
  RUN(edited_migration_refused);
  tu_rm_rf(root);
  return harness_report();
}
