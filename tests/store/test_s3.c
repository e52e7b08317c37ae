/*
 * test_s3.c - the S3 blob backend (src/store/s3.c).
 *
 * Always (no server needed):
 *   - SigV4 against AWS's published examples: the signature test suite
 *     ("get-vanilla", "get-vanilla-query-order-key-case") and the four S3
 *     examples of "Signature Calculations for the Authorization Header"
 *     (GET object with Range, PUT object "test$file.text", GET ?lifecycle,
 *     list objects), canonical request / string to sign / signature;
 *   - configuration errors; connection refused, a black-hole server
 *     (timeouts, retries of idempotent requests only), an in-process fake
 *     server for 503 retries and the response-size cap.
 * With SBX_TEST_S3_ENDPOINT/_ACCESS_KEY/_SECRET_KEY (rgw_run.sh: a real Ceph
 * radosgw on loopback, fresh user and keys):
 *   - wrong secret key / unknown access key -> HTTP 403 -> SBX_EAUTH;
 *   - a payload that does not match the signed x-amz-content-sha256 is
 *     refused and nothing is stored;
 *   - blob conformance: put/get/delete/list, immutability (If-None-Match),
 *     a ~20 MiB blob through multipart upload (3 parts of 8 MiB), abort,
 *     unfinished uploads listed as temp entries and aborted by remove_tmp;
 *   - the encrypted store on S3 (SQLite metadata): round trips, isolation,
 *     replace, delete, tamper detection of blobs altered in the bucket
 *     (byte flips, truncation, swap, a flip inside a multipart blob), GC of
 *     orphan objects and unfinished uploads with a grace period, and the
 *     plaintext-window proof over every object of the bucket as fetched by
 *     an independent client (curl --aws-sigv4).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>

#include "harness.h"
#include "s3.h"
#include "s3_xml.h"
#include "store_testutil.h"

#define MiB (1u << 20)
#define EMPTY_SHA                                                              \
  "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const char *ep, *ak, *sk, *region;
static char bucket[64];
static char root[] = "/tmp/sbx_s3_XXXXXX";
static char keyspec[450], datadir[300];

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------ SigV4 */

static int sign(const char *method, const char *uri, const char *query,
                const sbx_sigv4_header *h, size_t nh, const char *payload,
                const char *akey, const char *skey, const char *reg,
                const char *svc, const char *date, char *auth, char **creq,
                char **sts) {
  sbx_sigv4_req r = {method, uri,  query, h,   nh,  payload,
                     akey,   skey, reg,   svc, date};
  return sbx_sigv4_sign(&r, auth, 512, creq, sts);
}

static void sha_hex(const char *s, char out[65]) {
  uint8_t d[32];
  sbx_sha256(s, strlen(s), d);
  sbx_hex(d, 32, out);
}

TEST(sigv4_aws_test_suite) {
  /* docs.aws.amazon.com/general/latest/gr/signature-v4-test-suite.html */
  const char *AK = "AKIDEXAMPLE",
             *SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
  char auth[512], *creq, *sts, hx[65];
  sbx_sigv4_header h[] = {{"Host", "example.amazonaws.com"},
                          {"X-Amz-Date", "20150830T123600Z"}};
  /* get-vanilla */
  CHECK_EQ_INT(sign("GET", "/", "", h, 2, EMPTY_SHA, AK, SK, "us-east-1",
                    "service", "20150830T123600Z", auth, &creq, &sts),
               0);
  CHECK(creq &&
        !strcmp(creq,
                "GET\n/\n\nhost:example.amazonaws.com\n"
                "x-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" EMPTY_SHA));
  CHECK(sts && !strcmp(sts, "AWS4-HMAC-SHA256\n20150830T123600Z\n"
                            "20150830/us-east-1/service/aws4_request\n"
                            "bb579772317eb040ac9ed261061d46c1f17a8133879d6129"
                            "b6e1c25292927e63"));
  CHECK(!strcmp(auth, "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/"
                      "us-east-1/service/aws4_request, SignedHeaders=host;"
                      "x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e"
                      "8372ff2a2260956d9b8aae1d763fbf31"));
  sha_hex(creq ? creq : "", hx);
  CHECK(!strcmp(hx, "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25"
                    "292927e63"));
  free(creq);
  free(sts);
  /* the same with padded values in another order: canonicalisation */
  sbx_sigv4_header h2[] = {{"x-AMZ-date", "  20150830T123600Z "},
                           {"HOST", " example.amazonaws.com"}};
  char auth2[512];
  CHECK_EQ_INT(sign("GET", "/", "", h2, 2, EMPTY_SHA, AK, SK, "us-east-1",
                    "service", "20150830T123600Z", auth2, NULL, NULL),
               0);
  CHECK(!strcmp(auth, auth2));
  /* get-vanilla-query-order-key-case: the query is sorted */
  char q[256];
  const char *kv[] = {"Param2", "value2", "Param1", "value1"};
  CHECK_EQ_INT(sbx_s3_query(kv, 2, q, sizeof q), 0);
  CHECK(!strcmp(q, "Param1=value1&Param2=value2"));
  CHECK_EQ_INT(sign("GET", "/", q, h, 2, EMPTY_SHA, AK, SK, "us-east-1",
                    "service", "20150830T123600Z", auth, NULL, NULL),
               0);
  CHECK(strstr(auth, "Signature=b97d918cfa904a5beff61c982a1b6f458b799221646"
                     "efd99d3219ec94cdf2500") != NULL);
  /* a different payload hash is a different signature */
  char hz[65];
  sha_hex("x", hz);
  CHECK_EQ_INT(sign("GET", "/", "", h, 2, hz, AK, SK, "us-east-1", "service",
                    "20150830T123600Z", auth2, NULL, NULL),
               0);
  CHECK(strcmp(auth2 + 100, auth + 100) != 0);
}

