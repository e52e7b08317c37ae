/*
 * meta.c - the metadata store: schema migrations and tenant-scoped queries,
 * written once over the sbx__db driver (db.h) for SQLite and PostgreSQL.
 * Schema documented in docs/storage.md.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "jobs_schema.h"
#include "lifecycle_schema.h"
#include "sbx/meta.h"

struct sbx_meta {
  sbx__db *db;
  sbx_meta_cipher cipher;
  int has_cipher;
};

/* ---- migrations: append only, never edit an applied one ---- */

typedef struct migration {
  int64_t version;
  const char *name;
  const char *sql; /* "BLOB" becomes BYTEA on PostgreSQL */
} migration;

static const migration MIGRATIONS[] = {
    {1, "initial schema",
     "CREATE TABLE tenants ("
     " id TEXT PRIMARY KEY,"
     " name TEXT NOT NULL,"
     " state BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL);"
     "CREATE TABLE tenant_keys ("
     " tenant_id TEXT NOT NULL REFERENCES tenants(id),"
     " version BIGINT NOT NULL,"
     " wrapped BLOB NOT NULL,"
     " active BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (tenant_id, version));"
     "CREATE TABLE objects ("
     " tenant_id TEXT NOT NULL REFERENCES tenants(id),"
     " id TEXT NOT NULL,"
     " project_id TEXT NOT NULL DEFAULT '',"
     " kind TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " size BIGINT NOT NULL,"
     " sha256 BLOB NOT NULL,"
     " key_version BIGINT NOT NULL,"
     " wrapped_dek BLOB NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (tenant_id, id),"
     " UNIQUE (tenant_id, project_id, kind, name));"
     "CREATE TABLE secrets ("
     " tenant_id TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " sealed BLOB NOT NULL,"
     " updated_at BIGINT NOT NULL,"
     " PRIMARY KEY (tenant_id, name));"
     "CREATE TABLE users ("
     " tenant_id TEXT NOT NULL REFERENCES tenants(id),"
     " id TEXT NOT NULL,"
     " email_index BLOB NOT NULL,"
     " email_sealed BLOB NOT NULL,"
     " password_hash TEXT NOT NULL DEFAULT '',"
     " disabled BIGINT NOT NULL DEFAULT 0,"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (tenant_id, id),"
     " UNIQUE (tenant_id, email_index));"
     "CREATE TABLE projects ("
     " tenant_id TEXT NOT NULL REFERENCES tenants(id),"
     " id TEXT NOT NULL,"
     " name TEXT NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " PRIMARY KEY (tenant_id, id));"
     "CREATE TABLE memberships ("
     " tenant_id TEXT NOT NULL,"
     " project_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " role TEXT NOT NULL,"
     " PRIMARY KEY (tenant_id, project_id, user_id),"
     " FOREIGN KEY (tenant_id, project_id) REFERENCES projects(tenant_id, id),"
     " FOREIGN KEY (tenant_id, user_id) REFERENCES users(tenant_id, id));"
     "CREATE TABLE api_keys ("
     " tenant_id TEXT NOT NULL REFERENCES tenants(id),"
     " id TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " project_id TEXT NOT NULL DEFAULT '',"
     " role TEXT NOT NULL,"
     " secret_hash BLOB NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " expires_at BIGINT NOT NULL,"
     " revoked_at BIGINT NOT NULL DEFAULT 0,"
     " last_used_at BIGINT NOT NULL DEFAULT 0,"
     " PRIMARY KEY (tenant_id, id));"
     "CREATE TABLE refresh_tokens ("
     " tenant_id TEXT NOT NULL REFERENCES tenants(id),"
     " id TEXT NOT NULL,"
     " family_id TEXT NOT NULL,"
     " user_id TEXT NOT NULL,"
     " token_hash BLOB NOT NULL,"
     " created_at BIGINT NOT NULL,"
     " expires_at BIGINT NOT NULL,"
     " used_at BIGINT NOT NULL DEFAULT 0,"
     " revoked_at BIGINT NOT NULL DEFAULT 0,"
     " PRIMARY KEY (tenant_id, id));"
     "CREATE INDEX refresh_tokens_family ON refresh_tokens(tenant_id, "
     "family_id);"
     "CREATE TABLE audit_events ("
     " tenant_id TEXT NOT NULL,"
     " seq BIGINT NOT NULL,"
     " ts BIGINT NOT NULL,"
     " actor TEXT NOT NULL,"
     " action TEXT NOT NULL,"
     " target TEXT NOT NULL,"
     " prev_hash BLOB NOT NULL,"
     " hash BLOB NOT NULL,"
     " PRIMARY KEY (tenant_id, seq));"},
    /* 20..29: the API server's own tables (aisbxd, src/server), created
     * until then by its own CREATE TABLE IF NOT EXISTS scripts; IF NOT
     * EXISTS here too, so a data dir that already has them upgrades in
     * place. (srv_jobs stays with the server until the job queue, 30+.) */
    {20, "server: roles, lockouts, bootstrap, key issuers, sessions, totp",
     "CREATE TABLE IF NOT EXISTS srv_tenant_roles ("
     " tenant_id TEXT NOT NULL, user_id TEXT NOT NULL, role TEXT NOT NULL,"
     " PRIMARY KEY (tenant_id, user_id));"
     "CREATE TABLE IF NOT EXISTS srv_lockouts ("
     " tenant_id TEXT NOT NULL, user_id TEXT NOT NULL,"
     " failures BIGINT NOT NULL, locked_until BIGINT NOT NULL,"
     " PRIMARY KEY (tenant_id, user_id));"
     "CREATE TABLE IF NOT EXISTS srv_bootstrap ("
     " tenant_id TEXT NOT NULL, token_hash BLOB NOT NULL,"
     " user_id TEXT NOT NULL, expires_at BIGINT NOT NULL,"
     " used_at BIGINT NOT NULL DEFAULT 0,"
     " PRIMARY KEY (tenant_id, token_hash));"
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
     " last_step BIGINT NOT NULL, PRIMARY KEY (tenant_id, user_id));"},
    /* the user lifecycle: version 21 (lifecycle_schema.h, lifecycle.c) */
    SBX__LIFECYCLE_MIGRATIONS,
    /* storage quotas of tenants (src/server/quota.c); 0 inherit, -1 none */
    {25, "server: storage quotas",
     "CREATE TABLE IF NOT EXISTS srv_quotas ("
     " tenant_id TEXT NOT NULL PRIMARY KEY, max_bytes BIGINT NOT NULL,"
     " max_objects BIGINT NOT NULL, project_max_bytes BIGINT NOT NULL,"
     " project_max_objects BIGINT NOT NULL,"
     " max_object_bytes BIGINT NOT NULL);"},
    /* the job queue: versions 30.. (jobs_schema.h, jobs.c) */
    SBX__JOBS_MIGRATIONS
    /* privacy (sbx/privacy.h, privacy.c): retention per tenant; the audit
     * chain's purge checkpoint (seq and hash of the last purged row) */
    {48, "privacy: retention, audit purge checkpoints",
     "CREATE TABLE retention ("
     " tenant_id TEXT PRIMARY KEY,"
     " jobs_s BIGINT NOT NULL DEFAULT 0,"
     " audit_s BIGINT NOT NULL DEFAULT 0,"
     " updated_at BIGINT NOT NULL);"
     "CREATE TABLE audit_purges ("
     " tenant_id TEXT PRIMARY KEY,"
     " through_seq BIGINT NOT NULL,"
     " through_hash BLOB NOT NULL);"},
    /* sealed metadata (issue 12 item 5): the sealed twin of each clear
     * column; NULL while the row is still plaintext (sbx_meta_seal_legacy
     * seals it at the next store open) */
    {49, "sealed metadata columns",
     "ALTER TABLE objects ADD COLUMN name_sealed BLOB;"
     "ALTER TABLE projects ADD COLUMN name_sealed BLOB;"
     "ALTER TABLE jobs ADD COLUMN spec_sealed BLOB;"
     "ALTER TABLE jobs ADD COLUMN message_sealed BLOB;"
     "ALTER TABLE audit_events ADD COLUMN actor_sealed BLOB;"
     "ALTER TABLE audit_events ADD COLUMN target_sealed BLOB;"},
    /* e-mail lookup index: 0 = HMAC under the deployment pepper (the same
     * person linkable across tenants), 1 = the tenant's blind-index key;
     * sbx_store_open re-indexes version 0 rows */
    {50, "per-tenant e-mail index",
     "ALTER TABLE users ADD COLUMN email_index_v BIGINT NOT NULL DEFAULT 0;"},
    /* sbx_meta_seal_legacy runs at every store open: its "still
     * plaintext" scans read these partial indexes (empty once sealed),
     * not the tables */
    {51, "partial indexes of plaintext rows",
     "CREATE INDEX objects_plain ON objects(tenant_id)"
     " WHERE name_sealed IS NULL;"
     "CREATE INDEX projects_plain ON projects(tenant_id)"
     " WHERE name_sealed IS NULL;"
     "CREATE INDEX jobs_plain ON jobs(tenant_id) WHERE spec_sealed IS NULL;"
     "CREATE INDEX audit_actor_plain ON audit_events(tenant_id)"
     " WHERE actor_sealed IS NULL;"
     "CREATE INDEX audit_target_plain ON audit_events(tenant_id)"
     " WHERE target_sealed IS NULL;"
     "CREATE INDEX users_index_v0 ON users(tenant_id)"
     " WHERE email_index_v = 0;"},
    /* the job texts sealed (jobs.c "job texts"): messages, the cancel
     * reason, the phase, event reasons; the sandbox-violation count of
     * /metrics reads a clear flag instead of the shard message */
    {52, "sealed job texts",
     "ALTER TABLE jobs ADD COLUMN cancel_reason_sealed BLOB;"
     "ALTER TABLE job_shards ADD COLUMN message_sealed BLOB;"
     "ALTER TABLE job_shards ADD COLUMN phase_sealed BLOB;"
     "ALTER TABLE job_shards ADD COLUMN violation BIGINT NOT NULL DEFAULT 0;"
     "ALTER TABLE job_events ADD COLUMN reason_sealed BLOB;"
     "ALTER TABLE tenants ADD COLUMN name_sealed BLOB;"
     "UPDATE job_shards SET violation = 1 WHERE message LIKE"
     " 'killed by sandbox%';"
     "CREATE INDEX jobs_msg_plain ON jobs(tenant_id)"
     " WHERE message_sealed IS NULL AND message <> '';"
     "CREATE INDEX jobs_cancel_plain ON jobs(tenant_id)"
     " WHERE cancel_reason_sealed IS NULL AND cancel_reason <> '';"
     "CREATE INDEX shards_msg_plain ON job_shards(tenant_id)"
     " WHERE message_sealed IS NULL AND message <> '';"
     "CREATE INDEX shards_phase_plain ON job_shards(tenant_id)"
     " WHERE phase_sealed IS NULL AND phase <> '';"
     "CREATE INDEX events_plain ON job_events(tenant_id)"
     " WHERE reason_sealed IS NULL AND reason <> '';"}};
