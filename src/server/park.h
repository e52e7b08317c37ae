/*
 * park.h - parked connections and the server's housekeeping thread.
 *
 * A handler that has to wait (a worker's claim long-poll, an event stream
 * with nothing new) never blocks an MHD thread: its connection is
 * suspended (MHD_suspend_connection) and listed here; a pump thread
 * resumes every parked connection every SBX__PARK_TICK_MS (at once after
 * sbx__park_kick), and MHD calls the handler (or the content reader)
 * again, which looks at the store and answers or parks once more. The same
 * thread re-queues expired job leases every few seconds
 * (sbx_meta_job_requeue_expired).
 */
#ifndef SBX_SERVER_PARK_H
#define SBX_SERVER_PARK_H

#include <microhttpd.h>

#include "sbx/server.h"

#define SBX__PARK_TICK_MS 100
#define SBX__SWEEP_SECONDS 2

/* Starts the pump thread. 0 or a negative sbx_status. */
int sbx__park_start(sbx_server *s);
/* Refuses further parking, resumes every parked connection and joins the
 * pump; idempotent. Call between MHD_quiesce_daemon and MHD_stop_daemon
 * (MHD must not be stopped with suspended connections). */
void sbx__park_stop(sbx_server *s);
/* Suspends c (from an access handler or a content reader only) until the
 * next tick. 0 when parked; SBX_EBUSY when the server is stopping (c is
 * not suspended: answer now). */
int sbx__park(sbx_server *s, struct MHD_Connection *c);
/* Resumes every parked connection now (e.g. a job became runnable). */
void sbx__park_kick(sbx_server *s);

#endif
