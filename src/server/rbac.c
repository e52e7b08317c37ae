/*
 * rbac.c - roles and permissions (rbac.h), and sbx_server_role_allows.
 */
#include "rbac.h"

#include <string.h>

#include "sbx/server.h"

static const char *const ROLE_NAMES[] = {"viewer", "developer", "analyst",
                                         "admin"};

int sbx__role_bit(const char *name) {
  for (int i = 0; name && i < 4; i++)
    if (!strcmp(name, ROLE_NAMES[i]))
      return 1 << i;
  return 0;
}

const char *sbx__role_name(int bit) {
  for (int i = 3; i >= 0; i--)
    if (bit & (1 << i))
      return ROLE_NAMES[i];
  return "";
}

static const struct {
  const char *name;
  int roles;
} PERMS[SBX__PERM_COUNT] = {
#define SBX__PERM_ROW(id, name, roles) [SBX__PERM_##id] = {name, roles},
    SBX_PERM_MAP(SBX__PERM_ROW)
#undef SBX__PERM_ROW
};

int sbx__perm_roles(sbx__perm p) {
  return (unsigned)p < SBX__PERM_COUNT ? PERMS[p].roles : 0;
}

const char *sbx__perm_name(sbx__perm p) {
  return (unsigned)p < SBX__PERM_COUNT ? PERMS[p].name : "";
}

int sbx__role_meet(int a, int b) {
  if (!a || !b)
    return 0;
  if (a == b || b == SBX__ROLE_ADMIN)
    return a;
  if (a == SBX__ROLE_ADMIN)
    return b;
  return SBX__ROLE_VIEWER;
}

/* 1 when the named role holds the named permission; unknown names (and
 * "public", which is a route flag, not a permission) hold nothing. */
int sbx_server_role_allows(const char *role, const char *permission) {
  int bit = sbx__role_bit(role);
  for (int p = 0; permission && p < SBX__PERM_COUNT; p++)
    if (!strcmp(PERMS[p].name, permission))
      return (PERMS[p].roles & bit) != 0;
  return 0;
}
