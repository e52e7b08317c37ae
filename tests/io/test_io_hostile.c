/*
 * test_io_hostile.c - malformed and malicious inputs: every truncation of
 * small valid numpy-made NPY/NPZ/IDX files, every single-bit flip, huge
 * declared dims, header lies, zip bombs, CRC mismatches, overlapping and
 * out-of-range ZIP members, encryption, unknown methods.
 * Each case must fail cleanly (right status, empty output, message) and
 * the sanitizer build checks for leaks/overflows.
 */
#include "io_test_util.h"
#include "io/io_internal.h"

#include <zlib.h>

static adv_io_limits LIM;

static char *data_path(const char *name) {
  static char buf[1024];
  snprintf(buf, sizeof(buf), "%s/%s", IO_DATA_DIR, name);
  return buf;
}

enum { NPY, NPZ_X, IDX };

/* Runs one reader on a buffer; asserts the error contract. */
static int run(int kind, const uint8_t *b, size_t n) {
  adv_array a;
  adv_err err;
  err.msg[0] = '\0';
  int rc;
  if (kind == NPY)
    rc = adv_npy_read_mem(b, n, LIM, &a, &err);
  else if (kind == NPZ_X)
    rc = adv__npz_read_mem(b, n, "x", LIM, &a, &err);
  else
    rc = adv__idx_read_mem(b, n, LIM, &a, &err);
  if (rc == ADV_OK) {
    CHECK(util_is_consistent(&a));
  } else {
    CHECK(util_is_empty(&a));
    CHECK(err.msg[0] != '\0');
    CHECK(rc < 0);
  }
  adv_array_free(&a);
  return rc;
}

/* Every proper prefix must fail; the full file must succeed. */
static void all_prefixes(int kind, const char *file) {
  size_t len;
  uint8_t *full = util_slurp(data_path(file), &len);
  CHECK(full != NULL);
  if (!full)
    return;
  CHECK_EQ_INT(run(kind, full, len), ADV_OK);
  int ok = 0;
  for (size_t l = 0; l < len; l++) {
    uint8_t *pre = malloc(l ? l : 1); /* exact size so ASan sees overreads */
    memcpy(pre, full, l);
    if (run(kind, pre, l) == ADV_OK) {
      fprintf(stderr, "  %s: prefix %zu accepted\n", file, l);
      ok++;
    }
    free(pre);
  }
  CHECK_EQ_INT(ok, 0);
  /* trailing garbage is rejected too */
  uint8_t *more = malloc(len + 1);
  memcpy(more, full, len);
  more[len] = 0;
  CHECK(run(kind, more, len + 1) != ADV_OK);
  free(more);
  free(full);
}

/* Flips every bit once; must never crash (results may be OK or not). */
static void all_bitflips(int kind, const char *file) {
  size_t len;
  uint8_t *full = util_slurp(data_path(file), &len);
  CHECK(full != NULL);
  if (!full)
    return;
  int accepted = 0;
  uint8_t *m = malloc(len);
  for (size_t i = 0; i < len; i++)
    for (int bit = 0; bit < 8; bit++) {
      memcpy(m, full, len);
      m[i] ^= (uint8_t)(1u << bit);
      accepted += run(kind, m, len) == ADV_OK;
    }
  fprintf(stderr, "  %s: %d of %zu flips still parse\n", file, accepted,
          len * 8);
  free(m);
  free(full);
}

TEST(npy_prefixes) {
  all_prefixes(NPY, "npy_f4_mat.npy");
  all_prefixes(NPY, "npy_v2.npy");
  all_prefixes(NPY, "npy_b1.npy");
}
TEST(npz_prefixes) {
  all_prefixes(NPZ_X, "savez.npz");
  all_prefixes(NPZ_X, "savez_c.npz");
}
TEST(idx_prefixes) {
  all_prefixes(IDX, "idx_f8.idx");
  all_prefixes(IDX, "idx_i2.idx.gz");
  all_prefixes(IDX, "idx_multi.idx.gz");
}

/* The file reader path (header read, then data) on truncated files. */
TEST(npy_file_prefixes) {
  size_t len;
  uint8_t *full = util_slurp(data_path("npy_f8.npy"), &len);
  CHECK(full != NULL);
  if (!full)
    return;
  char tmp[1100];
  snprintf(tmp, sizeof(tmp), "%s/trunc.npy", IO_TMP_DIR);
  for (size_t l = 0; l < len; l++) {
    CHECK_EQ_INT(util_spit(tmp, full, l), 0);
    adv_array a;
    adv_err err;
    int rc = adv_npy_read_file(tmp, LIM, &a, &err);
    CHECK(rc == ADV_EFORMAT || rc == ADV_EUNSUPPORTED);
    CHECK(util_is_empty(&a));
  }
  free(full);
}

