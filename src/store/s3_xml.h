/*
 * s3_xml.h - private: the few S3 XML responses the backend reads
 * (s3_xml.c). Pure functions on a byte range that need not be
 * NUL-terminated or well-formed: anything malformed is skipped or an error,
 * never read out of bounds (fuzzed by tests/fuzz/fuzz_s3xml.c).
 *
 * This is not an XML parser: S3 answers are flat, machine-written documents,
 * so an element is found as the first "<tag>" ... "</tag>" pair; the text
 * is decoded for the five predefined entities and numeric references to
 * ASCII characters (object keys of ours are ASCII).
 */
#ifndef SBX_STORE_S3_XML_H
#define SBX_STORE_S3_XML_H

#include <stddef.h>
#include <stdint.h>

#include "sbx/meta.h"

/* The raw text of the first <tag>...</tag> inside [p, e): its start, and
 * its length in *len; *after (may be NULL) points past the closing tag.
 * NULL when absent, p is NULL or tag is longer than 70 bytes. */
const char *sbx__s3_xml_find(const char *p, const char *e, const char *tag,
                             size_t *len, const char **after);
/* Decodes v[0..n) into out (NUL-terminated). SBX_EFORMAT on a NUL byte,
 * an unknown entity or a reference outside ASCII 1..127, SBX_ELIMIT when
 * out is too small. */
int sbx__s3_xml_text(const char *v, size_t n, char *out, size_t cap);
/* Decoded text of the first <tag> in [p, p+n) as a malloc'd string; NULL
 * when absent, empty, longer than 4096 bytes, malformed or out of memory. */
char *sbx__s3_xml_dup(const char *p, size_t n, const char *tag);
/* 1 when the document says <IsTruncated>true</IsTruncated>. */
int sbx__s3_xml_truncated(const char *p, size_t n);
/* "2024-01-31T12:00:00.000Z" (the fraction and zone are ignored: S3 uses
 * UTC) to unix seconds; -1 when malformed. */
int64_t sbx__s3_iso8601(const char *v, size_t n);
/* The <Code> and <Message> of an S3 error document, decoded, with
 * non-printable bytes replaced by '?'; "" when absent or malformed. */
void sbx__s3_xml_error(const char *p, size_t n, char *code, size_t code_cap,
                       char *msg, size_t msg_cap);

/* One entry of a listing page. */
typedef struct sbx__s3_item {
  char t[SBX_ID_MAX], o[SBX_ID_MAX]; /* tenant and object ids */
  char *upload_id;                   /* ListMultipartUploads only */
  int64_t mtime;                     /* LastModified / Initiated, 0 if bad */
} sbx__s3_item;

/* Parses every <elem> block of a ListObjectsV2 page (elem "Contents",
 * uploads 0: Key + LastModified) or a ListMultipartUploads page (elem
 * "Upload", uploads 1: Key + Initiated + UploadId) into a malloc'd array
 * (*items, *n; free with sbx__s3_items_free). Entries whose key is not
 * "<prefix><tenant id>/<object id>" with valid ids, or that lack a field,
 * are skipped. SBX_ENOMEM (then *items is NULL, *n 0). */
int sbx__s3_xml_list(const char *p, size_t n, const char *elem, int uploads,
                     const char *prefix, sbx__s3_item **items, size_t *count);
void sbx__s3_items_free(sbx__s3_item *it, size_t n);
/* Raises *mtime to the latest <Part><LastModified> of a ListParts page. */
void sbx__s3_xml_parts_latest(const char *p, size_t n, int64_t *mtime);

#endif
