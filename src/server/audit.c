/*
 * audit.c - audit events from a request (audit.h).
 */
#include "audit.h"

#include <stdio.h>

#include "log.h"
#include "reqlog.h"
#include "sbx/meta.h"
#include "util.h"

void sbx__audit(sbx__req *r, const char *action, const char *target) {
  int rc = sbx_meta_audit_append(sbx_store_meta(r->st), r->who.tenant,
                                 sbx__now(), r->who.user[0] ? r->who.user : "-",
                                 action, target, NULL);
  if (rc)
    sbx__log("audit append failed: %s", sbx_strerror(rc));
  char ev[96];
  snprintf(ev, sizeof ev, "audit.%s", action);
  sbx__reqlog_event(r, "info", ev, target);
}
