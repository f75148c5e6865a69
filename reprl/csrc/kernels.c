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

/* The backward of a narrow output layer y = h @ w^T + b (w: (outs, width)) and of the ReLU
 * that made h, from g = dL/dy (rows, outs; row stride ldg). h's row r is h[idx[r]] when idx is
 * given. Writes gh (rows, width) = dL/d(pre-ReLU) = (g[r] @ w) where h > 0, and when not NULL:
 * dw (outs, width) = g^T h, db_h (width) = the column sums of gh (the hidden layer's bias
 * gradient), db_out (outs) = the column sums of g. Column blocks outside, rows inside: the
 * sums stay in registers. */
static inline __attribute__((always_inline)) void head_backward_cols(
    const float *restrict g, int ldg, const float *restrict w, const float *restrict h,
    const int64_t *restrict idx, float *restrict gh, int rows, int width, float *restrict dw,
    float *restrict db_h, const int outs) {
    const int w8 = width & ~7;
    int j = 0;
    for (; j < w8; j += 8) {
        v8f wm[8], dwm[8];
        for (int m = 0; m < outs; m++) {
            wm[m] = LOAD(w + (size_t)m * width + j);
            dwm[m] = splat(0.f);
        }
        v8f db = splat(0.f);
        for (int r = 0; r < rows; r++) {
            const size_t i = idx ? (size_t)idx[r] : (size_t)r;
            const v8f hv = LOAD(h + i * width + j);
            v8f p = splat(0.f);
            for (int m = 0; m < outs; m++) {
                const v8f gm = splat(g[(size_t)r * ldg + m]);
                p += gm * wm[m];
                dwm[m] += gm * hv;
            }
            const v8f v = mask8(p, hv);
            STORE(gh + (size_t)r * width + j, v);
            db += v;
        }
        if (dw)
            for (int m = 0; m < outs; m++) STORE(dw + (size_t)m * width + j, dwm[m]);
        if (db_h) STORE(db_h + j, db);
    }
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

/* dw (K, width) = x^T gm and db = the column sums of gm, gm = g where h > 0: column blocks
 * outside, rows inside (K + 1 sums in registers). x: (rows, K) contiguous. */
static inline __attribute__((always_inline)) void relu_wgrad_cols(
    const float *restrict g, int ldg, const float *restrict h, const int64_t *restrict idx,
    const float *restrict x, int rows, int width, float *restrict dw, float *restrict db,
    const int K) {
    const int w8 = width & ~7;
    int j = 0;
    for (; j < w8; j += 8) {
        v8f acc[16];
        for (int k = 0; k < K; k++) acc[k] = splat(0.f);
        v8f dbv = splat(0.f);
        for (int r = 0; r < rows; r++) {
            const size_t i = idx ? (size_t)idx[r] : (size_t)r;
            const v8f v = mask8(LOAD(g + (size_t)r * ldg + j), LOAD(h + i * width + j));
            dbv += v;
            for (int k = 0; k < K; k++) acc[k] += splat(x[(size_t)r * K + k]) * v;
        }
        if (dw)
            for (int k = 0; k < K; k++) STORE(dw + (size_t)k * width + j, acc[k]);
        if (db) STORE(db + j, dbv);
    }
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
