/*
 * test_ipc.c - the worker <-> runner message layer: the table's caps,
 * directions and once-flags are enforced by the decoder before anything
 * is allocated; messages split at every byte boundary decode the same;
 * the payload reader's first error sticks; codecs round-trip and reject
 * out-of-range fields.
 */
#include "harness.h"
#include "sbx/ipc.h"

#include <errno.h>
#include <math.h>
#include <unistd.h>

typedef struct seen {
  int n;
  uint32_t types[16];
  size_t lens[16];
  uint8_t first[16];
} seen;

static int rec(void *ud, uint32_t type, const uint8_t *p, size_t len) {
  seen *s = ud;
  if (s->n < 16) {
    s->types[s->n] = type;
    s->lens[s->n] = len;
    s->first[s->n] = len ? p[0] : 0;
  }
  s->n++;
  return 0;
}

static const sbx_ipc_dispatch worker_table[] = {
    {SBX_IPC_READY, rec},  {SBX_IPC_LOG, rec},     {SBX_IPC_PROGRESS, rec},
    {SBX_IPC_RESULT, rec}, {SBX_IPC_ADV_NPY, rec}, {SBX_IPC_ERROR, rec},
    {SBX_IPC_DONE, rec}};

/* Frames a message by hand (independently of sbx_ipc_send). */
static size_t frame(uint8_t *out, uint32_t type, uint32_t len, const void *p) {
  for (int i = 0; i < 4; i++) {
    out[i] = (uint8_t)(type >> (8 * i));
    out[4 + i] = (uint8_t)(len >> (8 * i));
  }
  if (p && len)
    memcpy(out + 8, p, len);
  return 8 + (size_t)len;
}

static int feed_all(const uint8_t *b, size_t n, seen *s, sbx_ipc_decoder *d) {
  sbx_ipc_decoder_init(d, SBX_IPC_TO_WORKER, worker_table, 7, s);
  return sbx_ipc_decoder_feed(d, b, n);
}

TEST(send_and_decode_through_a_pipe) {
  int fds[2];
  CHECK(pipe(fds) == 0);
  CHECK_EQ_INT(sbx_ipc_send(fds[1], SBX_IPC_LOG, "\0\0\0\0\2\0\0\0hi", 10), 0);
  CHECK_EQ_INT(sbx_ipc_send2(fds[1], SBX_IPC_RESULT, "{\"a\"", 4, ":1}", 3), 0);
  CHECK_EQ_INT(sbx_ipc_send(fds[1], SBX_IPC_DONE, NULL, 0), 0);
  /* refused before writing: unknown type, over the cap */
  CHECK_EQ_INT(sbx_ipc_send(fds[1], 99, "x", 1), -EINVAL);
  static uint8_t big[1025];
  CHECK_EQ_INT(sbx_ipc_send(fds[1], SBX_IPC_LOG, big, sizeof(big)), -EMSGSIZE);
  close(fds[1]);
  uint8_t buf[256];
  ssize_t n = read(fds[0], buf, sizeof(buf));
  close(fds[0]);
  CHECK_EQ_INT(n, 8 + 10 + 8 + 7 + 8);
  seen s = {0};
  sbx_ipc_decoder d;
  CHECK_EQ_INT(feed_all(buf, (size_t)n, &s, &d), 0);
  CHECK_EQ_INT(s.n, 3);
  CHECK_EQ_INT(s.types[1], SBX_IPC_RESULT);
  CHECK_EQ_INT(s.lens[1], 7);
  CHECK(sbx_ipc_decoder_idle(&d));
  sbx_ipc_decoder_free(&d);
}

TEST(every_split_decodes_the_same) {
  uint8_t b[128];
  size_t n = frame(b, SBX_IPC_LOG, 5, "abcde");
  n += frame(b + n, SBX_IPC_PROGRESS, 0, NULL);
  n += frame(b + n, SBX_IPC_DONE, 0, NULL);
  for (size_t cut = 0; cut <= n; cut++) {
    seen s = {0};
    sbx_ipc_decoder d;
    sbx_ipc_decoder_init(&d, SBX_IPC_TO_WORKER, worker_table, 7, &s);
    CHECK_EQ_INT(sbx_ipc_decoder_feed(&d, b, cut), 0);
    CHECK_EQ_INT(sbx_ipc_decoder_feed(&d, b + cut, n - cut), 0);
    CHECK_EQ_INT(s.n, 3);
    CHECK_EQ_INT(s.first[0], 'a');
    sbx_ipc_decoder_free(&d);
  }
  /* byte by byte */
  seen s = {0};
  sbx_ipc_decoder d;
  sbx_ipc_decoder_init(&d, SBX_IPC_TO_WORKER, worker_table, 7, &s);
  for (size_t i = 0; i < n; i++)
    CHECK_EQ_INT(sbx_ipc_decoder_feed(&d, b + i, 1), 0);
  CHECK_EQ_INT(s.n, 3);
  sbx_ipc_decoder_free(&d);
}

