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

