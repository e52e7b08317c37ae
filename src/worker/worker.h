/*
 * worker.h - internals of aisbx-worker shared by its sources.
 */
#ifndef SBX_WORKER_INTERNAL_H
#define SBX_WORKER_INTERNAL_H
#include <stdio.h>

/* Runs every sandbox probe in its own runner and prints one line per
 * check to o. Returns 0 when everything was refused, 1 otherwise. */
int sbx__worker_self_test(const char *runner_path, FILE *o);

#endif
