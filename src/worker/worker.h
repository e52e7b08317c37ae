/*
 * worker.h - internals of aisbx-worker shared by its sources.
 */
#ifndef SBX_WORKER_INTERNAL_H
#define SBX_WORKER_INTERNAL_H
#include <stdio.h>

/* Runs every sandbox probe in its own runner and prints one line per
 * check to o (verbose: also the runner's log of each sandbox step, as
 * "# " lines). Returns 0 when everything was refused, 1 otherwise. */
int sbx__worker_self_test(const char *runner_path, int verbose, FILE *o);

/* The network worker (service.c): slots claiming jobs from a server. */
typedef struct sbx_worker_params {
  const char *server;      /* https://host:port */
  const char *ca_file;     /* PEM to trust for the server; NULL: system */
  const char *token;       /* the worker token */
  const char *name;        /* this worker's name (logs, claims) */
  const char *runner_path; /* aisbx-runner */
  int slots;               /* jobs at once (default 1) */
  int threads;             /* engine threads per job; 0: the runner's default */
  int poll_seconds;        /* claim long-poll (default 20) */
  int cold_spawn;          /* 1: no runners started ahead (default 0) */
  FILE *log;               /* where to log (default stderr); NULL: silent */
  volatile int *stop_flag; /* set non-zero to stop (after current jobs) */
} sbx_worker_params;

sbx_worker_params sbx_worker_default_params(void);

/* Runs p->slots claim loops until *p->stop_flag; returns 0 or a negative
 * sbx_status when no slot could start. */
int sbx__worker_serve(const sbx_worker_params *p);

#endif
