/*
 * reqlog.h - structured logs (issue 14 item 1): one JSON object per line
 * for every request and every security event, actor and client IP
 * pseudonymised with a keyed HMAC; to stderr or the config's log_file
 * (reopened on SIGHUP: sbx_server_log_reopen). No secret, token, password,
 * key or payload byte is ever written: only ids, route patterns, numbers.
 */
#ifndef SBX_SERVER_REQLOG_H
#define SBX_SERVER_REQLOG_H

#include "req.h"
#include "state.h"

/* Derives the pseudonym key from the keyring (sbx_store_keyed_hash with a
 * purpose of its own: it rotates with the master key) and opens log_file
 * (append, 0600). Returns 0 or a negative error. */
int sbx__reqlog_init(sbx_server *s);
/* Closes the log file; safe when never opened. */
void sbx__reqlog_free(sbx_server *s);
/* One "request" line: time, level (info, warn for 4xx, error for 5xx),
 * request id, tenant, actor and ip pseudonyms, method, route pattern,
 * status, latency, request and response bytes. */
void sbx__reqlog_request(sbx__req *r, const char *method, double seconds);
/* One security event line (login.ok, login.failed, lockout,
 * permission.denied, audit.<action>, ...) for request r; target (may be
 * NULL) is pseudonymised. */
void sbx__reqlog_event(sbx__req *r, const char *level, const char *event,
                       const char *target);

/* One job event line for request r: event "job.state" (level info) or
 * "sandbox.violation" (warn) with the job's tenant, job id, shard (-1:
 * the whole job) and state name; no reason text (a worker's free text is
 * not logged: the job record keeps it). Also forwarded to syslog. */
void sbx__reqlog_job(sbx__req *r, const char *event, const char *tenant,
                     const char *job, int64_t shard, const char *state);

/* Writes one preformatted JSON object (no newline) as a line of the same
 * stream (the audit anchors). */
void sbx__reqlog_line(sbx_server *s, const char *json);

#endif