TEST(sigv4_s3_examples) {
  /* docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html */
  const char *AK = "AKIAIOSFODNN7EXAMPLE",
             *SK = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
             *D = "20130524T000000Z", *H = "examplebucket.s3.amazonaws.com";
  char auth[512], *creq, *sts, hx[65], uri[128], q[128];
  /* GET object with a Range header */
  sbx_sigv4_header g[] = {{"host", H},
                          {"range", "bytes=0-9"},
                          {"x-amz-content-sha256", EMPTY_SHA},
                          {"x-amz-date", D}};
  CHECK_EQ_INT(sign("GET", "/test.txt", "", g, 4, EMPTY_SHA, AK, SK,
                    "us-east-1", "s3", D, auth, &creq, &sts),
               0);
  sha_hex(creq ? creq : "", hx);
  CHECK(!strcmp(hx, "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43"
                    "964946972"));
  CHECK(!strcmp(auth, "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/"
                      "20130524/us-east-1/s3/aws4_request, SignedHeaders=host;"
                      "range;x-amz-content-sha256;x-amz-date, Signature="
                      "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039"
                      "c6036bdb41"));
  free(creq);
  free(sts);
  /* PUT object: key with '$', payload "Welcome to Amazon S3." */
  char ph[65];
  sha_hex("Welcome to Amazon S3.", ph);
  CHECK(!strcmp(ph, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b"
                    "803f8b072"));
  CHECK_EQ_INT(sbx_s3_uri_encode("/test$file.text", 1, uri, sizeof uri), 0);
  CHECK(!strcmp(uri, "/test%24file.text"));
  sbx_sigv4_header p[] = {{"date", "Fri, 24 May 2013 00:00:00 GMT"},
                          {"host", H},
                          {"x-amz-date", D},
                          {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                          {"x-amz-content-sha256", ph}};
  CHECK_EQ_INT(sign("PUT", uri, "", p, 5, ph, AK, SK, "us-east-1", "s3", D,
                    auth, &creq, &sts),
               0);
  CHECK(creq &&
        !strcmp(creq,
                "PUT\n/test%24file.text\n\ndate:Fri, 24 May 2013 00:00:00 GMT\n"
                "host:examplebucket.s3.amazonaws.com\n"
                "x-amz-content-sha256:44ce7dd67c959e0d3524ffac1771dfbba87d2b6"
                "b4b4e99e42034a8b803f8b072\nx-amz-date:20130524T000000Z\n"
                "x-amz-storage-class:REDUCED_REDUNDANCY\n\n"
                "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-"
                "class\n44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a"
                "8b803f8b072"));
  CHECK(sts && !strcmp(sts, "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/"
                            "us-east-1/s3/aws4_request\n9e0e90d9c76de8fa5b200"
                            "d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d"));
  CHECK(strstr(auth, "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd"
                     "77a1b5971af0ece108bd") != NULL);
  free(creq);
  free(sts);
  /* GET ?lifecycle: a query parameter without a value */
  const char *lc[] = {"lifecycle", NULL};
  CHECK_EQ_INT(sbx_s3_query(lc, 1, q, sizeof q), 0);
  CHECK(!strcmp(q, "lifecycle="));
  sbx_sigv4_header l[] = {
      {"host", H}, {"x-amz-content-sha256", EMPTY_SHA}, {"x-amz-date", D}};
  CHECK_EQ_INT(sign("GET", "/", q, l, 3, EMPTY_SHA, AK, SK, "us-east-1", "s3",
                    D, auth, &creq, NULL),
               0);
  sha_hex(creq ? creq : "", hx);
  CHECK(!strcmp(hx, "9766c798316ff2757b517bc739a67f6213b4ab36dd5da2f94eaebf7"
                    "9c77395ca"));
  CHECK(strstr(auth, "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f"
                     "91ac7a200a0136783543") != NULL);
  free(creq);
  /* list objects: max-keys=2&prefix=J */
  const char *lo[] = {"prefix", "J", "max-keys", "2"};
  CHECK_EQ_INT(sbx_s3_query(lo, 2, q, sizeof q), 0);
  CHECK(!strcmp(q, "max-keys=2&prefix=J"));
  CHECK_EQ_INT(sign("GET", "/", q, l, 3, EMPTY_SHA, AK, SK, "us-east-1", "s3",
                    D, auth, NULL, NULL),
               0);
  CHECK(strstr(auth, "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59d"
                     "b6670ed5711ef69dc6f7") != NULL);
  /* encoding rules */
  CHECK_EQ_INT(sbx_s3_uri_encode("a b+c/d~e_f.g-h%", 1, uri, sizeof uri), 0);
  CHECK(!strcmp(uri, "a%20b%2Bc/d~e_f.g-h%25"));
  CHECK_EQ_INT(sbx_s3_uri_encode("a/b=", 0, uri, sizeof uri), 0);
  CHECK(!strcmp(uri, "a%2Fb%3D"));
  CHECK_EQ_INT(sbx_s3_uri_encode("abcdef", 0, uri, 4), SBX_ELIMIT);
}

/* --------------------------------------------------------- offline checks */

static sbx_blob_params base_params(const char *endpoint) {
  sbx_blob_params p = sbx_blob_default_params();
  p.backend = SBX_BLOB_S3;
  p.s3_endpoint = endpoint;
  p.s3_bucket = "bkt";
  p.s3_access_key = "AKIDTEST";
  p.s3_secret_key = "secret/with+chars";
  return p;
}

TEST(config_errors) {
  sbx_blob_store *b = NULL;
  sbx_blob_params p = base_params("ftp://127.0.0.1:1");
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EINVAL);
  p = base_params("http://example.com"); /* plain http off loopback */
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EINVAL);
  p = base_params("http://127.0.0.1:1/some/path");
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EINVAL);
  p = base_params("http://user:pw@127.0.0.1:1");
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EINVAL);
  p = base_params("http://127.0.0.1:1");
  p.s3_bucket = "Bad_Bucket";
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EINVAL);
  p = base_params("http://127.0.0.1:1");
  p.s3_secret_key = "";
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EINVAL);
  p = base_params("http://127.0.0.1:1");
  p.s3_part_size = 1 * MiB;
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EINVAL);
  p = base_params("http://127.0.0.1:1");
  p.s3_prefix = "../x y";
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EINVAL);
  p = base_params("http://127.0.0.1:1");
  p.s3_region = "us east";
  sbx_err err = {0, ""};
  p.err = &err; /* the reason reaches the caller, nothing is printed */
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EINVAL);
  CHECK_EQ_INT(err.status, SBX_EINVAL);
  CHECK(strstr(err.msg, "S3 region") != NULL);
  CHECK(b == NULL);
  /* configuration from the environment */
  sbx_blob_params e = sbx_blob_default_params();
  unsetenv("SBX_S3_ENDPOINT");
  CHECK_EQ_INT(sbx_blob_s3_params_from_env(&e), SBX_ENOTFOUND);
  setenv("SBX_S3_ENDPOINT", "http://127.0.0.1:9", 1);
  setenv("SBX_S3_BUCKET", "envbucket", 1);
  unsetenv("SBX_S3_ACCESS_KEY_ID");
  unsetenv("AWS_ACCESS_KEY_ID");
  CHECK_EQ_INT(sbx_blob_s3_params_from_env(&e), SBX_EINVAL);
  setenv("SBX_S3_ACCESS_KEY_ID", "AK", 1);
  setenv("SBX_S3_SECRET_ACCESS_KEY", "SK", 1);
  CHECK_EQ_INT(sbx_blob_s3_params_from_env(&e), 0);
  CHECK(e.backend == SBX_BLOB_S3 && !strcmp(e.s3_bucket, "envbucket") &&
        !strcmp(e.s3_access_key, "AK") && !strcmp(e.s3_secret_key, "SK"));
  unsetenv("SBX_S3_ENDPOINT");
  unsetenv("SBX_S3_BUCKET");
  unsetenv("SBX_S3_ACCESS_KEY_ID");
  unsetenv("SBX_S3_SECRET_ACCESS_KEY");
}

static int listen_any(int *port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 64) ||
      getsockname(fd, (struct sockaddr *)&a, &l))
    return -1;
  *port = ntohs(a.sin_port);
  return fd;
}

TEST(refused_and_timeouts) {
  char url[64];
  int port, fd = listen_any(&port);
  CHECK(fd >= 0);
  close(fd); /* nothing listens there now: connection refused */
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  sbx_blob_params p = base_params(url);
  p.s3_retries = 1;
  sbx_blob_store *b = NULL;
  sbx_err err = {0, ""};
  p.err = &err;
  double t0 = now_s();
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_EBACKEND);
  CHECK(now_s() - t0 < 5);
  CHECK_EQ_INT(err.status, SBX_EBACKEND); /* curl's reason, the attempts */
  CHECK(strstr(err.msg, "HEAD http://127.0.0.1:") &&
        strstr(err.msg, "attempt 2"));
  /* a black hole: accepts TCP (backlog) but never answers */
  fd = listen_any(&port);
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  p = base_params(url);
  p.s3_timeout_ms = 300;
  p.s3_retries = -1;
  t0 = now_s();
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_ETIMEDOUT);
  double t1 = now_s() - t0;
  CHECK(t1 >= 0.25 && t1 < 3);
  p.s3_retries = 2; /* HEAD is idempotent: 3 attempts */
  t0 = now_s();
  CHECK_EQ_INT(sbx_blob_open(&p, &b), SBX_ETIMEDOUT);
  t1 = now_s() - t0;
  CHECK(t1 >= 0.85 && t1 < 6);
  fprintf(stderr, "  black hole: %.2f s for 3 attempts of 300 ms\n", t1);
  close(fd);
}

/* a tiny scripted HTTP server for what a real S3 does not do on demand */
enum { FAKE_BIG = 1, FAKE_FLAKY = 2, FAKE_SLOW = 3, FAKE_AMBIG = 4 };
typedef struct fake {
  int fd, port, mode;
  int gets, puts;
  int other_writer; /* AMBIG: the object was written by someone else */
  char token[128];  /* AMBIG: x-amz-meta-sbx-writer of the stored object */
  pthread_t th;
} fake;

