/*
 * test_grad_ops.c - finite-difference checks of the ops added for Engine
 * III (issue 13): Max, Min, Mean, Sum, Where, ... Same method, tolerances
 * and report as test_grad_fd.c, whose case builder and checker it reuses
 * (compiled in with GRAD_FD_NO_MAIN; see that file's header for why the
 * tolerance cannot hide a real bug).
 *
 * Usage: test_grad_ops [-v]   (ADV_GRAD_SEED / ADV_GRAD_ROUNDS as there)
 */
#define GRAD_FD_NO_MAIN
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include "test_grad_fd.c"
#pragma GCC diagnostic pop

/* A float initializer whose values sit halfway between the points of the
 * XG_DISTINCT grid of x, so no element of x is within 2h of any of them:
 * Max/Min never change their winner under a perturbation of x or W. */
static tinit *c_wgrid(const char *name, int nd, const int64_t *d, int64_t nx) {
  tinit *t = c_init(name, 0, nd, d);
  for (int64_t i = 0; i < t->n; i++)
    t->f[i] = ((float)rndi(-1, (int)nx) - (float)nx / 2 + 0.5f) * DIST_STEP;
  return t;
}

/* Max/Min/Mean/Sum: x alone, with a broadcast W (either side), with
 * itself (ties share the gradient), and with two weights. */
TEST(variadic) {
  static const char *ops[] = {"Max", "Min", "Mean", "Sum"};
  static const int opsets[] = {8, 12, 13};
  for (int o = 0; o < 4; o++) {
    for (int cfg = 0; cfg < 6; cfg++) {
      const char *op = ops[o];
      int64_t xa[8], wa[8], va[8];
      int rx, rw, rv;
      c_begin(op, opsets[cfg % 3]);
      if (cfg == 1 || cfg == 5)
        bshapes(wa, &rw, xa, &rx); /* x broadcast */
      else
        bshapes(xa, &rx, wa, &rw);
      c_x(rx, xa);
      c_range(XG_DISTINCT, 0, 0);
      tinit *w = c_wgrid("W", rw, wa, C.nx);
      c_wcheck(w, 1);
      switch (cfg) {
      case 0:
        c_node(op, "x,W", "y");
        break;
      case 1:
        c_node(op, "W,x", "y");
        break;
      case 2:
        c_node(op, "x", "y");
        w->wcheck = 0;
        break;
      case 3:
        c_node(op, "x,x", "y");
        w->wcheck = 0;
        break;
      default: { /* three inputs, V of full rank with 1s */
        rv = rx;
        for (int i = 0; i < rv; i++)
          va[i] = (rnd64() & 1) ? 1 : xa[i];
        if (cfg == 5) { /* x is the small one: V broadcasts to W's shape */
          rv = rw;
          for (int i = 0; i < rv; i++)
            va[i] = (rnd64() & 1) ? 1 : wa[i];
        }
        tinit *v = c_wgrid("V", rv, va, C.nx);
        c_wcheck(v, 1);
        c_node(op, "W,x,V", "y");
      }
      }
      run_case();
    }
  }
}

/* Where(c, x, W) and Where(c, W, x) with c, x, W broadcast together. */
TEST(where) {
  for (int cfg = 0; cfg < 6; cfg++) {
    int64_t xa[8], wa[8], ca[8];
    int rx, rw;
    c_begin("Where", cfg < 3 ? 9 : 16);
    if (cfg & 1)
      bshapes(wa, &rw, xa, &rx);
    else
      bshapes(xa, &rx, wa, &rw);
    int rf = rx > rw ? rx : rw;
    const int64_t *full = rx > rw ? xa : wa;
    int rc = rndi(0, rf);
    for (int i = 0; i < rc; i++)
      ca[i] = (rnd64() & 1) ? 1 : full[rf - rc + i];
    c_x(rx, xa);
    tinit *c = c_init("c", 1, rc, ca);
    if (c->n > 64)
      c->n = 64; /* cannot happen: shapes are capped at 96, c <= full */
    for (int64_t i = 0; i < c->n; i++)
      c->iv[i] = (int64_t)(rnd64() & 1);
    tinit *w = c_wf("W", rw, wa, -2.f, 2.f);
    c_wcheck(w, 1);
    c_node("Where", cfg < 4 ? "c,x,W" : "c,W,x", "y");
    run_case();
  }
  /* a condition computed at run time from x (bool tensors between runtime
   * nodes; no gradient flows through them): Where(Not(Or(x > a, x < b)),
   * x, W) with x kept away from a and b */
  for (int cfg = 0; cfg < 3; cfg++) {
    int64_t xa[8], wa[8];
    int rx, rw;
    bshapes(xa, &rx, wa, &rw);
    c_begin("Where(runtime)", 16);
    c_x(rx, xa);
    float a = rndf(0.2f, 1.f), bb = rndf(-1.f, -0.2f);
    c_wscalar("a", a);
    c_wscalar("b", bb);
    c_kink(a);
    c_kink(bb);
    c_wcheck(c_wf("W", rw, wa, -2.f, 2.f), 1);
    c_node(cfg == 2 ? "GreaterOrEqual" : "Greater", "x,a", "c1");
    c_node(cfg == 1 ? "LessOrEqual" : "Less", "x,b", "c2");
    c_node(cfg == 2 ? "Xor" : "Or", "c1,c2", "c3");
    c_node("Not", "c3", "c");
    c_node("Where", "c,x,W", "y");
    run_case();
  }
}

/* Tile with constant repeats (some 1, some 2-3): dx sums the copies. */
TEST(tile) {
  for (int cfg = 0; cfg < 4; cfg++) {
    int64_t xa[8], rep[8];
    int r = rshape(xa, 1, 4, 3, 24);
    for (int i = 0; i < r; i++)
      rep[i] = rndi(1, 3);
    c_begin("Tile", cfg & 1 ? 6 : 13);
    c_x(r, xa);
    c_wi1("r", r, rep);
    c_node("Tile", "x,r", "y");
    run_case();
  }
}

/* CumSum along every axis form, exclusive and reverse in all four
 * combinations. */
