/*
 * audit_cli.c - `aisbxd audit ...` (audit_cli.h):
 *   aisbxd audit verify --data-dir DIR [--anchor-file F] [--config FILE]
 *   aisbxd audit anchor --data-dir DIR [--anchor-file F] [--config FILE]
 *   aisbxd audit export --data-dir DIR [--since T] [--until T]
 *                       [--tenant ID] [--config FILE]
 * T is unix seconds or RFC 3339 UTC ("2026-12-05T10:00:00Z"). Output on
 * stdout (JSON lines), errors on stderr.
 */
#define _GNU_SOURCE /* timegm */
#include "audit_cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sbx/server.h"

/* Prints the usage of the audit commands; returns 2. */
static int usage(void) {
  fprintf(stderr,
          "usage: aisbxd audit verify --data-dir DIR [--anchor-file F] "
          "[--config FILE]\n"
          "       aisbxd audit anchor --data-dir DIR [--anchor-file F] "
          "[--config FILE]\n"
          "       aisbxd audit export --data-dir DIR [--since T] [--until T] "
          "[--tenant ID] [--config FILE]\n"
          "       (T: unix seconds or RFC 3339 UTC, e.g. "
          "2026-12-05T10:00:00Z)\n");
  return 2;
}

/* Parses T (unix seconds or YYYY-MM-DDTHH:MM:SSZ) into *out; 0 or -1. */
static int parse_time(const char *s, int64_t *out) {
  char *end;
  long long v = strtoll(s, &end, 10);
  if (end != s && !*end && v >= 0) {
    *out = v;
    return 0;
  }
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
  if (!end || (strcmp(end, "Z") && strcmp(end, "+00:00")))
    return -1;
  *out = (int64_t)timegm(&tm);
  return 0;
}

int sbx__audit_cli(int argc, char **argv) {
  if (argc < 3)
    return usage();
  const char *cmd = argv[2];
  int op = !strcmp(cmd, "verify")   ? 1
           : !strcmp(cmd, "anchor") ? 2
           : !strcmp(cmd, "export") ? 3
                                    : 0;
  if (!op)
    return usage();
  const char *config = NULL, *data_dir = NULL, *anchor = NULL, *tenant = NULL;
  int64_t since = 0, until = 0;
  for (int i = 3; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v)
      return usage();
    if (!strcmp(a, "--config"))
      config = v;
    else if (!strcmp(a, "--data-dir"))
      data_dir = v;
    else if (op != 3 && !strcmp(a, "--anchor-file"))
      anchor = v;
    else if (op == 3 && !strcmp(a, "--tenant"))
      tenant = v;
    else if (op == 3 && !strcmp(a, "--since")) {
      if (parse_time(v, &since))
        return usage();
    } else if (op == 3 && !strcmp(a, "--until")) {
      if (parse_time(v, &until))
        return usage();
    } else
      return usage();
  }
  sbx_server_params p = sbx_server_default_params();
  if (sbx_server_config_load(&p, config))
    return 2;
  if (data_dir)
    p.data_dir = data_dir;
  if (!p.data_dir)
    return usage();
  int rc = op == 1 ? sbx_server_audit_verify(&p, anchor, stdout)
           : op == 2
               ? sbx_server_audit_anchor(&p, anchor, stdout)
               : sbx_server_audit_export(&p, tenant, since, until, stdout);
  fflush(stdout);
  if (rc == SBX_ECRYPTO && op == 1) {
    fprintf(stderr, "aisbxd audit verify: a chain is broken (see ok:false)\n");
    return 1;
  }
  if (rc) {
    fprintf(stderr, "aisbxd audit %s: %s\n", cmd, sbx_strerror(rc));
    return 1;
  }
  return 0;
}