#define N_MIGRATIONS ((int)(sizeof MIGRATIONS / sizeof MIGRATIONS[0]))

static int64_t migration_checksum(const migration *mg) {
  uint8_t d[SBX_SHA256_LEN];
  sbx_sha256(mg->sql, strlen(mg->sql), d);
  int64_t v = 0;
  for (int i = 0; i < 7; i++) /* 56 bits: positive in a BIGINT */
    v = v << 8 | d[i];
  return v;
}

static int row_int(void *ctx, const sbx__row *r) {
  *(int64_t *)ctx = sbx__col_int(r, 0);
  return 1;
}

typedef struct applied_ctx {
  int64_t version[64], checksum[64];
  int n;
} applied_ctx;

static int row_applied(void *ctx, const sbx__row *r) {
  applied_ctx *a = ctx;
  if (a->n >= 64)
    return SBX_ELIMIT;
  a->version[a->n] = sbx__col_int(r, 0);
  a->checksum[a->n] = sbx__col_int(r, 1);
  a->n++;
  return 0;
}

/* Applies pending migrations in one transaction; why (err, may be NULL)
 * when a migration applied earlier was edited since. */
static int migrate(sbx_meta *m, char *err, size_t err_cap) {
  sbx__db *db = m->db;
  int rc = sbx__db_script(db, "CREATE TABLE IF NOT EXISTS schema_migrations ("
                              " version BIGINT PRIMARY KEY,"
                              " name TEXT NOT NULL,"
                              " checksum BIGINT NOT NULL,"
                              " applied_at BIGINT NOT NULL)");
  if (rc && rc != SBX_EEXIST) /* concurrent creation on PostgreSQL */
    return rc;
  if ((rc = sbx__db_begin(db)))
    return rc;
  if (sbx__db_backend(db) == 2) /* serialise concurrent starters */
    rc = sbx__db_exec(db, "SELECT pg_advisory_xact_lock(7253001)", NULL, 0,
                      NULL, NULL, NULL);
  applied_ctx a = {0};
  if (!rc)
    rc = sbx__db_exec(db,
                      "SELECT version, checksum FROM schema_migrations "
                      "ORDER BY version",
                      NULL, 0, row_applied, &a, NULL);
  for (int i = 0; !rc && i < N_MIGRATIONS; i++) {
    const migration *mg = &MIGRATIONS[i];
    int found = -1;
    for (int j = 0; j < a.n; j++)
      if (a.version[j] == mg->version)
        found = j;
    if (found >= 0) {
      if (a.checksum[found] != migration_checksum(mg)) {
        if (err && err_cap)
          snprintf(err, err_cap,
                   "migration %lld was edited after being applied",
                   (long long)mg->version);
        rc = SBX_ECONFLICT;
      }
      continue;
    }
    rc = sbx__db_script(db, mg->sql);
    if (!rc) {
      sbx__val v[] = {SBX_VI(mg->version), SBX_VT(mg->name),
                      SBX_VI(migration_checksum(mg)), SBX_VI(time(NULL))};
      rc = sbx__db_exec(db,
                        "INSERT INTO schema_migrations (version, name, "
                        "checksum, applied_at) VALUES ($1, $2, $3, $4)",
                        v, 4, NULL, NULL, NULL);
    }
  }
  /* a database newer than this binary is refused (versions are not in
   * list order: modules append their own ranges) */
  int64_t newest = 0;
  for (int i = 0; i < N_MIGRATIONS; i++)
    if (MIGRATIONS[i].version > newest)
      newest = MIGRATIONS[i].version;
  for (int j = 0; !rc && j < a.n; j++)
    if (a.version[j] > newest)
      rc = SBX_EUNSUPPORTED;
  if (rc) {
    sbx__db_rollback(db);
    return rc;
  }
  return sbx__db_commit(db);
}

/* ---- open / close ---- */

sbx_meta_params sbx_meta_default_params(void) {
  sbx_meta_params p;
  memset(&p, 0, sizeof p);
  p.backend = SBX_META_SQLITE;
  p.busy_timeout_ms = 5000;
  return p;
}

int sbx_meta_open(const sbx_meta_params *p, sbx_meta **out) {
  if (!out)
    return SBX_EINVAL;
  *out = NULL;
  if (!p)
    return SBX_EINVAL;
  if (p->err && p->err_cap)
    p->err[0] = 0;
  sbx_meta *m = calloc(1, sizeof *m);
  if (!m)
    return SBX_ENOMEM;
  int rc;
  if (p->backend == SBX_META_SQLITE)
    rc = sbx__db_open_sqlite(p->sqlite_path, p->busy_timeout_ms, &m->db, p->err,
                             p->err_cap);
  else if (p->backend == SBX_META_POSTGRES)
    rc = sbx__db_open_pg(p->pg_conninfo, &m->db, p->err, p->err_cap);
  else
    rc = SBX_EINVAL;
  if (!rc)
    rc = migrate(m, p->err, p->err_cap);
  if (rc) {
    if (m->db && *sbx__db_errmsg(m->db) && p->err && p->err_cap && !p->err[0])
      snprintf(p->err, p->err_cap, "%s", sbx__db_errmsg(m->db));
    sbx_meta_close(m);
    return rc;
  }
  *out = m;
  return SBX_OK;
}

void sbx_meta_close(sbx_meta *m) {
  if (!m)
    return;
  sbx__db_close(m->db);
  free(m);
}

sbx__db *sbx__meta_db(sbx_meta *m) {
  return m ? m->db : NULL;
}