TEST(cumsum) {
  for (int cfg = 0; cfg < 8; cfg++) {
    int64_t xa[8];
    int r = rshape(xa, 1, 4, 5, 96);
    int64_t ax = rndi(-r, r - 1);
    c_begin("CumSum", cfg < 4 ? 11 : 14);
    c_x(r, xa);
    c_init("a", 1, 0, NULL)->iv[0] = ax;
    c_node("CumSum", "x,a", "y");
    if (cfg & 1)
      c_ai("exclusive", 1);
    if (cfg & 2)
      c_ai("reverse", 1);
    run_case();
  }
}

/* TopK: largest/smallest, K from the attribute (opset 1) or the input,
 * any axis. x is drawn all distinct (no element changes rank under the
 * FD step). */
TEST(topk) {
  for (int cfg = 0; cfg < 6; cfg++) {
    int64_t xa[8];
    int r = rshape(xa, 1, 4, 5, 96);
    int ax = rndi(0, r - 1);
    int64_t k = rndi(1, (int)xa[ax]);
    c_begin("TopK", cfg == 0 ? 1 : cfg < 3 ? 10 : 11);
    c_x(r, xa);
    c_range(XG_DISTINCT, 0, 0);
    if (cfg == 0) {
      c_node("TopK", "x", "y,i");
      c_ai("k", k);
    } else {
      c_wi1("k", 1, &k);
      c_node("TopK", "x,k", "y,i");
    }
    c_ai("axis", (cfg & 1) ? ax - r : ax);
    if (cfg >= 4)
      c_ai("largest", 0);
    run_case();
  }
}

/* Normalization ops are sharp where a row's spread is comparable to the
 * FD step (x/sqrt(x^2 + eps) near 0). Their cases feed z = x + P instead
 * of x, where the constant P alternates +-1.5 along each normalized row
 * of D >= 2 elements and x is in [-0.5, 0.5]: every row then holds values
 * at least 2 apart, its standard deviation is >= 0.5, and the FD
 * truncation error stays ~h^2/0.25 relative. */
static void c_spread(int nd, const int64_t *d) {
  tinit *t = c_init("P", 0, nd, d);
  for (int64_t i = 0; i < t->n; i++)
    t->f[i] = (i & 1) ? 1.5f : -1.5f;
  c_range(XG_UNI, -0.5f, 0.5f);
  c_node("Add", "x,P", "z");
}

/* LayerNormalization over the trailing dims from axis (normalized part of
 * >= 2 elements), Scale and B full or broadcast (weights checked); one
 * config feeds Mean and InvStdDev into the output too. */
TEST(layernorm) {
  for (int cfg = 0; cfg < 6; cfg++) {
    int64_t xa[8], sa[8];
    int r, a;
    do {
      r = rshape(xa, 1, 4, 5, 96);
      a = cfg == 0 ? r - 1 : rndi(0, r - 1); /* cfg 0: default axis -1 */
    } while (numel_of(r - a, xa + a) < 2);
    int rs = r - a;
    for (int i = 0; i < rs; i++)
      sa[i] = (cfg & 1) && (rnd64() & 1) ? 1 : xa[a + i];
    c_begin("LayerNormalization", 17);
    c_x(r, xa);
    c_spread(rs, xa + a);
    c_wcheck(c_wf("S", rs, sa, 0.5f, 1.5f), 1);
    int has_b = cfg != 2, rb = rndi(0, rs);
    if (has_b) /* B: a suffix of the normalized shape */
      c_wcheck(c_wf("B", rb, sa + rs - rb, -1.f, 1.f), 1);
    const char *in = has_b ? "z,S,B" : "z,S";
    if (cfg == 5) {
      c_node("LayerNormalization", in, "t,m,v");
      c_ai("axis", a - r);
      c_node("Mul", "t,v", "u");
      c_node("Add", "u,m", "y");
    } else {
      c_node("LayerNormalization", in, "y");
      if (cfg)
        c_ai("axis", (cfg & 2) ? a - r : a);
      if (cfg == 3)
        c_af("epsilon", 0.1f);
    }
    run_case();
  }
}

/* InstanceNormalization on N x C x spatial (1-D and 2-D). */
TEST(instancenorm) {
  for (int cfg = 0; cfg < 4; cfg++) {
    int64_t xa[4] = {rndi(1, 2), rndi(1, 3), rndi(2, 5), rndi(2, 4)};
    int r = cfg & 1 ? 3 : 4;
    int64_t ca[1] = {xa[1]};
    c_begin("InstanceNormalization", 6);
    c_x(r, xa);
    c_spread(r - 2, xa + 2);
    c_wcheck(c_wf("S", 1, ca, 0.5f, 1.5f), 1);
    c_wcheck(c_wf("B", 1, ca, -1.f, 1.f), 1);
    c_node("InstanceNormalization", "z,S,B", "y");
    if (cfg >= 2)
      c_af("epsilon", 0.01f);
    run_case();
  }
}

/* Resize / Upsample: every mode, the coordinate transformations, scales
 * or sizes (axes on opset 18), antialias, exclude_outside,
 * tf_crop_and_resize with extrapolated elements. The op is linear in x,
 * so FD is exact up to roundoff. */
