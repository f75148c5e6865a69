/* reprl's C kernels for CPU hot paths: plain loops that the compiler vectorizes
 * (compiled at first use by reprl/models/native.py with -O3 -march=native
 * -fno-trapping-math; -fno-trapping-math lets it turn the ReLU's select into
 * vector blends). Row-major float32 arrays, no aliasing between arguments. */
#include <stddef.h>

/* The backward of one critic's output layer (H -> 1) and of the ReLU before it.
 * g (B): dL/dq; w (H): the output weights; h (B, H): the ReLU's output.
 * Writes gh (B, H) = g[i] w[j] where h > 0 (else 0), dw (H) = h^T g and
 * db (H) = the column sums of gh; returns sum(g), the output bias' gradient. */
float reprl_q_head_backward(const float *restrict g, const float *restrict w,
                            const float *restrict h, float *restrict gh,
                            float *restrict dw, float *restrict db, int rows, int width) {
    for (int j = 0; j < width; j++) {
        dw[j] = 0.f;
        db[j] = 0.f;
    }
    float db_out = 0.f;
    for (int i = 0; i < rows; i++) {
        const float gi = g[i];
        const float *restrict hi = h + (size_t)i * width;
        float *restrict ghi = gh + (size_t)i * width;
        for (int j = 0; j < width; j++) {
            const float hv = hi[j];
            const float p = gi * w[j];
            const float v = hv > 0.f ? p : 0.f;
            ghi[j] = v;
            dw[j] += hv * gi;
            db[j] += v;
        }
        db_out += gi;
    }
    return db_out;
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