/* ---- sealed columns ---- */

void sbx_meta_set_cipher(sbx_meta *m, const sbx_meta_cipher *c) {
  if (!m)
    return;
  memset(&m->cipher, 0, sizeof m->cipher);
  m->has_cipher = c && c->seal && c->open && c->index;
  if (m->has_cipher)
    m->cipher = *c;
}

int sbx__meta_sealing(sbx_meta *m) {
  return m && m->has_cipher;
}

/* The associated data of a sealed value: "<column>|<tenant>|<row id>". */
static int aad_of(char *b, size_t cap, const char *column, const char *t,
                  const char *row) {
  int n = snprintf(b, cap, "%s|%s|%s", column, t, row);
  return n < 0 || (size_t)n >= cap ? SBX_ELIMIT : SBX_OK;
}

int sbx__meta_seal(sbx_meta *m, const char *tenant_id, const char *column,
                   const char *row_id, const void *pt, size_t n, uint8_t **out,
                   size_t *outn) {
  *out = NULL;
  *outn = 0;
  if (!m->has_cipher)
    return SBX_EINVAL;
  char aad[256];
  int rc = aad_of(aad, sizeof aad, column, tenant_id, row_id);
  if (rc)
    return rc;
  uint8_t *b = malloc(n + SBX_SEAL_OVERHEAD);
  if (!b)
    return SBX_ENOMEM;
  rc = m->cipher.seal(m->cipher.ctx, tenant_id, aad, pt, n, b);
  if (rc) {
    free(b);
    return rc;
  }
  *out = b;
  *outn = n + SBX_SEAL_OVERHEAD;
  return SBX_OK;
}

int sbx__meta_index(sbx_meta *m, const char *tenant_id, const char *purpose,
                    const char *s, char out[SBX__INDEX_TEXT]) {
  uint8_t h[SBX_SHA256_LEN];
  out[0] = 0;
  if (!m->has_cipher)
    return SBX_EINVAL;
  int rc = m->cipher.index(m->cipher.ctx, tenant_id, purpose, s, strlen(s), h);
  if (rc)
    return rc;
  out[0] = '~';
  sbx_hex(h, sizeof h, out + 1);
  return SBX_OK;
}

int sbx_meta_field_text(sbx_meta *m, const char *tenant_id, const char *column,
                        const char *row_id, const void *sealed, size_t n,
                        const void *plain, size_t plain_n, char *out,
                        size_t cap) {
  if (!m || !out || !cap)
    return SBX_EINVAL;
  out[0] = 0;
  if (!sealed || !n) { /* still plaintext */
    if (plain_n >= cap)
      return SBX_ELIMIT;
    if (plain_n)
      memcpy(out, plain, plain_n);
    out[plain_n] = 0;
    return SBX_OK;
  }
  if (!m->has_cipher || n < SBX_SEAL_OVERHEAD) /* < : shredded marker */
    return SBX_EKEY;
  if (n - SBX_SEAL_OVERHEAD >= cap)
    return SBX_ELIMIT;
  char aad[256];
  int rc = aad_of(aad, sizeof aad, column, tenant_id, row_id);
  size_t len = 0;
  if (!rc)
    rc = m->cipher.open(m->cipher.ctx, tenant_id, aad, sealed, n,
                        (uint8_t *)out, &len);
  if (!rc && memchr(out, 0, len))
    rc = SBX_EFORMAT;
  out[rc ? 0 : len] = 0;
  return rc;
}

int sbx__meta_col_text(sbx_meta *m, const sbx__row *r, int col_sealed,
                       int col_plain, const char *tenant_id, const char *column,
                       const char *row_id, char *out, size_t cap) {
  size_t n = 0, pn = 0;
  const void *s =
      sbx__col_null(r, col_sealed) ? NULL : sbx__col_bytes(r, col_sealed, &n);
  const void *p = sbx__col_bytes(r, col_plain, &pn);
  return sbx_meta_field_text(m, tenant_id, column, row_id, s, n, p, pn, out,
                             cap);
}

/* A clear column value for a write: the blind index of s (index 1: of
 * purpose column, 2: of purpose "audit.id") or "" (index 0) plus s sealed
 * (*sealed malloc'd, caller frees) when m seals; s itself and no sealed value
 * otherwise. */
static int seal_for_write(sbx_meta *m, const char *t, const char *column,
                          const char *row, const char *s, int index,
                          char clear[SBX__INDEX_TEXT], const char **clear_out,
                          uint8_t **sealed, size_t *sealed_n) {
  *sealed = NULL;
  *sealed_n = 0;
  *clear_out = s;
  if (!m->has_cipher)
    return SBX_OK;
  int rc = sbx__meta_seal(m, t, column, row, s, strlen(s), sealed, sealed_n);
  clear[0] = 0;
  if (!rc && index)
    rc = sbx__meta_index(m, t, index == 2 ? "audit.id" : column, s, clear);
  if (rc) {
    free(*sealed);
    *sealed = NULL;
    return rc;
  }
  *clear_out = clear;
  return SBX_OK;
}

/* ---- sealing plaintext rows in place (sbx_meta_seal_legacy) ---- */

/* One sealable column: select lists (tenant_id, row id, clear value) of
 * the rows still in plaintext; update sets $4 clear, $5 sealed where $1
 * tenant, $2 row id and still $3 the plaintext (idempotent, race-free). */
typedef struct sealable {
  const char *column; /* associated data label, e.g. "objects.name" */
  int index;          /* 1: the clear column keeps the blind index (of
                         purpose column; 2: of purpose "audit.id") */
  const char *select_sql;
  const char *update_sql;
} sealable;

static const sealable SEALABLE[] = {
    {"objects.name", 1,
     "SELECT tenant_id, id, name FROM objects WHERE name_sealed IS NULL",
     "UPDATE objects SET name = $4, name_sealed = $5 WHERE tenant_id = $1 "
     "AND id = $2 AND name = $3 AND name_sealed IS NULL"},
    {"projects.name", 0,
     "SELECT tenant_id, id, name FROM projects WHERE name_sealed IS NULL",
     "UPDATE projects SET name = $4, name_sealed = $5 WHERE tenant_id = $1 "
     "AND id = $2 AND name = $3 AND name_sealed IS NULL"},
    {"jobs.spec", 0,
     "SELECT tenant_id, id, spec FROM jobs WHERE spec_sealed IS NULL",
     "UPDATE jobs SET spec = $4, spec_sealed = $5 WHERE tenant_id = $1 AND "
     "id = $2 AND spec = $3 AND spec_sealed IS NULL"},
    /* job texts: one associated-data label and row id (the job) for all
     * of a job's texts, so SQL can copy them between columns (jobs.c);
     * equal texts of one job are sealed by one update */
    {"jobs.text", 0,
     "SELECT DISTINCT tenant_id, id, message FROM jobs WHERE message_sealed "
     "IS NULL AND message <> ''",
     "UPDATE jobs SET message = $4, message_sealed = $5 WHERE tenant_id = $1 "
     "AND id = $2 AND message = $3 AND message_sealed IS NULL"},
    {"jobs.text", 0,
     "SELECT DISTINCT tenant_id, id, cancel_reason FROM jobs WHERE "
     "cancel_reason_sealed IS NULL AND cancel_reason <> ''",
     "UPDATE jobs SET cancel_reason = $4, cancel_reason_sealed = $5 WHERE "
     "tenant_id = $1 AND id = $2 AND cancel_reason = $3 AND "
     "cancel_reason_sealed IS NULL"},
    {"jobs.text", 0,
     "SELECT DISTINCT tenant_id, job_id, message FROM job_shards WHERE "
     "message_sealed IS NULL AND message <> ''",
     "UPDATE job_shards SET message = $4, message_sealed = $5 WHERE "
     "tenant_id = $1 AND job_id = $2 AND message = $3 AND message_sealed IS "
     "NULL"},
    {"jobs.text", 0,
     "SELECT DISTINCT tenant_id, job_id, phase FROM job_shards WHERE "
     "phase_sealed IS NULL AND phase <> ''",
     "UPDATE job_shards SET phase = $4, phase_sealed = $5 WHERE tenant_id = "
     "$1 AND job_id = $2 AND phase = $3 AND phase_sealed IS NULL"},
    {"jobs.text", 0,
     "SELECT DISTINCT tenant_id, job_id, reason FROM job_events WHERE "
     "reason_sealed IS NULL AND reason <> ''",
     "UPDATE job_events SET reason = $4, reason_sealed = $5 WHERE tenant_id "
     "= $1 AND job_id = $2 AND reason = $3 AND reason_sealed IS NULL"},
    /* tenant names: under the tenant's own field key (once it has one) */
    {"tenants.name", 0,
     "SELECT id, id, name FROM tenants t WHERE name_sealed IS NULL AND "
     "EXISTS (SELECT 1 FROM secrets s WHERE s.tenant_id = t.id AND s.name = "
     "'field-key')",
     "UPDATE tenants SET name = $4, name_sealed = $5 WHERE id = $1 AND id = "
     "$2 AND name = $3 AND name_sealed IS NULL"},
    /* audit rows: of tenants with a field key only ("_sys" has none) */
    {"audit_events.actor", 2,
     "SELECT tenant_id, CAST(seq AS TEXT), actor FROM audit_events a WHERE "
     "actor_sealed IS NULL AND EXISTS (SELECT 1 FROM secrets s WHERE "
     "s.tenant_id = a.tenant_id AND s.name = 'field-key')",
     "UPDATE audit_events SET actor = $4, actor_sealed = $5 WHERE tenant_id "
     "= $1 AND seq = CAST($2 AS BIGINT) AND actor = $3 AND actor_sealed IS "
     "NULL"},
    {"audit_events.target", 2,
     "SELECT tenant_id, CAST(seq AS TEXT), target FROM audit_events a WHERE "
     "target_sealed IS NULL AND EXISTS (SELECT 1 FROM secrets s WHERE "
     "s.tenant_id = a.tenant_id AND s.name = 'field-key')",
     "UPDATE audit_events SET target = $4, target_sealed = $5 WHERE "
     "tenant_id = $1 AND seq = CAST($2 AS BIGINT) AND target = $3 AND "
     "target_sealed IS NULL"},
};