static void send_all(int c, const void *p, size_t n) {
  const char *q = p;
  while (n > 0) {
    ssize_t r = send(c, q, n, MSG_NOSIGNAL);
    if (r <= 0)
      return;
    q += r;
    n -= (size_t)r;
  }
}

static void *fake_main(void *arg) {
  fake *f = arg;
  for (;;) {
    int c = accept(f->fd, NULL, NULL);
    if (c < 0)
      break;
    char req[16384];
    size_t n = 0;
    char *end = NULL;
    while (n < sizeof req - 1 && !end) {
      ssize_t r = recv(c, req + n, sizeof req - 1 - n, 0);
      if (r <= 0)
        break;
      n += (size_t)r;
      req[n] = 0;
      end = strstr(req, "\r\n\r\n");
    }
    if (!end) {
      close(c);
      continue;
    }
    /* read (and drop) the request body */
    long cl = 0;
    char *h = strcasestr(req, "\r\ncontent-length:");
    if (h)
      cl = strtol(h + 17, NULL, 10);
    long have = (long)(n - (size_t)(end + 4 - req));
    char sink[65536];
    while (have < cl) {
      ssize_t r = recv(c, sink, sizeof sink, 0);
      if (r <= 0)
        break;
      have += r;
    }
    const char *ok0 = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                      "Connection: close\r\n\r\n";
    if (f->mode == FAKE_AMBIG && strncmp(req, "HEAD /bkt ", 10)) {
      /* the first PUT is stored but its answer is lost (connection closed);
       * the retry finds the key taken (412); HEAD shows whose it is */
      if (!strncmp(req, "PUT ", 4)) {
        char *t = strcasestr(req, "\r\nx-amz-meta-sbx-writer: ");
        if (f->puts++ == 0) {
          if (t)
            sscanf(t + 25, "%127[0-9a-f]", f->token);
          if (f->other_writer)
            snprintf(f->token, sizeof f->token, "someone-else");
          close(c);
          continue;
        }
        const char *pf = "HTTP/1.1 412 Precondition Failed\r\n"
                         "Content-Length: 0\r\nConnection: close\r\n\r\n";
        send_all(c, pf, strlen(pf));
      } else if (!strncmp(req, "HEAD ", 5) && f->token[0]) {
        char hd[300];
        snprintf(hd, sizeof hd,
                 "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                 "x-amz-meta-sbx-writer: %s\r\nConnection: close\r\n\r\n",
                 f->token);
        send_all(c, hd, strlen(hd));
      } else {
        const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                         "Connection: close\r\n\r\n";
        send_all(c, nf, strlen(nf));
      }
    } else if (!strncmp(req, "HEAD /bkt ", 10)) {
      send_all(c, ok0, strlen(ok0));
    } else if (!strncmp(req, "HEAD ", 5)) {
      const char *nf = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
                       "Connection: close\r\n\r\n";
      send_all(c, nf, strlen(nf));
    } else if (f->mode == FAKE_SLOW) {
      /* /bkt/t/slow: 1000 bytes over ~1 s; /bkt/t/stall: headers, then
       * silence */
      const char *hd = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n"
                       "Connection: close\r\n\r\n";
      send_all(c, hd, strlen(hd));
      memset(sink, 's', 100);
      int stall = strstr(req, "/t/stall ") != NULL;
      for (int i = 0; i < 10; i++) {
        struct timespec ts = {stall ? 3 : 0, stall ? 0 : 100000000L};
        nanosleep(&ts, NULL);
        if (stall)
          break;
        send_all(c, sink, 100);
      }
    } else if (f->mode == FAKE_BIG) {
      const char *hd = "HTTP/1.1 200 OK\r\nContent-Length: 20000000\r\n"
                       "Connection: close\r\n\r\n";
      send_all(c, hd, strlen(hd));
      memset(sink, '<', sizeof sink);
      for (int i = 0; i < 20000000 / (int)sizeof sink + 1; i++) {
        ssize_t r = send(c, sink, sizeof sink, MSG_NOSIGNAL);
        if (r <= 0)
          break;
      }
    } else if (!strncmp(req, "GET ", 4) && f->gets++ > 0) {
      const char *body = "<ListBucketResult><IsTruncated>false</IsTruncated>"
                         "</ListBucketResult>";
      char hd[200];
      snprintf(hd, sizeof hd,
               "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n\r\n",
               strlen(body));
      send_all(c, hd, strlen(hd));
      send_all(c, body, strlen(body));
    } else {
      const char *body = "<Error><Code>SlowDown</Code><Message>try again"
                         "</Message></Error>";
      char hd[200];
      snprintf(hd, sizeof hd,
               "HTTP/1.1 503 Slow Down\r\nContent-Length: %zu\r\n"
               "Connection: close\r\n\r\n",
               strlen(body));
      send_all(c, hd, strlen(hd));
      send_all(c, body, strlen(body));
    }
    close(c);
  }
  return NULL;
}

static void fake_start(fake *f, int mode) {
  memset(f, 0, sizeof *f);
  f->mode = mode;
  f->fd = listen_any(&f->port);
  pthread_create(&f->th, NULL, fake_main, f);
}

static void fake_stop(fake *f) {
  shutdown(f->fd, SHUT_RDWR);
  close(f->fd);
  pthread_join(f->th, NULL);
}

static int count_cb(void *ctx, const char *t, const char *o, const char *tmp,
                    int64_t mtime) {
  (*(int *)ctx)++;
  return 0;
}

static int count_bytes(void *ctx, const void *buf, size_t n) {
  *(int64_t *)ctx += (int64_t)n;
  return 0;
}

TEST(fake_server_retries_and_caps) {
  fake f;
  char url[64];
  /* a 20 MB "XML" answer is cut off at the 8 MiB cap */
  fake_start(&f, FAKE_BIG);
  snprintf(url, sizeof url, "http://127.0.0.1:%d", f.port);
  sbx_blob_params p = base_params(url);
  sbx_s3 *s = NULL;
  CHECK_EQ_INT(sbx_s3_open(&p, NULL, &s), 0);
  int cnt = 0;
  if (s)
    CHECK_EQ_INT(sbx_s3_scan(s, count_cb, &cnt), SBX_ELIMIT);
  sbx_s3_close(s);
  fake_stop(&f);
  /* 503 SlowDown: idempotent requests are retried, others are not */
  fake_start(&f, FAKE_FLAKY);
  snprintf(url, sizeof url, "http://127.0.0.1:%d", f.port);
  p = base_params(url);
  p.s3_part_size = 5 * MiB;
  p.s3_retries = 2;
  s = NULL;
  CHECK_EQ_INT(sbx_s3_open(&p, NULL, &s), 0);
  if (!s) {
    fake_stop(&f);
    return;
  }
  long r0 = sbx_s3_test_requests(s);
  CHECK_EQ_INT(sbx_s3_scan(s, count_cb, &cnt), 0); /* 503, then 200 */
  CHECK_EQ_INT(sbx_s3_test_requests(s) - r0, 3);   /* 2 lists + 1 retry */
  /* CreateMultipartUpload (POST) answered 503: not retried */
  sbx_s3_writer *w;
  CHECK_EQ_INT(sbx_s3_writer_open(s, "t", "o", &w), 0);
  uint8_t *big = calloc(1, 6 * MiB);
  r0 = sbx_s3_test_requests(s);
  CHECK_EQ_INT(sbx_s3_writer_write(w, big, 6 * MiB), SBX_EBACKEND);
  CHECK_EQ_INT(sbx_s3_test_requests(s) - r0, 2); /* HEAD + one POST */
  sbx_s3_writer_abort(w);
  /* a small PUT (conditional, idempotent): retried, then fails */
  CHECK_EQ_INT(sbx_s3_writer_open(s, "t", "o2", &w), 0);
  sbx_s3_writer_write(w, big, 1000);
  r0 = sbx_s3_test_requests(s);
  CHECK_EQ_INT(sbx_s3_writer_commit(w), SBX_EBACKEND);
  CHECK_EQ_INT(sbx_s3_test_requests(s) - r0, 3);
  free(big);
  sbx_s3_close(s);
  fake_stop(&f);
  /* a retried conditional PUT that finds the key taken (412): HEAD tells
   * whether the object is ours (the first attempt landed) or not */
  for (int other = 0; other < 2; other++) {
    fake_start(&f, FAKE_AMBIG);
    f.other_writer = other;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", f.port);
    p = base_params(url);
    s = NULL;
    CHECK_EQ_INT(sbx_s3_open(&p, NULL, &s), 0);
    if (s) {
      CHECK_EQ_INT(sbx_s3_writer_open(s, "t", "amb", &w), 0);
      sbx_s3_writer_write(w, "abc", 3);
      r0 = sbx_s3_test_requests(s);
      CHECK_EQ_INT(sbx_s3_writer_commit(w), other ? SBX_EEXIST : 0);
      CHECK_EQ_INT(sbx_s3_test_requests(s) - r0, 3); /* PUT, PUT, HEAD */
    }
    sbx_s3_close(s);
    fake_stop(&f);
  }
  /* a blob GET is bounded by progress, not by the request timeout: 1 s of
   * steady trickle passes a 300 ms timeout, 1 s of silence does not */
  fake_start(&f, FAKE_SLOW);
  snprintf(url, sizeof url, "http://127.0.0.1:%d", f.port);
  p = base_params(url);
  p.s3_timeout_ms = 300;
  p.s3_retries = -1;
  s = NULL;
  CHECK_EQ_INT(sbx_s3_open(&p, NULL, &s), 0);
  if (s) {
    int64_t got = 0;
    CHECK_EQ_INT(sbx_s3_read(s, "t", "slow", count_bytes, &got), 0);
    CHECK_EQ_INT(got, 1000);
    double t0 = now_s();
    CHECK_EQ_INT(sbx_s3_read(s, "t", "stall", count_bytes, &got),
                 SBX_ETIMEDOUT);
    CHECK(now_s() - t0 < 2.9);
  }
  sbx_s3_close(s);
  fake_stop(&f);
}