TEST(bitflips) {
  all_bitflips(NPY, "npy_f4_mat.npy");
  all_bitflips(NPZ_X, "savez.npz");
  all_bitflips(NPZ_X, "savez_c.npz");
  all_bitflips(IDX, "idx_i4.idx");
  all_bitflips(IDX, "idx_f4.idx.gz");
}

/* Builds an NPY v1.0 buffer from a dict string and a data length. */
static uint8_t *npy_with(const char *dict, size_t data_len, size_t *len) {
  size_t dl = strlen(dict);
  size_t hl = 10 + dl + 1;
  uint8_t *b = calloc(1, hl + data_len + 1);
  memcpy(b, "\x93NUMPY\x01\x00", 8);
  b[8] = (uint8_t)((dl + 1) & 0xff);
  b[9] = (uint8_t)((dl + 1) >> 8);
  memcpy(b + 10, dict, dl);
  b[10 + dl] = '\n';
  *len = hl + data_len;
  return b;
}

static int npy_case(const char *dict, size_t data_len) {
  size_t len;
  uint8_t *b = npy_with(dict, data_len, &len);
  int rc = run(NPY, b, len);
  free(b);
  return rc;
}

#define D(descr, fo, shape)                                                    \
  "{'descr': '" descr "', 'fortran_order': " fo ", 'shape': " shape ", }"

TEST(npy_header_lies) {
  CHECK_EQ_INT(npy_case(D("<f4", "False", "(2, 3)"), 24), ADV_OK);
  CHECK_EQ_INT(npy_case(D("<f4", "False", "(2, 3)"), 23), ADV_EFORMAT);
  CHECK_EQ_INT(npy_case(D("<f4", "False", "(2, 3)"), 25), ADV_EFORMAT);
  CHECK_EQ_INT(npy_case(D("<f4", "False", "()"), 4), ADV_OK);
  CHECK_EQ_INT(npy_case(D("<f4", "False", "(0,)"), 0), ADV_OK);
  CHECK_EQ_INT(npy_case(D("<f4", "False", "(3,)"), 12), ADV_OK);
  CHECK_EQ_INT(npy_case(D("<f4", "False", "(3)"), 12), ADV_EFORMAT);
  CHECK_EQ_INT(npy_case(D("<f4", "False", "(-3,)"), 12), ADV_EFORMAT);
  CHECK_EQ_INT(npy_case(D("<f4", "False", "(3.0,)"), 12), ADV_EFORMAT);
  CHECK_EQ_INT(npy_case(D("<f4", "False", "[3]"), 12), ADV_EFORMAT);
  CHECK_EQ_INT(npy_case(D("<f4", "0", "(3,)"), 12), ADV_EFORMAT);
  CHECK_EQ_INT(npy_case(D("<f4", "True", "(3,)"), 12), ADV_OK);
  CHECK_EQ_INT(npy_case(D("<f4", "True", "(3, 1)"), 12), ADV_EUNSUPPORTED);
  CHECK_EQ_INT(npy_case(D(">f4", "False", "(3,)"), 12), ADV_EUNSUPPORTED);
  CHECK_EQ_INT(npy_case(D("=f4", "False", "(3,)"), 12), ADV_OK);
  CHECK_EQ_INT(npy_case(D("|O", "False", "(3,)"), 24), ADV_EUNSUPPORTED);
  CHECK_EQ_INT(npy_case(D("<u2", "False", "(3,)"), 6), ADV_EUNSUPPORTED);
  /* keys in any order, double quotes, no trailing comma */
  CHECK_EQ_INT(npy_case("{\"shape\": (2,), 'fortran_order': False, 'descr': "
                        "'|u1'}",
                        2),
               ADV_OK);
  CHECK_EQ_INT(npy_case("{'descr': '<f4', 'shape': (2,)}", 8), ADV_EFORMAT);
  CHECK_EQ_INT(npy_case("{'descr': '<f4', 'descr': '<f4', 'fortran_order': "
                        "False, 'shape': (2,)}",
                        8),
               ADV_EFORMAT);
  CHECK_EQ_INT(npy_case("{'descr': '<f4', 'fortran_order': False, 'shape': "
                        "(2,), 'extra': 1}",
                        8),
               ADV_EFORMAT);
  CHECK_EQ_INT(npy_case("{'descr': '<f4', 'fortran_order': False, 'shape': "
                        "(2,)} junk",
                        8),
               ADV_EFORMAT);
  CHECK_EQ_INT(npy_case("{'descr': '<f\\x34', 'fortran_order': False, "
                        "'shape': (2,)}",
                        8),
               ADV_EFORMAT);
  CHECK_EQ_INT(npy_case("", 0), ADV_EFORMAT);
  /* bool bytes must be 0/1 */
  size_t len;
  uint8_t *b = npy_with(D("|b1", "False", "(2,)"), 2, &len);
  b[len - 1] = 1;
  CHECK_EQ_INT(run(NPY, b, len), ADV_OK);
  b[len - 1] = 2;
  CHECK_EQ_INT(run(NPY, b, len), ADV_EFORMAT);
  /* header length field larger than the buffer */
  b[8] = 0xff;
  b[9] = 0xff;
  CHECK_EQ_INT(run(NPY, b, len), ADV_EFORMAT);
  /* unknown version */
  b[6] = 4;
  CHECK_EQ_INT(run(NPY, b, len), ADV_EUNSUPPORTED);
  free(b);
}