typedef struct plain_row {
  char tenant[SBX_ID_MAX];
  char id[SBX_ID_MAX];
  char *text;
} plain_row;

typedef struct plain_rows {
  plain_row *v;
  size_t n, cap;
} plain_rows;

static int row_plain(void *ctx, const sbx__row *r) {
  plain_rows *p = ctx;
  if (p->n == p->cap) {
    size_t cap = p->cap ? 2 * p->cap : 16;
    plain_row *q = realloc(p->v, cap * sizeof *q);
    if (!q)
      return SBX_ENOMEM;
    p->v = q;
    p->cap = cap;
  }
  plain_row *w = &p->v[p->n];
  memset(w, 0, sizeof *w);
  if (sbx__col_text(r, 0, w->tenant, sizeof w->tenant))
    return SBX_EFORMAT;
  if (sbx__col_text(r, 1, w->id, sizeof w->id))
    return SBX_EFORMAT;
  size_t n = 0;
  const void *b = sbx__col_bytes(r, 2, &n);
  if (!(w->text = malloc(n + 1)))
    return SBX_ENOMEM;
  if (n)
    memcpy(w->text, b, n);
  w->text[n] = 0;
  p->n++;
  return 0;
}

static void plain_rows_free(plain_rows *p) {
  for (size_t i = 0; i < p->n; i++) {
    sbx_memwipe(p->v[i].text, strlen(p->v[i].text));
    free(p->v[i].text);
  }
  free(p->v);
  memset(p, 0, sizeof *p);
}

/* Seals (or, for a shredded tenant, removes) one plaintext row of sc. */
static int seal_one(sbx_meta *m, const sealable *sc, const plain_row *w,
                    int64_t *changed) {
  char ix[SBX__INDEX_TEXT];
  const char *clear;
  uint8_t *sealed = NULL;
  size_t sn = 0;
  uint8_t dead[1] = {0};
  char gone[SBX_ID_MAX + 2];
  int rc = seal_for_write(m, w->tenant, sc->column, w->id, w->text, sc->index,
                          ix, &clear, &sealed, &sn);
  if (rc == SBX_EKEY || rc == SBX_ECRYPTO) {
    sbx_tenant t;
    if (sbx_meta_tenant_get(m, w->tenant, &t) || t.state != SBX_TENANT_SHREDDED)
      return SBX_OK; /* no key yet: left for a later pass */
    /* shredded: nothing can seal it any more, so the text goes; the
     * 1-byte sealed value reads as unreadable (SBX_ECRYPTO) */
    snprintf(gone, sizeof gone, "~%s", w->id);
    clear = sc->index ? gone : "";
    rc = SBX_OK;
  }
  if (rc)
    return rc;
  sbx__val v[] = {SBX_VT(w->tenant), SBX_VT(w->id), SBX_VT(w->text),
                  SBX_VT(clear),
                  sealed ? SBX_VB(sealed, sn) : SBX_VB(dead, sizeof dead)};
  int64_t ch = 0;
  rc = sbx__db_exec(m->db, sc->update_sql, v, 5, NULL, NULL, &ch);
  free(sealed);
  if (!rc)
    *changed += ch;
  return rc;
}

int sbx__meta_tenant_seal_name(sbx_meta *m, const char *tenant_id,
                               const char *name) {
  if (!m->has_cipher)
    return SBX_OK;
  const sealable *sc = NULL;
  for (size_t i = 0; i < sizeof SEALABLE / sizeof SEALABLE[0]; i++)
    if (!strcmp(SEALABLE[i].column, "tenants.name"))
      sc = &SEALABLE[i];
  plain_row w;
  memset(&w, 0, sizeof w);
  snprintf(w.tenant, sizeof w.tenant, "%s", tenant_id);
  snprintf(w.id, sizeof w.id, "%s", tenant_id);
  w.text = (char *)name;
  int64_t ch = 0;
  return seal_one(m, sc, &w, &ch);
}

int sbx_meta_seal_legacy(sbx_meta *m, int64_t *sealed) {
  if (sealed)
    *sealed = 0;
  if (!m)
    return SBX_EINVAL;
  if (!m->has_cipher)
    return SBX_OK;
  int64_t changed = 0;
  int rc = sbx__db_begin(m->db);
  if (rc)
    return rc;
  for (size_t i = 0; !rc && i < sizeof SEALABLE / sizeof SEALABLE[0]; i++) {
    plain_rows p = {NULL, 0, 0};
    rc = sbx__db_exec(m->db, SEALABLE[i].select_sql, NULL, 0, row_plain, &p,
                      NULL);
    for (size_t j = 0; !rc && j < p.n; j++)
      rc = seal_one(m, &SEALABLE[i], &p.v[j], &changed);
    plain_rows_free(&p);
  }
  if (rc) {
    sbx__db_rollback(m->db);
    return rc;
  }
  rc = sbx__db_commit(m->db);
  if (!rc && sealed)
    *sealed = changed;
  return rc;
}

int sbx_meta_schema_version(sbx_meta *m, int64_t *version) {
  *version = 0;
  return sbx__db_exec(m->db, "SELECT MAX(version) FROM schema_migrations", NULL,
                      0, row_int, version, NULL);
}

const char *sbx_meta_backend_name(const sbx_meta *m) {
  return sbx__db_backend(m->db) == 1 ? "sqlite" : "postgres";
}

const char *sbx_meta_last_error(const sbx_meta *m) {
  return sbx__db_errmsg(m->db);
}

int sbx_id_valid(const char *s) {
  if (!s)
    return 0;
  size_t n = strlen(s);
  if (n == 0 || n >= SBX_ID_MAX || s[0] == '.')
    return 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
      return 0;
  }
  return 1;
}

static int text_ok(const char *s, size_t cap) {
  return s && strlen(s) < cap;
}

int sbx_meta_checkpoint(sbx_meta *m) {
  if (sbx__db_backend(m->db) != 1)
    return SBX_OK;
  return sbx__db_exec(m->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, 0, NULL,
                      NULL, NULL);
}

int sbx_meta_begin(sbx_meta *m) {
  return sbx__db_begin(m->db);
}
int sbx_meta_commit(sbx_meta *m) {
  return sbx__db_commit(m->db);
}
int sbx_meta_rollback(sbx_meta *m) {
  return sbx__db_rollback(m->db);
}