/* ------------------------------------------------------------ real server */

typedef struct membuf {
  uint8_t *p;
  size_t n, cap;
} membuf;

static int mem_sink(void *ctx, const void *buf, size_t n) {
  membuf *m = ctx;
  if (m->n + n > m->cap) {
    size_t cap = m->cap ? m->cap : 4096;
    while (cap < m->n + n)
      cap *= 2;
    uint8_t *q = realloc(m->p, cap);
    if (!q)
      return SBX_ENOMEM;
    m->p = q;
    m->cap = cap;
  }
  memcpy(m->p + m->n, buf, n);
  m->n += n;
  return 0;
}

static int discard_sink(void *ctx, const void *buf, size_t n) {
  return 0;
}

static sbx_blob_params rgw_params(const char *prefix) {
  sbx_blob_params p = sbx_blob_default_params();
  p.backend = SBX_BLOB_S3;
  p.s3_endpoint = ep;
  p.s3_bucket = bucket;
  p.s3_region = region;
  p.s3_access_key = ak;
  p.s3_secret_key = sk;
  p.s3_prefix = prefix;
  p.s3_timeout_ms = 60000;
  return p;
}

TEST(rgw_wrong_keys_refused) {
  sbx_blob_params p = rgw_params(NULL);
  p.s3_create_bucket = 1;
  sbx_s3 *s = NULL;
  sbx_err serr = {0, ""};
  CHECK_EQ_INT(sbx_s3_open(&p, &serr, &s), 0);
  if (!s)
    return;
  /* wrong secret key: 403 SignatureDoesNotMatch */
  char bad[128];
  snprintf(bad, sizeof bad, "%s", sk);
  bad[0] = bad[0] == 'A' ? 'B' : 'A';
  sbx_blob_params q = rgw_params(NULL);
  q.s3_secret_key = bad;
  sbx_blob_store *b = NULL;
  CHECK_EQ_INT(sbx_blob_open(&q, &b), SBX_EAUTH);
  q = rgw_params(NULL);
  q.s3_access_key = "SBXNOSUCHKEY00000000";
  sbx_err err = {0, ""};
  q.err = &err;
  CHECK_EQ_INT(sbx_blob_open(&q, &b), SBX_EAUTH);
  CHECK(strstr(err.msg, "refused (HTTP 403)") != NULL);
  CHECK(b == NULL);
  /* every kind of request with the wrong key, on an open handle */
  CHECK_EQ_INT(sbx_s3_test_put(s, "w/good", "hello", 5, NULL), 0);
  CHECK_EQ_INT(sbx_s3_test_set_secret(s, bad), 0);
  CHECK_EQ_INT(sbx_s3_test_put(s, "w/bad", "hello", 5, NULL), SBX_EAUTH);
  CHECK_EQ_INT(serr.status, SBX_EAUTH); /* the server's own answer */
  CHECK(strstr(serr.msg, "HTTP 403 SignatureDoesNotMatch") != NULL);
  CHECK_EQ_INT(sbx_s3_read(s, "w", "good", discard_sink, NULL), SBX_EAUTH);
  CHECK_EQ_INT(sbx_s3_remove(s, "w", "good"), SBX_EAUTH);
  int cnt = 0;
  CHECK_EQ_INT(sbx_s3_scan(s, count_cb, &cnt), SBX_EAUTH);
  sbx_s3_writer *w;
  CHECK_EQ_INT(sbx_s3_writer_open(s, "w", "bad2", &w), 0);
  sbx_s3_writer_write(w, "x", 1);
  CHECK_EQ_INT(sbx_s3_writer_commit(w), SBX_EAUTH);
  CHECK_EQ_INT(sbx_s3_test_set_secret(s, sk), 0);
  CHECK_EQ_INT(sbx_s3_test_head(s, "w/bad", NULL, NULL), SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_s3_test_head(s, "w/bad2", NULL, NULL), SBX_ENOTFOUND);
  CHECK_EQ_INT(sbx_s3_remove(s, "w", "good"), 0);
  sbx_s3_close(s);
}

TEST(rgw_tampered_payload_refused) {
  sbx_blob_params p = rgw_params(NULL);
  sbx_s3 *s = NULL;
  CHECK_EQ_INT(sbx_s3_open(&p, NULL, &s), 0);
  if (!s)
    return;
  const char *a = "the payload that was signed......";
  const char *b = "a payload swapped in on the wire.";
  CHECK(strlen(a) == strlen(b));
  char ha[65];
  sha_hex(a, ha);
  /* control: the same path with the matching hash is accepted */
  CHECK_EQ_INT(sbx_s3_test_put(s, "p/ok", a, strlen(a), ha), 0);
  int64_t size = -1;
  CHECK_EQ_INT(sbx_s3_test_head(s, "p/ok", &size, NULL), 0);
  CHECK_EQ_INT(size, (int64_t)strlen(a));
  /* body b sent under a signature over sha256(a) */
  int rc = sbx_s3_test_put(s, "p/bad", b, strlen(b), ha);
  fprintf(stderr, "  tampered payload -> %s\n", sbx_err_name(rc));
  CHECK_EQ_INT(rc, SBX_EBACKEND); /* 400 XAmzContentSHA256Mismatch */
  CHECK_EQ_INT(sbx_s3_test_head(s, "p/bad", NULL, NULL), SBX_ENOTFOUND);
  /* a valid signature over the empty-body hash, with a body */
  rc = sbx_s3_test_put(s, "p/bad2", a, strlen(a), EMPTY_SHA);
  CHECK_EQ_INT(rc, SBX_EBACKEND);
  CHECK_EQ_INT(sbx_s3_test_head(s, "p/bad2", NULL, NULL), SBX_ENOTFOUND);
  /* overwriting an existing object with a tampered body keeps the old one */
  rc = sbx_s3_test_put(s, "p/ok", b, strlen(b), ha);
  CHECK_EQ_INT(rc, SBX_EBACKEND);
  membuf m = {0};
  CHECK_EQ_INT(sbx_s3_read(s, "p", "ok", mem_sink, &m), 0);
  CHECK(m.n == strlen(a) && !memcmp(m.p, a, m.n));
  free(m.p);
  sbx_s3_remove(s, "p", "ok");
  sbx_s3_close(s);
}

