/*
 * log.h - the server's one way to stderr. Library code of aisbxd reports
 * through return codes; what an operator must see (a refused
 * configuration, a request that failed with 500) goes through sbx__log,
 * and main.c prints the command's own output. No other file of
 * src/server writes to stderr.
 */
#ifndef SBX_SERVER_LOG_H
#define SBX_SERVER_LOG_H

/* Writes one line (printf format, no trailing newline needed) to stderr,
 * prefixed "aisbxd: ". Thread-safe (one fprintf per line). */
void sbx__log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The same without the prefix: structured lines (JSON request log). */
void sbx__log_raw(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