/* one-row lookups: the callback fills and reports "found" */
typedef struct fill_ctx {
  int (*fill)(void *out, const sbx__row *r);
  void *out;
  int found;
} fill_ctx;

static int fill_row(void *ctx, const sbx__row *r) {
  fill_ctx *f = ctx;
  int rc = f->fill(f->out, r);
  if (rc)
    return rc;
  f->found = 1;
  return 1;
}

static int exec_one(sbx_meta *m, const char *sql, const sbx__val *v, int nv,
                    int (*fill)(void *out, const sbx__row *r), void *out,
                    size_t outsz) {
  fill_ctx f = {fill, out, 0};
  memset(out, 0, outsz);
  int rc = sbx__db_exec(m->db, sql, v, nv, fill_row, &f, NULL);
  if (!rc && !f.found)
    rc = SBX_ENOTFOUND;
  if (rc)
    memset(out, 0, outsz);
  return rc;
}

/* UPDATE/DELETE expecting at least one row */
static int exec_change(sbx_meta *m, const char *sql, const sbx__val *v,
                       int nv) {
  int64_t ch = 0;
  int rc = sbx__db_exec(m->db, sql, v, nv, NULL, NULL, &ch);
  if (!rc && ch == 0)
    rc = SBX_ENOTFOUND;
  return rc;
}

#define REQUIRE_ID(x)                                                          \
  do {                                                                         \
    if (!sbx_id_valid(x))                                                      \
      return SBX_EINVAL;                                                       \
  } while (0)

/* ---- tenants ---- */

int sbx_meta_tenant_create(sbx_meta *m, const char *tenant_id, const char *name,
                           int64_t now) {
  REQUIRE_ID(tenant_id);
  if (!text_ok(name, SBX_NAME_MAX) || tenant_id[0] == '_')
    return SBX_EINVAL;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(name), SBX_VI(now)};
  return sbx__db_exec(m->db,
                      "INSERT INTO tenants (id, name, state, created_at) "
                      "VALUES ($1, $2, 0, $3)",
                      v, 3, NULL, NULL, NULL);
}

static int fill_tenant(void *out, const sbx__row *r) {
  sbx_tenant *t = out;
  int rc = sbx__col_text(r, 0, t->id, sizeof t->id);
  if (!rc)
    rc = sbx__col_text(r, 1, t->name, sizeof t->name);
  t->state = sbx__col_int(r, 2);
  t->created_at = sbx__col_int(r, 3);
  return rc;
}

typedef struct tenant_ctx {
  sbx_meta *m;
  sbx_tenant *t;
  int found;
} tenant_ctx;

/* A tenant row with its name opened (sealed in name_sealed, column 4); a
 * shredded tenant's name reads as "". */
static int row_tenant(void *ctx, const sbx__row *r) {
  tenant_ctx *c = ctx;
  c->found = 1;
  int rc = fill_tenant(c->t, r);
  if (!rc)
    rc = sbx__meta_col_text(c->m, r, 4, 1, c->t->id, "tenants.name", c->t->id,
                            c->t->name, sizeof c->t->name);
  if (rc == SBX_EKEY) {
    c->t->name[0] = 0;
    rc = SBX_OK;
  }
  return rc ? rc : 1;
}

int sbx_meta_tenant_get(sbx_meta *m, const char *tenant_id, sbx_tenant *out) {
  REQUIRE_ID(tenant_id);
  if (!out)
    return SBX_EINVAL;
  memset(out, 0, sizeof *out);
  tenant_ctx c = {m, out, 0};
  sbx__val v[] = {SBX_VT(tenant_id)};
  int rc = sbx__db_exec(m->db,
                        "SELECT id, name, state, created_at, name_sealed FROM "
                        "tenants WHERE id = $1",
                        v, 1, row_tenant, &c, NULL);
  if (!rc && !c.found)
    rc = SBX_ENOTFOUND;
  if (rc)
    memset(out, 0, sizeof *out);
  return rc;
}

int sbx_meta_tenant_set_state(sbx_meta *m, const char *tenant_id,
                              int64_t state) {
  REQUIRE_ID(tenant_id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(state)};
  return exec_change(m, "UPDATE tenants SET state = $2 WHERE id = $1", v, 2);
}

typedef struct list_ctx {
  void *fn;
  void *ctx;
  int rc;
} list_ctx;

static int row_tenant_id(void *ctx, const sbx__row *r) {
  list_ctx *l = ctx;
  char id[SBX_ID_MAX];
  if (sbx__col_text(r, 0, id, sizeof id))
    return SBX_EFORMAT;
  int rc = ((int (*)(void *, const char *))l->fn)(l->ctx, id);
  return rc < 0 ? rc : rc ? 1 : 0;
}

int sbx_meta_tenant_list(sbx_meta *m,
                         int (*fn)(void *ctx, const char *tenant_id),
                         void *ctx) {
  list_ctx l = {(void *)fn, ctx, 0};
  return sbx__db_exec(m->db, "SELECT id FROM tenants ORDER BY id", NULL, 0,
                      row_tenant_id, &l, NULL);
}

/* ---- tenant keys ---- */

int sbx_meta_tenant_key_insert(sbx_meta *m, const char *tenant_id,
                               const sbx_tenant_key_row *row) {
  REQUIRE_ID(tenant_id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(row->version),
                  SBX_VB(row->wrapped, SBX_WRAPPED_KEY_LEN),
                  SBX_VI(row->active), SBX_VI(row->created_at)};
  return sbx__db_exec(m->db,
                      "INSERT INTO tenant_keys (tenant_id, version, wrapped, "
                      "active, created_at) VALUES ($1, $2, $3, $4, $5)",
                      v, 5, NULL, NULL, NULL);
}

static int fill_tkey(void *out, const sbx__row *r) {
  sbx_tenant_key_row *k = out;
  k->version = sbx__col_int(r, 0);
  k->active = sbx__col_int(r, 2);
  k->created_at = sbx__col_int(r, 3);
  return sbx__col_fixed(r, 1, k->wrapped, SBX_WRAPPED_KEY_LEN);
}

int sbx_meta_tenant_key_get(sbx_meta *m, const char *tenant_id, int64_t version,
                            sbx_tenant_key_row *out) {
  REQUIRE_ID(tenant_id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(version)};
  if (version == 0)
    return exec_one(m,
                    "SELECT version, wrapped, active, created_at FROM "
                    "tenant_keys WHERE tenant_id = $1 AND active = 1 "
                    "ORDER BY version DESC LIMIT 1",
                    v, 1, fill_tkey, out, sizeof *out);
  return exec_one(m,
                  "SELECT version, wrapped, active, created_at FROM "
                  "tenant_keys WHERE tenant_id = $1 AND version = $2",
                  v, 2, fill_tkey, out, sizeof *out);
}

static int row_tkey(void *ctx, const sbx__row *r) {
  list_ctx *l = ctx;
  sbx_tenant_key_row k;
  int rc = fill_tkey(&k, r);
  if (!rc)
    rc = ((int (*)(void *, const sbx_tenant_key_row *))l->fn)(l->ctx, &k);
  sbx_memwipe(&k, sizeof k);
  return rc < 0 ? rc : rc ? 1 : 0;
}

int sbx_meta_tenant_key_list(sbx_meta *m, const char *tenant_id,
                             int (*fn)(void *ctx,
                                       const sbx_tenant_key_row *row),
                             void *ctx) {
  REQUIRE_ID(tenant_id);
  list_ctx l = {(void *)fn, ctx, 0};
  sbx__val v[] = {SBX_VT(tenant_id)};
  return sbx__db_exec(m->db,
                      "SELECT version, wrapped, active, created_at FROM "
                      "tenant_keys WHERE tenant_id = $1 ORDER BY version",
                      v, 1, row_tkey, &l, NULL);
}

int sbx_meta_tenant_key_rewrap(sbx_meta *m, const char *tenant_id,
                               int64_t version,
                               const uint8_t wrapped[SBX_WRAPPED_KEY_LEN]) {
  REQUIRE_ID(tenant_id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(version),
                  SBX_VB(wrapped, SBX_WRAPPED_KEY_LEN)};
  return exec_change(m,
                     "UPDATE tenant_keys SET wrapped = $3 WHERE tenant_id = "
                     "$1 AND version = $2",
                     v, 3);
}

