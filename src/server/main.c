/*
 * main.c - the aisbxd command line.
 *   aisbxd --data-dir DIR [--listen HOST:PORT] [--config FILE]
 *   aisbxd init --data-dir DIR [--tenant ID] [--name NAME] [--config FILE]
 *               [--master-key-from pkcs11:URI|file:PATH|credential:NAME]
 * Configuration: file, then AISBXD_<KEY> environment variables, then flags.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sbx/meta.h"
#include "sbx/server.h"

static void usage(void) {
  fprintf(stderr,
          "usage: aisbxd --data-dir DIR [--listen HOST:PORT] [--config FILE]\n"
          "       aisbxd init --data-dir DIR [--tenant ID] [--name NAME] "
          "[--config FILE]\n"
          "       aisbxd openapi | routes\n");
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
  if (argc == 2 && !strcmp(argv[1], "routes")) {
    for (size_t k = 0; k < sbx_server_route_count(); k++) {
      sbx_route_info ri = sbx_server_route(k);
      printf("%-6s %-50s %s\n", ri.method, ri.pattern, ri.permission);
    }
    return 0;
  }
  if (argc > 1 && !strcmp(argv[1], "init")) {
    init = 1;
    i = 2;
  }
  const char *config = NULL, *data_dir = NULL, *listen = NULL;
  const char *tenant = "default", *name = NULL, *mk_from = NULL;
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
    else if (init && !strcmp(a, "--name"))
      name = v;
    else if (init && !strcmp(a, "--master-key-from"))
      mk_from = v; /* pkcs11:URI | file:PATH | credential:NAME */
    else {
      usage();
      return 2;
    }
    i++;
  }
  sbx_server_params p = sbx_server_default_params();
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
  if (init) {
    char key[160], boot[160];
    int rc = mk_from ? sbx_server_init_master_key(&p, mk_from) : 0;
    if (!rc)
      rc = sbx_server_init_tenant(&p, tenant, name, key, boot);
    if (rc) {
      fprintf(stderr, "aisbxd init: %s\n", sbx_strerror(rc));
      return 1;
    }
    printf("tenant: %s\n", tenant);
    printf("bootstrap-link: https://%s/api/v1/auth/bootstrap#token=%s\n",
           p.listen, boot);
    printf("bootstrap-token: %s\n", boot);
    printf("admin-api-key: %s\n", key);
    printf("(shown once: only hashes are stored)\n");
    fflush(stdout);
    return 0;
  }
  /* SIGTERM/SIGINT are taken by sigwait below, in this thread only */
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, NULL);
  signal(SIGPIPE, SIG_IGN);
  sbx_server *s = NULL;
  char fp[96] = "";
  int rc = sbx_server_start(&p, &s, fp);
  if (rc) {
    fprintf(stderr, "aisbxd: start failed: %s\n", sbx_strerror(rc));
    return 1;
  }
  printf("tls-fingerprint-sha256: %s\n", fp);
  printf("listening: https://%s port %u\n", p.listen,
         (unsigned)sbx_server_port(s));
  fflush(stdout);
  char pf[4096];
  snprintf(pf, sizeof pf, "%s/aisbxd.port", p.data_dir);
  FILE *f = fopen(pf, "w");
  if (f) {
    fprintf(f, "%u\n", (unsigned)sbx_server_port(s));
    fclose(f);
  }
  int sig = 0;
  sigwait(&set, &sig);
  fprintf(stderr, "aisbxd: signal %d, shutting down\n", sig);
  sbx_server_stop(s);
  unlink(pf);
  fprintf(stderr, "aisbxd: stopped\n");
  return 0;
}