TEST(npy_huge_dims) {
  /* All must be refused by the limit check, before any allocation. */
  CHECK_EQ_INT(npy_case(D("<f4", "False", "(1099511627776, 1099511627776)"), 0),
               ADV_ELIMIT);
  CHECK_EQ_INT(npy_case(D("<f8", "False", "(9223372036854775807,)"), 0),
               ADV_ELIMIT);
  CHECK_EQ_INT(npy_case(D("<f8", "False", "(99999999999999999999999,)"), 0),
               ADV_ELIMIT);
  CHECK_EQ_INT(npy_case(D("<f8", "False", "(4294967296, 4294967296, 0)"), 0),
               ADV_ELIMIT);
  CHECK_EQ_INT(npy_case(D("<f8", "False", "(4294967296, 0)"), 0), ADV_OK);
  CHECK_EQ_INT(npy_case(D("<f8", "False", "(0, 4294967296, 3)"), 0), ADV_OK);
  CHECK_EQ_INT(npy_case(D("<f8", "False", "(1, 1, 1, 1, 1, 1, 1, 1, 1)"), 8),
               ADV_ELIMIT);
  adv_io_limits save = LIM;
  LIM.max_array_bytes = 1 << 20;
  CHECK_EQ_INT(npy_case(D("|u1", "False", "(1048577,)"), 0), ADV_ELIMIT);
  CHECK_EQ_INT(npy_case(D("|u1", "False", "(1048576,)"), 1048576), ADV_OK);
  LIM = save;
  /* v2 header length above the header cap */
  uint8_t v2[16] = {0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 0, 0, 0, 0x10};
  CHECK_EQ_INT(run(NPY, v2, sizeof(v2)), ADV_ELIMIT);
}

/* ---- ZIP crafting ---- */

static void put16(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)v;
  p[1] = (uint8_t)(v >> 8);
}
static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

typedef struct zmem {
  const char *name;
  const uint8_t *data; /* uncompressed payload */
  size_t len;
  int method;         /* 0 or 8; other values are written as is */
  uint32_t flags;     /* general purpose flags */
  int64_t usize_decl; /* -1: real size */
  int64_t crc_xor;    /* xor into the real CRC */
} zmem;

/* Raw deflate of a buffer (malloc'd). */
static uint8_t *deflate_raw(const uint8_t *src, size_t n, size_t *out_len) {
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY);
  size_t cap = deflateBound(&zs, (uLong)n) + 16;
  uint8_t *o = malloc(cap);
  zs.next_in = (Bytef *)(uintptr_t)src;
  zs.avail_in = (uInt)n;
  zs.next_out = o;
  zs.avail_out = (uInt)cap;
  deflate(&zs, Z_FINISH);
  *out_len = cap - zs.avail_out;
  deflateEnd(&zs);
  return o;
}

/* Builds a ZIP of n members; returns malloc'd buffer, offsets of local and
 * central headers in loc[] / cen[]. */