int sbx_meta_tenant_key_activate(sbx_meta *m, const char *tenant_id,
                                 int64_t version) {
  REQUIRE_ID(tenant_id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(version)};
  int rc = sbx__db_begin(m->db);
  if (rc)
    return rc;
  rc = sbx__db_exec(m->db,
                    "UPDATE tenant_keys SET active = 0 WHERE tenant_id = $1 "
                    "AND version <> $2",
                    v, 2, NULL, NULL, NULL);
  if (!rc)
    rc = exec_change(m,
                     "UPDATE tenant_keys SET active = 1 WHERE tenant_id = $1 "
                     "AND version = $2",
                     v, 2);
  if (rc) {
    sbx__db_rollback(m->db);
    return rc;
  }
  return sbx__db_commit(m->db);
}

int sbx_meta_tenant_key_delete(sbx_meta *m, const char *tenant_id,
                               int64_t version) {
  REQUIRE_ID(tenant_id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VI(version)};
  if (version == 0)
    return exec_change(m, "DELETE FROM tenant_keys WHERE tenant_id = $1", v, 1);
  return exec_change(m,
                     "DELETE FROM tenant_keys WHERE tenant_id = $1 AND "
                     "version = $2",
                     v, 2);
}

/* ---- objects ---- */

#define OBJ_COLS                                                               \
  "id, project_id, kind, name, size, sha256, key_version, wrapped_dek, "       \
  "created_at"
#define OBJ_READ_COLS OBJ_COLS ", name_sealed"
#define SEALED_VAL(p, n) ((p) ? SBX_VB((p), (n)) : SBX_VNULL)

static int fill_object(void *out, const sbx__row *r) {
  sbx_object *o = out;
  int rc = sbx__col_text(r, 0, o->id, sizeof o->id);
  if (!rc)
    rc = sbx__col_text(r, 1, o->project_id, sizeof o->project_id);
  if (!rc)
    rc = sbx__col_text(r, 2, o->kind, sizeof o->kind);
  o->size = sbx__col_int(r, 4);
  if (!rc)
    rc = sbx__col_fixed(r, 5, o->sha256, SBX_SHA256_LEN);
  o->key_version = sbx__col_int(r, 6);
  if (!rc)
    rc = sbx__col_fixed(r, 7, o->wrapped_dek, SBX_WRAPPED_KEY_LEN);
  o->created_at = sbx__col_int(r, 8);
  return rc;
}

int sbx_meta_object_insert(sbx_meta *m, const char *tenant_id,
                           const sbx_object *o) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(o->id);
  if ((o->project_id[0] && !sbx_id_valid(o->project_id)) ||
      !sbx_id_valid(o->kind) || !o->name[0] || o->size < 0 ||
      !memchr(o->name, 0, sizeof o->name))
    return SBX_EINVAL;
  char ix[SBX__INDEX_TEXT];
  const char *name;
  uint8_t *sealed;
  size_t sn;
  int rc = seal_for_write(m, tenant_id, "objects.name", o->id, o->name, 1, ix,
                          &name, &sealed, &sn);
  if (rc)
    return rc;
  sbx__val v[] = {SBX_VT(tenant_id),
                  SBX_VT(o->id),
                  SBX_VT(o->project_id),
                  SBX_VT(o->kind),
                  SBX_VT(name),
                  SBX_VI(o->size),
                  SBX_VB(o->sha256, SBX_SHA256_LEN),
                  SBX_VI(o->key_version),
                  SBX_VB(o->wrapped_dek, SBX_WRAPPED_KEY_LEN),
                  SBX_VI(o->created_at),
                  SEALED_VAL(sealed, sn)};
  rc = sbx__db_exec(m->db,
                    "INSERT INTO objects (tenant_id, " OBJ_COLS
                    ", name_sealed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, "
                    "$9, $10, $11)",
                    v, 11, NULL, NULL, NULL);
  free(sealed);
  return rc;
}

/* Reads object rows (OBJ_READ_COLS), opening the sealed name: into one
 * (one-row lookups) or for each row to fn (lists). */
typedef struct obj_read {
  sbx_meta *m;
  const char *tenant;
  sbx_object *one;
  int (*fn)(void *ctx, const sbx_object *o);
  void *ctx;
  int found;
} obj_read;

static int row_object(void *ctx, const sbx__row *r) {
  obj_read *c = ctx;
  sbx_object tmp;
  sbx_object *o = c->one ? c->one : &tmp;
  memset(o, 0, sizeof *o);
  int rc = fill_object(o, r);
  if (!rc)
    rc = sbx__meta_col_text(c->m, r, 9, 3, c->tenant, "objects.name", o->id,
                            o->name, sizeof o->name);
  if (rc == SBX_EKEY) /* shredded: the row stays usable, its name is gone */
    rc = SBX_OK;
  if (rc) {
    memset(o, 0, sizeof *o);
    return rc;
  }
  c->found = 1;
  if (c->one)
    return 1;
  rc = c->fn(c->ctx, o);
  return rc < 0 ? rc : rc ? 1 : 0;
}

static int object_one(sbx_meta *m, const char *tenant_id, const char *sql,
                      const sbx__val *v, int nv, sbx_object *out) {
  obj_read c = {m, tenant_id, out, NULL, NULL, 0};
  memset(out, 0, sizeof *out);
  int rc = sbx__db_exec(m->db, sql, v, nv, row_object, &c, NULL);
  if (!rc && !c.found)
    rc = SBX_ENOTFOUND;
  if (rc)
    memset(out, 0, sizeof *out);
  return rc;
}

int sbx_meta_object_get(sbx_meta *m, const char *tenant_id, const char *id,
                        sbx_object *out) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(id)};
  return object_one(m, tenant_id,
                    "SELECT " OBJ_READ_COLS
                    " FROM objects WHERE tenant_id = $1 AND id = $2",
                    v, 2, out);
}

int sbx_meta_object_find(sbx_meta *m, const char *tenant_id,
                         const char *project_id, const char *kind,
                         const char *name, sbx_object *out) {
  REQUIRE_ID(tenant_id);
  if (!project_id || !kind || !name)
    return SBX_EINVAL;
  char ix[SBX__INDEX_TEXT];
  if (m->has_cipher) { /* equality on the blind index */
    int rc = sbx__meta_index(m, tenant_id, "objects.name", name, ix);
    if (rc)
      return rc;
    name = ix;
  }
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(project_id), SBX_VT(kind),
                  SBX_VT(name)};
  return object_one(m, tenant_id,
                    "SELECT " OBJ_READ_COLS
                    " FROM objects WHERE tenant_id = $1 AND project_id = $2 "
                    "AND kind = $3 AND name = $4",
                    v, 4, out);
}

int sbx_meta_object_delete(sbx_meta *m, const char *tenant_id, const char *id) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(id)};
  return exec_change(m, "DELETE FROM objects WHERE tenant_id = $1 AND id = $2",
                     v, 2);
}

int sbx_meta_object_list(sbx_meta *m, const char *tenant_id, const char *kind,
                         int (*fn)(void *ctx, const sbx_object *o), void *ctx) {
  REQUIRE_ID(tenant_id);
  obj_read c = {m, tenant_id, NULL, fn, ctx, 0};
  sbx__val v[] = {SBX_VT(tenant_id), kind ? SBX_VT(kind) : SBX_VNULL};
  if (!kind)
    return sbx__db_exec(m->db,
                        "SELECT " OBJ_READ_COLS " FROM objects WHERE "
                        "tenant_id = $1 ORDER BY created_at, id",
                        v, 1, row_object, &c, NULL);
  return sbx__db_exec(m->db,
                      "SELECT " OBJ_READ_COLS " FROM objects WHERE tenant_id "
                      "= $1 AND kind = $2 ORDER BY created_at, id",
                      v, 2, row_object, &c, NULL);
}

int sbx_meta_object_rewrap(sbx_meta *m, const char *tenant_id, const char *id,
                           int64_t key_version,
                           const uint8_t wrapped[SBX_WRAPPED_KEY_LEN]) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(id), SBX_VI(key_version),
                  SBX_VB(wrapped, SBX_WRAPPED_KEY_LEN)};
  return exec_change(m,
                     "UPDATE objects SET key_version = $3, wrapped_dek = $4 "
                     "WHERE tenant_id = $1 AND id = $2",
                     v, 4);
}

