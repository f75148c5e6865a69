/* reprl's C kernels for CPU hot paths: the parts of a small MLP's forward and backward that
 * PyTorch runs as several passes over the same activations (narrow layers, ReLUs, bias sums,
 * 1- or 2-wide heads), each done here in one pass. The large products stay on PyTorch's.
 *
 * Compiled at first use by reprl/models/native.py with -O3 -march=native -fno-trapping-math.
 * Loops work on 8-float vectors through GCC's vector extensions (also Clang's), which the
 * compiler lowers to the machine's instructions (AVX2 here, two SSE/NEON registers
 * elsewhere); columns past the last multiple of 8 take scalar loops. Row-major float32 arrays
 * with the given row strides; outputs never alias inputs.
 *
 * ReLU conventions are PyTorch's: relu keeps NaN (NaN < 0 is false), and the backward passes
 * the gradient where the output is not <= 0 (threshold_backward). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float v8f __attribute__((vector_size(32), aligned(4)));
typedef int v8i __attribute__((vector_size(32), aligned(4)));

#define LOAD(p) (*(const v8f *)(p))
#define STORE(p, v) (*(v8f *)(p) = (v))

static inline v8f splat(float x) { return (v8f){x, x, x, x, x, x, x, x}; }

/* max(a, 0) keeping NaN */
static inline v8f relu8(v8f a) { return (v8f)((v8i)a & ~(a < splat(0.f))); }

/* g where h > 0 (not h <= 0), else 0 */
static inline v8f mask8(v8f g, v8f h) { return (v8f)((v8i)g & ~(h <= splat(0.f))); }

static inline float hsum8(v8f a) {
    return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
}

static inline float relu1(float a) { return a < 0.f ? 0.f : a; }
static inline float mask1(float g, float h) { return h <= 0.f ? 0.f : g; }

/* rows of [x1 | x2] (k1 + k2 columns; row r is row idx[r] when idx is given) gathered into a
 * contiguous (rows, k1 + k2) buffer; NULL when out of memory */
static float *gather_inputs(const float *x1, int ld1, int k1, const float *x2, int ld2, int k2,
                            const int64_t *idx, int rows) {
    const int K = k1 + k2;
    float *x = malloc(sizeof(float) * (size_t)(rows > 0 ? rows : 1) * (size_t)(K > 0 ? K : 1));
    if (!x) return NULL;
    for (int r = 0; r < rows; r++) {
        const size_t i = idx ? (size_t)idx[r] : (size_t)r;
        for (int k = 0; k < k1; k++) x[(size_t)r * K + k] = x1[i * ld1 + k];
        for (int k = 0; k < k2; k++) x[(size_t)r * K + k1 + k] = x2[i * ld2 + k];
    }
    return x;
}

/* A dense layer on a narrow input: out (rows, width) = b + [x1 | x2] @ W, then ReLU with relu.
 * W is (K, width), or (width, K) (nn.Linear's layout) with w_t; K = k1 + k2 <= 64.
 * Returns 0, or -1 when out of memory (nothing written). */
int reprl_narrow_forward(const float *restrict x1, int ld1, int k1, const float *restrict x2,
                         int ld2, int k2, const float *restrict w, int w_t,
                         const float *restrict b, float *restrict out, int rows, int width,
                         int relu) {
    const int K = k1 + k2;
    float *wt = NULL;
    if (K > 64) return -1;
    if (w_t) { /* (width, K) -> (K, width), so that rows of W are contiguous */
        wt = malloc(sizeof(float) * (size_t)K * (size_t)width + sizeof(float));
        if (!wt) return -1;
        for (int j = 0; j < width; j++)
            for (int k = 0; k < K; k++) wt[(size_t)k * width + j] = w[(size_t)j * K + k];
        w = wt;
    }
    float xi[64];
    const int w32 = width & ~31, w8 = width & ~7;
    for (int i = 0; i < rows; i++) {
        for (int k = 0; k < k1; k++) xi[k] = x1[(size_t)i * ld1 + k];
        for (int k = 0; k < k2; k++) xi[k1 + k] = x2[(size_t)i * ld2 + k];
        float *restrict o = out + (size_t)i * width;
        int j = 0;
        for (; j < w32; j += 32) { /* four vectors in registers across the K products */
            v8f a0 = LOAD(b + j), a1 = LOAD(b + j + 8), a2 = LOAD(b + j + 16),
                a3 = LOAD(b + j + 24);
            for (int k = 0; k < K; k++) {
                const float *wk = w + (size_t)k * width + j;
                const v8f x = splat(xi[k]);
                a0 += x * LOAD(wk);
                a1 += x * LOAD(wk + 8);
                a2 += x * LOAD(wk + 16);
                a3 += x * LOAD(wk + 24);
            }
            if (relu) {
                a0 = relu8(a0);
                a1 = relu8(a1);
                a2 = relu8(a2);
                a3 = relu8(a3);
            }
            STORE(o + j, a0);
            STORE(o + j + 8, a1);
            STORE(o + j + 16, a2);
            STORE(o + j + 24, a3);
        }
        for (; j < w8; j += 8) {
            v8f a = LOAD(b + j);
            for (int k = 0; k < K; k++) a += splat(xi[k]) * LOAD(w + (size_t)k * width + j);
            STORE(o + j, relu ? relu8(a) : a);
        }
        for (; j < width; j++) {
            float a = b[j];
            for (int k = 0; k < K; k++) a += xi[k] * w[(size_t)k * width + j];
            o[j] = relu ? relu1(a) : a;
        }
    }
    free(wt);
    return 0;
}