TEST(resize) {
  static const char *cts[] = {"half_pixel",           "pytorch_half_pixel",
                              "align_corners",        "asymmetric",
                              "tf_half_pixel_for_nn", "half_pixel_symmetric",
                              "tf_crop_and_resize"};
  static const char *modes[] = {"nearest", "linear", "cubic"};
  static const char *nms[] = {"round_prefer_floor", "round_prefer_ceil",
                              "floor", "ceil"};
  for (int cfg = 0; cfg < 14; cfg++) {
    int64_t xa[4] = {1, rndi(1, 2), rndi(2, 6), rndi(2, 6)};
    int r = (cfg % 3 == 2) ? 3 : 4; /* some 1-D (N, C, W) cases */
    if (r == 3)
      xa[2] = rndi(3, 9);
    int mode = cfg % 3;
    int ct = rndi(0, 6);
    if (mode == 0 && ct == 6)
      ct = 0;
    /* half_pixel_symmetric is Resize-19's */
    int opset = ct == 5 ? 19 : cfg >= 10 ? 18 : (cfg & 1) ? 13 : 11;
    int antialias = opset >= 18 && mode != 0 && (cfg & 1);
    c_begin(cfg == 13 ? "Upsample" : "Resize", cfg == 13 ? 9 : opset);
    c_x(r, xa);
    int use_sizes = cfg % 4 == 1;
    int64_t d1[1] = {r};
    if (cfg == 13) { /* Upsample-9: integer-ish scales, asymmetric */
      tinit *s = c_init("s", 0, 1, d1);
      for (int i = 0; i < r; i++)
        s->f[i] = i < 2 ? 1.f : (float)rndi(1, 3);
      c_node("Upsample", "x,s", "y");
      c_as("mode", mode == 2 ? "linear" : modes[mode]);
      run_case();
      continue;
    }
    if (use_sizes) {
      int64_t sz[4];
      for (int i = 0; i < r; i++)
        sz[i] = i < 2 ? xa[i] : rndi(1, 8);
      c_wi1("sz", r, sz);
    } else {
      tinit *s = c_init("s", 0, 1, d1);
      static const float pick[] = {0.5f, 0.6f, 0.75f, 1.f,
                                   1.5f, 2.f,  2.5f,  3.f};
      for (int i = 0; i < r; i++)
        s->f[i] = i < 2 ? 1.f : pick[rndi(0, 7)];
      for (int i = 2; i < r; i++) /* at least one output element */
        while ((int64_t)((float)xa[i] * s->f[i]) < 1)
          s->f[i] = pick[rndi(3, 7)];
    }
    const char *in = use_sizes ? "x,,,sz" : "x,,s";
    if (ct == 6) {
      int64_t d2[1] = {2 * r};
      tinit *roi = c_init("roi", 0, 1, d2);
      for (int i = 0; i < r; i++) {
        roi->f[i] = i < 2 ? 0.f : rndf(-0.2f, 0.4f);
        roi->f[r + i] = i < 2 ? 1.f : rndf(0.6f, 1.2f);
      }
      in = use_sizes ? "x,roi,,sz" : "x,roi,s";
    }
    c_node("Resize", in, "y");
    c_as("mode", modes[mode]);
    c_as("coordinate_transformation_mode", cts[ct]);
    if (mode == 0)
      c_as("nearest_mode", nms[rndi(0, 3)]);
    if (mode == 2 && (cfg & 2)) {
      c_af("cubic_coeff_a", -0.5f);
      c_ai("exclude_outside", 1);
    }
    if (ct == 6)
      c_af("extrapolation_value", 0.25f);
    if (antialias)
      c_ai("antialias", 1);
    run_case();
  }
  /* opset 18 axes: only the spatial axes listed, sizes with
   * keep_aspect_ratio_policy */
  for (int cfg = 0; cfg < 2; cfg++) {
    int64_t xa[4] = {1, 2, rndi(2, 5), rndi(2, 5)};
    c_begin("Resize", 18);
    c_x(4, xa);
    int64_t sz[2] = {rndi(2, 7), rndi(2, 7)}, ax[2] = {2, 3};
    c_wi1("sz", 2, sz);
    c_node("Resize", "x,,,sz", "y");
    c_ais("axes", 2, ax);
    c_as("mode", "linear");
    c_as("keep_aspect_ratio_policy", cfg ? "not_smaller" : "not_larger");
    run_case();
  }
}

/* ConvTranspose: groups, strides, dilations, pads, output_padding,
 * output_shape (incl. larger than natural), auto_pad, 1-D and 2-D; W and B
 * weight gradients; a batch on 2 threads (samples in parallel). */
TEST(convtranspose) {
  for (int cfg = 0; cfg < 13; cfg++) {
    int oned = cfg == 3 || cfg == 8;
    int64_t group = (cfg % 4 == 2) ? 2 : 1;
    /* cfg 10-12: batch 8, the oneDNN deconvolution path */
    int64_t N = cfg == 9 ? 3 : cfg >= 10 ? 8 : rndi(1, 2);
    int64_t Cg = cfg == 12 ? 8 : cfg >= 10 ? 1 : rndi(1, 2), Mg = rndi(1, 2);
    int64_t Cin = Cg * group;
    int64_t xa[4] = {N, Cin, rndi(2, 4), rndi(2, 4)};
    if (cfg == 12) { /* 8 input channels: oneDNN's backward-data too */
      group = 1;
      Cin = 8;
      xa[1] = 8;
      xa[2] = xa[3] = 2;
    }
    int64_t k[2] = {rndi(1, 3), rndi(1, 3)}, st[2] = {rndi(1, 3), rndi(1, 2)};
    int64_t dl[2] = {1, 1};
    if (cfg == 4 || cfg == 8)
      dl[0] = dl[1] = 2;
    int nsp = oned ? 1 : 2;
    if (oned) {
      xa[2] = rndi(2, 6);
      k[0] = rndi(1, 4);
    }
    int64_t wa[4] = {Cin, Mg, k[0], k[1]};
    c_begin("ConvTranspose", cfg & 1 ? 11 : 1);
    c_x(2 + nsp, xa);
    c_wcheck(c_wf("W", 2 + nsp, wa, -1.f, 1.f), 1);
    int64_t M = Mg * group;
    int has_b = cfg != 1;
    if (has_b)
      c_wcheck(c_wf("B", 1, &M, -1.f, 1.f), 1);
    c_node("ConvTranspose", has_b ? "x,W,B" : "x,W", "y");
    c_ais("strides", nsp, st);
    if (group > 1)
      c_ai("group", group);
    if (dl[0] > 1)
      c_ais("dilations", nsp, dl);
    int64_t natural[2];
    for (int i = 0; i < nsp; i++)
      natural[i] = st[i] * (xa[2 + i] - 1) + (k[i] - 1) * dl[i] + 1;
    if (cfg == 5 || cfg == 8) { /* output_padding below the stride */
      int64_t opd[2] = {st[0] - 1, st[1] - 1};
      c_ais("output_padding", nsp, opd);
    }
    if (cfg == 6) { /* output_shape: one smaller, one larger */
      int64_t os[2] = {natural[0] - 1 > 0 ? natural[0] - 1 : 1, natural[1] + 1};
      c_ais("output_shape", nsp, os);
    } else if (cfg == 7) {
      c_as("auto_pad", (rnd64() & 1) ? "SAME_UPPER" : "SAME_LOWER");
    } else if (cfg != 5) {
      int64_t pads[4] = {0, 0, 0, 0};
      for (int i = 0; i < nsp; i++) {
        pads[i] = rndi(0, 1);
        pads[i + nsp] = natural[i] - pads[i] > 1 ? rndi(0, 1) : 0;
      }
      c_ais("pads", 2 * nsp, pads);
    }
    if (cfg == 9 || cfg == 11)
      C.threads = 2;
    run_case();
  }
}