typedef struct listing {
  int objects, tmps;
  char tmp[4][1200];
  char names[64][140];
  int64_t min_mtime, max_mtime;
} listing;

static int list_cb(void *ctx, const char *t, const char *o, const char *tmp,
                   int64_t mtime) {
  listing *l = ctx;
  if (tmp) {
    if (l->tmps < 4)
      snprintf(l->tmp[l->tmps], sizeof l->tmp[0], "%s", tmp);
    l->tmps++;
  } else {
    if (l->objects < 64)
      snprintf(l->names[l->objects], sizeof l->names[0], "%s/%s", t, o);
    l->objects++;
  }
  if (!l->min_mtime || mtime < l->min_mtime)
    l->min_mtime = mtime;
  if (mtime > l->max_mtime)
    l->max_mtime = mtime;
  return 0;
}

static int blob_put(sbx_blob_store *b, const char *t, const char *o,
                    const void *d, size_t n, size_t piece) {
  sbx_blob_writer *w;
  int rc = sbx_blob_writer_open(b, t, o, &w);
  if (rc)
    return rc;
  for (size_t off = 0; off < n && !rc; off += piece)
    rc = sbx_blob_writer_write(w, (const uint8_t *)d + off,
                               off + piece > n ? n - off : piece);
  if (rc) {
    sbx_blob_writer_abort(w);
    return rc;
  }
  return sbx_blob_writer_commit(w);
}

TEST(rgw_blob_conformance) {
  sbx_blob_params p = rgw_params("conf/");
  sbx_blob_store *b = NULL;
  CHECK_EQ_INT(sbx_blob_open(&p, &b), 0);
  if (!b)
    return;
  char path[64];
  CHECK_EQ_INT(sbx_blob_local_path(b, "t1", "a", path, sizeof path),
               SBX_EUNSUPPORTED);
  CHECK_EQ_INT(blob_put(b, "../x", "a", "x", 1, 1), SBX_EINVAL);
  /* small blobs: put, immutability, get, missing */
  CHECK_EQ_INT(blob_put(b, "t1", "a", "hello world", 11, 3), 0);
  CHECK_EQ_INT(blob_put(b, "t1", "a", "other", 5, 5), SBX_EEXIST);
  CHECK_EQ_INT(blob_put(b, "t1", "empty", "", 0, 1), 0);
  membuf m = {0};
  CHECK_EQ_INT(sbx_blob_read(b, "t1", "a", mem_sink, &m), 0);
  CHECK(m.n == 11 && !memcmp(m.p, "hello world", 11));
  m.n = 0;
  CHECK_EQ_INT(sbx_blob_read(b, "t1", "empty", mem_sink, &m), 0);
  CHECK_EQ_INT(m.n, 0);
  CHECK_EQ_INT(sbx_blob_read(b, "t1", "nope", mem_sink, &m), SBX_ENOTFOUND);
  /* ~20 MiB through multipart: parts of 8 + 8 + 4 MiB */
  size_t big = 20 * MiB + 12345;
  uint8_t *d = malloc(big);
  tu_fill(d, big, 99);
  double t0 = now_s();
  CHECK_EQ_INT(blob_put(b, "t2", "big", d, big, 1000003), 0);
  double t_put = now_s() - t0;
  sbx_s3 *raw = NULL;
  sbx_blob_params rp = rgw_params("conf/");
  CHECK_EQ_INT(sbx_s3_open(&rp, NULL, &raw), 0);
  char etag[1100] = "";
  int64_t size = 0;
  if (raw)
    CHECK_EQ_INT(sbx_s3_test_head(raw, "t2/big", &size, etag), 0);
  CHECK_EQ_INT(size, (int64_t)big);
  fprintf(stderr, "  20 MiB multipart put %.2f s, ETag %s\n", t_put, etag);
  CHECK(strstr(etag, "-3\"") != NULL); /* a 3-part multipart object */
  m.n = 0;
  t0 = now_s();
  CHECK_EQ_INT(sbx_blob_read(b, "t2", "big", mem_sink, &m), 0);
  fprintf(stderr, "  20 MiB get %.2f s\n", now_s() - t0);
  CHECK(m.n == big && !memcmp(m.p, d, big));
  /* multipart to an existing key is refused before any part is sent */
  CHECK_EQ_INT(blob_put(b, "t2", "big", d, 9 * MiB, 9 * MiB), SBX_EEXIST);
  /* abort after one uploaded part leaves no unfinished upload */
  sbx_blob_writer *w;
  CHECK_EQ_INT(sbx_blob_writer_open(b, "t2", "aborted", &w), 0);
  CHECK_EQ_INT(sbx_blob_writer_write(w, d, 9 * MiB), 0);
  sbx_blob_writer_abort(w);
  /* list: exactly the committed blobs, with fresh mtimes, no temp entries */
  listing l;
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sbx_blob_scan(b, list_cb, &l), 0);
  CHECK_EQ_INT(l.objects, 3);
  CHECK_EQ_INT(l.tmps, 0);
  int64_t now = (int64_t)time(NULL);
  CHECK(l.min_mtime > now - 300 && l.max_mtime < now + 300);
  /* an unfinished upload (a crashed writer) is a temp entry; remove_tmp
   * aborts it */
  CHECK_EQ_INT(sbx_blob_writer_open(b, "t2", "crashed", &w), 0);
  CHECK_EQ_INT(sbx_blob_writer_write(w, d, 9 * MiB), 0);
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sbx_blob_scan(b, list_cb, &l), 0);
  CHECK_EQ_INT(l.tmps, 1);
  CHECK(!strncmp(l.tmp[0], "t2/crashed#", 11));
  CHECK_EQ_INT(sbx_blob_remove_tmp(b, l.tmp[0]), 0);
  CHECK_EQ_INT(sbx_blob_remove_tmp(b, "no-hash"), SBX_EINVAL);
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sbx_blob_scan(b, list_cb, &l), 0);
  CHECK_EQ_INT(l.tmps, 0);
  /* the writer's upload is gone: its commit fails cleanly */
  CHECK(sbx_blob_writer_commit(w) != 0);
  CHECK_EQ_INT(sbx_s3_test_head(raw, "t2/crashed", NULL, NULL), SBX_ENOTFOUND);
  /* delete */
  CHECK_EQ_INT(sbx_blob_remove(b, "t1", "a"), 0);
  CHECK_EQ_INT(sbx_blob_read(b, "t1", "a", mem_sink, &m), SBX_ENOTFOUND);
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sbx_blob_scan(b, list_cb, &l), 0);
  CHECK_EQ_INT(l.objects, 2);
  /* keys outside our layout under the prefix are ignored by the scan */
  CHECK_EQ_INT(sbx_s3_test_put(raw, "not-a-blob", "x", 1, NULL), 0);
  CHECK_EQ_INT(sbx_s3_test_put(raw, "a/b/c", "x", 1, NULL), 0);
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sbx_blob_scan(b, list_cb, &l), 0);
  CHECK_EQ_INT(l.objects, 2);
  sbx_blob_remove(b, "t1", "empty");
  sbx_blob_remove(b, "t2", "big");
  sbx_s3_close(raw);
  free(m.p);
  free(d);
  sbx_blob_close(b);
}

/* ------------------------------------------------- the store over S3 */

static sbx_blob_params store_blob;

static sbx_store *open_store(void) {
  sbx_store_params p = sbx_store_default_params();
  p.data_dir = datadir;
  p.master_key_spec = keyspec;
  p.chunk_shift = 12;
  p.blob = &store_blob;
  sbx_store *st = NULL;
  int rc = sbx_store_open(&p, &st);
  if (rc)
    fprintf(stderr, "sbx_store_open: %s\n", sbx_strerror(rc));
  return st;
}

