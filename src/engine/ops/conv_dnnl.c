/*
 * conv_dnnl.c - 2-D convolution forward and backward-data on oneDNN (the
 * same library PyTorch's CPU convolutions use), for batches large enough
 * that its blocked kernels beat im2col + GEMM.
 *
 * At plan time: primitives are created with format "any", the constant
 * weights are reordered once into oneDNN's preferred layout, and the sizes
 * of the reorder buffers for the activations (NCHW <-> blocked) are added
 * to the node's scratch. At run time: reorder in, execute, reorder out.
 * Backward accumulates: the blocked diff_src is reordered to NCHW in
 * scratch and added to the input gradient; when the planner lets the node
 * store the gradient (bw_assign), it is written straight into it.
 *
 * Everything is optional: when oneDNN refuses a configuration, the caller
 * keeps the im2col path (adv__dnnl_conv_plan returns non-zero).
 */
#include "core/engine.h"

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct dconv {
  dnnl_primitive_t fwd, r_src, r_dst;
  dnnl_memory_t m_usrc, m_src, m_wei, m_bias, m_dst, m_udst;
  int need_r_src, need_r_dst;
  size_t off_src, off_dst; /* scratch offsets of the blocked buffers */
  /* backward data */
  dnnl_primitive_t bwd, r_ddst, r_dsrc;
  dnnl_memory_t m_uddst, m_ddst, m_bwei, m_dsrc, m_udsrc;
  int need_r_ddst, need_r_dsrc, has_bwd;
  size_t off_ddst, off_dsrc, off_udsrc;
  int64_t src_numel;
  dnnl_stream_t strm;
  /* The same primitives created for one thread (see plan_serial): run when
   * the load adaptation has the engine on one thread. NULL when absent. */
  dnnl_primitive_t fwd1, r_src1, r_dst1, bwd1, r_ddst1, r_dsrc1;
  int has1, has_bwd1;
} dconv;

static dnnl_engine_t g_eng;
static _Atomic long g_serial_execs; /* adv__dnnl_serial_execs */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void eng_init(void) {
  if (dnnl_engine_create(&g_eng, dnnl_cpu, 0) != dnnl_success)
    g_eng = NULL;
}

static size_t up64(size_t n) {
  return (n + 63) & ~(size_t)63;
}

static void dconv_free(void *arg) {
  dconv *d = arg;
  dnnl_primitive_t prims[] = {d->fwd,    d->r_src,  d->r_dst,   d->bwd,
                              d->r_ddst, d->r_dsrc, d->fwd1,    d->r_src1,
                              d->r_dst1, d->bwd1,   d->r_ddst1, d->r_dsrc1};
  for (size_t i = 0; i < sizeof(prims) / sizeof(prims[0]); i++)
    if (prims[i])
      dnnl_primitive_destroy(prims[i]);
  dnnl_memory_t mems[] = {d->m_usrc, d->m_src,  d->m_wei,   d->m_bias,
                          d->m_dst,  d->m_udst, d->m_uddst, d->m_ddst,
                          d->m_bwei, d->m_dsrc, d->m_udsrc};
  for (size_t i = 0; i < sizeof(mems) / sizeof(mems[0]); i++)
    if (mems[i])
      dnnl_memory_destroy(mems[i]);
  if (d->strm)
    dnnl_stream_destroy(d->strm);
}

/* Creates a reorder primitive from -> to when they differ. */
static int make_reorder(const dnnl_memory_desc_t *from,
                        const dnnl_memory_desc_t *to, dnnl_primitive_t *out,
                        int *needed) {
  *needed = !dnnl_memory_desc_equal(from, to);
  *out = NULL;
  if (!*needed)
    return 0;
  dnnl_primitive_desc_t rpd;
  if (dnnl_reorder_primitive_desc_create(&rpd, from, g_eng, to, g_eng, NULL) !=
      dnnl_success)
    return -1;
  dnnl_status_t st = dnnl_primitive_create(out, rpd);
  dnnl_primitive_desc_destroy(rpd);
  return st == dnnl_success ? 0 : -1;
}

