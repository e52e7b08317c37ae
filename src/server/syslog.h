/*
 * syslog.h - forwarding of audit rows and security events to a syslog
 * receiver (a SIEM) in RFC 5424 format over TCP + TLS with RFC 5425
 * octet-counting framing (issue 14 items 1-2). Config: syslog_url =
 * tls://host:port, syslog_ca_file (the receiver's CA; its name must match
 * host), syslog_queue_max (default 10000 messages).
 *
 * Never blocks a request: messages go to a bounded in-memory queue that
 * one sender thread drains; when the receiver is down the thread
 * reconnects with exponential backoff (0.25 s doubling to 30 s) and a full
 * queue drops its oldest message (counted: aisbxd_syslog_dropped_total).
 * Delivery is at most once: a message written into a connection the
 * receiver has just closed can be lost (RFC 5425 has no acknowledgement).
 */
#ifndef SBX_SERVER_SYSLOG_H
#define SBX_SERVER_SYSLOG_H

#include <stdint.h>

#include "sbx/meta.h"
#include "state.h"

/* Starts the sender when s->p.syslog_url is set (s->syslog stays NULL
 * otherwise). SBX_EINVAL for a malformed url or a missing CA file. */
int sbx__syslog_start(sbx_server *s);
/* Sends what is queued (at most 2 s more), stops the thread, frees. */
void sbx__syslog_stop(sbx_server *s);
/* Queues a security event (a structured-log line, JSON, no newline) as
 * MSGID "security" (or "anchor" for audit anchors), severity from level
 * ("info", "warn", "error"). No-op when forwarding is off. */
void sbx__syslog_event(sbx_server *s, const char *level, const char *json);
/* Queues one audit row of tenant as MSGID "audit" with its fields and
 * chain hashes as structured data. No-op when forwarding is off. */
void sbx__syslog_audit(sbx_server *s, const char *tenant,
                       const sbx_audit_event *e);
/* Counters for /metrics: sent, dropped (queue full), connected (0/1). */
void sbx__syslog_counts(const sbx_server *s, int64_t *sent, int64_t *dropped,
                        int64_t *connected);

#endif