/* the raw ciphertext in the bucket */
static int bucket_get(sbx_store *st, const char *t, const char *id, membuf *m) {
  m->n = 0;
  return sbx_blob_read(sbx_store_blobs(st), t, id, mem_sink, m);
}

static sbx_s3 *raw_store(void) {
  sbx_s3 *s = NULL;
  sbx_s3_open(&store_blob, NULL, &s);
  return s;
}

TEST(rgw_store_roundtrip) {
  sbx_store *st = open_store();
  CHECK(st != NULL);
  if (!st)
    return;
  CHECK_EQ_INT(sbx_store_tenant_create(st, "acme", "Acme"), 0);
  CHECK_EQ_INT(sbx_store_tenant_create(st, "globex", "Globex"), 0);
  size_t sizes[] = {0, 1, 4095, 4096, 4097, 100000, 20 * MiB + 777};
  for (size_t i = 0; i < 7; i++) {
    uint8_t *d = malloc(sizes[i] + 1);
    tu_fill(d, sizes[i], i + 1);
    char name[32];
    snprintf(name, sizeof name, "m%zu.onnx", i);
    sbx_put_params pp = {"p1", "model", name, 0};
    sbx_object o;
    sbx_store_writer *w;
    CHECK_EQ_INT(sbx_store_writer_open(st, "acme", &pp, &w), 0);
    for (size_t off = 0; off < sizes[i]; off += 777777)
      sbx_store_writer_write(w, d + off,
                             off + 777777 > sizes[i] ? sizes[i] - off : 777777);
    CHECK_EQ_INT(sbx_store_writer_commit(w, &o), 0);
    void *back;
    size_t n;
    CHECK_EQ_INT(sbx_store_get_alloc(st, "acme", o.id, 64 * MiB, &back, &n), 0);
    CHECK(n == sizes[i] && (n == 0 || memcmp(back, d, n) == 0));
    free(back);
    CHECK_EQ_INT(sbx_store_get_alloc(st, "globex", o.id, 64 * MiB, &back, &n),
                 SBX_ENOTFOUND);
    free(d);
  }
  int64_t cnt, removed = -1;
  CHECK_EQ_INT(sbx_meta_object_count(sbx_store_meta(st), "acme", &cnt), 0);
  CHECK_EQ_INT(cnt, 7);
  /* replace is atomic: the old blob becomes an orphan and is removed */
  sbx_put_params pp = {"p1", "model", "m1.onnx", 0};
  sbx_object o1, o2;
  CHECK_EQ_INT(sbx_store_put(st, "acme", &pp, "x", 1, &o1), SBX_EEXIST);
  pp.replace = 1;
  CHECK_EQ_INT(sbx_store_put(st, "acme", &pp, "new", 3, &o2), 0);
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, 0);
  listing l;
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sbx_blob_scan(sbx_store_blobs(st), list_cb, &l), 0);
  CHECK_EQ_INT(l.objects, 7); /* one blob per row, nothing else */
  CHECK_EQ_INT(sbx_store_delete(st, "acme", o2.id), 0);
  void *back;
  size_t n;
  CHECK_EQ_INT(sbx_store_get_alloc(st, "acme", o2.id, 100, &back, &n),
               SBX_ENOTFOUND);
  membuf m = {0};
  CHECK_EQ_INT(bucket_get(st, "acme", o2.id, &m), SBX_ENOTFOUND);
  /* a streaming put aborted halfway through a multipart upload */
  sbx_store_writer *w;
  pp.name = "aborted";
  CHECK_EQ_INT(sbx_store_writer_open(st, "acme", &pp, &w), 0);
  uint8_t *d = calloc(1, 9 * MiB);
  CHECK_EQ_INT(sbx_store_writer_write(w, d, 9 * MiB), 0);
  sbx_store_writer_abort(w);
  free(d);
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, 0);
  free(m.p);
  sbx_store_close(st);
}

TEST(rgw_store_tamper_detected) {
  sbx_store *st = open_store();
  sbx_s3 *raw = raw_store();
  CHECK(st && raw);
  if (!st || !raw) {
    sbx_store_close(st);
    sbx_s3_close(raw);
    return;
  }
  sbx_store_tenant_create(st, "tamper", "T");
  size_t n = 50000, bign = 17 * MiB + 3;
  uint8_t *d = malloc(bign);
  tu_fill(d, bign, 77);
  sbx_put_params pp = {"", "dataset", "d.npy", 0};
  sbx_object o, o2, ob;
  CHECK_EQ_INT(sbx_store_put(st, "tamper", &pp, d, n, &o), 0);
  pp.name = "other";
  CHECK_EQ_INT(sbx_store_put(st, "tamper", &pp, d, n, &o2), 0);
  pp.name = "big";
  CHECK_EQ_INT(sbx_store_put(st, "tamper", &pp, d, bign, &ob), 0);
  char key[200], key2[200], keyb[200];
  snprintf(key, sizeof key, "tamper/%s", o.id);
  snprintf(key2, sizeof key2, "tamper/%s", o2.id);
  snprintf(keyb, sizeof keyb, "tamper/%s", ob.id);
  membuf orig = {0}, other = {0}, bigb = {0};
  CHECK_EQ_INT(bucket_get(st, "tamper", o.id, &orig), 0);
  CHECK_EQ_INT(bucket_get(st, "tamper", o2.id, &other), 0);
  CHECK_EQ_INT(bucket_get(st, "tamper", ob.id, &bigb), 0);
  void *back;
  size_t bn;
  /* one bit of the object in the bucket: header, chunks, last tag */
  long offs[] = {5, 20, 4000, 20000, (long)orig.n - 1};
  for (int i = 0; i < 5; i++) {
    orig.p[offs[i]] ^= 1;
    CHECK_EQ_INT(sbx_s3_test_put(raw, key, orig.p, orig.n, NULL), 0);
    CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
                 SBX_ECRYPTO);
    CHECK(back == NULL);
    orig.p[offs[i]] ^= 1;
  }
  /* truncated at a chunk boundary */
  CHECK_EQ_INT(sbx_s3_test_put(raw, key, orig.p, orig.n - 4096 - 16, NULL), 0);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
               SBX_ECRYPTO);
  /* another object's blob swapped in */
  CHECK_EQ_INT(sbx_s3_test_put(raw, key, other.p, other.n, NULL), 0);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
               SBX_ECRYPTO);
  /* restored: readable again */
  CHECK_EQ_INT(sbx_s3_test_put(raw, key, orig.p, orig.n, NULL), 0);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn), 0);
  CHECK(bn == n && !memcmp(back, d, n));
  free(back);
  /* a flipped bit inside the second part of a multipart blob */
  bigb.p[9 * MiB + 123] ^= 0x40;
  CHECK_EQ_INT(sbx_s3_test_put(raw, keyb, bigb.p, bigb.n, NULL), 0);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", ob.id, bign, &back, &bn),
               SBX_ECRYPTO);
  bigb.p[9 * MiB + 123] ^= 0x40;
  CHECK_EQ_INT(sbx_s3_test_put(raw, keyb, bigb.p, bigb.n, NULL), 0);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", ob.id, bign, &back, &bn), 0);
  CHECK(bn == bign && !memcmp(back, d, bign));
  free(back);
  /* the wrapped data key in the row */
  sbx_meta *m = sbx_store_meta(st);
  sbx_object row;
  CHECK_EQ_INT(sbx_meta_object_get(m, "tamper", o.id, &row), 0);
  uint8_t wk[SBX_WRAPPED_KEY_LEN];
  memcpy(wk, row.wrapped_dek, sizeof wk);
  wk[50] ^= 0x10;
  sbx_meta_object_rewrap(m, "tamper", o.id, row.key_version, wk);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o.id, n, &back, &bn),
               SBX_ECRYPTO);
  sbx_meta_object_rewrap(m, "tamper", o.id, row.key_version, row.wrapped_dek);
  /* the blob deleted behind the store's back: a row without its blob */
  CHECK_EQ_INT(sbx_s3_remove(raw, "tamper", o2.id), 0);
  CHECK_EQ_INT(sbx_store_get_alloc(st, "tamper", o2.id, n, &back, &bn),
               SBX_EIO);
  free(orig.p);
  free(other.p);
  free(bigb.p);
  free(d);
  sbx_s3_close(raw);
  sbx_store_close(st);
}

