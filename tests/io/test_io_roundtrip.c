/*
 * test_io_roundtrip.c - our NPY/NPZ writers: read back by our readers and
 * by numpy.load (gen_testdata.py --check run through ADV_TEST_PYTHON).
 * Also: atomic replacement leaves no temp files, bad arguments fail.
 */
#include "io_test_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/types.h>

static const char *codes[] = {"f4", "f8", "i8", "i4", "u1", "i1", "b1"};
static const struct {
  int ndim;
  int64_t dims[4];
} shapes[] = {{0, {0}},    {1, {5}},       {1, {0}},
              {2, {3, 4}}, {3, {2, 0, 3}}, {4, {2, 1, 3, 2}}};
#define NSHAPES ((int)(sizeof(shapes) / sizeof(shapes[0])))

static char dir[1024];

static const char *p(const char *name) {
  static char buf[4][1200];
  static int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
  return buf[k];
}

static FILE *manifest;

static void note(const char *file, const char *code, const adv_array *a) {
  fprintf(manifest, "%s %s %d", file, code, a->ndim);
  for (int i = 0; i < a->ndim; i++)
    fprintf(manifest, " %lld", (long long)a->dims[i]);
  fprintf(manifest, "\n");
}

static void make(adv_array *a, const char *code, int s) {
  CHECK_EQ_INT(
      adv_array_alloc(a, util_dtype(code), shapes[s].ndim, shapes[s].dims),
      ADV_OK);
  util_fill(a, code);
}

TEST(npy_roundtrip) {
  adv_io_limits lim = adv_io_default_limits();
  for (int c = 0; c < 7; c++) {
    for (int s = 0; s < NSHAPES; s++) {
      adv_array a, b;
      make(&a, codes[c], s);
      char name[64];
      snprintf(name, sizeof(name), "w_%s_%d.npy", codes[c], s);
      adv_err err = {{0}};
      CHECK_EQ_INT(adv_npy_write_file(p(name), &a, &err), ADV_OK);
      CHECK_EQ_INT(adv_npy_read_file(p(name), lim, &b, &err), ADV_OK);
      CHECK(b.dtype == a.dtype && b.ndim == a.ndim && b.nbytes == a.nbytes);
      CHECK(memcmp(a.dims, b.dims, sizeof(a.dims)) == 0);
      CHECK(a.nbytes == 0 || memcmp(a.data, b.data, a.nbytes) == 0);
      /* header is 64-byte aligned */
      size_t len;
      uint8_t *raw = util_slurp(p(name), &len);
      CHECK(raw && len == a.nbytes + (raw[8] | raw[9] << 8) + 10);
      CHECK(raw && ((raw[8] | raw[9] << 8) + 10) % 64 == 0);
      /* the in-memory writer gives the file's bytes */
      void *mem = NULL;
      size_t mlen = 0;
      CHECK_EQ_INT(adv_npy_write_mem(&a, &mem, &mlen, &err), ADV_OK);
      CHECK(raw && mem && mlen == len && memcmp(mem, raw, len) == 0);
      free(mem);
      free(raw);
      note(name, codes[c], &a);
      adv_array_free(&a);
      adv_array_free(&b);
    }
  }
}

