/*
 * routes_worker.h - handlers of the worker protocol
 * (docs/worker-protocol.md): claim (worker token), and for a job token:
 * model, dataset, heartbeat, result uploads, finish. Authorization (the
 * credential type, the job in the path) is authz.c's, from table.c.
 */
#ifndef SBX_SERVER_ROUTES_WORKER_H
#define SBX_SERVER_ROUTES_WORKER_H

#include "req.h"

int sbx__h_worker_claim(sbx__req *r);
int sbx__h_worker_model(sbx__req *r);
int sbx__h_worker_dataset(sbx__req *r);
int sbx__h_worker_heartbeat(sbx__req *r);
int sbx__h_worker_result_put(sbx__req *r);
int sbx__h_worker_finish(sbx__req *r);

#endif
