/*
 * auth_testutil.h - helpers of the authentication tests (test_auth.c,
 * test_lifecycle.c, test_api.c): the Set-Cookie of a response, base32
 * decoding of a TOTP secret and the code of a step, a free loopback port,
 * one SQL statement on a server's meta.db. Include after api_testutil.h.
 */
#ifndef SBX_AUTH_TESTUTIL_H
#define SBX_AUTH_TESTUTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <stdint.h>
#include <strings.h>
#include <sys/socket.h>

#include "totp.h"

/* Value of the Set-Cookie for name (up to ';' when attrs == 0). */
static inline int set_cookie(const resp *r, const char *name, char *out,
                             size_t cap, int attrs) {
  size_t nl = strlen(name);
  for (const char *p = r->hdr; p && *p;) {
    if (!strncasecmp(p, "Set-Cookie:", 11)) {
      const char *v = p + 11;
      while (*v == ' ')
        v++;
      if (!strncmp(v, name, nl) && v[nl] == '=') {
        v += attrs ? 0 : nl + 1;
        size_t n = attrs ? strcspn(v, "\r\n") : strcspn(v, ";\r\n");
        if (n >= cap)
          return 0;
        memcpy(out, v, n);
        out[n] = 0;
        return 1;
      }
    }
    p = strchr(p, '\n');
    if (p)
      p++;
  }
  return 0;
}

static inline int unbase32(const char *s, uint8_t *out, size_t cap) {
  uint32_t acc = 0;
  int bits = 0;
  size_t n = 0;
  for (; *s; s++) {
    const char *A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    const char *p = strchr(A, *s);
    if (!p)
      return -1;
    acc = acc << 5 | (uint32_t)(p - A);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      if (n >= cap)
        return -1;
      out[n++] = (uint8_t)(acc >> bits);
    }
  }
  return (int)n;
}

static inline void code_at(const uint8_t *k, int kl, long long step,
                           char out[8]) {
  uint32_t c = 0;
  sbx__totp_code(k, (size_t)kl, (uint64_t)step, 6, &c);
  snprintf(out, 8, "%06u", c);
}

static inline int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t l = sizeof a;
  int port = -1;
  if (fd >= 0 && !bind(fd, (struct sockaddr *)&a, sizeof a) &&
      !getsockname(fd, (struct sockaddr *)&a, &l))
    port = ntohs(a.sin_port);
  if (fd >= 0)
    close(fd);
  return port;
}

/* Runs one SQL statement on the SQLite meta.db of the server in dir, from
 * this process (a change the server's caches cannot know about, or test
 * set-up). 0 on success. */
static inline int api_db_poke(const char *dir, const char *sql) {
  char path[320];
  snprintf(path, sizeof path, "%s/meta.db", dir);
  sqlite3 *db = NULL;
  int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, 5000);
    rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
  }
  sqlite3_close(db);
  return rc == SQLITE_OK ? 0 : -1;
}

#endif
