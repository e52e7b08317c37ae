/*
 * router.c - path matching over a route table (router.h).
 */
#include "router.h"

#include <string.h>

/* Matches path against pattern; {x} takes one valid id segment. */
static int match(const char *pattern, const char *path,
                 char params[SBX__MAX_PARAMS][SBX_ID_MAX]) {
  int np = 0;
  const char *p = pattern, *u = path;
  while (*p && *u) {
    if (*p == '{') {
      const char *pe = strchr(p, '}');
      const char *ue = strchr(u, '/');
      size_t n = ue ? (size_t)(ue - u) : strlen(u);
      if (!pe)
        return 0;
      /* a literal suffix inside the segment ("{i}.png") ends the id */
      const char *se = strchr(pe + 1, '/');
      size_t sl = se ? (size_t)(se - pe - 1) : strlen(pe + 1);
      if (sl) {
        if (n <= sl || memcmp(u + n - sl, pe + 1, sl))
          return 0;
        n -= sl;
      }
      if (n == 0 || n >= SBX_ID_MAX || np >= SBX__MAX_PARAMS)
        return 0;
      memcpy(params[np], u, n);
      params[np][n] = 0;
      if (!sbx_id_valid(params[np]))
        return 0;
      np++;
      p = pe + 1;
      u += n;
    } else if (*p++ != *u++) {
      return 0;
    }
  }
  return !*p && !*u;
}

int sbx__route_match(const sbx__route *tab, size_t n, sbx__req *r,
                     const char *method, const char *path, int *path_known) {
  *path_known = 0;
  char params[SBX__MAX_PARAMS][SBX_ID_MAX];
  for (size_t i = 0; i < n; i++) {
    if (!match(tab[i].pattern, path, params))
      continue;
    if (strcmp(tab[i].method, method)) {
      *path_known = 1;
      continue;
    }
    memcpy(r->params, params, sizeof params);
    return (int)i;
  }
  return -1;
}

const char *sbx__route_perm_name(const sbx__route *rt) {
  return rt->flags & SBX__RF_PUBLIC ? "public" : sbx__perm_name(rt->perm);
}