TEST(rgw_store_gc) {
  sbx_store *st = open_store();
  if (!st) {
    CHECK(0);
    return;
  }
  sbx_store_tenant_create(st, "gc", "G");
  sbx_put_params pp = {"", "model", "real", 0};
  sbx_object o;
  CHECK_EQ_INT(sbx_store_put(st, "gc", &pp, "data", 4, &o), 0);
  /* an orphan object (a crash between blob and row) and an unfinished
   * multipart upload (a crash during a large put) */
  CHECK_EQ_INT(blob_put(sbx_store_blobs(st), "gc", "orphan1", "zz", 2, 2), 0);
  sbx_blob_writer *bw;
  CHECK_EQ_INT(sbx_blob_writer_open(sbx_store_blobs(st), "gc", "tmp1", &bw), 0);
  uint8_t *d = calloc(1, 9 * MiB);
  CHECK_EQ_INT(sbx_blob_writer_write(bw, d, 9 * MiB), 0);
  free(d);
  int64_t removed = -1;
  CHECK_EQ_INT(sbx_store_gc(st, 3600, &removed), 0); /* too young */
  CHECK_EQ_INT(removed, 0);
  CHECK_EQ_INT(sbx_store_gc(st, 0, &removed), 0);
  CHECK_EQ_INT(removed, 2);
  sbx_blob_writer_abort(bw); /* its upload is already gone: quiet */
  listing l;
  memset(&l, 0, sizeof l);
  CHECK_EQ_INT(sbx_blob_scan(sbx_store_blobs(st), list_cb, &l), 0);
  CHECK_EQ_INT(l.tmps, 0);
  void *b;
  size_t n;
  CHECK_EQ_INT(sbx_store_get_alloc(st, "gc", o.id, 100, &b, &n), 0);
  CHECK(n == 4 && !memcmp(b, "data", 4));
  free(b);
  /* an upload older than the grace period that is still making progress
   * (its latest part is fresh) is not collected, like a local temp file
   * whose mtime moves with every write */
  sbx_put_params lp = {"", "model", "slow", 0};
  sbx_store_writer *w;
  CHECK_EQ_INT(sbx_store_writer_open(st, "gc", &lp, &w), 0);
  size_t piece = 8 * MiB + 4096;
  uint8_t *pd = malloc(piece);
  tu_fill(pd, piece, 5);
  CHECK_EQ_INT(sbx_store_writer_write(w, pd, piece), 0); /* part 1 sent */
  struct timespec ts = {2, 600000000L};
  nanosleep(&ts, NULL);
  CHECK_EQ_INT(sbx_store_writer_write(w, pd, piece), 0); /* part 2 sent */
  CHECK_EQ_INT(sbx_store_gc(st, 2, &removed), 0);
  CHECK_EQ_INT(removed, 0);
  sbx_object so;
  memset(&so, 0, sizeof so);
  CHECK_EQ_INT(sbx_store_writer_commit(w, &so), 0);
  CHECK_EQ_INT(so.size, (int64_t)(2 * piece));
  free(pd);
  sbx_store_close(st);
}

/* every object of the bucket, fetched by curl --aws-sigv4 (not our client) */
static int curl_dump_bucket(const char *dir, int *objects) {
  char cfg[400], cmd[2400], xmlpath[400];
  snprintf(cfg, sizeof cfg, "%s/curl.cfg", root);
  snprintf(xmlpath, sizeof xmlpath, "%s/list.xml", root);
  FILE *f = fopen(cfg, "w");
  if (!f)
    return -1;
  chmod(cfg, 0600);
  fprintf(f,
          "user = \"%s:%s\"\naws-sigv4 = \"aws:amz:%s:s3\"\n"
          "header = \"x-amz-content-sha256: %s\"\nsilent\nfail\n",
          ak, sk, region, EMPTY_SHA);
  fclose(f);
  snprintf(cmd, sizeof cmd,
           "curl -K '%s' -o '%s' '%s/%s?list-type=2&max-keys=1000'", cfg,
           xmlpath, ep, bucket);
  if (system(cmd) != 0)
    return -1;
  uint8_t *xml;
  size_t xn;
  if (tu_read_file(xmlpath, &xml, &xn))
    return -1;
  xml = realloc(xml, xn + 1);
  xml[xn] = 0;
  if (strstr((char *)xml, "<IsTruncated>true")) {
    free(xml);
    return -1;
  }
  mkdir(dir, 0700);
  *objects = 0;
  int rc = 0;
  for (char *p = (char *)xml; (p = strstr(p, "<Key>"));) {
    p += 5;
    char *e = strstr(p, "</Key>");
    if (!e || e - p > 300)
      break;
    char k[320];
    memcpy(k, p, (size_t)(e - p));
    k[e - p] = 0;
    for (char *q = k; *q; q++)
      if (!(isalnum((unsigned char)*q) || strchr("/._-", *q)))
        rc = -1; /* our keys only */
    snprintf(cmd, sizeof cmd, "curl -K '%s' -o '%s/obj%d' '%s/%s/%s'", cfg, dir,
             *objects, ep, bucket, k);
    if (rc || system(cmd) != 0) {
      rc = -1;
      break;
    }
    (*objects)++;
  }
  unlink(cfg);
  free(xml);
  return rc;
}

TEST(rgw_no_plaintext_in_bucket) {
  sbx_store *st = open_store();
  if (!st) {
    CHECK(0);
    return;
  }
  sbx_store_tenant_create(st, "proof", "P");
  size_t n = 300000, bign = 18 * MiB + 5;
  uint8_t *pt = malloc(2 * n + bign);
  tu_fill(pt, 2 * n + bign, 4242);
  sbx_put_params mp = {"p", "model", "net.onnx", 0};
  sbx_put_params dp = {"p", "dataset", "train.npz", 0};
  sbx_put_params bp = {"p", "model", "big.onnx", 0};
  CHECK_EQ_INT(sbx_store_put(st, "proof", &mp, pt, n, NULL), 0);
  sbx_store_writer *w;
  CHECK_EQ_INT(sbx_store_writer_open(st, "proof", &dp, &w), 0);
  for (size_t off = 0; off < n; off += 7777)
    sbx_store_writer_write(w, pt + n + off, off + 7777 > n ? n - off : 7777);
  CHECK_EQ_INT(sbx_store_writer_commit(w, NULL), 0);
  CHECK_EQ_INT(sbx_store_put(st, "proof", &bp, pt + 2 * n, bign, NULL), 0);
  const char *email = "alice.sensitive.person@example.org-with-padding-to-"
                      "make-it-64-bytes-long";
  uint8_t sealed[200];
  CHECK_EQ_INT(sbx_store_field_seal(st, "proof", "users.email|u1", email,
                                    strlen(email), sealed),
               0);
  sbx_user u;
  memset(&u, 0, sizeof u);
  snprintf(u.id, sizeof u.id, "u1");
  sbx_store_keyed_hash(st, "email", email, strlen(email), u.email_index);
  memcpy(u.email_sealed, sealed, strlen(email) + SBX_SEAL_OVERHEAD);
  u.email_sealed_len = strlen(email) + SBX_SEAL_OVERHEAD;
  CHECK_EQ_INT(sbx_meta_user_insert(sbx_store_meta(st), "proof", &u), 0);
  sbx_store_close(st);
  tu_windows win, ew;
  tu_windows_init(&win, pt, 2 * n + bign);
  tu_windows_init(&ew, (const uint8_t *)email, strlen(email));
  CHECK(tu_windows_scan(&win, pt + 1000, 64) >= 1); /* the scanner works */
  CHECK(tu_windows_scan(&win, pt + 2 * n + 17 * MiB, 64) >= 1);
  char dump[400];
  snprintf(dump, sizeof dump, "%s/bucket", root);
  int objects = 0, files = 0;
  CHECK_EQ_INT(curl_dump_bucket(dump, &objects), 0);
  fprintf(stderr, "  bucket: %d objects fetched with curl --aws-sigv4\n",
          objects);
  CHECK(objects >= 3);
  CHECK_EQ_INT(tu_windows_scan_tree(&win, dump, &files), 0);
  CHECK_EQ_INT(tu_windows_scan_tree(&ew, dump, &files), 0);
  CHECK_EQ_INT(files, 2 * objects);
  /* and the local side (SQLite metadata) */
  files = 0;
  CHECK_EQ_INT(tu_windows_scan_tree(&win, datadir, &files), 0);
  CHECK_EQ_INT(tu_windows_scan_tree(&ew, datadir, &files), 0);
  CHECK(files >= 2);
  tu_windows_free(&win);
  tu_windows_free(&ew);
  free(pt);
}

