/*
 * audit.c - audit events from a request (audit.h).
 */
#include "audit.h"

#include <stdio.h>

#include "log.h"
#include "reqlog.h"
#include "sbx/meta.h"
#include "state.h"
#include "syslog.h"
#include "util.h"

/* Audit-list callback: copies the row whose seq is wanted. */
typedef struct find_ctx {
  int64_t seq;
  sbx_audit_event *out;
  int found;
} find_ctx;

static int find_row(void *ctx, const char *tenant, const sbx_audit_event *e) {
  find_ctx *f = ctx;
  (void)tenant;
  if (e->seq != f->seq)
    return 0;
  *f->out = *e;
  f->found = 1;
  return 1;
}

void sbx__audit(sbx__req *r, const char *action, const char *target) {
  sbx__audit_as(r, r->who.tenant, r->who.user[0] ? r->who.user : "-", action,
                target);
}

void sbx__audit_as(sbx__req *r, const char *tenant, const char *actor,
                   const char *action, const char *target) {
  int64_t now = sbx__now(), seq = 0;
  int rc = sbx_meta_audit_append(sbx_store_meta(r->st), tenant, now, actor,
                                 action, target, &seq);
  if (rc)
    sbx__log("audit append failed: %s", sbx_strerror(rc));
  if (!rc && r->srv->syslog) { /* the row with its chain hash, to a SIEM */
    sbx_audit_event e;
    find_ctx f = {seq, &e, 0};
    sbx_meta_audit_list(sbx_store_meta(r->st), tenant, now, now + 1, find_row,
                        &f);
    if (f.found)
      sbx__syslog_audit(r->srv, tenant, &e);
  }
  char ev[96];
  snprintf(ev, sizeof ev, "audit.%s", action);
  sbx__reqlog_event(r, "info", ev, target);
}
