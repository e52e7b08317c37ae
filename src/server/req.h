/*
 * req.h - a request in flight and its authenticated caller. Types only.
 * One sbx__req per HTTP request, allocated by http.c when the headers
 * arrive and freed when MHD reports the request complete.
 */
#ifndef SBX_SERVER_REQ_H
#define SBX_SERVER_REQ_H

#include <microhttpd.h>
#include <stddef.h>
#include <stdint.h>

#include "sbx/meta.h"
#include "sbx/server.h"
#include "sbx/store.h"

/* The kind of credential a request carried. WORKER and JOB_TOKEN are the
 * worker protocol's (docs/worker-protocol.md): worker tokens open the
 * routes flagged WORKER, job tokens those flagged JOB_TOKEN, for their own
 * job only (authz.c). */
enum {
  SBX__CRED_NONE = 0,
  SBX__CRED_APIKEY = 1,
  SBX__CRED_JWT = 2,
  SBX__CRED_SESSION = 3,  /* browser session cookie (session.c) */
  SBX__CRED_WORKER = 4,   /* a worker token (wt_...): key_id is its id */
  SBX__CRED_JOB_TOKEN = 5 /* a job token (jt_...): tenant, job, shard */
};

typedef struct sbx__principal {
  int kind;
  char tenant[SBX_ID_MAX];
  char user[SBX_ID_MAX];
  char key_id[SBX_ID_MAX];      /* API key id, or JWT jti */
  char key_project[SBX_ID_MAX]; /* API key project scope ("" = tenant) */
  int key_role;                 /* API key role bit */
  char key_issuer[SBX_ID_MAX];  /* API key: who created it ("" = user) */
  int user_checked; /* 1: user state checked in this request (authcache) */
  int user_trole;   /* then: the user's tenant role bit */
  /* step-up (authz.c): when the caller last proved a password (or an
   * identity provider login) interactively; 0 never (API keys, tokens
   * from a refresh grant). Sessions: srv_sessions.auth_at; access tokens:
   * their "auth_time" claim. */
  int64_t auth_time;
  char family[SBX_ID_MAX]; /* access token: its refresh family ("" none) */
  /* job tokens: what the token may touch (sbx_job_scope) */
  char job[SBX_ID_MAX];
  char job_project[SBX_ID_MAX];
  char job_model[SBX_ID_MAX];
  char job_dataset[SBX_ID_MAX];
  int64_t job_shard;
} sbx__principal;

#define SBX__EXTRA_HDR 4
#define SBX__HDR_VALUE_MAX 1536
#define SBX__MAX_PARAMS 3
typedef struct sbx__req {
  sbx_server *srv;
  struct MHD_Connection *conn;
  const char *method;
  char path[SBX_PATH_MAX];
  char reqid[33];
  char ip[64];
  /* strict.c's verdict on the raw request target: NULL, or why a 400 */
  const char *bad_target;
  int route; /* index in srv->routes, -1 none */
  char params[SBX__MAX_PARAMS][SBX_ID_MAX];
  int role; /* effective role bit for this route */
  sbx__principal who;
  double t0;     /* monotonic time the headers arrived (metrics) */
  sbx_store *st; /* from the pool, released on completion */
  /* body */
  char *body;
  size_t body_len;
  size_t body_cap;
  int64_t max_body;
  int final;                /* the whole body has arrived */
  sbx_store_writer *upload; /* upload routes: streaming into the store */
  int64_t upload_len;       /* bytes already written to upload */
  /* response */
  int status;
  char *resp;
  size_t resp_len;
  int resp_owned; /* free(resp) after queueing */
  const char *resp_type;
  char extra_hdr[SBX__EXTRA_HDR][2][SBX__HDR_VALUE_MAX]; /* name/value
                                  pairs: Retry-After, Location, Set-Cookie */
  int nextra;
  /* streamed answers (event streams): MHD_create_response_from_callback */
  MHD_ContentReaderCallback resp_cb;
  void *resp_cb_cls;
  MHD_ContentReaderFreeCallback resp_cb_free;
  /* waiting (park.h): a handler sets park = 1 and no answer to be
   * suspended and called again; park_refused = 1 when the server is
   * stopping (the handler must answer now) */
  int park;
  int park_refused;
  double deadline; /* the handler's own use (claim: end of the long-poll) */
} sbx__req;

#endif
