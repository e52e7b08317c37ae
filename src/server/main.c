/*
 * main.c - the aisbxd command line.
 *   aisbxd --data-dir DIR [--listen HOST:PORT] [--config FILE] [--workers N]
 *          [--worker-bin PATH]  (SIGHUP: reopen log_file; SIGTERM: stop)
 *   aisbxd init --data-dir DIR [--tenant ID] [--name NAME] [--config FILE]
 *   aisbxd worker-token create|list|revoke ID --data-dir DIR [--name N]
 *   aisbxd job-limits set --data-dir DIR [--tenant T] [--max-wall-seconds N]..
 *               [--master-key-from pkcs11:URI|file:PATH|credential:NAME]
 *   aisbxd audit verify|anchor|export --data-dir DIR ... (audit_cli.c)
 *   aisbxd admin revoke-user|freeze|unfreeze|rotate-*-key ... (incident_cli.c)
 * Configuration: file, then AISBXD_<KEY> environment variables, then flags.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <stddef.h>
#include <time.h>

#include "audit_cli.h"
#include "incident_cli.h"
#include "confine.h"
#include "sbx/jobs.h"
#include "sbx/meta.h"
#include "sbx/server.h"

static void usage(void) {
  fprintf(stderr,
          "usage: aisbxd --data-dir DIR [--listen HOST:PORT] [--config FILE]\n"
          "              [--workers N (default: one per CPU; 0: none)] "
          "[--worker-bin PATH]\n"
          "       aisbxd init --data-dir DIR [--tenant ID] [--name NAME] "
          "[--config FILE]\n"
          "       aisbxd worker-token create --data-dir DIR [--name NAME]\n"
          "       aisbxd worker-token list --data-dir DIR\n"
          "       aisbxd worker-token revoke ID --data-dir DIR\n"
          "       aisbxd job-limits set --data-dir DIR [--tenant T] "
          "[--default-wall-seconds N] [--max-wall-seconds N]\n"
          "              [--default-memory-bytes N] [--max-memory-bytes N] "
          "[--default-samples N]\n"
          "              [--max-samples N] [--max-shards N] "
          "[--max-concurrency N]   (0 inherit, -1 none)\n"
          "       aisbxd audit verify|anchor|export ...\n"
          "       aisbxd admin revoke-user|freeze|unfreeze|rotate-tenant-key|"
          "rotate-jwt-key|rotate-master-key ...\n"
          "       aisbxd openapi | routes\n");
}

/* --max-wall-seconds etc.: the fields of sbx_job_limit_set */
static const struct {
  const char *opt;
  size_t off;
} LIMIT_OPTS[] = {
    {"--default-wall-seconds",
     offsetof(sbx_job_limit_set, default_wall_seconds)},
    {"--max-wall-seconds", offsetof(sbx_job_limit_set, max_wall_seconds)},
    {"--default-memory-bytes",
     offsetof(sbx_job_limit_set, default_memory_bytes)},
    {"--max-memory-bytes", offsetof(sbx_job_limit_set, max_memory_bytes)},
    {"--default-samples", offsetof(sbx_job_limit_set, default_samples)},
    {"--max-samples", offsetof(sbx_job_limit_set, max_samples)},
    {"--max-shards", offsetof(sbx_job_limit_set, max_shards)},
    {"--max-concurrency", offsetof(sbx_job_limit_set, max_concurrency)},
};

/* Subcommands with a module of their own: argv[1] names them. */
static const struct {
  const char *name;
  int (*fn)(int argc, char **argv);
} SUBCMDS[] = {
    {"audit", sbx__audit_cli},    /* audit_cli.c */
    {"admin", sbx__incident_cli}, /* incident_cli.c: incident tools */
};

static int print_token(void *ctx, const sbx_worker_token *t) {
  (void)ctx;
  printf("%s\t%s\tcreated=%lld\trevoked=%lld\tlast_used=%lld\n", t->id,
         t->name[0] ? t->name : "-", (long long)t->created_at,
         (long long)t->revoked_at, (long long)t->last_used_at);
  return 0;
}