TEST(table_rules_enforced) {
  uint8_t b[64];
  seen s = {0};
  sbx_ipc_decoder d;
  /* over the cap: rejected from the header alone (no allocation of 2 GiB) */
  frame(b, SBX_IPC_PROGRESS, 0x7fffffff, NULL);
  CHECK_EQ_INT(feed_all(b, 8, &s, &d), -EMSGSIZE);
  CHECK_EQ_INT(s.n, 0);
  /* the error sticks, even for valid bytes afterwards */
  frame(b, SBX_IPC_DONE, 0, NULL);
  CHECK_EQ_INT(sbx_ipc_decoder_feed(&d, b, 8), -EMSGSIZE);
  sbx_ipc_decoder_free(&d);
  /* wrong direction: a runner may not send SPEC to the worker */
  frame(b, SBX_IPC_SPEC, 0, NULL);
  CHECK_EQ_INT(feed_all(b, 8, &s, &d), -EPROTO);
  sbx_ipc_decoder_free(&d);
  /* unknown type */
  frame(b, 77, 0, NULL);
  CHECK_EQ_INT(feed_all(b, 8, &s, &d), -EPROTO);
  sbx_ipc_decoder_free(&d);
  /* once: a second RESULT */
  size_t n = frame(b, SBX_IPC_RESULT, 1, "x");
  n += frame(b + n, SBX_IPC_RESULT, 1, "y");
  s.n = 0;
  CHECK_EQ_INT(feed_all(b, n, &s, &d), -EPROTO);
  CHECK_EQ_INT(s.n, 1);
  sbx_ipc_decoder_free(&d);
  /* repeatable: LOG twice is fine */
  n = frame(b, SBX_IPC_LOG, 1, "x");
  n += frame(b + n, SBX_IPC_LOG, 1, "y");
  s.n = 0;
  CHECK_EQ_INT(feed_all(b, n, &s, &d), 0);
  CHECK_EQ_INT(s.n, 2);
  sbx_ipc_decoder_free(&d);
  /* nothing after DONE */
  n = frame(b, SBX_IPC_DONE, 0, NULL);
  n += frame(b + n, SBX_IPC_LOG, 1, "x");
  CHECK_EQ_INT(feed_all(b, n, &s, &d), -EPROTO);
  sbx_ipc_decoder_free(&d);
  /* a type the table allows but the dispatch table does not handle */
  static const sbx_ipc_dispatch only_done[] = {{SBX_IPC_DONE, rec}};
  sbx_ipc_decoder_init(&d, SBX_IPC_TO_WORKER, only_done, 1, &s);
  n = frame(b, SBX_IPC_LOG, 1, "x");
  CHECK_EQ_INT(sbx_ipc_decoder_feed(&d, b, n), -EPROTO);
  sbx_ipc_decoder_free(&d);
  /* a partial message is not idle */
  sbx_ipc_decoder_init(&d, SBX_IPC_TO_WORKER, worker_table, 7, &s);
  n = frame(b, SBX_IPC_LOG, 4, "abcd");
  CHECK_EQ_INT(sbx_ipc_decoder_feed(&d, b, n - 1), 0);
  CHECK(!sbx_ipc_decoder_idle(&d));
  sbx_ipc_decoder_free(&d);
}