/* Resize's forward splits large outputs over threads: a 2-thread session
 * must give bitwise the 1-thread output (131072 outputs, above the
 * parallel threshold), for linear and cubic. */
TEST(resize_threads) {
  for (int mode = 0; mode < 2; mode++) {
    int64_t xd[4] = {1, 2, 128, 128}, sd[1] = {4};
    float sc[4] = {1.f, 1.f, 1.5f, 1.75f};
    ob_model b;
    ob_init(&b, 13);
    ob_input(&b, "x", 4, xd);
    ob_init_f32(&b, "s", 1, sd, sc);
    ob_node(&b, "Resize", "x,,s", "y");
    ob_attr_str(&b, "mode", mode ? "cubic" : "linear");
    ob_output(&b, "y");
    size_t len;
    unsigned char *bytes = ob_finish(&b, &len);
    adv_model *m = NULL;
    adv_err err = {{0}};
    CHECK(adv_model_load_mem(bytes, len, adv_load_default_params(), &m, &err) ==
          0);
    free(bytes);
    if (!m)
      return;
    int64_t nx = 2 * 128 * 128, ny = 2 * 192 * 224;
    float *x = malloc(sizeof(float) * (size_t)nx);
    float *y1 = malloc(sizeof(float) * (size_t)ny),
          *y2 = malloc(sizeof(float) * (size_t)ny);
    for (int64_t i = 0; i < nx; i++)
      x[i] = rndf(-1.f, 1.f);
    float *ys[2] = {y1, y2};
    for (int t = 0; t < 2; t++) {
      adv_session_params sp = adv_session_default_params();
      sp.threads = t + 1;
      adv_session *s = NULL;
      CHECK(adv_session_init(m, sp, &s, &err) == 0);
      int64_t od[ADV_MAX_DIMS];
      CHECK(s && adv_session_output_shape(s, 0, od) == 4 && od[2] == 192 &&
            od[3] == 224);
      CHECK(s && adv_session_forward(s, x, ys[t], &err) == 0);
      adv_session_free(s);
    }
    CHECK(!memcmp(y1, y2, sizeof(float) * (size_t)ny));
    free(x);
    free(y1);
    free(y2);
    adv_model_free(m);
  }
}

/* ConvTranspose on oneDNN (batch >= 8) against the im2col path
 * (ADV_NO_DNNL=1) at decoder-like sizes the FD cases are too small for:
 * 8 x 16 x 8 x 8, 4x4 kernel, stride 2, pad 1 (groups 1 and 2, with
 * output_padding), forward outputs and input gradients within 1e-4 of the
 * largest magnitude. */
TEST(convtranspose_dnnl) {
  for (int cfg = 0; cfg < 2; cfg++) {
    int64_t G = cfg + 1;
    int64_t xd[4] = {8, 16, 8, 8}, wd[4] = {16, 8 / G, 4, 4}, bd[1] = {8};
    int64_t nw = 16 * (8 / G) * 16, nx = 8 * 16 * 64;
    float *w = malloc(sizeof(float) * (size_t)nw), bias[8];
    for (int64_t i = 0; i < nw; i++)
      w[i] = rndf(-0.5f, 0.5f);
    for (int i = 0; i < 8; i++)
      bias[i] = rndf(-1.f, 1.f);
    ob_model b;
    ob_init(&b, 11);
    ob_input(&b, "x", 4, xd);
    ob_init_f32(&b, "W", 4, wd, w);
    ob_init_f32(&b, "B", 1, bd, bias);
    ob_node(&b, "ConvTranspose", "x,W,B", "y");
    int64_t st[2] = {2, 2}, pads[4] = {1, 1, 1, 1}, op[2] = {cfg, 0};
    ob_attr_ints(&b, "strides", 2, st);
    ob_attr_ints(&b, "pads", 4, pads);
    ob_attr_ints(&b, "output_padding", 2, op);
    if (G > 1)
      ob_attr_int(&b, "group", G);
    ob_output(&b, "y");
    size_t len;
    unsigned char *bytes = ob_finish(&b, &len);
    adv_model *m = NULL;
    adv_err err = {{0}};
    CHECK(adv_model_load_mem(bytes, len, adv_load_default_params(), &m, &err) ==
          0);
    free(bytes);
    free(w);
    if (!m)
      return;
    int64_t ny = 8 * 8 * (16 + cfg) * 16;
    float *x = malloc(sizeof(float) * (size_t)nx),
          *dz = malloc(sizeof(float) * (size_t)ny);
    float *y[2], *dx[2];
    for (int64_t i = 0; i < nx; i++)
      x[i] = rndf(-1.f, 1.f);
    for (int64_t i = 0; i < ny; i++)
      dz[i] = rndf(-1.f, 1.f);
    for (int k = 0; k < 2; k++) { /* k = 0: oneDNN, 1: im2col */
      y[k] = malloc(sizeof(float) * (size_t)ny);
      dx[k] = malloc(sizeof(float) * (size_t)nx);
      if (k)
        setenv("ADV_NO_DNNL", "1", 1);
      adv_session_params sp = adv_session_default_params();
      sp.threads = 2;
      sp.grad = 1;
      adv_session *s = NULL;
      CHECK(adv_session_init(m, sp, &s, &err) == 0);
      int64_t od[ADV_MAX_DIMS];
      CHECK(s && adv_session_output_shape(s, 0, od) == 4 && od[2] == 16 + cfg);
      CHECK(s && adv_session_forward(s, x, y[k], &err) == 0);
      CHECK(s && adv_session_backward_dz(s, dz, dx[k], NULL, &err) == 0);
      adv_session_free(s);
      unsetenv("ADV_NO_DNNL");
    }
    double my = 0, ey = 0, mx = 0, ex = 0;
    for (int64_t i = 0; i < ny; i++) {
      my = fmax(my, fabs(y[1][i]));
      ey = fmax(ey, fabs((double)y[0][i] - y[1][i]));
    }
    for (int64_t i = 0; i < nx; i++) {
      mx = fmax(mx, fabs(dx[1][i]));
      ex = fmax(ex, fabs((double)dx[0][i] - dx[1][i]));
    }
    CHECK(my > 0 && ey <= 1e-4 * my);
    CHECK(mx > 0 && ex <= 1e-4 * mx);
    for (int k = 0; k < 2; k++) {
      free(y[k]);
      free(dx[k]);
    }
    free(x);
    free(dz);
    adv_model_free(m);
  }
}