/* Reorders constant weights (user layout) into a new arena buffer. */
static int reorder_weights(adv_plan *p, dconv *d,
                           const dnnl_memory_desc_t *user, const void *data,
                           const dnnl_memory_desc_t *want, dnnl_memory_t *out) {
  void *buf = adv__arena_alloc(&p->arena, dnnl_memory_desc_get_size(want) + 64);
  if (!buf || dnnl_memory_create(out, want, g_eng, buf) != dnnl_success)
    return -1;
  if (dnnl_memory_desc_equal(user, want)) {
    memcpy(buf, data, dnnl_memory_desc_get_size(want));
    return 0;
  }
  dnnl_memory_t mu;
  if (dnnl_memory_create(&mu, user, g_eng, (void *)data) != dnnl_success)
    return -1;
  dnnl_primitive_t r;
  int need, rc = make_reorder(user, want, &r, &need);
  if (rc == 0 && r) {
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, mu}, {DNNL_ARG_TO, *out}};
    rc = dnnl_primitive_execute(r, d->strm, 2, a) == dnnl_success ? 0 : -1;
    dnnl_stream_wait(d->strm);
    dnnl_primitive_destroy(r);
  }
  dnnl_memory_destroy(mu);
  return rc;
}

/*
 * True when pd's implementation is one we do not run (or cannot be named):
 * oneDNN's reference kernels, far slower than im2col + GEMM; and the
 * GEMM-based ("gemm") and Winograd ("wino") ones, whose scratchpad is
 * thread-local to the thread that made the primitive (oneDNN 2.x's
 * "global scratchpad"): run on another thread, as the evaluator runs its
 * worker sessions, they found no buffer there and wrote through a null
 * pointer (a grouped convolution with 3 channels per group,
 * tests/threads/test_team.c). The GEMM-based ones are im2col + GEMM, the
 * engine's own path.
 */
static int impl_is_ref(const_dnnl_primitive_desc_t pd) {
  const char *impl = NULL;
  return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) !=
             dnnl_success ||
         !impl || strstr(impl, "ref") != NULL || strstr(impl, "gemm") != NULL ||
         strstr(impl, "wino") != NULL;
}

/* The memory descriptors a forward / backward-data primitive is planned
 * on: src, weights, dst and diff_src, weights, diff_dst. */
static const dnnl_query_t FWD_MDS[3] = {
    dnnl_query_src_md, dnnl_query_weights_md, dnnl_query_dst_md};
static const dnnl_query_t BWD_MDS[3] = {
    dnnl_query_diff_src_md, dnnl_query_weights_md, dnnl_query_diff_dst_md};

/* The three memory descriptors of pd for queries q (FWD_MDS, BWD_MDS),
 * into md. */
static void query3(const_dnnl_primitive_desc_t pd, const dnnl_query_t q[3],
                   const dnnl_memory_desc_t *md[3]) {
  for (int i = 0; i < 3; i++)
    md[i] = dnnl_primitive_desc_query_md(pd, q[i], 0);
}

/* A convolution's (or ConvTranspose's) geometry and kind, as oneDNN's
 * descriptors take them; the memory descriptors vary (format "any" for
 * the parallel plan, the chosen layouts for the one-thread one). */
struct conv_geom {
  int deconv, bias;
  dnnl_prop_kind_t prop;
  const dnnl_memory_desc_t *bias_md;
  const int64_t *st, *dl, *pl, *pr;
};

/* Creates the forward primitive descriptor of g on md (src, weights,
 * dst) with attr. dnnl_success or oneDNN's status; *pd is set only on
 * success (the caller destroys it). */
