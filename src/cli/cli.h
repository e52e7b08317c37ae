/* cli.h - shared helpers of the aisbx command line (not a library API). */
#ifndef AISBX_CLI_H
#define AISBX_CLI_H

#include <stdint.h>
#include <stdio.h>

#define EXIT_MISMATCH 1
#define EXIT_BADINPUT 2

int cmd_attack(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);

/* SHA-256 of a file as 64 hex chars + NUL; 0 on success. */
int cli_sha256_file(const char *path, char hex[65]);

/* A tiny streaming JSON writer with proper string escaping. */
typedef struct jw {
  FILE *f;
  int depth;
  int first[64];
} jw;
void jw_begin_obj(jw *w);
void jw_end_obj(jw *w);
void jw_begin_arr(jw *w);
void jw_end_arr(jw *w);
void jw_key(jw *w, const char *k);
void jw_str(jw *w, const char *s);
void jw_num(jw *w, double v);
void jw_int(jw *w, int64_t v);
void jw_bool(jw *w, int v);
void jw_null(jw *w);

#endif