/* Einsum: contractions with x first or second, diagonals, sums, ellipsis
 * broadcasting, three operands; weight gradients of the other operands. */
TEST(einsum) {
  static const struct {
    const char *eq;
    int nd;
    int64_t x[4];
    int nw;
    int64_t w[2][4];
    int wnd[2];
    int xfirst; /* x is the first operand (else W is, x second) */
  } E[] = {
      {"bij,bjk->bik", 3, {2, 3, 4}, 1, {{2, 4, 2}}, {3}, 1},
      {"bhqd,bhkd->bhqk", 4, {1, 2, 3, 4}, 1, {{1, 2, 2, 4}}, {4}, 0},
      {"...ij,...jk->...ik", 4, {2, 1, 2, 3}, 1, {{3, 3, 2}}, {3}, 1},
      {"ii->i", 2, {4, 4}, 0, {{0}}, {0}, 1},
      {"bii", 3, {2, 3, 3}, 0, {{0}}, {0}, 1},
      {"ij,ij->", 2, {3, 4}, 1, {{3, 4}}, {2}, 0},
      {"i,j->ij", 1, {5}, 1, {{3}}, {1}, 1},
      {"bn,anm,bm->ba", 2, {2, 3}, 2, {{4, 3, 2}, {2, 2}}, {3, 2}, 1},
      {"abcd->dba", 4, {2, 3, 2, 2}, 0, {{0}}, {0}, 1},
  };
  for (size_t e = 0; e < sizeof(E) / sizeof(E[0]); e++) {
    c_begin("Einsum", 12);
    c_x(E[e].nd, E[e].x);
    char in[64];
    const char *wn[2] = {"W", "V"};
    for (int k = 0; k < E[e].nw; k++)
      c_wcheck(c_wf(wn[k], E[e].wnd[k], E[e].w[k], -1.f, 1.f), 1);
    if (E[e].nw == 0)
      snprintf(in, sizeof(in), "x");
    else if (E[e].nw == 2)
      snprintf(in, sizeof(in), "x,W,V");
    else
      snprintf(in, sizeof(in), E[e].xfirst ? "x,W" : "W,x");
    c_node("Einsum", in, "y");
    c_as("equation", E[e].eq);
    run_case();
  }
}

/* Split: equal halves multiplied together (both slices get gradients), and
 * sizes [k, m, k] (attribute before opset 13, input after) where only the
 * outer parts reach the output. */
TEST(split) {
  for (int cfg = 0; cfg < 4; cfg++) {
    int64_t xa[8];
    int r = rshape(xa, 1, 4, 4, 48);
    int ax = rndi(0, r - 1);
    int64_t k = rndi(1, 2), m = rndi(0, 2);
    c_begin("Split", cfg & 1 ? 13 : 11);
    if (cfg < 2) {
      xa[ax] = 2 * k;
      c_x(r, xa);
      c_node("Split", "x", "s1,s2");
    } else {
      xa[ax] = 2 * k + m;
      c_x(r, xa);
      int64_t sz[3] = {k, m, k};
      if (cfg & 1) {
        c_wi1("sp", 3, sz);
        c_node("Split", "x,sp", "s1,s2,s3");
      } else {
        c_node("Split", "x", "s1,s2,s3");
        c_ais("split", 3, sz);
      }
    }
    c_ai("axis", (cfg & 2) ? ax - r : ax);
    c_node("Mul", cfg < 2 ? "s1,s2" : "s1,s3", "y");
    run_case();
  }
  /* more than 4 outputs (opset 18 num_outputs: equal parts, the last
   * smaller), every part reaching y */
  {
    int64_t xa[2] = {2, 11};
    c_begin("Split", 18);
    c_x(2, xa);
    c_node("Split", "x", "s1,s2,s3,s4,s5,s6");
    c_ai("axis", 1);
    c_ai("num_outputs", 6);
    c_node("Concat", "s6,s5,s4,s3,s2,s1", "c");
    c_ai("axis", 1);
    c_node("Mul", "c,x", "y");
    run_case();
  }
}

/* LSTM / GRU / RNN: gradients of X and (checked as weights) W, R, B, the
 * initial states and LSTM's peepholes, through Y, Y_h or Y_c, for every
 * direction and layout, random sequence_lens (0 included) and GRU's
 * linear_before_reset. */