int sbx_meta_object_count(sbx_meta *m, const char *tenant_id, int64_t *n) {
  REQUIRE_ID(tenant_id);
  *n = 0;
  sbx__val v[] = {SBX_VT(tenant_id)};
  return sbx__db_exec(m->db,
                      "SELECT COUNT(*) FROM objects WHERE tenant_id = $1", v, 1,
                      row_int, n, NULL);
}

/* ---- secrets ---- */

int sbx_meta_secret_put(sbx_meta *m, const char *tenant_id, const char *name,
                        const uint8_t *sealed, size_t n, int64_t now) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(name);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(name), SBX_VB(sealed, n),
                  SBX_VI(now)};
  return sbx__db_exec(m->db,
                      "INSERT INTO secrets (tenant_id, name, sealed, "
                      "updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT "
                      "(tenant_id, name) DO UPDATE SET sealed = "
                      "excluded.sealed, updated_at = excluded.updated_at",
                      v, 4, NULL, NULL, NULL);
}

typedef struct secret_ctx {
  uint8_t *out;
  size_t cap, n;
  int found;
} secret_ctx;

static int row_secret(void *ctx, const sbx__row *r) {
  secret_ctx *s = ctx;
  size_t n;
  const void *p = sbx__col_bytes(r, 0, &n);
  s->found = 1;
  s->n = n;
  if (n > s->cap)
    return SBX_ELIMIT;
  memcpy(s->out, p, n);
  return 1;
}

int sbx_meta_secret_get(sbx_meta *m, const char *tenant_id, const char *name,
                        uint8_t *out, size_t *n) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(name);
  secret_ctx s = {out, *n, 0, 0};
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(name)};
  int rc = sbx__db_exec(m->db,
                        "SELECT sealed FROM secrets WHERE tenant_id = $1 AND "
                        "name = $2",
                        v, 2, row_secret, &s, NULL);
  if (!rc && !s.found)
    rc = SBX_ENOTFOUND;
  *n = rc ? 0 : s.n;
  return rc;
}

/* ---- users, projects, memberships ---- */

int sbx_meta_user_insert(sbx_meta *m, const char *tenant_id,
                         const sbx_user *u) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(u->id);
  if (u->email_sealed_len > sizeof u->email_sealed ||
      !text_ok(u->password_hash, sizeof u->password_hash))
    return SBX_EINVAL;
  /* with a cipher, callers index e-mails with the tenant's key
   * (sbx_store_blind_index): version 1 */
  sbx__val v[] = {SBX_VT(tenant_id),
                  SBX_VT(u->id),
                  SBX_VB(u->email_index, SBX_SHA256_LEN),
                  SBX_VB(u->email_sealed, u->email_sealed_len),
                  SBX_VT(u->password_hash),
                  SBX_VI(u->disabled),
                  SBX_VI(u->created_at),
                  SBX_VI(m->has_cipher ? 1 : 0)};
  return sbx__db_exec(m->db,
                      "INSERT INTO users (tenant_id, id, email_index, "
                      "email_sealed, password_hash, disabled, created_at, "
                      "email_index_v) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      v, 8, NULL, NULL, NULL);
}

static int fill_user(void *out, const sbx__row *r) {
  sbx_user *u = out;
  int rc = sbx__col_text(r, 0, u->id, sizeof u->id);
  if (!rc)
    rc = sbx__col_fixed(r, 1, u->email_index, SBX_SHA256_LEN);
  size_t n;
  const void *p = sbx__col_bytes(r, 2, &n);
  if (!rc && n > sizeof u->email_sealed)
    rc = SBX_EFORMAT;
  if (!rc) {
    memcpy(u->email_sealed, p, n);
    u->email_sealed_len = n;
    rc = sbx__col_text(r, 3, u->password_hash, sizeof u->password_hash);
  }
  u->disabled = sbx__col_int(r, 4);
  u->created_at = sbx__col_int(r, 5);
  return rc;
}

#define USER_COLS                                                              \
  "id, email_index, email_sealed, password_hash, disabled, created_at"

int sbx_meta_user_get(sbx_meta *m, const char *tenant_id, const char *id,
                      sbx_user *out) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(id)};
  return exec_one(
      m, "SELECT " USER_COLS " FROM users WHERE tenant_id = $1 AND id = $2", v,
      2, fill_user, out, sizeof *out);
}

int sbx_meta_user_find_email(sbx_meta *m, const char *tenant_id,
                             const uint8_t email_index[SBX_SHA256_LEN],
                             sbx_user *out) {
  REQUIRE_ID(tenant_id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VB(email_index, SBX_SHA256_LEN)};
  return exec_one(m,
                  "SELECT " USER_COLS
                  " FROM users WHERE tenant_id = $1 AND email_index = $2",
                  v, 2, fill_user, out, sizeof *out);
}

int sbx_meta_project_create(sbx_meta *m, const char *tenant_id,
                            const char *project_id, const char *name,
                            int64_t now) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(project_id);
  if (!text_ok(name, SBX_NAME_MAX))
    return SBX_EINVAL;
  char ix[SBX__INDEX_TEXT];
  const char *clear;
  uint8_t *sealed;
  size_t sn;
  int rc = seal_for_write(m, tenant_id, "projects.name", project_id, name, 0,
                          ix, &clear, &sealed, &sn);
  if (rc)
    return rc;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(project_id), SBX_VT(clear),
                  SBX_VI(now), SEALED_VAL(sealed, sn)};
  rc = sbx__db_exec(m->db,
                    "INSERT INTO projects (tenant_id, id, name, "
                    "created_at, name_sealed) VALUES ($1, $2, $3, $4, $5)",
                    v, 5, NULL, NULL, NULL);
  free(sealed);
  return rc;
}

int sbx_meta_membership_set(sbx_meta *m, const char *tenant_id,
                            const char *project_id, const char *user_id,
                            const char *role) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(project_id);
  REQUIRE_ID(user_id);
  if (!sbx_id_valid(role) || strlen(role) >= SBX_KIND_MAX)
    return SBX_EINVAL;
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(project_id), SBX_VT(user_id),
                  SBX_VT(role)};
  int rc = sbx__db_exec(
      m->db,
      "INSERT INTO memberships (tenant_id, project_id, user_id, role) "
      "VALUES ($1, $2, $3, $4) ON CONFLICT (tenant_id, project_id, user_id) "
      "DO UPDATE SET role = excluded.role",
      v, 4, NULL, NULL, NULL);
  return rc == SBX_EEXIST || rc == SBX_ECONFLICT ? SBX_ENOTFOUND : rc;
}

static int fill_role(void *out, const sbx__row *r) {
  return sbx__col_text(r, 0, out, SBX_KIND_MAX);
}

int sbx_meta_membership_get(sbx_meta *m, const char *tenant_id,
                            const char *project_id, const char *user_id,
                            char role[SBX_KIND_MAX]) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(project_id);
  REQUIRE_ID(user_id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(project_id), SBX_VT(user_id)};
  return exec_one(m,
                  "SELECT role FROM memberships WHERE tenant_id = $1 AND "
                  "project_id = $2 AND user_id = $3",
                  v, 3, fill_role, role, SBX_KIND_MAX);
}

/* ---- API keys ---- */

int sbx_meta_api_key_insert(sbx_meta *m, const char *tenant_id,
                            const sbx_api_key *k) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(k->id);
  REQUIRE_ID(k->user_id);
  REQUIRE_ID(k->role);
  if (k->project_id[0] && !sbx_id_valid(k->project_id))
    return SBX_EINVAL;
  sbx__val v[] = {SBX_VT(tenant_id),     SBX_VT(k->id),
                  SBX_VT(k->user_id),    SBX_VT(k->project_id),
                  SBX_VT(k->role),       SBX_VB(k->secret_hash, SBX_SHA256_LEN),
                  SBX_VI(k->created_at), SBX_VI(k->expires_at)};
  return sbx__db_exec(m->db,
                      "INSERT INTO api_keys (tenant_id, id, user_id, "
                      "project_id, role, secret_hash, created_at, "
                      "expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                      v, 8, NULL, NULL, NULL);
}