static uint8_t *zbuild(const zmem *m, int n, size_t *len, size_t *loc,
                       size_t *cen) {
  size_t cap = 1024;
  for (int i = 0; i < n; i++)
    cap += 2 * (m[i].len + 200);
  uint8_t *b = calloc(1, cap);
  size_t off = 0;
  uint32_t crcs[8], cs[8], us[8];
  for (int i = 0; i < n; i++) {
    size_t clen = m[i].len;
    uint8_t *cdata = NULL;
    if (m[i].method == 8)
      cdata = deflate_raw(m[i].data, m[i].len, &clen);
    crcs[i] =
        (uint32_t)crc32(0, m[i].data, (uInt)m[i].len) ^ (uint32_t)m[i].crc_xor;
    cs[i] = (uint32_t)clen;
    us[i] =
        m[i].usize_decl >= 0 ? (uint32_t)m[i].usize_decl : (uint32_t)m[i].len;
    size_t nl = strlen(m[i].name);
    loc[i] = off;
    uint8_t *l = b + off;
    put32(l, 0x04034b50);
    put16(l + 4, 20);
    put16(l + 6, m[i].flags);
    put16(l + 8, (uint32_t)m[i].method);
    put32(l + 14, crcs[i]);
    put32(l + 18, cs[i]);
    put32(l + 22, us[i]);
    put16(l + 26, (uint32_t)nl);
    memcpy(l + 30, m[i].name, nl);
    memcpy(l + 30 + nl, cdata ? cdata : m[i].data, clen);
    off += 30 + nl + clen;
    free(cdata);
  }
  size_t cd = off;
  for (int i = 0; i < n; i++) {
    size_t nl = strlen(m[i].name);
    cen[i] = off;
    uint8_t *c = b + off;
    put32(c, 0x02014b50);
    put16(c + 4, 20);
    put16(c + 6, 20);
    put16(c + 8, m[i].flags);
    put16(c + 10, (uint32_t)m[i].method);
    put32(c + 16, crcs[i]);
    put32(c + 20, cs[i]);
    put32(c + 24, us[i]);
    put16(c + 28, (uint32_t)nl);
    put32(c + 42, (uint32_t)loc[i]);
    memcpy(c + 46, m[i].name, nl);
    off += 46 + nl;
  }
  uint8_t *e = b + off;
  put32(e, 0x06054b50);
  put16(e + 8, (uint32_t)n);
  put16(e + 10, (uint32_t)n);
  put32(e + 12, (uint32_t)(off - cd));
  put32(e + 16, (uint32_t)cd);
  off += 22;
  *len = off;
  return b;
}

static int zcase(const zmem *m, int n) {
  size_t len, loc[8], cen[8];
  uint8_t *b = zbuild(m, n, &len, loc, cen);
  int rc = run(NPZ_X, b, len);
  free(b);
  return rc;
}

/* A small valid NPY payload (f4 (4,)) plus optional extra trailing bytes. */
static uint8_t *npy_payload(size_t extra, size_t *len) {
  size_t l;
  uint8_t *b = npy_with(D("<f4", "False", "(4,)"), 16, &l);
  b = realloc(b, l + extra);
  memset(b + l, 0, extra);
  *len = l + extra;
  return b;
}

/* Header lengths shorter than the 12-byte preamble the readers fetch
 * first (found by fuzz_npz: heap overflow in the deflate path). */
TEST(npy_tiny_header) {
  for (unsigned hl = 0; hl < 4; hl++) {
    uint8_t b[16] = {0x93,        'N', 'U', 'M', 'P', 'Y',  1, 0,
                     (uint8_t)hl, 0,   '{', '}', ' ', '\n', 0, 0};
    for (size_t len = 10; len <= sizeof(b); len++) {
      CHECK_EQ_INT(run(NPY, b, len), ADV_EFORMAT);
      zmem m = {"x.npy", b, len, 8, 0, -1, 0};
      CHECK_EQ_INT(zcase(&m, 1), ADV_EFORMAT);
      m.method = 0;
      CHECK_EQ_INT(zcase(&m, 1), ADV_EFORMAT);
      char tmp[1100];
      snprintf(tmp, sizeof(tmp), "%s/tiny.npy", IO_TMP_DIR);
      CHECK_EQ_INT(util_spit(tmp, b, len), 0);
      adv_array a;
      CHECK_EQ_INT(adv_npy_read_file(tmp, LIM, &a, NULL), ADV_EFORMAT);
      CHECK(util_is_empty(&a));
    }
  }
}