static dnnl_status_t fwd_pd_create(const struct conv_geom *g,
                                   const dnnl_memory_desc_t *const md[3],
                                   const_dnnl_primitive_attr_t attr,
                                   dnnl_primitive_desc_t *pd) {
  dnnl_convolution_desc_t cd;
  const dnnl_memory_desc_t *b = g->bias ? g->bias_md : NULL;
  dnnl_status_t st = g->deconv
                         ? dnnl_dilated_deconvolution_forward_desc_init(
                               &cd, g->prop, dnnl_deconvolution_direct, md[0],
                               md[1], b, md[2], g->st, g->dl, g->pl, g->pr)
                         : dnnl_dilated_convolution_forward_desc_init(
                               &cd, g->prop, dnnl_convolution_direct, md[0],
                               md[1], b, md[2], g->st, g->dl, g->pl, g->pr);
  return st != dnnl_success
             ? st
             : dnnl_primitive_desc_create(pd, &cd, attr, g_eng, NULL);
}

/* Creates the backward-data primitive descriptor of g on md (diff_src,
 * weights, diff_dst) with the forward hint. As fwd_pd_create. */
static dnnl_status_t bwd_pd_create(const struct conv_geom *g,
                                   const dnnl_memory_desc_t *const md[3],
                                   const_dnnl_primitive_desc_t hint,
                                   dnnl_primitive_desc_t *pd) {
  dnnl_convolution_desc_t cd;
  dnnl_status_t st = g->deconv
                         ? dnnl_dilated_deconvolution_backward_data_desc_init(
                               &cd, dnnl_deconvolution_direct, md[0], md[1],
                               md[2], g->st, g->dl, g->pl, g->pr)
                         : dnnl_dilated_convolution_backward_data_desc_init(
                               &cd, dnnl_convolution_direct, md[0], md[1],
                               md[2], g->st, g->dl, g->pl, g->pr);
  return st != dnnl_success
             ? st
             : dnnl_primitive_desc_create(pd, &cd, NULL, g_eng, hint);
}

/*
 * True when pd1 (made for one thread) computes exactly what par (made for
 * the team) computes: the same implementation, one whose summation order
 * is fixed by the layouts, and the same layouts for queries q (the ones in
 * md). Excluded: what impl_is_ref refuses (among them the GEMM-based and
 * Winograd kernels, which may split a reduction by thread count), and the
 * inner-product path of 1x1-output convolutions ("ip:"), which may too.
 */
static int same_layouts(const_dnnl_primitive_desc_t pd1,
                        const_dnnl_primitive_desc_t par,
                        const dnnl_query_t q[3],
                        const dnnl_memory_desc_t *const md[3]) {
  const char *i1 = NULL, *ip = NULL;
  if (impl_is_ref(pd1) ||
      dnnl_primitive_desc_query(pd1, dnnl_query_impl_info_str, 0, &i1) !=
          dnnl_success ||
      dnnl_primitive_desc_query(par, dnnl_query_impl_info_str, 0, &ip) !=
          dnnl_success ||
      !i1 || !ip || strcmp(i1, ip) || strstr(i1, "ip:"))
    return 0;
  for (int i = 0; i < 3; i++)
    if (!dnnl_memory_desc_equal(dnnl_primitive_desc_query_md(pd1, q[i], 0),
                                md[i]))
      return 0;
  return 1;
}

/* Destroys the one-thread primitives of d and marks them absent. */
static void serial_drop(dconv *d) {
  dnnl_primitive_t *prims[] = {&d->fwd1, &d->r_src1,  &d->r_dst1,
                               &d->bwd1, &d->r_ddst1, &d->r_dsrc1};
  for (size_t i = 0; i < sizeof(prims) / sizeof(prims[0]); i++) {
    if (*prims[i])
      dnnl_primitive_destroy(*prims[i]);
    *prims[i] = NULL;
  }
  d->has1 = d->has_bwd1 = 0;
}

/* What plan_serial re-creates: the descriptors of the parallel plan. */
struct serial_spec {
  const struct conv_geom *g;
  const dnnl_memory_desc_t *usrc, *udst;
  const_dnnl_primitive_attr_t attr;
  const_dnnl_primitive_desc_t fpd, bpd; /* bpd: NULL without backward */
};

