/*
 * s3_xml.c - reading S3's XML answers (s3_xml.h): element lookup, text
 * decoding, listing pages, error documents. Bounded by the byte range it
 * is given; fuzzed by tests/fuzz/fuzz_s3xml.c.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "s3_xml.h"
#include "sbx/status.h"

/* longest upload id / key we accept from a listing */
#define XML_ID_MAX 1024

const char *sbx__s3_xml_find(const char *p, const char *e, const char *tag,
                             size_t *len, const char **after) {
  char open[80], close[82];
  int ol = snprintf(open, sizeof open, "<%s>", tag);
  int cl = snprintf(close, sizeof close, "</%s>", tag);
  if (!p || p >= e || ol < 0 || cl < 0 || (size_t)cl >= sizeof close)
    return NULL;
  const char *s = memmem(p, (size_t)(e - p), open, (size_t)ol);
  if (!s)
    return NULL;
  s += ol;
  const char *t = memmem(s, (size_t)(e - s), close, (size_t)cl);
  if (!t)
    return NULL;
  *len = (size_t)(t - s);
  if (after)
    *after = t + cl;
  return s;
}

/* Decodes the five XML entities and numeric ASCII references. */
int sbx__s3_xml_text(const char *v, size_t n, char *out, size_t cap) {
  size_t o = 0;
  if (!cap)
    return SBX_ELIMIT;
  for (size_t i = 0; i < n; i++) {
    char ch = v[i];
    if (!ch)
      return SBX_EFORMAT; /* not a character XML allows */
    if (ch == '&') {
      static const struct {
        const char *e;
        char c;
      } ents[] = {{"&amp;", '&'},
                  {"&lt;", '<'},
                  {"&gt;", '>'},
                  {"&quot;", '"'},
                  {"&apos;", '\''}};
      size_t k;
      for (k = 0; k < 5; k++) {
        size_t el = strlen(ents[k].e);
        if (i + el <= n && !memcmp(v + i, ents[k].e, el)) {
          ch = ents[k].c;
          i += el - 1;
          break;
        }
      }
      if (k == 5 && i + 3 < n && v[i + 1] == '#') {
        const char *semi = memchr(v + i, ';', n - i);
        if (!semi)
          return SBX_EFORMAT;
        long cp = v[i + 2] == 'x' ? strtol(v + i + 3, NULL, 16)
                                  : strtol(v + i + 2, NULL, 10);
        if (cp <= 0 || cp > 127)
          return SBX_EFORMAT; /* our keys are ASCII */
        ch = (char)cp;
        i = (size_t)(semi - v);
      } else if (k == 5) {
        return SBX_EFORMAT;
      }
    }
    if (o + 1 >= cap)
      return SBX_ELIMIT;
    out[o++] = ch;
  }
  out[o] = 0;
  return SBX_OK;
}

int64_t sbx__s3_iso8601(const char *v, size_t n) {
  char tmp[40];
  if (n >= sizeof tmp)
    return -1;
  memcpy(tmp, v, n);
  tmp[n] = 0;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  if (sscanf(tmp, "%4d-%2d-%2dT%2d:%2d:%2d", &tm.tm_year, &tm.tm_mon,
             &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec) != 6)
    return -1;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return (int64_t)timegm(&tm);
}

char *sbx__s3_xml_dup(const char *p, size_t n, const char *tag) {
  size_t l;
  const char *v = sbx__s3_xml_find(p, p ? p + n : NULL, tag, &l, NULL);
  if (!v || l == 0 || l > 4096)
    return NULL;
  char *o = malloc(l + 1);
  if (o && sbx__s3_xml_text(v, l, o, l + 1)) {
    free(o);
    o = NULL;
  }
  return o;
}

int sbx__s3_xml_truncated(const char *p, size_t n) {
  size_t l;
  const char *v =
      sbx__s3_xml_find(p, p ? p + n : NULL, "IsTruncated", &l, NULL);
  return v && l == 4 && !memcmp(v, "true", 4);
}

