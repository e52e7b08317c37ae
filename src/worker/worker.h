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

#endif