/*
 * oneDNN (OpenMP build) fixes a convolution's thread count when the
 * primitive is created: executed after omp_set_num_threads(1), a primitive
 * made for two threads still opens a two-thread region and waits at its
 * barrier for a thread the busy machine does not schedule. So for a team
 * of more than one thread the plan also makes every primitive for one
 * thread, on the exact memory layouts the parallel ones chose (the
 * reordered weights and the scratch offsets serve both); the run picks
 * them while the load adaptation has the engine on one thread. Optional:
 * when oneDNN picks another implementation or other layouts, or one whose
 * result could follow the thread count (same_layouts), d keeps only the
 * parallel set (or only its forward part). Only the one-thread level has
 * such a set: a team of 4 halved to 2 runs the 4-thread primitives. Not
 * made when the adaptation is off (ADV_THREADS_ADAPT=0). Leaves the
 * planning thread's OpenMP thread count at p->threads.
 */
static void plan_serial(adv_plan *p, dconv *d, const struct serial_spec *sp) {
  dnnl_primitive_desc_t fpd1 = NULL, bpd1 = NULL;
  omp_set_num_threads(1);
  const dnnl_memory_desc_t *f[3]; /* src, weights, dst */
  query3(sp->fpd, FWD_MDS, f);
  int ok = 0;
  if (fwd_pd_create(sp->g, f, sp->attr, &fpd1) != dnnl_success ||
      !same_layouts(fpd1, sp->fpd, FWD_MDS, f) ||
      dnnl_primitive_create(&d->fwd1, fpd1) != dnnl_success)
    goto out;
  int need;
  if ((d->need_r_src && make_reorder(sp->usrc, f[0], &d->r_src1, &need)) ||
      (d->need_r_dst && make_reorder(f[2], sp->udst, &d->r_dst1, &need)))
    goto out;
  d->has1 = 1;
  if (d->has_bwd && sp->bpd) {
    const dnnl_memory_desc_t *b[3]; /* diff_src, weights, diff_dst */
    query3(sp->bpd, BWD_MDS, b);
    if (bwd_pd_create(sp->g, b, fpd1, &bpd1) != dnnl_success ||
        !same_layouts(bpd1, sp->bpd, BWD_MDS, b) ||
        dnnl_primitive_create(&d->bwd1, bpd1) != dnnl_success ||
        (d->need_r_ddst && make_reorder(sp->udst, b[2], &d->r_ddst1, &need)) ||
        (d->need_r_dsrc && make_reorder(b[0], sp->usrc, &d->r_dsrc1, &need)))
      goto bwd_out; /* the forward set stays */
    d->has_bwd1 = 1;
  }
bwd_out:
  ok = 1;
out:
  if (!ok || !d->has_bwd1) {
    /* what is incomplete goes: everything, or the backward part */
    dnnl_primitive_t *bw[] = {&d->bwd1, &d->r_ddst1, &d->r_dsrc1};
    for (size_t i = 0; i < sizeof(bw) / sizeof(bw[0]); i++) {
      if (*bw[i])
        dnnl_primitive_destroy(*bw[i]);
      *bw[i] = NULL;
    }
  }
  if (!ok)
    serial_drop(d);
  if (fpd1)
    dnnl_primitive_desc_destroy(fpd1);
  if (bpd1)
    dnnl_primitive_desc_destroy(bpd1);
  omp_set_num_threads(p->threads);
}

/*
 * Plans oneDNN primitives for a 2-D convolution with constant weights.
 * geometry: N C H W M OH OW KH KW SH SW DH DW PT PL PB PR group.
 * Sets *scratch_bytes to the reorder buffers needed. Returns 0 and stores
 * the handle in *handle, or -1 (caller falls back to im2col).
 */