/* h = ReLU(h + bh) in place on h (rows, width) (bh: the hidden layer's bias, NULL: already
 * added), then a narrow output layer on it: out[i * ldo + m] = b[m] + h[i] . w[m] for
 * m < outs (w: (outs, width), nn.Linear's layout). */
static inline __attribute__((always_inline)) void relu_head_rows(
    float *restrict h, const float *restrict bh, int rows, int width, const float *restrict w,
    const float *restrict b, float *restrict out, int ldo, const int outs) {
    const int w8 = width & ~7;
    for (int i = 0; i < rows; i++) {
        float *restrict hi = h + (size_t)i * width;
        v8f acc[8];
        for (int m = 0; m < outs; m++) acc[m] = splat(0.f);
        int j = 0;
        for (; j < w8; j += 8) {
            const v8f v = relu8(bh ? LOAD(hi + j) + LOAD(bh + j) : LOAD(hi + j));
            STORE(hi + j, v);
            for (int m = 0; m < outs; m++) acc[m] += v * LOAD(w + (size_t)m * width + j);
        }
        float tail[8] = {0};
        for (; j < width; j++) {
            const float v = relu1(bh ? hi[j] + bh[j] : hi[j]);
            hi[j] = v;
            for (int m = 0; m < outs; m++) tail[m] += v * w[(size_t)m * width + j];
        }
        for (int m = 0; m < outs; m++) out[(size_t)i * ldo + m] = b[m] + (hsum8(acc[m]) + tail[m]);
    }
}

/* See relu_head_rows; outs <= 8. */
void reprl_relu_head(float *restrict h, const float *restrict bh, int rows, int width,
                     const float *restrict w, const float *restrict b, float *restrict out,
                     int ldo, int outs) {
    switch (outs) { /* constant counts keep the accumulators in registers */
    case 1: relu_head_rows(h, bh, rows, width, w, b, out, ldo, 1); break;
    case 2: relu_head_rows(h, bh, rows, width, w, b, out, ldo, 2); break;
    case 4: relu_head_rows(h, bh, rows, width, w, b, out, ldo, 4); break;
    default: relu_head_rows(h, bh, rows, width, w, b, out, ldo, outs); break;
    }
}

/* Columns [j, j + 8 V) of head_backward_cols. */
static inline __attribute__((always_inline)) void head_backward_block(
    const float *restrict g, int ldg, const float *restrict w, const float *restrict h,
    const int64_t *restrict idx, float *restrict gh, int rows, int width, float *restrict dw,
    float *restrict db_h, int j, const int V, const int outs) {
    v8f wm[2][8], dwm[2][8], db[2];
    for (int v = 0; v < V; v++) {
        db[v] = splat(0.f);
        for (int m = 0; m < outs; m++) {
            wm[v][m] = LOAD(w + (size_t)m * width + j + 8 * v);
            dwm[v][m] = splat(0.f);
        }
    }
    for (int r = 0; r < rows; r++) {
        const size_t i = idx ? (size_t)idx[r] : (size_t)r;
        for (int v = 0; v < V; v++) {
            const v8f hv = LOAD(h + i * width + j + 8 * v);
            v8f p = splat(0.f);
            for (int m = 0; m < outs; m++) {
                const v8f gm = splat(g[(size_t)r * ldg + m]);
                p += gm * wm[v][m];
                dwm[v][m] += gm * hv;
            }
            const v8f out = mask8(p, hv);
            STORE(gh + (size_t)r * width + j + 8 * v, out);
            db[v] += out;
        }
    }
    for (int v = 0; v < V; v++) {
        if (dw)
            for (int m = 0; m < outs; m++) STORE(dw + (size_t)m * width + j + 8 * v, dwm[v][m]);
        if (db_h) STORE(db_h + j + 8 * v, db[v]);
    }
}