/* decoded text of <tag> into out, non-printable bytes as '?'; "" if none */
static void printable_text(const char *p, const char *e, const char *tag,
                           char *out, size_t cap) {
  size_t l;
  const char *v = sbx__s3_xml_find(p, e, tag, &l, NULL);
  if (!cap)
    return;
  if (!v || sbx__s3_xml_text(v, l, out, cap))
    out[0] = 0;
  for (char *q = out; *q; q++)
    if (!isprint((unsigned char)*q))
      *q = '?';
}

void sbx__s3_xml_error(const char *p, size_t n, char *code, size_t code_cap,
                       char *msg, size_t msg_cap) {
  const char *e = p ? p + n : NULL;
  printable_text(p, e, "Code", code, code_cap);
  printable_text(p, e, "Message", msg, msg_cap);
}

/* splits "<prefix>tenant/object" into its ids; 0 when not one of ours */
static int split_key(const char *prefix, const char *key, char *t, char *o) {
  size_t pl = strlen(prefix);
  if (strncmp(key, prefix, pl))
    return 0;
  key += pl;
  const char *slash = strchr(key, '/');
  if (!slash || (size_t)(slash - key) >= SBX_ID_MAX ||
      strlen(slash + 1) >= SBX_ID_MAX)
    return 0;
  memcpy(t, key, (size_t)(slash - key));
  t[slash - key] = 0;
  strcpy(o, slash + 1);
  return sbx_id_valid(t) && sbx_id_valid(o);
}

void sbx__s3_items_free(sbx__s3_item *it, size_t n) {
  for (size_t i = 0; i < n; i++)
    free(it[i].upload_id);
  free(it);
}

int sbx__s3_xml_list(const char *p, size_t n, const char *elem, int uploads,
                     const char *prefix, sbx__s3_item **items, size_t *count) {
  *items = NULL;
  *count = 0;
  size_t cap = 0, l;
  const char *e = p ? p + n : NULL, *after, *v;
  char key[XML_ID_MAX + 80];
  while ((v = sbx__s3_xml_find(p, e, elem, &l, &after))) {
    const char *be = v + l;
    p = after;
    size_t kl, tl, ul = 0;
    const char *kv = sbx__s3_xml_find(v, be, "Key", &kl, NULL);
    const char *tv = sbx__s3_xml_find(
        v, be, uploads ? "Initiated" : "LastModified", &tl, NULL);
    const char *uv =
        uploads ? sbx__s3_xml_find(v, be, "UploadId", &ul, NULL) : NULL;
    if (!kv || !tv || (uploads && (!uv || !ul || ul > XML_ID_MAX)))
      continue;
    if (sbx__s3_xml_text(kv, kl, key, sizeof key))
      continue;
    sbx__s3_item it;
    memset(&it, 0, sizeof it);
    if (!split_key(prefix, key, it.t, it.o))
      continue; /* not a blob of ours */
    it.mtime = sbx__s3_iso8601(tv, tl);
    if (it.mtime < 0)
      it.mtime = 0;
    if (uploads) {
      it.upload_id = malloc(ul + 1);
      if (!it.upload_id || sbx__s3_xml_text(uv, ul, it.upload_id, ul + 1)) {
        free(it.upload_id);
        continue;
      }
    }
    if (*count == cap) {
      cap = cap ? 2 * cap : 64;
      sbx__s3_item *q = realloc(*items, cap * sizeof *q);
      if (!q) {
        free(it.upload_id);
        sbx__s3_items_free(*items, *count);
        *items = NULL;
        *count = 0;
        return SBX_ENOMEM;
      }
      *items = q;
    }
    (*items)[(*count)++] = it;
  }
  return SBX_OK;
}

void sbx__s3_xml_parts_latest(const char *p, size_t n, int64_t *mtime) {
  const char *e = p ? p + n : NULL, *v, *after;
  size_t l, tl;
  while ((v = sbx__s3_xml_find(p, e, "Part", &l, &after))) {
    const char *tv = sbx__s3_xml_find(v, v + l, "LastModified", &tl, NULL);
    int64_t t = tv ? sbx__s3_iso8601(tv, tl) : -1;
    if (t > *mtime)
      *mtime = t;
    p = after;
  }
}
