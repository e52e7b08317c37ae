/*
 * ipc.c - worker <-> runner framing, payload codecs and the table-driven
 * stream decoder (see sbx/ipc.h). libc only; no allocation except one
 * payload buffer per message being assembled.
 */
#include "sbx/ipc.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const sbx_ipc_msgdef msgdefs[] = {
#define SBX__IPC_ROW(name, t, max, dir, once)                                  \
  {(t), #name, (max), (dir), (once)},
    SBX_IPC_MAP(SBX__IPC_ROW)
#undef SBX__IPC_ROW
};
enum { N_MSGDEFS = sizeof(msgdefs) / sizeof(msgdefs[0]) };

const sbx_ipc_msgdef *sbx_ipc_msgdef_get(uint32_t type) {
  for (int i = 0; i < N_MSGDEFS; i++)
    if (msgdefs[i].type == type)
      return &msgdefs[i];
  return NULL;
}

const char *sbx_ipc_type_name(uint32_t type) {
  const sbx_ipc_msgdef *d = sbx_ipc_msgdef_get(type);
  return d ? d->name : "?";
}

static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
         (uint32_t)p[3] << 24;
}

/* Writes all of buf, retrying EINTR and short writes. */
static int write_all(int fd, const void *buf, size_t n) {
  const uint8_t *p = buf;
  while (n) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

int sbx_ipc_send2(int fd, uint32_t type, const void *a, size_t alen,
                  const void *b, size_t blen) {
  const sbx_ipc_msgdef *d = sbx_ipc_msgdef_get(type);
  if (!d)
    return -EINVAL;
  if (alen > d->max_len || blen > d->max_len - alen)
    return -EMSGSIZE;
  uint8_t hdr[8];
  put32(hdr, type);
  put32(hdr + 4, (uint32_t)(alen + blen));
  if (8 + alen + blen <= 4096) {
    /* one write of at most PIPE_BUF bytes is atomic on a pipe: another
     * writer (a signal handler's report, another thread) can only land
     * between messages, never inside one */
    uint8_t one[4096];
    memcpy(one, hdr, 8);
    if (alen)
      memcpy(one + 8, a, alen);
    if (blen)
      memcpy(one + 8 + alen, b, blen);
    return write_all(fd, one, 8 + alen + blen);
  }
  int rc = write_all(fd, hdr, sizeof(hdr));
  if (!rc && alen)
    rc = write_all(fd, a, alen);
  if (!rc && blen)
    rc = write_all(fd, b, blen);
  return rc;
}

int sbx_ipc_send(int fd, uint32_t type, const void *payload, size_t len) {
  return sbx_ipc_send2(fd, type, payload, len, NULL, 0);
}

/* ---- writer ---- */
void sbx_ipc_wr_init(sbx_ipc_wr *w, void *buf, size_t cap) {
  w->buf = buf;
  w->cap = cap;
  w->len = 0;
  w->bad = 0;
}

static void wr_bytes(sbx_ipc_wr *w, const void *p, size_t n) {
  if (w->bad || n > w->cap - w->len) {
    w->bad = 1;
    return;
  }
  memcpy(w->buf + w->len, p, n);
  w->len += n;
}

void sbx_ipc_wr_u32(sbx_ipc_wr *w, uint32_t v) {
  uint8_t b[4];
  put32(b, v);
  wr_bytes(w, b, 4);
}

void sbx_ipc_wr_u64(sbx_ipc_wr *w, uint64_t v) {
  sbx_ipc_wr_u32(w, (uint32_t)v);
  sbx_ipc_wr_u32(w, (uint32_t)(v >> 32));
}

void sbx_ipc_wr_f64(sbx_ipc_wr *w, double v) {
  uint64_t u;
  memcpy(&u, &v, 8);
  sbx_ipc_wr_u64(w, u);
}

void sbx_ipc_wr_str(sbx_ipc_wr *w, const char *s, size_t max) {
  size_t n = s ? strnlen(s, max) : 0;
  sbx_ipc_wr_u32(w, (uint32_t)n);
  wr_bytes(w, s, n);
}

/* ---- reader ---- */
sbx_ipc_rd sbx_ipc_rd_init(const void *p, size_t len) {
  sbx_ipc_rd r = {(const uint8_t *)p, (const uint8_t *)p + len, 0};
  if (!p)
    r.p = r.end = NULL;
  return r;
}

uint32_t sbx_ipc_rd_u32(sbx_ipc_rd *r) {
  if (r->bad || r->end - r->p < 4) {
    r->bad = 1;
    return 0;
  }
  uint32_t v = get32(r->p);
  r->p += 4;
  return v;
}

uint64_t sbx_ipc_rd_u64(sbx_ipc_rd *r) {
  uint64_t lo = sbx_ipc_rd_u32(r), hi = sbx_ipc_rd_u32(r);
  return lo | hi << 32;
}

double sbx_ipc_rd_f64(sbx_ipc_rd *r) {
  uint64_t u = sbx_ipc_rd_u64(r);
  double v;
  memcpy(&v, &u, 8);
  return v;
}

void sbx_ipc_rd_str(sbx_ipc_rd *r, char *out, size_t outsz) {
  uint32_t n = sbx_ipc_rd_u32(r);
  if (!r->bad &&
      (n >= outsz || (size_t)(r->end - r->p) < n || memchr(r->p, 0, n) != NULL))
    r->bad = 1;
  if (r->bad) {
    if (outsz)
      out[0] = 0;
    return;
  }
  memcpy(out, r->p, n);
  out[n] = 0;
  r->p += n;
}

int sbx_ipc_rd_done(const sbx_ipc_rd *r) {
  return (r->bad || r->p != r->end) ? -EINVAL : 0;
}

/* ---- typed payloads ---- */
int sbx_job_spec_encode(const sbx_job_spec *s, void *buf, size_t cap) {
  sbx_ipc_wr w;
  sbx_ipc_wr_init(&w, buf, cap);
  sbx_ipc_wr_u32(&w, SBX_SPEC_VERSION);
  sbx_ipc_wr_u32(&w, s->kind);
  sbx_ipc_wr_str(&w, s->attack, sizeof(s->attack) - 1);
  sbx_ipc_wr_u32(&w, s->norm);
  sbx_ipc_wr_f64(&w, s->eps);
  sbx_ipc_wr_f64(&w, s->step_size);
  sbx_ipc_wr_u32(&w, s->steps);
  sbx_ipc_wr_u32(&w, s->restarts);
  sbx_ipc_wr_u32(&w, s->targeted);
  sbx_ipc_wr_u32(&w, s->threads);
  sbx_ipc_wr_u64(&w, s->seed);
  sbx_ipc_wr_u64(&w, s->n);
  sbx_ipc_wr_u64(&w, s->queries);
  sbx_ipc_wr_u64(&w, s->mem_bytes);
  sbx_ipc_wr_u32(&w, s->memcap_kind);
  sbx_ipc_wr_u32(&w, s->cpu_seconds);
  sbx_ipc_wr_u32(&w, s->probe);
  sbx_ipc_wr_u32(&w, s->model_in_memfd);
  sbx_ipc_wr_u32(&w, s->data_in_memfd);
  sbx_ipc_wr_u64(&w, s->model_len);
  sbx_ipc_wr_u64(&w, s->data_len);
  sbx_ipc_wr_u32(&w, (uint32_t)sizeof(s->job));
  wr_bytes(&w, &s->job, sizeof(s->job));
  sbx_ipc_wr_str(&w, s->model_name, sizeof(s->model_name) - 1);
  sbx_ipc_wr_str(&w, s->model_sha256, sizeof(s->model_sha256) - 1);
  sbx_ipc_wr_str(&w, s->data_name, sizeof(s->data_name) - 1);
  sbx_ipc_wr_str(&w, s->data_sha256, sizeof(s->data_sha256) - 1);
  return w.bad ? -1 : (int)w.len;
}

int sbx_job_spec_decode(const void *p, size_t len, sbx_job_spec *s) {
  memset(s, 0, sizeof(*s));
  sbx_ipc_rd r = sbx_ipc_rd_init(p, len);
  uint32_t ver = sbx_ipc_rd_u32(&r);
  s->kind = sbx_ipc_rd_u32(&r);
  sbx_ipc_rd_str(&r, s->attack, sizeof(s->attack));
  s->norm = sbx_ipc_rd_u32(&r);
  s->eps = sbx_ipc_rd_f64(&r);
  s->step_size = sbx_ipc_rd_f64(&r);
  s->steps = sbx_ipc_rd_u32(&r);
  s->restarts = sbx_ipc_rd_u32(&r);
  s->targeted = sbx_ipc_rd_u32(&r);
  s->threads = sbx_ipc_rd_u32(&r);
  s->seed = sbx_ipc_rd_u64(&r);
  s->n = sbx_ipc_rd_u64(&r);
  s->queries = sbx_ipc_rd_u64(&r);
  s->mem_bytes = sbx_ipc_rd_u64(&r);
  s->memcap_kind = sbx_ipc_rd_u32(&r);
  s->cpu_seconds = sbx_ipc_rd_u32(&r);
  s->probe = sbx_ipc_rd_u32(&r);
  s->model_in_memfd = sbx_ipc_rd_u32(&r);
  s->data_in_memfd = sbx_ipc_rd_u32(&r);
  s->model_len = sbx_ipc_rd_u64(&r);
  s->data_len = sbx_ipc_rd_u64(&r);
  if (sbx_ipc_rd_u32(&r) != (uint32_t)sizeof(s->job) ||
      (size_t)(r.end - r.p) < sizeof(s->job))
    return -EINVAL;
  memcpy(&s->job, r.p, sizeof(s->job));
  r.p += sizeof(s->job);
  sbx_ipc_rd_str(&r, s->model_name, sizeof(s->model_name));
  sbx_ipc_rd_str(&r, s->model_sha256, sizeof(s->model_sha256));
  sbx_ipc_rd_str(&r, s->data_name, sizeof(s->data_name));
  sbx_ipc_rd_str(&r, s->data_sha256, sizeof(s->data_sha256));
  if (sbx_ipc_rd_done(&r) || ver != SBX_SPEC_VERSION || s->kind > 2 ||
      s->norm > 1 || s->threads < 1 || s->threads > 256 ||
      s->model_in_memfd > 1 || s->data_in_memfd > 1 || !isfinite(s->eps) ||
      !isfinite(s->step_size))
    return -EINVAL;
  return 0;
}

int sbx_ipc_progress_encode(const sbx_ipc_progress *m, void *buf, size_t cap) {
  sbx_ipc_wr w;
  sbx_ipc_wr_init(&w, buf, cap);
  sbx_ipc_wr_f64(&w, m->fraction);
  sbx_ipc_wr_f64(&w, m->robust_acc);
  sbx_ipc_wr_str(&w, m->phase, sizeof(m->phase) - 1);
  return w.bad ? -1 : (int)w.len;
}

int sbx_ipc_progress_decode(const void *p, size_t len, sbx_ipc_progress *m) {
  sbx_ipc_rd r = sbx_ipc_rd_init(p, len);
  m->fraction = sbx_ipc_rd_f64(&r);
  m->robust_acc = sbx_ipc_rd_f64(&r);
  sbx_ipc_rd_str(&r, m->phase, sizeof(m->phase));
  if (sbx_ipc_rd_done(&r) || !(m->fraction >= 0 && m->fraction <= 1) ||
      !(isnan(m->robust_acc) || (m->robust_acc >= 0 && m->robust_acc <= 1)))
    return -EINVAL;
  return 0;
}

int sbx_ipc_error_encode(const sbx_ipc_error *m, void *buf, size_t cap) {
  sbx_ipc_wr w;
  sbx_ipc_wr_init(&w, buf, cap);
  sbx_ipc_wr_u32(&w, (uint32_t)m->status);
  sbx_ipc_wr_u32(&w, m->forbidden_syscall);
  sbx_ipc_wr_str(&w, m->message, sizeof(m->message) - 1);
  return w.bad ? -1 : (int)w.len;
}

int sbx_ipc_error_decode(const void *p, size_t len, sbx_ipc_error *m) {
  sbx_ipc_rd r = sbx_ipc_rd_init(p, len);
  m->status = (int32_t)sbx_ipc_rd_u32(&r);
  m->forbidden_syscall = sbx_ipc_rd_u32(&r);
  sbx_ipc_rd_str(&r, m->message, sizeof(m->message));
  return (sbx_ipc_rd_done(&r) || m->status >= 0) ? -EINVAL : 0;
}

int sbx_ipc_ready_encode(const sbx_ipc_ready *m, void *buf, size_t cap) {
  sbx_ipc_wr w;
  sbx_ipc_wr_init(&w, buf, cap);
  sbx_ipc_wr_u32(&w, m->namespaces);
  sbx_ipc_wr_u32(&w, m->memcap_kind);
  sbx_ipc_wr_u32(&w, m->landlock_abi);
  sbx_ipc_wr_u32(&w, m->pivoted);
  sbx_ipc_wr_str(&w, m->summary, sizeof(m->summary) - 1);
  return w.bad ? -1 : (int)w.len;
}

int sbx_ipc_ready_decode(const void *p, size_t len, sbx_ipc_ready *m) {
  sbx_ipc_rd r = sbx_ipc_rd_init(p, len);
  m->namespaces = sbx_ipc_rd_u32(&r);
  m->memcap_kind = sbx_ipc_rd_u32(&r);
  m->landlock_abi = sbx_ipc_rd_u32(&r);
  m->pivoted = sbx_ipc_rd_u32(&r);
  sbx_ipc_rd_str(&r, m->summary, sizeof(m->summary));
  return (sbx_ipc_rd_done(&r) || m->namespaces > 63 || m->memcap_kind > 3 ||
          m->pivoted > 1)
             ? -EINVAL
             : 0;
}

int sbx_ipc_log_encode(const sbx_ipc_log *m, void *buf, size_t cap) {
  sbx_ipc_wr w;
  sbx_ipc_wr_init(&w, buf, cap);
  sbx_ipc_wr_u32(&w, m->level);
  sbx_ipc_wr_str(&w, m->text, sizeof(m->text) - 1);
  return w.bad ? -1 : (int)w.len;
}

int sbx_ipc_log_decode(const void *p, size_t len, sbx_ipc_log *m) {
  sbx_ipc_rd r = sbx_ipc_rd_init(p, len);
  m->level = sbx_ipc_rd_u32(&r);
  sbx_ipc_rd_str(&r, m->text, sizeof(m->text));
  return (sbx_ipc_rd_done(&r) || m->level > 2) ? -EINVAL : 0;
}

/* ---- decoder ---- */
void sbx_ipc_decoder_init(sbx_ipc_decoder *d, int direction,
                          const sbx_ipc_dispatch *table, int ntable, void *ud) {
  memset(d, 0, sizeof(*d));
  d->direction = direction;
  d->table = table;
  d->ntable = ntable;
  d->ud = ud;
}

/* Marks the decoder failed (first error sticks) and frees the payload. */
static int fail(sbx_ipc_decoder *d, int err, const char *why) {
  if (!d->err) {
    d->err = err;
    snprintf(d->why, sizeof(d->why), "%s (type %u, %s)", why, d->type,
             sbx_ipc_type_name(d->type));
  }
  free(d->buf);
  d->buf = NULL;
  return d->err;
}

/* Validates a complete header against the table; allocates the payload. */
static int begin_message(sbx_ipc_decoder *d) {
  d->type = get32(d->hdr);
  d->len = get32(d->hdr + 4);
  const sbx_ipc_msgdef *def = sbx_ipc_msgdef_get(d->type);
  if (d->done)
    return fail(d, -EPROTO, "message after DONE");
  if (!def)
    return fail(d, -EPROTO, "unknown message type");
  if (def->direction != d->direction)
    return fail(d, -EPROTO, "message sent in the wrong direction");
  if (d->len > def->max_len)
    return fail(d, -EMSGSIZE, "message larger than its cap");
  if (def->once) {
    uint64_t bit = (uint64_t)1 << (d->type & 63);
    if (d->seen & bit)
      return fail(d, -EPROTO, "message repeated");
    d->seen |= bit;
  }
  d->have = 0;
  d->cap = 0;
  d->buf = NULL;
  return 0;
}

/* Makes room for `more` payload bytes. The buffer grows with the bytes
 * that actually arrive (doubling, at most the declared length), so a
 * header alone never makes the decoder allocate its claimed size. */
static int reserve(sbx_ipc_decoder *d, size_t more) {
  size_t need = d->have + more;
  if (need <= d->cap)
    return 0;
  size_t cap = d->cap ? d->cap : 4096;
  while (cap < need)
    cap *= 2;
  if (cap > d->len)
    cap = d->len;
  uint8_t *b = realloc(d->buf, cap);
  if (!b)
    return fail(d, -ENOMEM, "out of memory for a message");
  d->buf = b;
  d->cap = cap;
  return 0;
}

/* Hands a complete message to its handler. */
static int finish_message(sbx_ipc_decoder *d) {
  sbx_ipc_handler fn = NULL;
  for (int i = 0; i < d->ntable; i++)
    if (d->table[i].type == d->type)
      fn = d->table[i].fn;
  if (!fn)
    return fail(d, -EPROTO, "no handler for message");
  int rc = fn(d->ud, d->type, d->buf, d->len);
  free(d->buf);
  d->buf = NULL;
  d->hdr_have = 0;
  if (d->type == SBX_IPC_DONE)
    d->done = 1;
  if (rc < 0)
    return fail(d, rc, "handler rejected message");
  return 0;
}

int sbx_ipc_decoder_feed(sbx_ipc_decoder *d, const void *bytes, size_t n) {
  const uint8_t *p = bytes;
  if (d->err)
    return d->err;
  while (n) {
    if (d->hdr_have < 8) {
      size_t k = 8 - d->hdr_have < n ? 8 - d->hdr_have : n;
      memcpy(d->hdr + d->hdr_have, p, k);
      d->hdr_have += k;
      p += k;
      n -= k;
      if (d->hdr_have < 8)
        break;
      int rc = begin_message(d);
      if (rc)
        return rc;
    } else {
      size_t k = d->len - d->have < n ? d->len - d->have : n;
      int rc = reserve(d, k);
      if (rc)
        return rc;
      memcpy(d->buf + d->have, p, k);
      d->have += k;
      p += k;
      n -= k;
    }
    if (d->hdr_have == 8 && d->have == d->len) {
      int rc = finish_message(d);
      if (rc)
        return rc;
    }
  }
  return 0;
}

int sbx_ipc_decoder_idle(const sbx_ipc_decoder *d) {
  return !d->err && d->hdr_have == 0;
}

void sbx_ipc_decoder_free(sbx_ipc_decoder *d) {
  free(d->buf);
  d->buf = NULL;
}
