/*
 * pool.h - the server's pool of store handles (state.h's sbx__pool): one
 * handle per request in flight, taken when its headers arrive and given
 * back when it completes or while it is parked (park.h).
 */
#ifndef SBX_SERVER_POOL_H
#define SBX_SERVER_POOL_H

#include "state.h"

/* A free handle of p, or NULL when all are busy. */
sbx_store *sbx__pool_take(sbx__pool *p);
/* Gives st (from sbx__pool_take) back; NULL is a no-op. */
void sbx__pool_give(sbx__pool *p, sbx_store *st);

#endif