/* The backward of a narrow output layer y = h @ w^T + b (w: (outs, width)) and of the ReLU
 * that made h, from g = dL/dy (rows, outs; row stride ldg). h's row r is h[idx[r]] when idx is
 * given. Writes gh (rows, width) = dL/d(pre-ReLU) = (g[r] @ w) where h > 0, and when not NULL:
 * dw (outs, width) = g^T h, db_h (width) = the column sums of gh (the hidden layer's bias
 * gradient), db_out (outs) = the column sums of g. Column blocks of 16 (whole cache lines)
 * outside, rows inside: the sums stay in registers. */
static inline __attribute__((always_inline)) void head_backward_cols(
    const float *restrict g, int ldg, const float *restrict w, const float *restrict h,
    const int64_t *restrict idx, float *restrict gh, int rows, int width, float *restrict dw,
    float *restrict db_h, const int outs) {
    const int w16 = width & ~15, w8 = width & ~7;
    int j = 0;
    for (; j < w16; j += 16)
        head_backward_block(g, ldg, w, h, idx, gh, rows, width, dw, db_h, j, 2, outs);
    for (; j < w8; j += 8)
        head_backward_block(g, ldg, w, h, idx, gh, rows, width, dw, db_h, j, 1, outs);
    for (; j < width; j++) {
        float dws[8] = {0}, db = 0.f;
        for (int r = 0; r < rows; r++) {
            const size_t i = idx ? (size_t)idx[r] : (size_t)r;
            const float hv = h[i * width + j];
            float p = 0.f;
            for (int m = 0; m < outs; m++) {
                const float gm = g[(size_t)r * ldg + m];
                p += gm * w[(size_t)m * width + j];
                dws[m] += gm * hv;
            }
            const float v = mask1(p, hv);
            gh[(size_t)r * width + j] = v;
            db += v;
        }
        if (dw)
            for (int m = 0; m < outs; m++) dw[(size_t)m * width + j] = dws[m];
        if (db_h) db_h[j] = db;
    }
}

/* See head_backward_cols; outs <= 8. */
void reprl_head_backward(const float *restrict g, int ldg, int outs, const float *restrict w,
                         const float *restrict h, const int64_t *restrict idx,
                         float *restrict gh, int rows, int width, float *restrict dw,
                         float *restrict db_h, float *restrict db_out) {
    switch (outs) {
    case 1: head_backward_cols(g, ldg, w, h, idx, gh, rows, width, dw, db_h, 1); break;
    case 2: head_backward_cols(g, ldg, w, h, idx, gh, rows, width, dw, db_h, 2); break;
    case 4: head_backward_cols(g, ldg, w, h, idx, gh, rows, width, dw, db_h, 4); break;
    default: head_backward_cols(g, ldg, w, h, idx, gh, rows, width, dw, db_h, outs); break;
    }
    if (db_out)
        for (int m = 0; m < outs; m++) {
            float s = 0.f;
            for (int r = 0; r < rows; r++) s += g[(size_t)r * ldg + m];
            db_out[m] = s;
        }
}

/* Columns [j, j + 8 V) of relu_wgrad_cols: (K + 1) V sums in registers over the rows. */
static inline __attribute__((always_inline)) void relu_wgrad_block(
    const float *restrict g, int ldg, const float *restrict h, const int64_t *restrict idx,
    const float *restrict x, int rows, int width, float *restrict dw, float *restrict db,
    int j, const int V, const int K) {
    v8f acc[2][16], dbv[2];
    for (int v = 0; v < V; v++) {
        dbv[v] = splat(0.f);
        for (int k = 0; k < K; k++) acc[v][k] = splat(0.f);
    }
    for (int r = 0; r < rows; r++) {
        const size_t i = idx ? (size_t)idx[r] : (size_t)r;
        for (int v = 0; v < V; v++) {
            const v8f gm =
                mask8(LOAD(g + (size_t)r * ldg + j + 8 * v), LOAD(h + i * width + j + 8 * v));
            dbv[v] += gm;
            for (int k = 0; k < K; k++) acc[v][k] += splat(x[(size_t)r * K + k]) * gm;
        }
    }
    for (int v = 0; v < V; v++) {
        if (dw)
            for (int k = 0; k < K; k++) STORE(dw + (size_t)k * width + j + 8 * v, acc[v][k]);
        if (db) STORE(db + j + 8 * v, dbv[v]);
    }
}