/* reads a seed of the XML fuzz target (hand-written S3 answers) */
static char *seed(const char *name, size_t *n) {
  char path[1024];
  uint8_t *p = NULL;
  snprintf(path, sizeof path, "%s/%s", SBX_S3XML_SEEDS, name);
  if (tu_read_file(path, &p, n))
    return NULL;
  return (char *)p;
}

/* s3_xml.c on the answers S3 gives (the seeds of fuzz_s3xml): expected
 * values read off the documents; times from Python's calendar.timegm. */
TEST(xml_answers) {
  size_t n;
  char *x = seed("list_objects_v2.xml", &n);
  CHECK(x != NULL);
  sbx__s3_item *it = NULL;
  size_t cnt = 0;
  if (x) {
    /* the second key decodes to "pre/t2/o&bad": not an object id */
    CHECK_EQ_INT(sbx__s3_xml_list(x, n, "Contents", 0, "pre/", &it, &cnt), 0);
    CHECK_EQ_INT(cnt, 1);
    if (cnt == 1)
      CHECK(!strcmp(it[0].t, "t1") &&
            !strcmp(it[0].o, "0123456789abcdef0123456789abcdef") &&
            it[0].mtime == 1796432523);
    sbx__s3_items_free(it, cnt);
    CHECK_EQ_INT(sbx__s3_xml_list(x, n, "Contents", 0, "other/", &it, &cnt), 0);
    CHECK_EQ_INT(cnt, 0);
    sbx__s3_items_free(it, cnt);
    CHECK(sbx__s3_xml_truncated(x, n));
    char *tok = sbx__s3_xml_dup(x, n, "NextContinuationToken");
    CHECK(tok && !strcmp(tok, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="));
    free(tok);
    free(x);
  }
  x = seed("list_uploads.xml", &n);
  CHECK(x != NULL);
  if (x) {
    /* the second upload has an empty UploadId: skipped */
    CHECK_EQ_INT(sbx__s3_xml_list(x, n, "Upload", 1, "", &it, &cnt), 0);
    CHECK_EQ_INT(cnt, 1);
    if (cnt == 1)
      CHECK(!strcmp(it[0].t, "t1") && !strcmp(it[0].o, "obj1") &&
            !strcmp(it[0].upload_id, "2~Qx8hdZ0bX6gq7O1n_lVh1bEJlBB2Vgv") &&
            it[0].mtime == 1796432399);
    sbx__s3_items_free(it, cnt);
    char *km = sbx__s3_xml_dup(x, n, "NextKeyMarker");
    CHECK(km && !strcmp(km, "t1/obj2"));
    free(km);
    free(x);
  }
  x = seed("error.xml", &n);
  CHECK(x != NULL);
  if (x) {
    char code[128], msg[256];
    sbx__s3_xml_error(x, n, code, sizeof code, msg, sizeof msg);
    CHECK(!strcmp(code, "SignatureDoesNotMatch"));
    CHECK(!strcmp(msg, "The request signature we calculated does not match "
                       "<the> signature you provided."));
    CHECK(!sbx__s3_xml_truncated(x, n));
    free(x);
  }
  x = seed("list_parts.xml", &n);
  CHECK(x != NULL);
  if (x) {
    int64_t mt = 0;
    sbx__s3_xml_parts_latest(x, n, &mt);
    CHECK_EQ_INT(mt, 1796432409);
    free(x);
  }
  x = seed("initiate.xml", &n); /* &#95; is '_' */
  CHECK(x != NULL);
  if (x) {
    char *u = sbx__s3_xml_dup(x, n, "UploadId");
    CHECK(u && !strcmp(u, "2~Qx8hdZ0bX6gq7O1n_lVh1bEJlBB2Vgv"));
    free(u);
    free(x);
  }
  /* text decoding: entities, references, what is refused */
  char out[16];
  CHECK_EQ_INT(sbx__s3_xml_text("a&lt;&#65;&#x42;", 16, out, sizeof out), 0);
  CHECK(!strcmp(out, "a<AB"));
  CHECK_EQ_INT(sbx__s3_xml_text("&nope;", 6, out, sizeof out), SBX_EFORMAT);
  CHECK_EQ_INT(sbx__s3_xml_text("&#233;", 6, out, sizeof out), SBX_EFORMAT);
  CHECK_EQ_INT(sbx__s3_xml_text("a\0b", 3, out, sizeof out), SBX_EFORMAT);
  CHECK_EQ_INT(sbx__s3_xml_text("0123456789abcdef", 16, out, sizeof out),
               SBX_ELIMIT);
  CHECK_EQ_INT(sbx__s3_iso8601("2026-12-05T01:02:03.000Z", 24), 1796432523);
  CHECK_EQ_INT(sbx__s3_iso8601("yesterday", 9), -1);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  double t0 = now_s();
  ep = getenv("SBX_TEST_S3_ENDPOINT");
  ak = getenv("SBX_TEST_S3_ACCESS_KEY");
  sk = getenv("SBX_TEST_S3_SECRET_KEY");
  region = getenv("SBX_TEST_S3_REGION");
  if (!region || !*region)
    region = "us-east-1";
  int server = ep && *ep && ak && sk;
  RUN(sigv4_aws_test_suite);
  RUN(sigv4_s3_examples);
  RUN(xml_answers);
  if (!server) { /* store_s3_offline; under rgw_run.sh only the server part */
    RUN(config_errors);
    RUN(refused_and_timeouts);
    RUN(fake_server_retries_and_caps);
    fprintf(stderr, "SBX_TEST_S3_ENDPOINT not set: S3 server tests skipped "
                    "(run under tests/store/rgw_run.sh)\n");
    return harness_report();
  }
  if (!mkdtemp(root))
    return 2;
  uint8_t r[4];
  sbx_random(r, sizeof r);
  snprintf(bucket, sizeof bucket, "sbx-test-%d-%02x%02x%02x%02x", (int)getpid(),
           r[0], r[1], r[2], r[3]);
  char keypath[400];
  snprintf(keypath, sizeof keypath, "%s/master.key", root);
  snprintf(keyspec, sizeof keyspec, "file:%s", keypath);
  snprintf(datadir, sizeof datadir, "%s/data", root);
  if (sbx_master_key_create_file(keypath, NULL))
    return 2;
  fprintf(stderr, "S3 endpoint %s, bucket %s\n", ep, bucket);
  double t1 = now_s();
  RUN(rgw_wrong_keys_refused);
  RUN(rgw_tampered_payload_refused);
  RUN(rgw_blob_conformance);
  store_blob = rgw_params("store/");
  RUN(rgw_store_roundtrip);
  RUN(rgw_store_tamper_detected);
  RUN(rgw_store_gc);
  RUN(rgw_no_plaintext_in_bucket);
  fprintf(stderr, "offline part %.1f s, S3 part %.1f s\n", t1 - t0,
          now_s() - t1);
  tu_rm_rf(root);
  return harness_report();
}
