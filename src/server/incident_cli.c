/*
 * incident_cli.c - `aisbxd admin ...` (incident_cli.h), on a stopped
 * server's data dir:
 *   aisbxd admin revoke-user USER     --data-dir DIR [--tenant T]
 *   aisbxd admin freeze|unfreeze      --data-dir DIR [--tenant T]
 *   aisbxd admin rotate-tenant-key    --data-dir DIR [--tenant T]
 *   aisbxd admin rotate-jwt-key       --data-dir DIR [--retire-old]
 *   aisbxd admin rotate-master-key    --data-dir DIR
 * Every command also takes --config FILE and appends an audit row (actor
 * "admin-cli") to the tenant (default "default"). One JSON line on stdout.
 */
#include "incident_cli.h"

#include <stdio.h>
#include <string.h>

#include "incident.h"
#include "sbx/server.h"

enum { C_REVOKE = 1, C_FREEZE, C_UNFREEZE, C_TKEY, C_JWT, C_MASTER };
static const struct {
  const char *name;
  int op;
} CMDS[] = {
    {"revoke-user", C_REVOKE}, {"freeze", C_FREEZE},
    {"unfreeze", C_UNFREEZE},  {"rotate-tenant-key", C_TKEY},
    {"rotate-jwt-key", C_JWT}, {"rotate-master-key", C_MASTER},
};

/* Prints the usage; returns 2. */
static int usage(void) {
  fprintf(stderr,
          "usage: aisbxd admin revoke-user USER --data-dir DIR [--tenant T]\n"
          "       aisbxd admin freeze|unfreeze --data-dir DIR [--tenant T]\n"
          "       aisbxd admin rotate-tenant-key --data-dir DIR [--tenant T]\n"
          "       aisbxd admin rotate-jwt-key --data-dir DIR [--retire-old]\n"
          "       aisbxd admin rotate-master-key --data-dir DIR\n"
          "       (each also takes --config FILE; the server must be "
          "stopped: on a live one use the API, docs/runbook.md)\n");
  return 2;
}

int sbx__incident_cli(int argc, char **argv) {
  int op = 0, i = 3, retire = 0;
  for (size_t k = 0; argc > 2 && k < sizeof CMDS / sizeof CMDS[0]; k++)
    if (!strcmp(argv[2], CMDS[k].name))
      op = CMDS[k].op;
  if (!op)
    return usage();
  const char *user = NULL, *config = NULL, *data_dir = NULL, *tenant = NULL;
  if (op == C_REVOKE) {
    if (argc < 4 || argv[3][0] == '-')
      return usage();
    user = argv[i++];
  }
  for (; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (op == C_JWT && !strcmp(a, "--retire-old")) {
      retire = 1;
      continue;
    }
    if (!v)
      return usage();
    if (!strcmp(a, "--config"))
      config = v;
    else if (!strcmp(a, "--data-dir"))
      data_dir = v;
    else if (!strcmp(a, "--tenant"))
      tenant = v;
    else
      return usage();
    i++;
  }
  sbx_server_params p = sbx_server_default_params();
  if (sbx_server_config_load(&p, config))
    return 2;
  if (data_dir)
    p.data_dir = data_dir;
  if (!p.data_dir)
    return usage();
  int rc;
  char kid[32] = "";
  sbx_revoke_counts c = {0, 0, 0};
  switch (op) {
  case C_REVOKE:
    rc = sbx__incident_revoke_user(&p, tenant, user, &c);
    if (!rc)
      printf("{\"user\":\"%s\",\"sessions\":%lld,\"refresh_tokens\":%lld,"
             "\"api_keys\":%lld}\n",
             user, (long long)c.sessions, (long long)c.refresh_tokens,
             (long long)c.api_keys);
    break;
  case C_FREEZE:
  case C_UNFREEZE:
    rc = sbx__incident_freeze(&p, tenant, op == C_FREEZE);
    if (!rc)
      printf("{\"tenant\":\"%s\",\"frozen\":%s}\n", tenant ? tenant : "default",
             op == C_FREEZE ? "true" : "false");
    break;
  case C_TKEY:
    rc = sbx__incident_rotate_tenant_key(&p, tenant);
    if (!rc)
      printf("{\"tenant\":\"%s\",\"rotated\":true}\n",
             tenant ? tenant : "default");
    break;
  case C_JWT:
    rc = sbx__incident_rotate_jwt(&p, tenant, retire, kid);
    if (!rc)
      printf("{\"kid\":\"%s\",\"retired_old\":%s}\n", kid,
             retire ? "true" : "false");
    break;
  default:
    rc = sbx__incident_rotate_master(&p, tenant);
    if (!rc)
      printf("{\"rotated\":true}\n");
    break;
  }
  fflush(stdout);
  if (rc) {
    fprintf(stderr, "aisbxd admin %s: %s\n", argv[2], sbx_strerror(rc));
    return 1;
  }
  return 0;
}