/* dw (K, width) = x^T gm and db = the column sums of gm, gm = g where h > 0: column blocks
 * of 16 (whole cache lines) outside, rows inside, the sums in registers. x: (rows, K). */
static inline __attribute__((always_inline)) void relu_wgrad_cols(
    const float *restrict g, int ldg, const float *restrict h, const int64_t *restrict idx,
    const float *restrict x, int rows, int width, float *restrict dw, float *restrict db,
    const int K) {
    const int w16 = width & ~15, w8 = width & ~7;
    int j = 0;
    for (; j < w16; j += 16) relu_wgrad_block(g, ldg, h, idx, x, rows, width, dw, db, j, 2, K);
    for (; j < w8; j += 8) relu_wgrad_block(g, ldg, h, idx, x, rows, width, dw, db, j, 1, K);
    for (; j < width; j++) {
        float acc[16] = {0}, dbs = 0.f;
        for (int r = 0; r < rows; r++) {
            const size_t i = idx ? (size_t)idx[r] : (size_t)r;
            const float v = mask1(g[(size_t)r * ldg + j], h[i * width + j]);
            dbs += v;
            for (int k = 0; k < K; k++) acc[k] += x[(size_t)r * K + k] * v;
        }
        if (dw)
            for (int k = 0; k < K; k++) dw[(size_t)k * width + j] = acc[k];
        if (db) db[j] = dbs;
    }
}

/* dx[row(r), c] += gm[r] . w[kfrom + c] for c < count, gm = g where h > 0 (row(r) = idx[r]
 * when idx is given, else r; w: (K, width)). */
static inline __attribute__((always_inline)) void relu_dx_rows(
    const float *restrict g, int ldg, const float *restrict h, const int64_t *restrict idx,
    int rows, int width, const float *restrict w, float *restrict dx, int lddx,
    const int count) {
    const int w8 = width & ~7;
    for (int r = 0; r < rows; r++) {
        const size_t i = idx ? (size_t)idx[r] : (size_t)r;
        const float *gr = g + (size_t)r * ldg, *hi = h + i * width;
        v8f acc[16];
        for (int c = 0; c < count; c++) acc[c] = splat(0.f);
        int j = 0;
        for (; j < w8; j += 8) {
            const v8f v = mask8(LOAD(gr + j), LOAD(hi + j));
            for (int c = 0; c < count; c++) acc[c] += v * LOAD(w + (size_t)c * width + j);
        }
        float tail[16] = {0};
        for (; j < width; j++) {
            const float v = mask1(gr[j], hi[j]);
            for (int c = 0; c < count; c++) tail[c] += v * w[(size_t)c * width + j];
        }
        for (int c = 0; c < count; c++) dx[i * lddx + c] += hsum8(acc[c]) + tail[c];
    }
}

/* The backward of a narrow first layer y = [x1 | x2] @ W + b (K = k1 + k2 <= 16 inputs) and of
 * the ReLU after it (h = relu(y)), from g = dL/dh (rows, width; row stride ldg). Row r of h
 * and of the inputs is row idx[r] when idx is given. Each output is optional (NULL: skipped):
 * dw = dL/dW, (K, width), or (width, K) with dw_t; db = dL/db (width);
 * dx[row(r), c] += dL/d[x1 | x2][r, kfrom + c] for c < count <= 16, from W (K, width) in w.
 * Returns 0, or -1 when out of memory (nothing written). */
