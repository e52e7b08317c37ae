/*
 * rbac.h - roles and permissions: the one table of who may do what.
 * A role is a bit; a permission maps to the set of roles holding it. The
 * permissions are an enum generated, with their names and role sets, from
 * SBX_PERM_MAP so the three can never drift apart. Depends on nothing of
 * src/server.
 */
#ifndef SBX_SERVER_RBAC_H
#define SBX_SERVER_RBAC_H

enum {
  SBX__ROLE_VIEWER = 1,
  SBX__ROLE_DEVELOPER = 2,
  SBX__ROLE_ANALYST = 4,
  SBX__ROLE_ADMIN = 8
};
#define SBX__ROLES_ALL                                                         \
  (SBX__ROLE_VIEWER | SBX__ROLE_DEVELOPER | SBX__ROLE_ANALYST | SBX__ROLE_ADMIN)

/* X(enum suffix, name, roles). NONE: routes that no tenant role opens
 * (public routes, the operator's /metrics, worker and job-token routes:
 * their route flags decide, see router.h). */
#define SBX_PERM_MAP(X)                                                        \
  X(NONE, "none", 0)                                                           \
  X(AUTHENTICATED, "authenticated", SBX__ROLES_ALL)                            \
  X(TENANT_READ, "tenant:read", SBX__ROLES_ALL)                                \
  X(QUOTA_WRITE, "quota:write", SBX__ROLE_ADMIN)                               \
  X(PROJECT_READ, "project:read", SBX__ROLES_ALL)                              \
  X(PROJECT_CREATE, "project:create", SBX__ROLE_ADMIN)                         \
  X(USER_READ, "user:read", SBX__ROLE_ADMIN)                                   \
  X(USER_CREATE, "user:create", SBX__ROLE_ADMIN)                               \
  X(USER_WRITE, "user:write", SBX__ROLE_ADMIN)                                 \
  X(MEMBER_READ, "member:read", SBX__ROLE_ANALYST | SBX__ROLE_ADMIN)           \
  X(MEMBER_WRITE, "member:write", SBX__ROLE_ADMIN)                             \
  X(APIKEY_READ, "apikey:read", SBX__ROLE_ADMIN)                               \
  X(APIKEY_CREATE, "apikey:create", SBX__ROLE_ADMIN)                           \
  X(APIKEY_REVOKE, "apikey:revoke", SBX__ROLE_ADMIN)                           \
  X(MODEL_READ, "model:read", SBX__ROLES_ALL)                                  \
  X(MODEL_WRITE, "model:write", SBX__ROLE_DEVELOPER | SBX__ROLE_ADMIN)         \
  X(MODEL_DELETE, "model:delete", SBX__ROLE_DEVELOPER | SBX__ROLE_ADMIN)       \
  X(DATASET_READ, "dataset:read", SBX__ROLES_ALL)                              \
  X(DATASET_WRITE, "dataset:write", SBX__ROLE_DEVELOPER | SBX__ROLE_ADMIN)     \
  X(DATASET_DELETE, "dataset:delete", SBX__ROLE_DEVELOPER | SBX__ROLE_ADMIN)   \
  X(JOB_READ, "job:read", SBX__ROLES_ALL)                                      \
  X(JOB_CREATE, "job:create",                                                  \
    SBX__ROLE_DEVELOPER | SBX__ROLE_ANALYST | SBX__ROLE_ADMIN)                 \
  X(JOB_CANCEL, "job:cancel",                                                  \
    SBX__ROLE_DEVELOPER | SBX__ROLE_ANALYST | SBX__ROLE_ADMIN)                 \
  X(RESULT_READ, "result:read", SBX__ROLES_ALL)                                \
  X(AUDIT_READ, "audit:read", SBX__ROLE_ANALYST | SBX__ROLE_ADMIN)             \
  X(AUDIT_VERIFY, "audit:verify", SBX__ROLE_ADMIN)                             \
  X(JOBLIMIT_READ, "job-limits:read", SBX__ROLE_ADMIN)                         \
  X(JOBLIMIT_WRITE, "job-limits:write", SBX__ROLE_ADMIN)                       \
  X(RETENTION_READ, "retention:read", SBX__ROLE_ADMIN)                         \
  X(RETENTION_WRITE, "retention:write", SBX__ROLE_ADMIN)                       \
  X(USER_ERASE, "user:erase", SBX__ROLE_ADMIN)                                 \
  X(INCIDENT, "incident:respond", SBX__ROLE_ADMIN)                             \
  /* process-wide counters of all tenants: no tenant role may read them,       \
   * only the operator's token (route flag OPERATOR) */                        \
  X(METRICS, "metrics", 0)

typedef enum sbx__perm {
#define SBX__PERM_ENUM(id, name, roles) SBX__PERM_##id,
  SBX_PERM_MAP(SBX__PERM_ENUM)
#undef SBX__PERM_ENUM
      SBX__PERM_COUNT
} sbx__perm;

/* Role bit of a role name; 0 when unknown or NULL. */
int sbx__role_bit(const char *name);
/* Name of the highest role in bit ("" for none). Static. */
const char *sbx__role_name(int bit);
/* The set of role bits holding permission p (0 for an unknown p). */
int sbx__perm_roles(sbx__perm p);
/* The permission's name ("model:read"); "" for an unknown p. Static. */
const char *sbx__perm_name(sbx__perm p);
/* The lower of two roles in the order viewer < developer, analyst < admin;
 * developer and analyst are not comparable and meet at viewer; 0 (no role)
 * wins over everything. */
int sbx__role_meet(int a, int b);

#endif