TEST(rnn) {
  for (int cfg = 0; cfg < 18; cfg++) {
    int gru = cfg & 1, layout = (cfg / 6) & 1, dk = (cfg / 2) % 3;
    int plain = cfg >= 12; /* RNN */
    int64_t S = rndi(1, 3), B = rndi(1, 3), I = rndi(1, 3), H = rndi(1, 3);
    int64_t D = dk == 2 ? 2 : 1, G = plain ? 1 : gru ? 3 : 4;
    const char *op = plain ? "RNN" : gru ? "GRU" : "LSTM";
    if (plain)
      gru = 1; /* same inputs and outputs as GRU */
    c_begin(op, 14);
    int64_t xd[3] = {layout ? B : S, layout ? S : B, I};
    c_x(3, xd);
    int64_t wd[3] = {D, G * H, I}, rd[3] = {D, G * H, H},
            bd[2] = {D, 2 * G * H};
    int64_t sd[3] = {layout ? B : D, layout ? D : B, H}, pd[2] = {D, 3 * H},
            lens[3];
    c_wcheck(c_wf("W", 3, wd, -0.8f, 0.8f), 1);
    c_wcheck(c_wf("R", 3, rd, -0.8f, 0.8f), 1);
    c_wcheck(c_wf("B", 2, bd, -0.5f, 0.5f), 1);
    for (int64_t b = 0; b < B; b++)
      lens[b] = rndi(0, (int)S);
    c_wi1("L", (int)B, lens);
    c_wcheck(c_wf("h0", 3, sd, -0.5f, 0.5f), 1);
    if (!gru) {
      c_wcheck(c_wf("c0", 3, sd, -0.5f, 0.5f), 1);
      c_wcheck(c_wf("P", 2, pd, -0.5f, 0.5f), 1);
    }
    int outk = rndi(0, gru ? 1 : 2);
    c_node(op, gru ? "x,W,R,B,L,h0" : "x,W,R,B,L,h0,c0,P",
           outk == 0   ? "y"
           : outk == 1 ? ",y"
                       : ",,y");
    c_ai("hidden_size", H);
    c_as("direction", dk == 2 ? "bidirectional" : dk ? "reverse" : "forward");
    c_ai("layout", layout);
    if (gru && !plain && cfg % 4 == 1)
      c_ai("linear_before_reset", 1);
    run_case();
  }
}

/* Floor, Ceil, Round (gradient 0: x kept off the integers and halves),
 * Sin, Cos, Sinh, Cosh. */
TEST(unary_more) {
  static const char *ops[] = {"Floor", "Ceil", "Round", "Sin",
                              "Cos",   "Sinh", "Cosh"};
  for (int o = 0; o < 7; o++)
    for (int cfg = 0; cfg < 2; cfg++) {
      int64_t xa[8];
      int r = rshape(xa, 1, 4, 5, 60);
      c_begin(ops[o], 13);
      c_x(r, xa);
      c_range(XG_UNI, -1.9f, 1.9f);
      if (o < 2) /* steps at -1, 0, 1 */
        for (int k = -1; k <= 1; k++)
          c_kink((float)k);
      if (o == 2) /* Round: steps at -1.5, -0.5, 0.5, 1.5 */
        for (int k = -2; k <= 1; k++)
          c_kink((float)k + 0.5f);
      c_node(ops[o], "x", "y");
      run_case();
    }
}

/* MatMulInteger evaluated in float is linear in a float A (the output of a
 * QuantizeLinear in real graphs) and in float weights: x @ (B - zp_B) with
 * integer B and per-column zero points, and x @ W with W's gradient. */
TEST(matmulinteger) {
  for (int cfg = 0; cfg < 2; cfg++) {
    int64_t xa[2] = {rndi(1, 4), rndi(1, 5)}, n = rndi(1, 4);
    int64_t wd[2] = {xa[1], n}, zd[1] = {n}, bv[64], zv[8];
    for (int64_t i = 0; i < xa[1] * n; i++)
      bv[i] = rndi(0, 255);
    for (int64_t i = 0; i < n; i++)
      zv[i] = rndi(0, 255);
    c_begin("MatMulInteger", 10);
    c_x(2, xa);
    if (cfg == 0) {
      c_wi("B", 2, wd, bv);
      c_wi("zb", 1, zd, zv);
      c_wi("za", 0, NULL, zv);
      c_node("MatMulInteger", "x,B,za,zb", "y");
    } else {
      c_wcheck(c_wf("W", 2, wd, -2.f, 2.f), 1);
      c_node("MatMulInteger", "x,W", "y");
    }
    run_case();
  }
}

/* ConvInteger evaluated in float: linear in a float x and in float
 * weights (groups, strides, pads, dilations; 1-D and 2-D), with integer
 * zero points subtracted. */
TEST(convinteger) {
  for (int cfg = 0; cfg < 4; cfg++) {
    int sp = cfg & 1 ? 1 : 2, g = cfg & 2 ? 2 : 1;
    int64_t c = 2 * g, oc = 2 * g;
    int64_t xa[4] = {2, c, 5, 6}, wd[4] = {oc, c / g, 2, 3};
    if (sp == 1) {
      xa[2] = 7;
      wd[2] = 3;
    }
    int64_t pads[4] = {1, 0, 0, 1}, st[2] = {1, 2}, dl[2] = {2, 1}, zx = 3;
    c_begin("ConvInteger", 10);
    c_x(2 + sp, xa);
    c_wcheck(c_wf("W", 2 + sp, wd, -2.f, 2.f), 1);
    c_wi("zx", 0, NULL, &zx);
    c_node("ConvInteger", "x,W,zx", "y");
    c_ai("group", g);
    c_ais("pads", 2 * sp, sp == 2 ? pads : (int64_t[]){1, 2});
    c_ais("strides", sp, st + 2 - sp);
    c_ais("dilations", sp, dl + 2 - sp);
    run_case();
  }
}

/* Finishes b, loads it and opens a session (gradients when grad) on it;
 * NULL (after a failed check, message printed) on error. *m receives the
 * model (free it after the session). */
static adv_session *q_session(ob_model *b, int grad, adv_model **m) {
  size_t len;
  unsigned char *bytes = ob_finish(b, &len);
  adv_err err = {{0}};
  *m = NULL;
  CHECK(adv_model_load_mem(bytes, len, adv_load_default_params(), m, &err) ==
        0);
  free(bytes);
  adv_session_params sp = adv_session_default_params();
  sp.grad = grad;
  adv_session *s = NULL;
  CHECK(*m && adv_session_init(*m, sp, &s, &err) == 0);
  if (!s)
    fprintf(stderr, "%s\n", err.msg);
  return s;
}

/* QuantizeLinear -> DequantizeLinear (per axis, uint8 zero points): the
 * forward is numpy's reference fake quantization, (clip(rint(x / s) + zp,
 * 0, 255) - zp) * s, and the backward the documented straight-through
 * estimator: dx = dy (to 1e-6: dy / s * s) where x / s + zp lies in
 * [-0.5, 255.5], else 0 (a rounding has no gradient; finite differences
 * would see steps). x spans both saturated ends. */