int reprl_relu_narrow_backward(const float *restrict g, int ldg, const float *restrict h,
                               const int64_t *restrict idx, int rows, int width,
                               const float *restrict x1, int ld1, int k1,
                               const float *restrict x2, int ld2, int k2, float *restrict dw,
                               int dw_t, float *restrict db, const float *restrict w,
                               int kfrom, int count, float *restrict dx, int lddx) {
    const int K = k1 + k2;
    if (K > 16 || count > 16) return -1;
    if (dw || db) {
        float *x = gather_inputs(x1, ld1, k1, x2, ld2, k2, idx, rows);
        float *tmp = dw && dw_t ? malloc(sizeof(float) * (size_t)K * (size_t)width + 4) : NULL;
        if (!x || (dw && dw_t && !tmp)) {
            free(x);
            free(tmp);
            return -1;
        }
        float *dwk = tmp ? tmp : dw;
        switch (K) {
        case 3: relu_wgrad_cols(g, ldg, h, idx, x, rows, width, dwk, db, 3); break;
        case 4: relu_wgrad_cols(g, ldg, h, idx, x, rows, width, dwk, db, 4); break;
        default: relu_wgrad_cols(g, ldg, h, idx, x, rows, width, dwk, db, K); break;
        }
        if (tmp) {
            for (int k = 0; k < K; k++)
                for (int j = 0; j < width; j++) dw[(size_t)j * K + k] = tmp[(size_t)k * width + j];
        }
        free(tmp);
        free(x);
    }
    if (dx) {
        const float *wk = w + (size_t)kfrom * width;
        switch (count) {
        case 1: relu_dx_rows(g, ldg, h, idx, rows, width, wk, dx, lddx, 1); break;
        case 3: relu_dx_rows(g, ldg, h, idx, rows, width, wk, dx, lddx, 3); break;
        default: relu_dx_rows(g, ldg, h, idx, rows, width, wk, dx, lddx, count); break;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------
 * Whole ReLU MLPs, forward and backward, in one call each: the kernels above for the narrow
 * first layer and the head, the products between by the BLAS sgemm that PyTorch itself
 * calls (reprl_set_sgemm hands over its address: the same products, bit for bit), so that
 * a pass costs one call instead of a handful of PyTorch ops and their Python.
 * ------------------------------------------------------------------------------------- */

typedef void (*sgemm_fn)(const char *, const char *, const int *, const int *, const int *,
                         const float *, const float *, const int *, const float *, const int *,
                         const float *, float *, const int *);
static sgemm_fn sgemm_ptr = NULL;

/* The Fortran BLAS sgemm_ to use (NULL: none; the MLP calls then fail with -2). */
void reprl_set_sgemm(void *fn) { sgemm_ptr = (sgemm_fn)fn; }

/* Row-major C (m, n) = op(A) op(B) [+ C with accumulate]: A stored (m, k), or (k, m) with
 * at; B stored (k, n), or (n, k) with bt; row strides lda, ldb, ldc. Column-major BLAS
 * computes C^T = op(B)^T op(A)^T with the operands swapped. */
static void gemm_rm(int at, int bt, int m, int n, int k, const float *A, int lda, const float *B,
                    int ldb, float *C, int ldc) {
    const float one = 1.f, zero = 0.f;
    sgemm_ptr(bt ? "T" : "N", at ? "T" : "N", &n, &m, &k, &one, B, &ldb, A, &lda, &zero, C,
              &ldc);
}

#define REPRL_MAX_LAYERS 8

/* A ReLU MLP's parameters: layers >= 2 linear layers, a ReLU after each but the last;
 * width[0] inputs (<= 16: the first layer is narrow), width[layers] outputs (<= 8). Layer i's
 * weight w[i] is (width[i], width[i + 1]) row-major, or (width[i + 1], width[i]) (nn.Linear's
 * layout) with w_t[i]; the last one must be in nn.Linear's layout when it has 2+ outputs. */
typedef struct {
    int layers;
    int width[REPRL_MAX_LAYERS + 1];
    const float *w[REPRL_MAX_LAYERS];
    int w_t[REPRL_MAX_LAYERS];
    const float *b[REPRL_MAX_LAYERS];
} reprl_mlp;

/* Offset of hidden layer l's output (l = 1 .. layers - 1) in the workspace (rows each). */
static size_t ws_offset(const reprl_mlp *net, int l, int rows) {
    size_t off = 0;
    for (int i = 1; i < l; i++) off += (size_t)rows * net->width[i];
    return off;
}

/* h = relu(h + b) in place on rows x width. */
static void bias_relu(float *restrict h, const float *restrict b, int rows, int width) {
    const int w8 = width & ~7;
    for (int i = 0; i < rows; i++) {
        float *restrict hi = h + (size_t)i * width;
        int j = 0;
        for (; j < w8; j += 8) STORE(hi + j, relu8(LOAD(hi + j) + LOAD(b + j)));
        for (; j < width; j++) hi[j] = relu1(hi[j] + b[j]);
    }
}

/* The MLP on rows of [x1 | x2] (row strides ld1, ld2; k1 + k2 = width[0]): the hidden layers'
 * outputs into the workspace ws (rows x the hidden widths' sum, kept for the backward) and
 * the outputs into out (row stride ldo). Returns 0, -1 without memory, -2 without sgemm. */
int reprl_mlp_forward(const reprl_mlp *net, const float *x1, int ld1, int k1, const float *x2,
                      int ld2, int k2, int rows, float *ws, float *out, int ldo) {
    const int n = net->layers;
    if (n > 2 && !sgemm_ptr) return -2;
    float *h = ws;
    int status = reprl_narrow_forward(x1, ld1, k1, x2, ld2, k2, net->w[0], net->w_t[0], net->b[0],
                                      h, rows, net->width[1], 1);
    if (status) return status;
    for (int i = 1; i < n - 1; i++) {
        float *next = ws + ws_offset(net, i + 1, rows);
        const int din = net->width[i], dout = net->width[i + 1];
        gemm_rm(0, net->w_t[i], rows, dout, din, h, din, net->w[i], net->w_t[i] ? din : dout,
                next, dout);
        if (i < n - 2) bias_relu(next, net->b[i], rows, dout);
        h = next;
    }
    /* the last hidden layer's bias and ReLU (already applied for one hidden layer) and the head */
    reprl_relu_head(h, n > 2 ? net->b[n - 2] : NULL, rows, net->width[n - 1], net->w[n - 1],
                    net->b[n - 1], out, ldo, net->width[n]);
    return 0;
}

/* g where h[row] > 0 (row = idx[r] or r), in place on g (rows x width); db += nothing but
 * the column sums of the result are written to db when given. */
static void relu_mask_rows(float *restrict g, const float *restrict h,
                           const int64_t *restrict idx, int rows, int width,
                           float *restrict db) {
    const int w8 = width & ~7;
    if (db)
        for (int j = 0; j < width; j++) db[j] = 0.f;
    for (int r = 0; r < rows; r++) {
        const size_t i = idx ? (size_t)idx[r] : (size_t)r;
        float *restrict gr = g + (size_t)r * width;
        const float *restrict hi = h + i * width;
        int j = 0;
        for (; j < w8; j += 8) {
            const v8f v = mask8(LOAD(gr + j), LOAD(hi + j));
            STORE(gr + j, v);
            if (db) STORE(db + j, LOAD(db + j) + v);
        }
        for (; j < width; j++) {
            const float v = mask1(gr[j], hi[j]);
            gr[j] = v;
            if (db) db[j] += v;
        }
    }
}

/* The MLP's backward from g = dL/dout (rows x outputs, row stride ldg), with the workspace
 * of its forward on ws_rows rows; row r of the backward is forward row idx[r] when idx is
 * given (the inputs x1, x2 as in the forward). Writes, where the arrays are given (entries
 * may be NULL): dw[i] = dL/dw[i] in w[i]'s layout, db[i] = dL/db[i]; adds to
 * dx[row, c] (row = idx[r] or r, row stride lddx) the gradient of input column kfrom + c for
 * c < count. Weight gradients with idx are not supported (-3). Returns 0, -1 without memory,
 * -2 without sgemm. */
int reprl_mlp_backward(const reprl_mlp *net, const float *g, int ldg, const int64_t *idx,
                       int rows, const float *ws, int ws_rows, const float *x1, int ld1, int k1,
                       const float *x2, int ld2, int k2, float *const *dw, float *const *db,
                       float *dx, int lddx, int kfrom, int count) {
    const int n = net->layers;
    if (n > 2 && !sgemm_ptr) return -2;
    if (idx && dw) return -3;
    int widest = 1;
    for (int i = 1; i < n; i++) widest = net->width[i] > widest ? net->width[i] : widest;
    float *buf = malloc(sizeof(float) * 2 * (size_t)(rows > 0 ? rows : 1) * (size_t)widest);
    float *wt0 = NULL;
    if (!buf) return -1;
    float *ga = buf, *gb = buf + (size_t)(rows > 0 ? rows : 1) * widest;
    /* the head and the ReLU below it */
    const float *h = ws + ws_offset(net, n - 1, ws_rows);
    reprl_head_backward(g, ldg, net->width[n], net->w[n - 1], h, idx, ga, rows,
                        net->width[n - 1], dw ? dw[n - 1] : NULL,
                        db ? db[n - 2] : NULL, db ? db[n - 1] : NULL);
    /* the products between, each followed by the ReLU below it */
    for (int i = n - 2; i >= 1; i--) {
        const int din = net->width[i], dout = net->width[i + 1];
        h = ws + ws_offset(net, i, ws_rows);
        if (dw && dw[i]) {
            if (net->w_t[i]) /* (dout, din) = g^T h */
                gemm_rm(1, 0, dout, din, rows, ga, dout, h, din, dw[i], din);
            else /* (din, dout) = h^T g */
                gemm_rm(1, 0, din, dout, rows, h, din, ga, dout, dw[i], dout);
        }
        /* g @ W^T: W^T is stored (dout, din) with w_t, else the transposed (din, dout) */
        gemm_rm(0, !net->w_t[i], rows, din, dout, ga, dout, net->w[i], net->w_t[i] ? din : dout,
                gb, din);
        float *t = ga;
        ga = gb;
        gb = t;
        if (i > 1) relu_mask_rows(ga, h, idx, rows, din, db ? db[i - 1] : NULL);
    }
    /* the first layer and the ReLU after it */
    const float *w0 = net->w[0];
    const int K = net->width[0], H = net->width[1];
    if (dx && net->w_t[0]) { /* dx needs W0 as (K, H) */
        wt0 = malloc(sizeof(float) * (size_t)K * H + 4);
        if (!wt0) {
            free(buf);
            return -1;
        }
        for (int j = 0; j < H; j++)
            for (int k = 0; k < K; k++) wt0[(size_t)k * H + j] = w0[(size_t)j * K + k];
        w0 = wt0;
    }
    h = ws; /* the first hidden layer */
    int status = reprl_relu_narrow_backward(
        ga, H, h, idx, rows, H, x1, ld1, k1, x2, ld2, k2, dw ? dw[0] : NULL, net->w_t[0],
        db ? db[0] : NULL, w0, kfrom, dx ? count : 0, dx, lddx);
    free(wt0);
    free(buf);
    return status;
}

/* SAC's critic target: y[i] = returns[i] + discount[i] (min_j q_j[i] - alpha log_prob[i]) for
 * the target critics' outputs q_j (count of them; element i at q[j][i * ld]). */
void reprl_sac_target(const float *const *q, int count, int ld, const float *restrict log_prob,
                      const float *restrict returns, const float *restrict discount,
                      float alpha, float *restrict y, int rows) {
    for (int i = 0; i < rows; i++) {
        float m = q[0][(size_t)i * ld];
        for (int j = 1; j < count; j++) {
            const float v = q[j][(size_t)i * ld];
            m = v < m ? v : m;
        }
        y[i] = returns[i] + discount[i] * (m - alpha * log_prob[i]);
    }
}

/* One critic's part of SAC's critic loss: g[i] = (q[i * ld] - y[i]) / rows, the gradient of
 * 0.5 mean_i (q_i - y_i)^2; returns mean_i (q_i - y_i)^2 and writes mean_i q_i to q_mean
 * (sums in double). */
float reprl_sac_critic_grad(const float *restrict q, int ld, const float *restrict y,
                            float *restrict g, float *restrict q_mean, int rows) {
    const float scale = 1.f / (float)rows;
    double sq = 0.0, sum = 0.0;
    for (int i = 0; i < rows; i++) {
        const float qi = q[(size_t)i * ld], d = qi - y[i];
        g[i] = d * scale;
        sq += (double)d * d;
        sum += qi;
    }
    *q_mean = (float)(sum / rows);
    return (float)(sq / rows);
}

/* SAC's actor loss mean_i (alpha log_prob_i - min_j q_j[i]) over the critics' outputs q_j
 * (count_q <= 64 of them) on the actor's actions: the rows where critic j is the minimum (the
 * first one on ties, as torch.min) listed in rows_of (count[0] rows for critic 0, then
 * critic 1's ...), count[j] written; mean_log_prob[0] = mean_i log_prob_i (sums in double).
 * Returns the loss. */
float reprl_sac_actor_loss(const float *const *q, int count_q, int ld,
                           const float *restrict log_prob, float alpha,
                           int64_t *restrict rows_of, int64_t *restrict count,
                           float *restrict mean_log_prob, int rows) {
    double loss = 0.0, lp = 0.0;
    for (int j = 0; j < count_q; j++) count[j] = 0;
    for (int i = 0; i < rows; i++) {
        int which = 0;
        float m = q[0][(size_t)i * ld];
        for (int j = 1; j < count_q; j++) {
            const float v = q[j][(size_t)i * ld];
            if (v < m) {
                m = v;
                which = j;
            }
        }
        count[which]++;
        loss += (double)(alpha * log_prob[i] - m);
        lp += log_prob[i];
    }
    int64_t start[64];
    int64_t at = 0;
    for (int j = 0; j < count_q; j++) {
        start[j] = at;
        at += count[j];
    }
    for (int i = 0; i < rows; i++) { /* the same argmin again, to place row i */
        int which = 0;
        float m = q[0][(size_t)i * ld];
        for (int j = 1; j < count_q; j++) {
            const float v = q[j][(size_t)i * ld];
            if (v < m) {
                m = v;
                which = j;
            }
        }
        rows_of[start[which]++] = i;
    }
    *mean_log_prob = (float)(lp / rows);
    return (float)(loss / rows);
}

/* SAC's tanh-Gaussian sample and its log-probability, for rows of the actor's output
 * out (B, 2A) (row stride ld: the means in columns [0, A), the raw log-stds in [A, 2A))
 * and noise eps (B, A): log_std = clamp(raw, lo, hi), std = exp(log_std),
 * u = mean + std eps, action = tanh(u) and
 * log_prob = sum_a (-eps^2 / 2 - log_std - log(2 pi) / 2 - 2 (log 2 - u - softplus(-2 u))),
 * softplus as PyTorch's (linear above 20). Writes action and std (B, A), log_prob (B). */
void reprl_squashed_gaussian(const float *restrict out, int ld, const float *restrict eps,
                             float lo, float hi, float *restrict action,
                             float *restrict std, float *restrict log_prob, int rows,
                             int dim) {
    const float half_log_2pi = 0.918938533204672742f;
    const float log_2 = 0.693147180559945309f;
    for (int i = 0; i < rows; i++) {
        const float *o = out + (size_t)i * ld;
        float lp = 0.f;
        for (int a = 0; a < dim; a++) {
            const size_t k = (size_t)i * dim + a;
            const float raw = o[dim + a];
            const float ls = raw < lo ? lo : (raw > hi ? hi : raw);
            const float s = expf(ls);
            const float e = eps[k];
            const float u = o[a] + s * e;
            const float x = -2.f * u;
            const float softplus = x > 20.f ? x : log1pf(expf(x));
            action[k] = tanhf(u);
            std[k] = s;
            lp += -0.5f * e * e - ls - half_log_2pi - 2.f * (log_2 - u - softplus);
        }
        log_prob[i] = lp;
    }
}

/* The backward of the tanh-Gaussian sample into the actor's output, for the actor loss
 * mean_i (alpha log pi_i - Q_i): from grad_a = dL/da~ (B, A), the sample (action = tanh(u),
 * std, eps) and the raw log-stds (column A + a of out, row stride ld), with c = alpha / B:
 * du = grad_a (1 - a~^2) + 2 c a~; writes g (B, 2A) = [du, (du std eps - c) where lo <= raw <= hi
 * (else 0)]. */
void reprl_squashed_gaussian_backward(const float *restrict grad_a, const float *restrict action,
                                      const float *restrict std, const float *restrict eps,
                                      const float *restrict out, int ld, float lo, float hi,
                                      float c, float *restrict g, int rows, int dim) {
    for (int i = 0; i < rows; i++) {
        for (int a = 0; a < dim; a++) {
            const size_t k = (size_t)i * dim + a;
            const float act = action[k];
            const float du = grad_a[k] * (1.f - act * act) + (2.f * c) * act;
            const float raw = out[(size_t)i * ld + dim + a];
            const float in_clamp = (raw >= lo) & (raw <= hi) ? 1.f : 0.f;
            g[(size_t)i * 2 * dim + a] = du;
            g[(size_t)i * 2 * dim + dim + a] = (du * std[k] * eps[k] - c) * in_clamp;
        }
    }
}
