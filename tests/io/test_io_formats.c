/*
 * test_io_formats.c - reads files produced by real numpy (gen_testdata.py,
 * run at build time) and the real MNIST / Fashion-MNIST IDX files, and
 * checks every value; then the dataset convention (adv_dataset_load).
 *
 * Compile-time paths: IO_DATA_DIR (generated files), MNIST_DIR, FASHION_DIR.
 */
#include "io_test_util.h"

static char *path_in(const char *dir, const char *name) {
  static char buf[8][1024];
  static int k = 0;
  k = (k + 1) % 8;
  snprintf(buf[k], sizeof(buf[k]), "%s/%s", dir, name);
  return buf[k];
}

/* One manifest line: "<file>[:<member>] <status> [<code> <ndim> dims...]" */
static void check_manifest_line(char *line) {
  char file[256], status[64], code[8] = "";
  int ndim = -1, off = 0;
  if (sscanf(line, "%255s %63s %7s %d%n", file, status, code, &ndim, &off) < 2)
    return;
  int64_t dims[ADV_MAX_DIMS] = {0};
  const char *p = line + off;
  for (int i = 0; i < ndim && i < ADV_MAX_DIMS; i++) {
    long long d;
    int n;
    if (sscanf(p, "%lld%n", &d, &n) == 1) {
      dims[i] = d;
      p += n;
    }
  }
  char *member = strchr(file, ':');
  if (member)
    *member++ = '\0';
  const char *path = path_in(IO_DATA_DIR, file);
  adv_io_limits lim = adv_io_default_limits();
  adv_array a;
  adv_err err;
  memset(&err, 0, sizeof(err));
  int rc;
  if (member)
    rc = adv_npz_read_file(path, member, lim, &a, &err);
  else if (strstr(file, ".idx"))
    rc = adv_idx_read_file(path, lim, &a, &err);
  else
    rc = adv_npy_read_file(path, lim, &a, &err);
  const char *want = strcmp(status, "OK") == 0 ? "ADV_OK" : status;
  if (strcmp(adv_err_name(rc), want) != 0) {
    fprintf(stderr, "  %s%s%s: got %s (%s), want %s\n", file, member ? ":" : "",
            member ? member : "", adv_err_name(rc), err.msg, want);
    CHECK(0);
  }
  if (rc != ADV_OK) {
    CHECK(util_is_empty(&a));
    CHECK(err.msg[0] != '\0');
    return;
  }
  CHECK(util_is_consistent(&a));
  CHECK_EQ_INT(a.dtype, util_dtype(code));
  CHECK_EQ_INT(a.ndim, ndim);
  for (int i = 0; i < ndim; i++)
    CHECK_EQ_INT(a.dims[i], dims[i]);
  int64_t bad = util_mismatches(&a, code);
  if (bad)
    fprintf(stderr, "  %s: %lld values differ\n", file, (long long)bad);
  CHECK_EQ_INT(bad, 0);

  /* The in-memory NPY reader must agree with the file reader. */
  if (!member && !strstr(file, ".idx")) {
    size_t len;
    uint8_t *buf = util_slurp(path, &len);
    CHECK(buf != NULL);
    adv_array b;
    CHECK_EQ_INT(adv_npy_read_mem(buf, len, lim, &b, NULL), ADV_OK);
    CHECK(b.nbytes == a.nbytes && memcmp(a.data, b.data, a.nbytes) == 0);
    adv_array_free(&b);
    free(buf);
  }
  adv_array_free(&a);
}

TEST(numpy_manifest) {
  size_t len;
  char *m = (char *)util_slurp(path_in(IO_DATA_DIR, "manifest.txt"), &len);
  CHECK(m != NULL);
  if (!m)
    return;
  m = realloc(m, len + 1);
  m[len] = '\0';
  int lines = 0;
  for (char *save = NULL, *l = strtok_r(m, "\n", &save); l;
       l = strtok_r(NULL, "\n", &save)) {
    check_manifest_line(l);
    lines++;
  }
  CHECK(lines > 50);
  free(m);
}

