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
/* Key rotation (incident.c): from now on takers wait (up to 30 s) instead
 * of getting a handle; returns when every handle but mine (the caller's
 * own, may be NULL) is back. SBX_EBUSY when another drain runs or handles
 * are still busy after timeout_s (then the pool is released again). After
 * SBX_OK the caller owns every handle until sbx__pool_undrain. */
int sbx__pool_drain(sbx__pool *p, sbx_store *mine, double timeout_s);
void sbx__pool_undrain(sbx__pool *p);

#endif
