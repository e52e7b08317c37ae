/*
 * ratelimit.h - token buckets in a fixed-size table (per client IP and
 * per credential). No allocation; one mutex.
 */
#ifndef SBX_SERVER_RATELIMIT_H
#define SBX_SERVER_RATELIMIT_H

#include <pthread.h>
#include <stdint.h>

#define SBX__RL_SLOTS 4096
typedef struct sbx__bucket {
  uint64_t key; /* hash of "ip:.." or "cred:.."; 0 = free */
  double tokens;
  double last;
} sbx__bucket;
typedef struct sbx__ratelimit {
  pthread_mutex_t mu; /* initialised by the owner */
  sbx__bucket b[SBX__RL_SLOTS];
} sbx__ratelimit;

/* Takes one token of who's bucket (rate per second, burst). Returns 0 when
 * allowed, else the seconds to wait. rate <= 0: always allowed. */
int sbx__rl_take(sbx__ratelimit *rl, const char *who, double rate,
                 double burst);

#endif