TEST(reader_first_error_sticks) {
  uint8_t b[6] = {1, 0, 0, 0, 9, 9};
  sbx_ipc_rd r = sbx_ipc_rd_init(b, sizeof(b));
  CHECK_EQ_INT(sbx_ipc_rd_u32(&r), 1);
  CHECK_EQ_INT(sbx_ipc_rd_u32(&r), 0); /* only 2 bytes left */
  CHECK(r.bad);
  CHECK_EQ_INT(sbx_ipc_rd_u32(&r), 0);
  CHECK(sbx_ipc_rd_done(&r) != 0);
  /* string length beyond the buffer / output; embedded NUL */
  uint8_t s1[8] = {200, 0, 0, 0, 'a', 'b', 'c', 'd'};
  char out[16];
  r = sbx_ipc_rd_init(s1, sizeof(s1));
  sbx_ipc_rd_str(&r, out, sizeof(out));
  CHECK(r.bad && out[0] == 0);
  uint8_t s2[7] = {3, 0, 0, 0, 'a', 0, 'c'};
  r = sbx_ipc_rd_init(s2, sizeof(s2));
  sbx_ipc_rd_str(&r, out, sizeof(out));
  CHECK(r.bad);
  /* trailing bytes are an error too */
  uint8_t s3[5] = {1, 0, 0, 0, 'x'};
  r = sbx_ipc_rd_init(s3, 5);
  sbx_ipc_rd_u32(&r);
  CHECK(sbx_ipc_rd_done(&r) != 0);
}

TEST(codecs_round_trip_and_validate) {
  sbx_job_spec a, b;
  memset(&a, 0, sizeof(a));
  a.kind = SBX_JOB_ATTACK;
  snprintf(a.attack, sizeof(a.attack), "apgd-ce");
  a.norm = 1;
  a.eps = 0.5;
  a.steps = 100;
  a.threads = 2;
  a.seed = 9007199254740993ULL;
  a.mem_bytes = (uint64_t)3 << 30;
  a.data_len = 123;
  uint8_t buf[4096];
  int n = sbx_job_spec_encode(&a, buf, sizeof(buf));
  CHECK(n > 0);
  CHECK_EQ_INT(sbx_job_spec_decode(buf, (size_t)n, &b), 0);
  CHECK(strcmp(b.attack, "apgd-ce") == 0);
  CHECK(b.seed == 9007199254740993ULL && b.eps == 0.5 &&
        b.mem_bytes == a.mem_bytes);
  CHECK(b.norm == 1 && b.steps == 100 && b.data_len == 123);
  for (int cut = 0; cut < n; cut++) /* every truncation fails */
    CHECK(sbx_job_spec_decode(buf, (size_t)cut, &b) != 0);
  a.threads = 0; /* out of range */
  n = sbx_job_spec_encode(&a, buf, sizeof(buf));
  CHECK(sbx_job_spec_decode(buf, (size_t)n, &b) != 0);
  a.threads = 1;
  a.eps = NAN;
  n = sbx_job_spec_encode(&a, buf, sizeof(buf));
  CHECK(sbx_job_spec_decode(buf, (size_t)n, &b) != 0);

  sbx_ipc_progress p = {0.25, NAN, "apgd-t"}, q;
  n = sbx_ipc_progress_encode(&p, buf, sizeof(buf));
  CHECK_EQ_INT(sbx_ipc_progress_decode(buf, (size_t)n, &q), 0);
  CHECK(q.fraction == 0.25 && isnan(q.robust_acc) &&
        strcmp(q.phase, "apgd-t") == 0);
  p.fraction = 1.5;
  n = sbx_ipc_progress_encode(&p, buf, sizeof(buf));
  CHECK(sbx_ipc_progress_decode(buf, (size_t)n, &q) != 0);

  sbx_ipc_error e = {.status = -4, .message = "model: cycle"}, f;
  n = sbx_ipc_error_encode(&e, buf, sizeof(buf));
  CHECK_EQ_INT(sbx_ipc_error_decode(buf, (size_t)n, &f), 0);
  CHECK(f.status == -4 && strcmp(f.message, "model: cycle") == 0);
  e.status = 3; /* errors are negative */
  n = sbx_ipc_error_encode(&e, buf, sizeof(buf));
  CHECK(sbx_ipc_error_decode(buf, (size_t)n, &f) != 0);

  /* the writer refuses to overflow */
  sbx_ipc_wr w;
  sbx_ipc_wr_init(&w, buf, 6);
  sbx_ipc_wr_u32(&w, 1);
  sbx_ipc_wr_u32(&w, 2);
  CHECK(w.bad && w.len == 4);
}

int main(void) {
  RUN(send_and_decode_through_a_pipe);
  RUN(every_split_decodes_the_same);
  RUN(table_rules_enforced);
  RUN(reader_first_error_sticks);
  RUN(codecs_round_trip_and_validate);
  return harness_report();
}