/* Reference values python computed from the same MNIST-style files. */
typedef struct mref {
  int64_t nlabels, labels[32];
  int64_t nimg, h, w, sum0, sumall;
  int row14[28], lastrow14[28];
} mref;

static int load_ref(const char *tag, mref *r) {
  FILE *f = fopen(path_in(IO_DATA_DIR, "mnist_ref.txt"), "r");
  if (!f)
    return -1;
  char line[4096];
  int got = 0;
  memset(r, 0, sizeof(*r));
  while (fgets(line, sizeof(line), f)) {
    char t[32], kind[32];
    int off;
    if (sscanf(line, "%31s %31s%n", t, kind, &off) != 2 || strcmp(t, tag))
      continue;
    char *p = line + off;
    int n;
    if (!strcmp(kind, "labels")) {
      sscanf(p, "%lld%n", (long long *)&r->nlabels, &n);
      p += n;
      for (int i = 0; i < 32; i++, p += n)
        sscanf(p, "%lld%n", (long long *)&r->labels[i], &n);
      got++;
    } else if (!strcmp(kind, "images")) {
      sscanf(p, "%lld %lld %lld sum0 %lld sumall %lld", (long long *)&r->nimg,
             (long long *)&r->h, (long long *)&r->w, (long long *)&r->sum0,
             (long long *)&r->sumall);
      got++;
    } else {
      int *dst = !strcmp(kind, "row14") ? r->row14 : r->lastrow14;
      for (int i = 0; i < 28; i++, p += n)
        sscanf(p, "%d%n", &dst[i], &n);
      got++;
    }
  }
  fclose(f);
  return got == 4 ? 0 : -1;
}

/* Reads labels + images directly and through adv_dataset_load. */
static void check_mnist(const char *tag, const char *dir, const char *suffix) {
  mref r;
  CHECK_EQ_INT(load_ref(tag, &r), 0);
  char lp[1024], ip[1024];
  snprintf(lp, sizeof(lp), "%s/t10k-labels-idx1-ubyte%s", dir, suffix);
  snprintf(ip, sizeof(ip), "%s/t10k-images-idx3-ubyte%s", dir, suffix);
  adv_io_limits lim = adv_io_default_limits();
  adv_err err = {{0}};
  adv_array lab, img;
  CHECK_EQ_INT(adv_idx_read_file(lp, lim, &lab, &err), ADV_OK);
  CHECK_EQ_INT(adv_idx_read_file(ip, lim, &img, &err), ADV_OK);
  if (!lab.data || !img.data) {
    fprintf(stderr, "  %s: %s\n", tag, err.msg);
    adv_array_free(&lab);
    adv_array_free(&img);
    return;
  }
  CHECK_EQ_INT(lab.dtype, ADV_DTYPE_U8);
  CHECK_EQ_INT(lab.ndim, 1);
  CHECK_EQ_INT(lab.dims[0], r.nlabels);
  for (int i = 0; i < 32; i++)
    CHECK_EQ_INT(((uint8_t *)lab.data)[i], r.labels[i]);
  CHECK_EQ_INT(img.dtype, ADV_DTYPE_U8);
  CHECK_EQ_INT(img.ndim, 3);
  CHECK_EQ_INT(img.dims[0], r.nimg);
  CHECK_EQ_INT(img.dims[1], r.h);
  CHECK_EQ_INT(img.dims[2], r.w);
  const uint8_t *px = img.data;
  int64_t s0 = 0, sall = 0;
  for (int64_t i = 0; i < r.h * r.w; i++)
    s0 += px[i];
  for (size_t i = 0; i < img.nbytes; i++)
    sall += px[i];
  CHECK_EQ_INT(s0, r.sum0);
  CHECK_EQ_INT(sall, r.sumall);
  size_t plane = (size_t)(r.h * r.w);
  for (int j = 0; j < 28; j++) {
    CHECK_EQ_INT(px[14 * 28 + j], r.row14[j]);
    CHECK_EQ_INT(px[(size_t)(r.nimg - 1) * plane + 14 * 28 + j],
                 r.lastrow14[j]);
  }

  adv_dataset ds;
  CHECK_EQ_INT(adv_dataset_load(ip, lp, lim, &ds, &err), ADV_OK);
  CHECK_EQ_INT(ds.x.dtype, ADV_DTYPE_F32);
  CHECK_EQ_INT(ds.x.ndim, 3); /* the file's rank (adv_model_fit_data) */
  CHECK_EQ_INT(ds.x.dims[0], r.nimg);
  CHECK_EQ_INT(ds.x.dims[1], 28);
  CHECK_EQ_INT(ds.x.dims[2], 28);
  CHECK_EQ_INT(ds.y.dtype, ADV_DTYPE_I64);
  CHECK_EQ_INT(ds.y.ndim, 1);
  CHECK_EQ_INT(ds.y.dims[0], r.nimg);
  if (ds.x.data && ds.y.data) {
    for (int i = 0; i < 32; i++)
      CHECK_EQ_INT(((int64_t *)ds.y.data)[i], r.labels[i]);
    const float *xf = ds.x.data;
    for (int j = 0; j < 28; j++)
      CHECK_NEAR(xf[14 * 28 + j], r.row14[j] / 255.0, 1e-6);
  }
  adv_dataset_free(&ds);
  CHECK(ds.x.data == NULL && ds.y.data == NULL);
  adv_array_free(&lab);
  adv_array_free(&img);
}