TEST(quant_ste) {
  enum { C = 3, W = 40 };
  int64_t xd[3] = {2, C, W}, cd[1] = {C};
  float sc[C] = {0.02f, 0.05f, 0.1f};
  unsigned char zp[C] = {0, 128, 250};
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 3, xd);
  ob_init_f32(&b, "s", 1, cd, sc);
  ob_init_raw(&b, "z", 2, 1, cd, zp, C);
  ob_node(&b, "QuantizeLinear", "x,s,z", "q");
  ob_node(&b, "DequantizeLinear", "q,s,z", "y");
  ob_output(&b, "y");
  adv_model *m;
  adv_session *s = q_session(&b, 1, &m);
  adv_err err = {{0}};
  enum { N = 2 * C * W };
  float x[N], y[N], dy[N], dx[N];
  for (int i = 0; i < N; i++) {
    x[i] = rndf(-30.f, 30.f);
    dy[i] = rndf(-1.f, 1.f);
  }
  CHECK(s && adv_session_forward(s, x, y, &err) == 0);
  CHECK(s && adv_session_backward_dz(s, dy, dx, NULL, &err) == 0);
  int bad_y = 0, bad_dx = 0, inside = 0, outside = 0;
  for (int i = 0; s && i < N; i++) {
    int c = (i / W) % C;
    double r = (double)x[i] / (double)sc[c], q = nearbyint(r) + zp[c];
    q = q < 0 ? 0 : q > 255 ? 255 : q;
    bad_y += fabs(y[i] - (q - zp[c]) * sc[c]) > 1e-6;
    int in = r + zp[c] >= -0.5 && r + zp[c] <= 255.5;
    inside += in;
    outside += !in;
    bad_dx += fabsf(dx[i] - (in ? dy[i] : 0.f)) > 1e-6f;
  }
  CHECK_EQ_INT(bad_y, 0);
  CHECK_EQ_INT(bad_dx, 0);
  CHECK(inside > 0 && outside > 0);
  adv_session_free(s);
  adv_model_free(m);
}

/* QLinearMatMul with a float A (a QuantizeLinear's output in real graphs)
 * against its definition: y = clip(rint(acc / ys) + yz, 0, 255) with acc =
 * sum_k (a - az) as (B - bz[n]) bs[n] (per-column B), and the documented
 * backward: the exact gradient of acc, straight-through at the rounding
 * (dy / ys where acc / ys + yz is in [-0.5, 255.5], else 0). */
TEST(qlinearmatmul_ste) {
  enum { M = 3, K = 4, N = 5 };
  int64_t ad[2] = {M, K}, bd[2] = {K, N}, nd[1] = {N};
  unsigned char bq[K * N], bz[N], az = 7, yz = 100;
  float bs[N], as = 0.5f, ys = 0.25f;
  for (int i = 0; i < K * N; i++)
    bq[i] = (unsigned char)rndi(0, 255);
  for (int j = 0; j < N; j++) {
    bz[j] = (unsigned char)rndi(100, 150);
    bs[j] = rndf(0.002f, 0.01f);
  }
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "a", 2, ad);
  ob_init_f32(&b, "as", 0, NULL, &as);
  ob_init_raw(&b, "az", 2, 0, NULL, &az, 1);
  ob_init_raw(&b, "B", 2, 2, bd, bq, K * N);
  ob_init_f32(&b, "bs", 1, nd, bs);
  ob_init_raw(&b, "bz", 2, 1, nd, bz, N);
  ob_init_f32(&b, "ys", 0, NULL, &ys);
  ob_init_raw(&b, "yz", 2, 0, NULL, &yz, 1);
  ob_node(&b, "QLinearMatMul", "a,as,az,B,bs,bz,ys,yz", "y");
  ob_output(&b, "y");
  adv_model *m;
  adv_session *s = q_session(&b, 1, &m);
  adv_err err = {{0}};
  float a[M * K], y[M * N], dy[M * N], dx[M * K];
  for (int i = 0; i < M * K; i++)
    a[i] = rndf(-250.f, 250.f);
  for (int i = 0; i < M * N; i++)
    dy[i] = rndf(-1.f, 1.f);
  CHECK(s && adv_session_forward(s, a, y, &err) == 0);
  CHECK(s && adv_session_backward_dz(s, dy, dx, NULL, &err) == 0);
  double want_dx[M * K] = {0};
  int bad_y = 0, bad_dx = 0, sat = 0;
  for (int i = 0; s && i < M; i++)
    for (int j = 0; j < N; j++) {
      double acc = 0;
      for (int k = 0; k < K; k++)
        acc += (a[i * K + k] - az) * (double)as * (bq[k * N + j] - bz[j]) *
               (double)bs[j];
      double r = acc / ys + yz, q = nearbyint(r);
      q = q < 0 ? 0 : q > 255 ? 255 : q;
      /* float32 accumulation may flip an exact .5 tie: allow 1 step there */
      bad_y += fabs(y[i * N + j] - q) > (fabs(r - floor(r) - 0.5) < 1e-3);
      int in = r >= -0.5 && r <= 255.5;
      sat += !in;
      for (int k = 0; in && k < K; k++)
        want_dx[i * K + k] += dy[i * N + j] / ys * (double)as *
                              (bq[k * N + j] - bz[j]) * (double)bs[j];
    }
  for (int i = 0; s && i < M * K; i++)
    bad_dx += fabs(dx[i] - want_dx[i]) > 1e-4 * (1 + fabs(want_dx[i]));
  CHECK_EQ_INT(bad_y, 0);
  CHECK_EQ_INT(bad_dx, 0);
  CHECK(sat > 0 && sat < M * N);
  adv_session_free(s);
  adv_model_free(m);
}

/* Symmetric int8 quantization with the zero point from a Constant node (as
 * PyTorch exports it): the range is int8's, [-128, 127], taken from the
 * Constant's stored type, not uint8's. */