static int dnnl_plan(adv_plan *p, adv_pnode *n, const int64_t *g, int bias,
                     int relu, int with_bwd, int deconv, void **handle,
                     size_t *scratch_bytes) {
  pthread_once(&g_once, eng_init);
  if (!g_eng)
    return -1;
  const adv_tensor *w = n->in[1];
  if (!w->is_const)
    return -1;
  int64_t N = g[0], C = g[1], H = g[2], W = g[3], M = g[4], OH = g[5],
          OW = g[6], KH = g[7], KW = g[8], SH = g[9], SW = g[10], DH = g[11],
          DW = g[12], PT = g[13], PL = g[14], PB = g[15], PR = g[16], G = g[17];
  dconv *d = adv__arena_alloc(&p->arena, sizeof(*d));
  if (!d)
    return -1;
  /* oneDNN fixes a primitive's thread count when it is created */
  omp_set_num_threads(p->threads);
  memset(d, 0, sizeof(*d));
  if (dnnl_stream_create(&d->strm, g_eng, dnnl_stream_default_flags) !=
      dnnl_success)
    return -1;
  int ok = 0;
  dnnl_dims_t sd = {N, C, H, W}, dd = {N, M, OH, OW}, bd = {M};
  dnnl_dims_t wd5 = {G, M / G, C / G, KH, KW}, wd4 = {M, C / G, KH, KW};
  if (deconv) /* ONNX ConvTranspose W is C x M/G x KH x KW: "iohw" */
    wd4[1] = C;
  int wnd = G > 1 ? 5 : 4;
  dnnl_memory_desc_t src_any, wei_any, dst_any, bias_md, usrc, uwei, udst;
  dnnl_memory_desc_init_by_tag(&src_any, 4, sd, dnnl_f32, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&dst_any, 4, dd, dnnl_f32, dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&wei_any, wnd, G > 1 ? wd5 : wd4, dnnl_f32,
                               dnnl_format_tag_any);
  dnnl_memory_desc_init_by_tag(&bias_md, 1, bd, dnnl_f32, dnnl_x);
  dnnl_memory_desc_init_by_tag(&usrc, 4, sd, dnnl_f32, dnnl_nchw);
  dnnl_memory_desc_init_by_tag(&udst, 4, dd, dnnl_f32, dnnl_nchw);
  dnnl_memory_desc_init_by_tag(&uwei, wnd, G > 1 ? wd5 : wd4, dnnl_f32,
                               deconv ? (G > 1 ? dnnl_giohw : dnnl_iohw)
                                      : (G > 1 ? dnnl_goihw : dnnl_oihw));
  /* right/bottom padding as far as the windows actually reach (ONNX pads
   * can exceed what the output size uses; oneDNN wants them consistent) */
  int64_t rb = (OH - 1) * SH + (KH - 1) * DH + 1 - H - PT;
  int64_t rr = (OW - 1) * SW + (KW - 1) * DW + 1 - W - PL;
  if (deconv) { /* src X (H x W) is the small side: pads of the output */
    rb = (H - 1) * SH + (KH - 1) * DH + 1 - OH - PT;
    rr = (W - 1) * SW + (KW - 1) * DW + 1 - OW - PL;
    if (PT < 0 || PL < 0)
      return -1;
  }
  if (rb < 0 || rr < 0 || (!deconv && (rb > PB || rr > PR)))
    return -1;
  dnnl_dims_t st = {SH, SW}, dl = {DH - 1, DW - 1}, pl = {PT, PL},
              pr = {rb, rr};
  dnnl_primitive_desc_t fpd = NULL, bpd = NULL;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  if (relu && (dnnl_primitive_attr_create(&attr) != dnnl_success ||
               dnnl_post_ops_create(&po) != dnnl_success ||
               dnnl_post_ops_append_eltwise(po, 1.f, dnnl_eltwise_relu, 0.f,
                                            0.f) != dnnl_success ||
               dnnl_primitive_attr_set_post_ops(attr, po) != dnnl_success))
    goto out;
  dnnl_prop_kind_t prop =
      with_bwd ? dnnl_forward_training : dnnl_forward_inference;
  const struct conv_geom geom = {.deconv = deconv,
                                 .bias = bias,
                                 .prop = prop,
                                 .bias_md = &bias_md,
                                 .st = st,
                                 .dl = dl,
                                 .pl = pl,
                                 .pr = pr};
  const dnnl_memory_desc_t *const any3[3] = {&src_any, &wei_any, &dst_any};
  if (fwd_pd_create(&geom, any3, attr, &fpd) != dnnl_success)
    goto out;
  /* not the reference, GEMM-based or Winograd kernels (impl_is_ref) */
  if (impl_is_ref(fpd))
    goto out;
  const dnnl_memory_desc_t *q[3]; /* src, weights, dst as chosen */
  query3(fpd, FWD_MDS, q);
  const dnnl_memory_desc_t *qs = q[0], *qw = q[1], *qd = q[2];
  if (dnnl_primitive_create(&d->fwd, fpd) != dnnl_success ||
      make_reorder(&usrc, qs, &d->r_src, &d->need_r_src) ||
      make_reorder(qd, &udst, &d->r_dst, &d->need_r_dst) ||
      reorder_weights(p, d, &uwei, w->data, qw, &d->m_wei))
    goto out;
  size_t off = 0;
  d->off_src = off;
  if (d->need_r_src)
    off += up64(dnnl_memory_desc_get_size(qs));
  d->off_dst = off;
  if (d->need_r_dst)
    off += up64(dnnl_memory_desc_get_size(qd));
  if (dnnl_memory_create(&d->m_usrc, &usrc, g_eng, DNNL_MEMORY_NONE) ||
      dnnl_memory_create(&d->m_src, qs, g_eng, DNNL_MEMORY_NONE) ||
      dnnl_memory_create(&d->m_dst, qd, g_eng, DNNL_MEMORY_NONE) ||
      dnnl_memory_create(&d->m_udst, &udst, g_eng, DNNL_MEMORY_NONE) ||
      (bias && dnnl_memory_create(&d->m_bias, &bias_md, g_eng, n->in[2]->data)))
    goto out;
  /* Backward data into fewer than 8 input channels per group (a network's
   * first conv on 1-3 channel images) is oneDNN's slow case: 9.6 ms against
   * 1.4 ms forward for 1->16 channels, 28x28, batch 128 (oneDNN 2.6,
   * ONEDNN_VERBOSE). The im2col path (W^T dY, then col2im) does it in a
   * fraction of that; keep oneDNN's forward only. */
  if (with_bwd && C / G < 8)
    goto bwd_done;
  if (with_bwd) {
    if (bwd_pd_create(&geom, any3, fpd, &bpd) != dnnl_success)
      goto out;
    /* library code never prints: ONEDNN_VERBOSE=1 shows the chosen
     * implementations when needed */
    if (impl_is_ref(bpd))
      goto bwd_done;                /* keep oneDNN forward, im2col backward */
    const dnnl_memory_desc_t *b[3]; /* diff_src, weights, diff_dst */
    query3(bpd, BWD_MDS, b);
    const dnnl_memory_desc_t *bs = b[0], *bw = b[1], *bdd = b[2];
    if (dnnl_primitive_create(&d->bwd, bpd) != dnnl_success ||
        make_reorder(&udst, bdd, &d->r_ddst, &d->need_r_ddst) ||
        make_reorder(bs, &usrc, &d->r_dsrc, &d->need_r_dsrc) ||
        reorder_weights(p, d, &uwei, w->data, bw, &d->m_bwei))
      goto out;
    d->off_ddst = off;
    if (d->need_r_ddst)
      off += up64(dnnl_memory_desc_get_size(bdd));
    d->off_dsrc = off;
    off += up64(dnnl_memory_desc_get_size(bs));
    d->off_udsrc = off;
    if (d->need_r_dsrc)
      off += up64(dnnl_memory_desc_get_size(&usrc));
    if (dnnl_memory_create(&d->m_uddst, &udst, g_eng, DNNL_MEMORY_NONE) ||
        dnnl_memory_create(&d->m_ddst, bdd, g_eng, DNNL_MEMORY_NONE) ||
        dnnl_memory_create(&d->m_dsrc, bs, g_eng, DNNL_MEMORY_NONE) ||
        dnnl_memory_create(&d->m_udsrc, &usrc, g_eng, DNNL_MEMORY_NONE))
      goto out;
    d->has_bwd = 1;
  }
bwd_done:
  if (p->threads > 1 && adv__threads_adapt_on()) {
    struct serial_spec sp = {.g = &geom,
                             .usrc = &usrc,
                             .udst = &udst,
                             .attr = attr,
                             .fpd = fpd,
                             .bpd = d->has_bwd ? bpd : NULL};
    plan_serial(p, d, &sp);
  }
  d->src_numel = N * C * H * W;
  *scratch_bytes = off;
  ok = 1;
out:
  if (po)
    dnnl_post_ops_destroy(po);
  if (attr)
    dnnl_primitive_attr_destroy(attr);
  if (fpd)
    dnnl_primitive_desc_destroy(fpd);
  if (bpd)
    dnnl_primitive_desc_destroy(bpd);
  if (!ok) {
    dconv_free(d);
    return -1;
  }
  if (adv__plan_on_free(p, dconv_free, d)) {
    dconv_free(d);
    return -1;
  }
  *handle = d;
  return 0;
}