TEST(zip_crafted) {
  size_t pl;
  uint8_t *pay = npy_payload(0, &pl);
  zmem ok = {"x.npy", pay, pl, 0, 0, -1, 0};
  CHECK_EQ_INT(zcase(&ok, 1), ADV_OK);
  zmem okd = ok;
  okd.method = 8;
  CHECK_EQ_INT(zcase(&okd, 1), ADV_OK);
  /* CRC mismatch, stored and deflate */
  zmem bad = ok;
  bad.crc_xor = 1;
  CHECK_EQ_INT(zcase(&bad, 1), ADV_EFORMAT);
  bad = okd;
  bad.crc_xor = 0x80000000;
  CHECK_EQ_INT(zcase(&bad, 1), ADV_EFORMAT);
  /* encrypted, unknown method */
  bad = ok;
  bad.flags = 1;
  CHECK_EQ_INT(zcase(&bad, 1), ADV_EUNSUPPORTED);
  bad = ok;
  bad.method = 12;
  CHECK_EQ_INT(zcase(&bad, 1), ADV_EUNSUPPORTED);
  /* stored member with a size lie */
  bad = ok;
  bad.usize_decl = (int64_t)pl - 1;
  CHECK_EQ_INT(zcase(&bad, 1), ADV_EFORMAT);
  /* member not found, member named without .npy */
  bad = ok;
  bad.name = "x";
  CHECK_EQ_INT(zcase(&bad, 1), ADV_ENOTFOUND);
  /* duplicate member */
  zmem two[2] = {ok, ok};
  CHECK_EQ_INT(zcase(two, 2), ADV_EFORMAT);
  /* member limit */
  two[1].name = "y.npy";
  CHECK_EQ_INT(zcase(two, 2), ADV_OK);
  adv_io_limits save = LIM;
  LIM.max_entries = 1;
  CHECK_EQ_INT(zcase(two, 2), ADV_ELIMIT);
  LIM = save;
  free(pay);
}

TEST(zip_bombs) {
  /* Declares 144 bytes (consistent with its NPY header) but inflates to
   * 144 + 16 MiB of zeros: must stop at the declared size. */
  size_t pl;
  uint8_t *pay = npy_payload((size_t)16 << 20, &pl);
  size_t real = pl - ((size_t)16 << 20);
  zmem m = {"x.npy", pay, pl, 8, 0, (int64_t)real, 0};
  CHECK_EQ_INT(zcase(&m, 1), ADV_EFORMAT);
  /* Declared size larger than what inflates */
  m.usize_decl = (int64_t)real;
  m.len = real - 4;
  CHECK_EQ_INT(zcase(&m, 1), ADV_EFORMAT);
  free(pay);
  /* Huge declared size with a tiny stream: impossible ratio / limit. */
  pay = npy_payload(0, &pl);
  zmem h = {"x.npy", pay, pl, 8, 0, 0xFFFFFFF0, 0};
  CHECK_EQ_INT(zcase(&h, 1), ADV_EFORMAT);
  adv_io_limits save = LIM;
  LIM.max_array_bytes = 1 << 20;
  CHECK_EQ_INT(zcase(&h, 1), ADV_ELIMIT);
  LIM = save;
  /* NPY header inside a deflate member declaring 2^40 elements */
  size_t hl;
  uint8_t *hb = npy_with(D("<f4", "False", "(1099511627776,)"), 0, &hl);
  zmem hh = {"x.npy", hb, hl, 8, 0, -1, 0};
  CHECK_EQ_INT(zcase(&hh, 1), ADV_ELIMIT);
  free(hb);
  free(pay);
}