TEST(npz_roundtrip) {
  adv_io_limits lim = adv_io_default_limits();
  const char *names[7 * NSHAPES];
  char nbuf[7 * NSHAPES][32];
  adv_array arr[7 * NSHAPES];
  int n = 0;
  for (int c = 0; c < 7; c++)
    for (int s = 0; s < NSHAPES; s++, n++) {
      snprintf(nbuf[n], sizeof(nbuf[n]), "%s_%d", codes[c], s);
      names[n] = nbuf[n];
      make(&arr[n], codes[c], s);
    }
  adv_err err = {{0}};
  /* more members than the default limit of 64? no: 42 */
  CHECK_EQ_INT(adv_npz_write_file(p("w.npz"), n, names, arr, &err), ADV_OK);
  for (int i = 0; i < n; i++) {
    adv_array b;
    CHECK_EQ_INT(adv_npz_read_file(p("w.npz"), names[i], lim, &b, &err),
                 ADV_OK);
    CHECK(b.dtype == arr[i].dtype && b.nbytes == arr[i].nbytes &&
          b.ndim == arr[i].ndim);
    CHECK(b.nbytes == 0 || memcmp(b.data, arr[i].data, b.nbytes) == 0);
    adv_array_free(&b);
    char line[64];
    snprintf(line, sizeof(line), "w.npz:%s", names[i]);
    note(line, codes[i / NSHAPES], &arr[i]);
  }
  adv_array b;
  CHECK_EQ_INT(adv_npz_read_file(p("w.npz"), "nope", lim, &b, &err),
               ADV_ENOTFOUND);
  /* rewrite over an existing file (atomic replace), then an empty npz */
  CHECK_EQ_INT(adv_npz_write_file(p("w.npz"), n, names, arr, &err), ADV_OK);
  CHECK_EQ_INT(adv_npz_write_file(p("w_empty.npz"), 0, NULL, NULL, &err),
               ADV_OK);
  CHECK_EQ_INT(adv_npz_read_file(p("w_empty.npz"), "x", lim, &b, &err),
               ADV_ENOTFOUND);
  /* dataset convention from our own writer */
  const char *dsn[2] = {"x", "y"};
  adv_array ds_arr[2];
  int64_t xd[4] = {3, 1, 2, 2}, yd[1] = {3};
  adv_array_alloc(&ds_arr[0], ADV_DTYPE_U8, 4, xd);
  adv_array_alloc(&ds_arr[1], ADV_DTYPE_I32, 1, yd);
  util_fill(&ds_arr[0], "u1");
  ((int32_t *)ds_arr[1].data)[2] = 7;
  CHECK_EQ_INT(adv_npz_write_file(p("w_ds.npz"), 2, dsn, ds_arr, &err), ADV_OK);
  adv_dataset ds;
  CHECK_EQ_INT(adv_dataset_load(p("w_ds.npz"), NULL, lim, &ds, &err), ADV_OK);
  CHECK_EQ_INT(ds.x.ndim, 4);
  CHECK(ds.y.data && ((int64_t *)ds.y.data)[2] == 7);
  CHECK_NEAR(((float *)ds.x.data)[11], util_value("u1", 11) / 255.0, 1e-7);
  adv_dataset_free(&ds);
  adv_array_free(&ds_arr[0]);
  adv_array_free(&ds_arr[1]);
  for (int i = 0; i < n; i++)
    adv_array_free(&arr[i]);
}

TEST(writer_errors) {
  adv_err err = {{0}};
  adv_array a;
  int64_t d[1] = {4};
  adv_array_alloc(&a, ADV_DTYPE_F32, 1, d);
  CHECK_EQ_INT(adv_npy_write_file("/nonexistent-dir/x.npy", &a, &err), ADV_EIO);
  CHECK(err.msg[0]);
  adv_array bad = a;
  bad.nbytes = 3;
  CHECK_EQ_INT(adv_npy_write_file(p("bad.npy"), &bad, &err), ADV_EINVAL);
  bad = a;
  bad.dtype = ADV_DTYPE_UNDEFINED;
  CHECK_EQ_INT(adv_npy_write_file(p("bad.npy"), &bad, &err), ADV_EINVAL);
  const char *dup[2] = {"x", "x"};
  adv_array two[2] = {a, a};
  CHECK_EQ_INT(adv_npz_write_file(p("bad.npz"), 2, dup, two, &err), ADV_EINVAL);
  const char *empty[1] = {""};
  CHECK_EQ_INT(adv_npz_write_file(p("bad.npz"), 1, empty, two, &err),
               ADV_EINVAL);
  struct stat st;
  CHECK(stat(p("bad.npy"), &st) != 0);
  CHECK(stat(p("bad.npz"), &st) != 0);
  adv_array_free(&a);
}

TEST(no_temp_files_left) {
  DIR *d = opendir(dir);
  CHECK(d != NULL);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strstr(e->d_name, ".tmp.")) {
      fprintf(stderr, "  leftover temp file %s\n", e->d_name);
      CHECK(0);
    }
  closedir(d);
}

TEST(numpy_reads_ours) {
  fclose(manifest);
  manifest = NULL;
  char cmd[4096];
  snprintf(cmd, sizeof(cmd), "'%s' '%s' --check '%s'", ADV_TEST_PYTHON,
           GEN_SCRIPT, dir);
  int rc = system(cmd);
  CHECK_EQ_INT(rc, 0);
}

int main(void) {
  snprintf(dir, sizeof(dir), "%s", IO_TMP_DIR);
  mkdir(dir, 0755);
  manifest = fopen(p("written.txt"), "w");
  if (!manifest) {
    perror("written.txt");
    return 1;
  }
  RUN(npy_roundtrip);
  RUN(npz_roundtrip);
  RUN(writer_errors);
  RUN(no_temp_files_left);
  RUN(numpy_reads_ours);
  return harness_report();
}