/* Plans a 2-D convolution (see dnnl_plan). */
int adv__dnnl_conv_plan(adv_plan *p, adv_pnode *n, const int64_t *g, int bias,
                        int relu, int with_bwd, void **handle,
                        size_t *scratch_bytes) {
  return dnnl_plan(p, n, g, bias, relu, with_bwd, 0, handle, scratch_bytes);
}

/* Plans a 2-D ConvTranspose: the same geometry with X (N C H W) as src and
 * Y (N M OH OW) as dst; PB/PR are unused (derived); adv__dnnl_conv_forward
 * and adv__dnnl_conv_backward_data then run it. */
int adv__dnnl_deconv_plan(adv_plan *p, adv_pnode *n, const int64_t *g, int bias,
                          int with_bwd, void **handle, size_t *scratch_bytes) {
  return dnnl_plan(p, n, g, bias, 0, with_bwd, 1, handle, scratch_bytes);
}

static int run1(dnnl_primitive_t prim, dnnl_stream_t s, int n,
                dnnl_exec_arg_t *a) {
  return dnnl_primitive_execute(prim, s, n, a) == dnnl_success ? 0 : -1;
}

/* Forward: reorder NCHW src in, convolve, reorder dst out. */
int adv__dnnl_conv_forward(adv_plan *p, adv_pnode *n, void *handle) {
  dconv *d = handle;
  unsigned char *sc = (unsigned char *)adv__scratch(p, n, 0);
  int t = adv__threads_for_run(p->threads); /* load */
  int one = t == 1 && d->has1;
  omp_set_num_threads(t);
  if (one)
    atomic_fetch_add(&g_serial_execs, 1);
  dnnl_memory_set_data_handle(d->m_usrc, n->in[0]->data);
  dnnl_memory_set_data_handle(d->m_udst, n->out[0]->data);
  dnnl_memory_set_data_handle(
      d->m_src, d->need_r_src ? (void *)(sc + d->off_src) : n->in[0]->data);
  dnnl_memory_set_data_handle(
      d->m_dst, d->need_r_dst ? (void *)(sc + d->off_dst) : n->out[0]->data);
  int rc = 0;
  if (d->need_r_src) {
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, d->m_usrc},
                            {DNNL_ARG_TO, d->m_src}};
    rc |= run1(one ? d->r_src1 : d->r_src, d->strm, 2, a);
  }
  dnnl_exec_arg_t a[4] = {{DNNL_ARG_SRC, d->m_src},
                          {DNNL_ARG_WEIGHTS, d->m_wei},
                          {DNNL_ARG_DST, d->m_dst},
                          {DNNL_ARG_BIAS, d->m_bias}};
  rc |= run1(one ? d->fwd1 : d->fwd, d->strm, d->m_bias ? 4 : 3, a);
  if (d->need_r_dst) {
    dnnl_exec_arg_t b[2] = {{DNNL_ARG_FROM, d->m_dst},
                            {DNNL_ARG_TO, d->m_udst}};
    rc |= run1(one ? d->r_dst1 : d->r_dst, d->strm, 2, b);
  }
  dnnl_stream_wait(d->strm);
  return rc ? ADV_EINTERNAL : ADV_OK;
}