int main(int argc, char **argv) {
  int init = 0, i = 1;
  if (argc == 2 && !strcmp(argv[1], "openapi")) { /* the document, offline */
    char *doc = sbx_server_openapi();
    if (!doc)
      return 1;
    puts(doc);
    free(doc);
    return 0;
  }
  for (size_t k = 0; argc > 1 && k < sizeof SUBCMDS / sizeof SUBCMDS[0]; k++)
    if (!strcmp(argv[1], SUBCMDS[k].name))
      return SUBCMDS[k].fn(argc, argv);
  if (argc == 2 && !strcmp(argv[1], "routes")) {
    for (size_t k = 0; k < sbx_server_route_count(); k++) {
      sbx_route_info ri = sbx_server_route(k);
      printf("%-6s %-50s %s\n", ri.method, ri.pattern, ri.permission);
    }
    return 0;
  }
  /* operator commands: 2 worker-token create, 3 list, 4 revoke,
   * 5 job-limits set */
  int op = 0;
  const char *revoke_id = NULL;
  if (argc > 1 && !strcmp(argv[1], "init")) {
    init = 1;
    i = 2;
  } else if (argc > 2 && !strcmp(argv[1], "worker-token")) {
    op = !strcmp(argv[2], "create")   ? 2
         : !strcmp(argv[2], "list")   ? 3
         : !strcmp(argv[2], "revoke") ? 4
                                      : 0;
    i = 3;
    if (op == 4 && argc > 3)
      revoke_id = argv[i++];
    if (!op || (op == 4 && !revoke_id)) {
      usage();
      return 2;
    }
  } else if (argc > 2 && !strcmp(argv[1], "job-limits") &&
             !strcmp(argv[2], "set")) {
    op = 5;
    i = 3;
  }
  sbx_job_limit_set lim;
  memset(&lim, 0, sizeof lim);
  const char *config = NULL, *data_dir = NULL, *listen = NULL;
  const char *tenant = "default", *name = NULL, *lim_tenant = NULL;
  const char *worker_bin = NULL, *mk_from = NULL;
  int workers = -1; /* -1: one per CPU */
  for (; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) {
      usage();
      return 2;
    }
    if (!strcmp(a, "--config"))
      config = v;
    else if (!strcmp(a, "--data-dir"))
      data_dir = v;
    else if (!strcmp(a, "--listen"))
      listen = v;
    else if (init && !strcmp(a, "--tenant"))
      tenant = v;
    else if ((init || op == 2) && !strcmp(a, "--name"))
      name = v;
    else if (op == 5 && !strcmp(a, "--tenant"))
      lim_tenant = v;
    else if (!init && !op && !strcmp(a, "--workers")) {
      char *end;
      long x = strtol(v, &end, 10);
      if (*end || end == v || x < 0 || x > 256) {
        usage();
        return 2;
      }
      workers = (int)x;
    } else if (!init && !op && !strcmp(a, "--worker-bin"))
      worker_bin = v;
    else if (init && !strcmp(a, "--master-key-from"))
      mk_from = v; /* pkcs11:URI | file:PATH | credential:NAME */
    else {
      size_t k = 0, nk = sizeof LIMIT_OPTS / sizeof LIMIT_OPTS[0];
      while (op == 5 && k < nk && strcmp(a, LIMIT_OPTS[k].opt))
        k++;
      char *end;
      long long x = op == 5 && k < nk ? strtoll(v, &end, 10) : 0;
      if (op != 5 || k == nk || *end || end == v || x < -1) {
        usage();
        return 2;
      }
      *(int64_t *)((char *)&lim + LIMIT_OPTS[k].off) = x;
    }
    i++;
  }
  sbx_server_params p = sbx_server_default_params();
  p.confine = "on"; /* aisbxd confines itself unless configured off */
  if (sbx_server_config_load(&p, config))
    return 2;
  if (data_dir)
    p.data_dir = data_dir;
  if (listen)
    p.listen = listen;
  if (!p.data_dir) {
    usage();
    return 2;
  }
  if (op) {
    int rc = SBX_OK;
    if (op == 2) {
      char tok[SBX_TOKEN_MAX], id[SBX_ID_MAX];
      rc = sbx_server_worker_token_create(&p, name, tok, id);
      if (!rc) {
        printf("worker-token-id: %s\n", id);
        printf("worker-token: %s\n", tok);
        printf("(shown once: only a keyed hash is stored)\n");
      }
    } else if (op == 3) {
      rc = sbx_server_worker_token_list(&p, print_token, NULL);
    } else if (op == 4) {
      rc = sbx_server_worker_token_revoke(&p, revoke_id);
      if (!rc)
        printf("revoked: %s\n", revoke_id);
    } else {
      rc = sbx_server_job_limits_set(&p, lim_tenant, &lim);
    }
    if (rc) {
      fprintf(stderr, "aisbxd: %s\n", sbx_strerror(rc));
      return 1;
    }
    fflush(stdout);
    return 0;
  }
  if (init) {
    char key[160], boot[160];
    int rc = mk_from ? sbx_server_init_master_key(&p, mk_from) : 0;
    if (!rc)
      rc = sbx_server_init_tenant(&p, tenant, name, key, boot);
    if (rc) {
      fprintf(stderr, "aisbxd init: %s\n", sbx_strerror(rc));
      return 1;
    }
    /* as root: the data dir belongs to the user the server will run as */
    if (sbx__confine_own_data_dir(&p))
      return 1;
    printf("tenant: %s\n", tenant);
    printf("bootstrap-link: https://%s/api/v1/auth/bootstrap#token=%s\n",
           p.listen, boot);
    printf("bootstrap-token: %s\n", boot);
    printf("admin-api-key: %s\n", key);
    printf("admin-api-key-expires-in-days: 90 (rotate it: POST "
           "/api/v1/api-keys/{id}/rotate)\n");
    printf("(shown once: only hashes are stored)\n");
    fflush(stdout);
    return 0;
  }
  /* SIGTERM/SIGINT (and SIGHUP: reopen log_file) are taken by sigwait
   * below, in this thread only */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  /* the worker launcher, forked while nothing is open and before any
   * thread: the confined server never forks or execs (workers.c) */
  sbx_local_workers *lw = NULL;
  if (workers != 0)
    sbx_local_workers_fork(workers < 0 ? sbx_local_workers_default() : workers,
                           worker_bin, &lw);
  sbx_server *s = NULL;
  char fp[96] = "";
  int rc = sbx_server_start(&p, &s, fp); /* confined on return (confine.h) */
  if (rc) {
    fprintf(stderr, "aisbxd: start failed: %s\n", sbx_strerror(rc));
    sbx_local_workers_stop(lw);
    return 1;
  }
  printf("tls-fingerprint-sha256: %s\n", fp);
  printf("listening: https://%s port %u\n", p.listen,
         (unsigned)sbx_server_port(s));
  fflush(stdout);
  char pf[4096];
  snprintf(pf, sizeof pf, "%s/aisbxd.port", p.data_dir);
  unlink(pf); /* maybe left by an earlier run as another user */
  FILE *f = fopen(pf, "w");
  if (f) {
    fprintf(f, "%u\n", (unsigned)sbx_server_port(s));
    fclose(f);
  }
  sbx_local_workers_start(s, lw);
  int sig = 0;
  while (!sigwait(&set, &sig) && sig == SIGHUP) /* logrotate */
    if (sbx_server_log_reopen(s))
      fprintf(stderr, "aisbxd: log_file reopen failed\n");
  fprintf(stderr, "aisbxd: signal %d, shutting down\n", sig);
  sbx_local_workers_stop(lw);
  sbx_server_stop(s);
  unlink(pf);
  fprintf(stderr, "aisbxd: stopped\n");
  return 0;
}