TEST(mnist_plain) {
  check_mnist("mnist", MNIST_DIR, "");
}
TEST(fashion_mnist_gz) {
  check_mnist("fashion", FASHION_DIR, ".gz");
}

/* adv_dataset_load_mem on the same bytes must give what the file reader
 * gave: the same status and byte-identical arrays. */
static void check_mem_same(const char *data, const char *labels, int want,
                           const adv_dataset *ref) {
  char dp[1024], lp[1024];
  snprintf(dp, sizeof(dp), "%s", path_in(IO_DATA_DIR, data));
  if (labels)
    snprintf(lp, sizeof(lp), "%s", path_in(IO_DATA_DIR, labels));
  size_t dl = 0, ll = 0;
  uint8_t *db = util_slurp(dp, &dl), *lb = labels ? util_slurp(lp, &ll) : NULL;
  if (db && (!labels || lb)) {
    adv_dataset m;
    adv_err err = {{0}};
    int rc =
        adv_dataset_load_mem(db, dl, lb, ll, adv_io_default_limits(), &m, &err);
    CHECK_EQ_INT(rc, want);
    if (rc == ADV_OK && want == ADV_OK) {
      CHECK(m.x.nbytes == ref->x.nbytes && m.x.ndim == ref->x.ndim &&
            !memcmp(m.x.data, ref->x.data, m.x.nbytes));
      CHECK(m.y.nbytes == ref->y.nbytes &&
            (!m.y.data || !memcmp(m.y.data, ref->y.data, m.y.nbytes)));
    }
    adv_dataset_free(&m);
  }
  free(db);
  free(lb);
}

/* Loads a dataset expecting status `want`; returns it loaded (or empty). */
static int ds_load(const char *data, const char *labels, adv_dataset *ds) {
  adv_err err = {{0}};
  int rc = adv_dataset_load(path_in(IO_DATA_DIR, data),
                            labels ? path_in(IO_DATA_DIR, labels) : NULL,
                            adv_io_default_limits(), ds, &err);
  check_mem_same(data, labels, rc, ds);
  if (rc) {
    CHECK(ds->x.data == NULL && ds->y.data == NULL);
    CHECK(err.msg[0] != '\0');
    fprintf(stderr, "  expected: %s: %s\n", adv_err_name(rc), err.msg);
  }
  return rc;
}