/* What dnnl_gx_add_chunk reads (adv__par_for context). */
struct dnnl_gx_add_job {
  const float *ud;
  float *gx;
};

/* A chunk [lo, hi) of dnnl_gx_add's loop over i (adv__par_for). */
static void dnnl_gx_add_chunk(void *arg, int64_t lo, int64_t hi, int worker) {
  (void)worker;
  const struct dnnl_gx_add_job *j = arg;
  const float *ud = j->ud;
  float *gx = j->gx;
  for (int64_t i = lo; i < hi; i++) {
    gx[i] += ud[i];
  }
}

/* Backward data: gx += conv^T(gy, W), through oneDNN's layouts. */
int adv__dnnl_conv_backward_data(adv_plan *p, adv_pnode *n, void *handle) {
  dconv *d = handle;
  if (!d->has_bwd)
    return ADV_EINTERNAL;
  unsigned char *sc = (unsigned char *)adv__scratch(p, n, 0);
  int t = adv__threads_for_run(p->threads); /* load */
  int one = t == 1 && d->has_bwd1;
  omp_set_num_threads(t);
  if (one)
    atomic_fetch_add(&g_serial_execs, 1);
  dnnl_memory_set_data_handle(d->m_uddst, n->out[0]->grad);
  dnnl_memory_set_data_handle(d->m_ddst, d->need_r_ddst
                                             ? (void *)(sc + d->off_ddst)
                                             : (void *)n->out[0]->grad);
  /* assigned gradient: oneDNN (or the reorder out of its layout) writes
   * straight into gx; otherwise into scratch, then added */
  int assign = (n->bw_assign & ADV_BW_IN(0)) != 0;
  float *gxa = n->in[0]->grad;
  dnnl_memory_set_data_handle(d->m_dsrc, assign && !d->need_r_dsrc
                                             ? (void *)gxa
                                             : (void *)(sc + d->off_dsrc));
  float *ud = d->need_r_dsrc ? (float *)(sc + d->off_udsrc)
                             : (float *)(sc + d->off_dsrc);
  if (assign)
    ud = gxa;
  dnnl_memory_set_data_handle(d->m_udsrc, ud);
  int rc = 0;
  if (d->need_r_ddst) {
    dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, d->m_uddst},
                            {DNNL_ARG_TO, d->m_ddst}};
    rc |= run1(one ? d->r_ddst1 : d->r_ddst, d->strm, 2, a);
  }
  dnnl_exec_arg_t a[3] = {{DNNL_ARG_DIFF_DST, d->m_ddst},
                          {DNNL_ARG_WEIGHTS, d->m_bwei},
                          {DNNL_ARG_DIFF_SRC, d->m_dsrc}};
  rc |= run1(one ? d->bwd1 : d->bwd, d->strm, 3, a);
  if (d->need_r_dsrc) {
    dnnl_exec_arg_t b[2] = {{DNNL_ARG_FROM, d->m_dsrc},
                            {DNNL_ARG_TO, d->m_udsrc}};
    rc |= run1(one ? d->r_dsrc1 : d->r_dsrc, d->strm, 2, b);
  }
  dnnl_stream_wait(d->strm);
  if (rc)
    return ADV_EINTERNAL;
  if (assign)
    return ADV_OK;
  float *gx = n->in[0]->grad;
  int64_t len = d->src_numel;
  struct dnnl_gx_add_job dnnl_gx_add_j = {.ud = ud, .gx = gx};
  adv__par_for((len > 65536) ? (p->threads) : 1, len, 16384, dnnl_gx_add_chunk,
               &dnnl_gx_add_j);
  return ADV_OK;
}

int adv__dnnl_conv_has_bwd(const void *handle) {
  return ((const dconv *)handle)->has_bwd;
}

long adv__dnnl_serial_execs(void) {
  return atomic_load(&g_serial_execs);
}
