/*
 * fuzz_s3xml.c - libFuzzer target for the S3 backend's XML reading
 * (src/store/s3_xml.c): listing pages of both kinds, error documents,
 * markers, ListParts, text decoding. The input is copied into a buffer of
 * exactly its size (no NUL terminator), so any read past the range the
 * functions are given is caught by ASan. Every item returned must hold
 * valid ids; decoded text must fit where it was written.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "s3_xml.h"
#include "sbx/meta.h"
#include "sbx/status.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_items(sbx__s3_item *it, size_t n, int uploads) {
  for (size_t i = 0; i < n; i++) {
    if (!sbx_id_valid(it[i].t) || !sbx_id_valid(it[i].o) || it[i].mtime < 0)
      abort();
    if (uploads && (!it[i].upload_id || !it[i].upload_id[0]))
      abort();
  }
  sbx__s3_items_free(it, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *p = malloc(size ? size : 1);
  if (!p)
    return 0;
  memcpy(p, data, size);
  const char *prefixes[] = {"", "pre/"};
  for (int k = 0; k < 2; k++) {
    sbx__s3_item *it = NULL;
    size_t n = 0;
    if (!sbx__s3_xml_list(p, size, "Contents", 0, prefixes[k], &it, &n))
      check_items(it, n, 0);
    if (!sbx__s3_xml_list(p, size, "Upload", 1, prefixes[k], &it, &n))
      check_items(it, n, 1);
  }
  const char *tags[] = {"NextContinuationToken", "NextKeyMarker", "UploadId",
                        "NextPartNumberMarker"};
  for (int k = 0; k < 4; k++) {
    char *v = sbx__s3_xml_dup(p, size, tags[k]);
    if (v && (!v[0] || strlen(v) > 4096))
      abort();
    free(v);
  }
  (void)sbx__s3_xml_truncated(p, size);
  char code[128], msg[256];
  sbx__s3_xml_error(p, size, code, sizeof code, msg, sizeof msg);
  if (strlen(code) >= sizeof code || strlen(msg) >= sizeof msg)
    abort();
  int64_t mt = 0;
  sbx__s3_xml_parts_latest(p, size, &mt);
  char small[16];
  int rc = sbx__s3_xml_text(p, size, small, sizeof small);
  if (rc == SBX_OK && strlen(small) >= sizeof small)
    abort();
  (void)sbx__s3_iso8601(p, size);
  free(p);
  return 0;
}