TEST(dataset_npz_u8) {
  adv_dataset ds;
  CHECK_EQ_INT(ds_load("ds_u8.npz", NULL, &ds), ADV_OK);
  CHECK_EQ_INT(ds.x.dtype, ADV_DTYPE_F32);
  CHECK_EQ_INT(ds.x.ndim, 3);
  CHECK(ds.x.dims[0] == 5 && ds.x.dims[1] == 3 && ds.x.dims[2] == 2);
  for (int i = 0; i < 30; i++)
    CHECK_NEAR(((float *)ds.x.data)[i], util_value("u1", i) / 255.0, 1e-7);
  CHECK_EQ_INT(ds.y.dtype, ADV_DTYPE_I64);
  CHECK_EQ_INT(ds.y.dims[0], 5);
  for (int i = 0; i < 5; i++) {
    int64_t v = (((int64_t)util_value("i1", i) % 10) + 10) % 10;
    CHECK_EQ_INT(((int64_t *)ds.y.data)[i], v);
  }
  adv_dataset_free(&ds);
  /* --labels overrides the NPZ y */
  CHECK_EQ_INT(ds_load("ds_u8.npz", "ds_labels_i4.npy", &ds), ADV_OK);
  for (int i = 0; i < 5; i++)
    CHECK_EQ_INT(((int64_t *)ds.y.data)[i], i % 3);
  adv_dataset_free(&ds);
  /* labels from an NPZ's y member */
  CHECK_EQ_INT(ds_load("ds_x_npy3.npy", "ds_u8.npz", &ds), ADV_OK);
  CHECK_EQ_INT(ds.y.dims[0], 5);
  CHECK_EQ_INT(ds.x.ndim, 3);
  CHECK_EQ_INT(ds.x.dims[1], 3);
  adv_dataset_free(&ds);
}

TEST(dataset_npz_f64_no_labels) {
  adv_dataset ds;
  CHECK_EQ_INT(ds_load("ds_f64_nolabel.npz", NULL, &ds), ADV_OK);
  CHECK_EQ_INT(ds.x.dtype, ADV_DTYPE_F32);
  CHECK_EQ_INT(ds.x.ndim, 2);
  CHECK(ds.y.data == NULL);
  for (int i = 0; i < 12; i++)
    CHECK_NEAR(((float *)ds.x.data)[i], util_value("f8", i), 0);
  adv_dataset_free(&ds);
}

TEST(dataset_rejects) {
  adv_dataset ds;
  CHECK_EQ_INT(ds_load("ds_u8.npz", "ds_labels_bad.npy", &ds), ADV_EFORMAT);
  CHECK_EQ_INT(ds_load("ds_u8.npz", "ds_labels_f4.npy", &ds), ADV_EDTYPE);
  CHECK_EQ_INT(ds_load("ds_u8.npz", "ds_labels_short.npy", &ds), ADV_ESHAPE);
  CHECK_EQ_INT(ds_load("ds_nan.npy", NULL, &ds), ADV_EFORMAT);
  CHECK_EQ_INT(ds_load("ds_x_i8.npy", NULL, &ds), ADV_EDTYPE);
  CHECK_EQ_INT(ds_load("npy_f4_vec.npy", NULL, &ds), ADV_ESHAPE);
  CHECK_EQ_INT(ds_load("npy_f4_empty3.npy", NULL, &ds), ADV_ESHAPE);
  CHECK_EQ_INT(ds_load("manifest.txt", NULL, &ds), ADV_EFORMAT);
  CHECK_EQ_INT(ds_load("does-not-exist.npy", NULL, &ds), ADV_EIO);
  CHECK_EQ_INT(ds_load("ds_x_npy3.npy", "ds_f64_nolabel.npz", &ds),
               ADV_ENOTFOUND);
  /* NPZ without x */
  CHECK_EQ_INT(ds_load("many.npz", NULL, &ds), ADV_ENOTFOUND);
  /* IDX data via content sniffing, whatever the extension */
  CHECK_EQ_INT(ds_load("idx_f8.idx.gz", "idx_u1.idx", &ds), ADV_ESHAPE);
  CHECK_EQ_INT(ds_load("idx_f8.idx.gz", NULL, &ds), ADV_OK);
  CHECK_EQ_INT(ds.x.ndim, 3);
  adv_dataset_free(&ds);
}

int main(void) {
  RUN(numpy_manifest);
  RUN(mnist_plain);
  RUN(fashion_mnist_gz);
  RUN(dataset_npz_u8);
  RUN(dataset_npz_f64_no_labels);
  RUN(dataset_rejects);
  return harness_report();
}