TEST(zip_structure) {
  size_t pl;
  uint8_t *pay = npy_payload(0, &pl);
  zmem two[2] = {{"x.npy", pay, pl, 0, 0, -1, 0},
                 {"y.npy", pay, pl, 0, 0, -1, 0}};
  size_t len, loc[2], cen[2];
  uint8_t *b = zbuild(two, 2, &len, loc, cen);
  uint8_t *m = malloc(len);
#define FRESH() memcpy(m, b, len)
  FRESH();
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_OK);
  /* local header offset out of range */
  FRESH();
  put32(m + cen[0] + 42, 0x7fffffff);
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* both central entries point at the same local header */
  FRESH();
  put32(m + cen[1] + 42, (uint32_t)loc[0]);
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* data-descriptor flag set (so the local sizes are not compared) and
   * x's sizes grown to cover y's local header: overlap */
  FRESH();
  put16(m + loc[0] + 6, 8);
  put16(m + cen[0] + 8, 8);
  put32(m + cen[0] + 20, (uint32_t)(pl + 10));
  put32(m + cen[0] + 24, (uint32_t)(pl + 10));
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* local name differs from the central name */
  FRESH();
  m[loc[0] + 30] = 'z';
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* local method differs */
  FRESH();
  put16(m + loc[0] + 8, 8);
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* central directory offset/size lies */
  size_t eocd = len - 22;
  FRESH();
  put32(m + eocd + 16, (uint32_t)(cen[0] + 1));
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  FRESH();
  put32(m + eocd + 12, 0xFFFFFFF0u);
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* entry count lies */
  FRESH();
  put16(m + eocd + 8, 3);
  put16(m + eocd + 10, 3);
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* zip64 markers without a locator */
  FRESH();
  put32(m + eocd + 16, 0xFFFFFFFFu);
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* comment length pointing past the end */
  FRESH();
  put16(m + eocd + 20, 5);
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* multi-disk */
  FRESH();
  put16(m + eocd + 4, 1);
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EUNSUPPORTED);
  /* extra field length overruns the directory */
  FRESH();
  put16(m + cen[0] + 30, 200);
  CHECK_EQ_INT(run(NPZ_X, m, len), ADV_EFORMAT);
  /* the same archive with a zip64 end record + locator */
  {
    size_t z = len + 56 + 20;
    uint8_t *q = calloc(1, z);
    memcpy(q, b, eocd);
    uint8_t *r = q + eocd;
    put32(r, 0x06064b50);
    put32(r + 4, 44);
    put16(r + 12, 45);
    put16(r + 14, 45);
    put32(r + 24, 2);
    put32(r + 32, 2);
    put32(r + 40, (uint32_t)(eocd - cen[0]));
    put32(r + 48, (uint32_t)cen[0]);
    put32(r + 56, 0x07064b50);
    put32(r + 64, (uint32_t)eocd);
    put32(r + 72, 1);
    uint8_t *e = r + 76;
    put32(e, 0x06054b50);
    put16(e + 8, 0xFFFF);
    put16(e + 10, 0xFFFF);
    put32(e + 12, 0xFFFFFFFFu);
    put32(e + 16, 0xFFFFFFFFu);
    CHECK_EQ_INT(run(NPZ_X, q, z), ADV_OK);
    put32(r + 32, 3); /* entry counts disagree */
    CHECK(run(NPZ_X, q, z) != ADV_OK);
    put32(r + 32, 2);
    put32(r + 64, (uint32_t)eocd + 1); /* locator points off the record */
    CHECK_EQ_INT(run(NPZ_X, q, z), ADV_EFORMAT);
    free(q);
  }
  /* a comment after the EOCD is fine */
  uint8_t *c = malloc(len + 5);
  memcpy(c, b, len);
  put16(c + eocd + 20, 5);
  memcpy(c + len, "hello", 5);
  CHECK_EQ_INT(run(NPZ_X, c, len + 5), ADV_OK);
  free(c);
  free(m);
  free(b);
  free(pay);
#undef FRESH
}