static int fill_api_key(void *out, const sbx__row *r) {
  sbx_api_key *k = out;
  int rc = sbx__col_text(r, 0, k->id, sizeof k->id);
  if (!rc)
    rc = sbx__col_text(r, 1, k->user_id, sizeof k->user_id);
  if (!rc)
    rc = sbx__col_text(r, 2, k->project_id, sizeof k->project_id);
  if (!rc)
    rc = sbx__col_text(r, 3, k->role, sizeof k->role);
  if (!rc)
    rc = sbx__col_fixed(r, 4, k->secret_hash, SBX_SHA256_LEN);
  k->created_at = sbx__col_int(r, 5);
  k->expires_at = sbx__col_int(r, 6);
  k->revoked_at = sbx__col_int(r, 7);
  k->last_used_at = sbx__col_int(r, 8);
  return rc;
}

int sbx_meta_api_key_get(sbx_meta *m, const char *tenant_id, const char *id,
                         sbx_api_key *out) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(id)};
  return exec_one(m,
                  "SELECT id, user_id, project_id, role, secret_hash, "
                  "created_at, expires_at, revoked_at, last_used_at FROM "
                  "api_keys WHERE tenant_id = $1 AND id = $2",
                  v, 2, fill_api_key, out, sizeof *out);
}

int sbx_meta_api_key_revoke(sbx_meta *m, const char *tenant_id, const char *id,
                            int64_t now) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(id), SBX_VI(now)};
  return exec_change(m,
                     "UPDATE api_keys SET revoked_at = $3 WHERE tenant_id = "
                     "$1 AND id = $2 AND revoked_at = 0",
                     v, 3);
}

int sbx_meta_api_key_touch(sbx_meta *m, const char *tenant_id, const char *id,
                           int64_t now) {
  REQUIRE_ID(tenant_id);
  REQUIRE_ID(id);
  sbx__val v[] = {SBX_VT(tenant_id), SBX_VT(id), SBX_VI(now)};
  return exec_change(m,
                     "UPDATE api_keys SET last_used_at = $3 WHERE tenant_id "
                     "= $1 AND id = $2",
                     v, 3);
}

/* ---- audit (hash chain) ---- */

/* The hash of one audit row (db.h): SHA-256 over the previous hash, seq,
 * ts and the length-prefixed tenant, actor, action and target. */
void sbx__audit_hash(const char *tenant_id, int64_t seq, int64_t ts,
                     const char *actor, const char *action, const char *target,
                     const uint8_t prev[32], uint8_t out[32]) {
  sbx_sha256_ctx c;
  uint8_t num[16];
  if (sbx_sha256_init(&c)) {
    memset(out, 0, 32);
    return;
  }
  sbx_sha256_update(&c, prev, 32);
  for (int i = 0; i < 8; i++) {
    num[i] = (uint8_t)((uint64_t)seq >> (56 - 8 * i));
    num[8 + i] = (uint8_t)((uint64_t)ts >> (56 - 8 * i));
  }
  sbx_sha256_update(&c, num, 16);
  const char *parts[] = {tenant_id, actor, action, target};
  for (int i = 0; i < 4; i++) { /* length-prefixed: unambiguous */
    uint32_t n = (uint32_t)strlen(parts[i]);
    uint8_t l[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                    (uint8_t)n};
    sbx_sha256_update(&c, l, 4);
    sbx_sha256_update(&c, parts[i], n);
  }
  sbx_sha256_final(&c, out);
}

typedef struct head_ctx {
  int64_t seq;
  uint8_t hash[32];
} head_ctx;

static int row_head(void *ctx, const sbx__row *r) {
  head_ctx *h = ctx;
  h->seq = sbx__col_int(r, 0);
  return sbx__col_fixed(r, 1, h->hash, 32) ? SBX_EFORMAT : 1;
}

/* One audit field for the row: with a cipher, sealed for
 * "audit_events.<column>|<tenant>|<seq>" and the clear column holding the
 * blind index (purpose "audit.id", shared by actor and target so that
 * "rows naming user u" stays one equality); plaintext when there is no
 * cipher or the tenant has no field key ("_sys", unknown tenants). */
static int audit_field(sbx_meta *m, const char *t, const char *column,
                       int64_t seq, const char *s, char ix[SBX__INDEX_TEXT],
                       const char **clear, uint8_t **sealed, size_t *n) {
  char row[24];
  *clear = s;
  *sealed = NULL;
  *n = 0;
  if (!m->has_cipher)
    return SBX_OK;
  snprintf(row, sizeof row, "%lld", (long long)seq);
  int rc = sbx__meta_seal(m, t, column, row, s, strlen(s), sealed, n);
  if (rc == SBX_EKEY)
    return SBX_OK;
  if (!rc)
    rc = sbx__meta_index(m, t, "audit.id", s, ix);
  if (rc) {
    free(*sealed);
    *sealed = NULL;
    return rc;
  }
  *clear = ix;
  return SBX_OK;
}

int sbx_meta_blind_text(sbx_meta *m, const char *tenant_id, const char *purpose,
                        const char *s, char out[SBX_META_INDEX_TEXT]) {
  if (!m || !purpose || !s || !sbx_id_valid(tenant_id))
    return SBX_EINVAL;
  return sbx__meta_index(m, tenant_id, purpose, s, out);
}

int sbx_meta_audit_append(sbx_meta *m, const char *tenant_id, int64_t ts,
                          const char *actor, const char *action,
                          const char *target, int64_t *seq_out) {
  REQUIRE_ID(tenant_id);
  if (!text_ok(actor, SBX_ID_MAX) || !text_ok(action, SBX_KIND_MAX * 2) ||
      !text_ok(target, SBX_NAME_MAX))
    return SBX_EINVAL;
  int rc = SBX_ECONFLICT;
  for (int attempt = 0;
       attempt < 8 && (rc == SBX_EEXIST || rc == SBX_ECONFLICT); attempt++) {
    head_ctx h = {0, {0}};
    if ((rc = sbx__db_begin(m->db)))
      return rc;
    sbx__val v1[] = {SBX_VT(tenant_id)};
    rc = sbx__db_exec(m->db,
                      "SELECT seq, hash FROM audit_events WHERE tenant_id = "
                      "$1 ORDER BY seq DESC LIMIT 1",
                      v1, 1, row_head, &h, NULL);
    uint8_t hash[32];
    int64_t seq = h.seq + 1;
    char ia[SBX__INDEX_TEXT], it[SBX__INDEX_TEXT];
    const char *ca = actor, *ct = target;
    uint8_t *sa = NULL, *st = NULL;
    size_t na = 0, nt = 0;
    if (!rc)
      rc = audit_field(m, tenant_id, "audit_events.actor", seq, actor, ia, &ca,
                       &sa, &na);
    if (!rc)
      rc = audit_field(m, tenant_id, "audit_events.target", seq, target, it,
                       &ct, &st, &nt);
    if (!rc) {
      /* the chain hashes the plaintext (exports carry verifiable rows) */
      sbx__audit_hash(tenant_id, seq, ts, actor, action, target, h.hash, hash);
      sbx__val v[] = {SBX_VT(tenant_id),  SBX_VI(seq),      SBX_VI(ts),
                      SBX_VT(ca),         SBX_VT(action),   SBX_VT(ct),
                      SBX_VB(h.hash, 32), SBX_VB(hash, 32), SEALED_VAL(sa, na),
                      SEALED_VAL(st, nt)};
      rc = sbx__db_exec(m->db,
                        "INSERT INTO audit_events (tenant_id, seq, ts, "
                        "actor, action, target, prev_hash, hash, "
                        "actor_sealed, target_sealed) VALUES ($1, $2, $3, "
                        "$4, $5, $6, $7, $8, $9, $10)",
                        v, 10, NULL, NULL, NULL);
    }
    free(sa);
    free(st);
    if (rc) {
      sbx__db_rollback(m->db);
      continue;
    }
    rc = sbx__db_commit(m->db);
    if (!rc && seq_out)
      *seq_out = seq;
  }
  return rc;
}

/* The walk of audit_verify.c without an anchor: from the purge checkpoint
 * to the head. */
int sbx_meta_audit_verify(sbx_meta *m, const char *tenant_id, int64_t *count) {
  sbx_audit_check c;
  int rc = sbx_meta_audit_check(m, tenant_id, 0, NULL, &c);
  if (count)
    *count = c.count;
  return rc;
}