TEST(quant_int8_constant_zp) {
  enum { N = 64 };
  int64_t xd[1] = {N};
  float sc = 0.05f;
  signed char z = 0;
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 1, xd);
  ob_init_f32(&b, "s", 0, NULL, &sc);
  ob_node(&b, "Constant", NULL, "z");
  ob_attr_tensor_raw(&b, "value", 3, 0, NULL, &z, 1);
  ob_node(&b, "QuantizeLinear", "x,s,z", "y");
  ob_output(&b, "y");
  adv_model *m;
  adv_session *s = q_session(&b, 0, &m);
  adv_err err = {{0}};
  float x[N], y[N];
  for (int i = 0; i < N; i++)
    x[i] = rndf(-8.f, 8.f);
  CHECK(s && adv_session_forward(s, x, y, &err) == 0);
  int bad = 0, neg = 0;
  for (int i = 0; s && i < N; i++) {
    double q = nearbyint((double)x[i] / (double)sc);
    q = q < -128 ? -128 : q > 127 ? 127 : q;
    bad += y[i] != (float)q;
    neg += q < 0;
  }
  CHECK_EQ_INT(bad, 0);
  CHECK(neg > 0);
  adv_session_free(s);
  adv_model_free(m);
}

/* QLinearConv with a 1x1 kernel (per-output-channel w scale and zero
 * point, int32 bias) against its definition, forward and the documented
 * straight-through backward, as qlinearmatmul_ste. */
TEST(qlinearconv_ste) {
  enum { C = 3, P = 6, OC = 4 };
  int64_t xd[4] = {1, C, 1, P}, wd[4] = {OC, C, 1, 1}, od[1] = {OC};
  unsigned char wq[OC * C], wz[OC], xz = 9, yz = 120;
  int32_t bias[OC];
  float ws[OC], xs = 0.5f, ys = 0.25f;
  for (int i = 0; i < OC * C; i++)
    wq[i] = (unsigned char)rndi(0, 255);
  for (int o = 0; o < OC; o++) {
    wz[o] = (unsigned char)rndi(100, 150);
    ws[o] = rndf(0.002f, 0.01f);
    bias[o] = rndi(-2000, 2000);
  }
  ob_model b;
  ob_init(&b, 13);
  ob_input(&b, "x", 4, xd);
  ob_init_f32(&b, "xs", 0, NULL, &xs);
  ob_init_raw(&b, "xz", 2, 0, NULL, &xz, 1);
  ob_init_raw(&b, "w", 2, 4, wd, wq, OC * C);
  ob_init_f32(&b, "ws", 1, od, ws);
  ob_init_raw(&b, "wz", 2, 1, od, wz, OC);
  ob_init_f32(&b, "ys", 0, NULL, &ys);
  ob_init_raw(&b, "yz", 2, 0, NULL, &yz, 1);
  ob_init_raw(&b, "B", 6, 1, od, bias, sizeof(bias));
  ob_node(&b, "QLinearConv", "x,xs,xz,w,ws,wz,ys,yz,B", "y");
  ob_output(&b, "y");
  adv_model *m;
  adv_session *s = q_session(&b, 1, &m);
  adv_err err = {{0}};
  float x[C * P], y[OC * P], dy[OC * P], dx[C * P];
  for (int i = 0; i < C * P; i++)
    x[i] = rndf(-250.f, 250.f);
  for (int i = 0; i < OC * P; i++)
    dy[i] = rndf(-1.f, 1.f);
  CHECK(s && adv_session_forward(s, x, y, &err) == 0);
  CHECK(s && adv_session_backward_dz(s, dy, dx, NULL, &err) == 0);
  double want_dx[C * P] = {0};
  int bad_y = 0, bad_dx = 0, sat = 0;
  for (int o = 0; s && o < OC; o++)
    for (int q = 0; q < P; q++) {
      double acc = bias[o] * (double)xs * (double)ws[o];
      for (int c = 0; c < C; c++)
        acc += (x[c * P + q] - xz) * (double)xs * (wq[o * C + c] - wz[o]) *
               (double)ws[o];
      double r = acc / ys + yz, v = nearbyint(r);
      v = v < 0 ? 0 : v > 255 ? 255 : v;
      bad_y += fabs(y[o * P + q] - v) > (fabs(r - floor(r) - 0.5) < 1e-3);
      int in = r >= -0.5 && r <= 255.5;
      sat += !in;
      for (int c = 0; in && c < C; c++)
        want_dx[c * P + q] += dy[o * P + q] / ys * (double)xs *
                              (wq[o * C + c] - wz[o]) * (double)ws[o];
    }
  for (int i = 0; s && i < C * P; i++)
    bad_dx += fabs(dx[i] - want_dx[i]) > 1e-4 * (1 + fabs(want_dx[i]));
  CHECK_EQ_INT(bad_y, 0);
  CHECK_EQ_INT(bad_dx, 0);
  CHECK(sat > 0 && sat < OC * P);
  adv_session_free(s);
  adv_model_free(m);
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (!strcmp(argv[i], "-v"))
      g_verbose = 1;
  const char *seed = getenv("ADV_GRAD_SEED");
  if (seed)
    g_rng = strtoull(seed, NULL, 0);
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("seed %#llx, h = %g, rtol = %g, noise factor %g\n",
         (unsigned long long)g_rng, (double)FD_H, RTOL, NOISE_K);
  const char *reps_env = getenv("ADV_GRAD_ROUNDS");
  int rounds = reps_env ? atoi(reps_env) : 3;
  for (int r = 0; r < rounds; r++) {
    RUN(variadic);
    RUN(where);
    RUN(tile);
    RUN(cumsum);
    RUN(topk);
    RUN(layernorm);
    RUN(instancenorm);
    RUN(resize);
    RUN(convtranspose);
    RUN(einsum);
    RUN(split);
    RUN(unary_more);
    RUN(rnn);
    RUN(matmulinteger);
    RUN(convinteger);
  }
  RUN(resize_threads);
  RUN(convtranspose_dnnl);
  RUN(quant_ste);
  RUN(qlinearmatmul_ste);
  RUN(qlinearconv_ste);
  RUN(quant_int8_constant_zp);
  print_summary();
  return harness_report();
}