TEST(idx_hostile) {
  uint8_t h[32] = {0,    0,    8,    3,    0xff, 0xff, 0xff, 0xff,
                   0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  CHECK_EQ_INT(run(IDX, h, 16), ADV_ELIMIT);
  uint8_t h2[] = {0, 0, 0x0A, 1, 0, 0, 0, 1, 5};
  CHECK_EQ_INT(run(IDX, h2, sizeof(h2)), ADV_EFORMAT);
  uint8_t h3[] = {0, 0, 8, 0};
  CHECK_EQ_INT(run(IDX, h3, sizeof(h3)), ADV_EFORMAT);
  uint8_t h4[4 + 4 * 9] = {0, 0, 8, 9};
  CHECK_EQ_INT(run(IDX, h4, sizeof(h4)), ADV_ELIMIT);
  uint8_t h5[] = {1, 0, 8, 1, 0, 0, 0, 1, 5};
  CHECK_EQ_INT(run(IDX, h5, sizeof(h5)), ADV_EFORMAT);
  uint8_t ok[] = {0, 0, 8, 1, 0, 0, 0, 1, 5};
  CHECK_EQ_INT(run(IDX, ok, sizeof(ok)), ADV_OK);

  /* gzip: header declares 1 GiB of u8 but the stream holds 10 bytes. The
   * reader grows its buffer with the real data, so this is cheap. */
  uint8_t raw[4 + 4 + 10] = {0, 0, 8, 1, 0x40, 0, 0, 0};
  uLongf gl = 256;
  uint8_t gz[256];
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY);
  zs.next_in = raw;
  zs.avail_in = sizeof(raw);
  zs.next_out = gz;
  zs.avail_out = (uInt)gl;
  deflate(&zs, Z_FINISH);
  gl = gl - zs.avail_out;
  deflateEnd(&zs);
  CHECK_EQ_INT(run(IDX, gz, gl), ADV_EFORMAT);
  adv_io_limits save = LIM;
  LIM.max_array_bytes = 1 << 20;
  CHECK_EQ_INT(run(IDX, gz, gl), ADV_ELIMIT);
  LIM = save;

  /* gzip bomb: declares 4 bytes, inflates to 32 MiB */
  size_t big = (size_t)32 << 20;
  uint8_t *bomb = calloc(1, big);
  memcpy(bomb, (uint8_t[]){0, 0, 8, 1, 0, 0, 0, 4}, 8);
  memset(&zs, 0, sizeof(zs));
  deflateInit2(&zs, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY);
  size_t cap = deflateBound(&zs, (uLong)big);
  uint8_t *cb = malloc(cap);
  zs.next_in = bomb;
  zs.avail_in = (uInt)big;
  zs.next_out = cb;
  zs.avail_out = (uInt)cap;
  deflate(&zs, Z_FINISH);
  size_t cl = cap - zs.avail_out;
  deflateEnd(&zs);
  CHECK_EQ_INT(run(IDX, cb, cl), ADV_EFORMAT);
  free(cb);
  free(bomb);
  /* plain file size limit */
  LIM.max_file_bytes = 8;
  CHECK_EQ_INT(run(IDX, ok, sizeof(ok)), ADV_ELIMIT);
  LIM = save;
}

TEST(file_errors) {
  adv_array a;
  adv_err err;
  CHECK_EQ_INT(adv_npy_read_file("/nonexistent/x.npy", LIM, &a, &err), ADV_EIO);
  CHECK(util_is_empty(&a));
  CHECK_EQ_INT(adv_npz_read_file(IO_DATA_DIR, "x", LIM, &a, &err), ADV_EIO);
  CHECK_EQ_INT(adv_idx_read_file("/nonexistent/x.idx", LIM, &a, &err), ADV_EIO);
  adv_io_limits small = LIM;
  small.max_file_bytes = 100;
  CHECK_EQ_INT(adv_npz_read_file(data_path("savez.npz"), "x", small, &a, &err),
               ADV_ELIMIT);
  CHECK_EQ_INT(adv_npy_read_file(data_path("npy_f8.npy"), small, &a, &err),
               ADV_ELIMIT);
  small = LIM;
  small.max_array_bytes = 8;
  CHECK_EQ_INT(adv_npy_read_file(data_path("npy_f8.npy"), small, &a, &err),
               ADV_ELIMIT);
  CHECK_EQ_INT(
      adv_npz_read_file(data_path("savez_c.npz"), "x", small, &a, &err),
      ADV_ELIMIT);
  CHECK_EQ_INT(adv_idx_read_file(data_path("idx_f8.idx.gz"), small, &a, &err),
               ADV_ELIMIT);
  /* NULL err is allowed */
  CHECK_EQ_INT(adv_npy_read_file("/nonexistent/x.npy", LIM, &a, NULL), ADV_EIO);
  CHECK_EQ_INT(adv_npy_read_mem("", 0, LIM, &a, NULL), ADV_EFORMAT);
}

int main(void) {
  LIM = adv_io_default_limits();
  RUN(npy_prefixes);
  RUN(npz_prefixes);
  RUN(idx_prefixes);
  RUN(npy_file_prefixes);
  RUN(bitflips);
  RUN(npy_header_lies);
  RUN(npy_tiny_header);
  RUN(npy_huge_dims);
  RUN(zip_crafted);
  RUN(zip_bombs);
  RUN(zip_structure);
  RUN(idx_hostile);
  RUN(file_errors);
  return harness_report();
}
