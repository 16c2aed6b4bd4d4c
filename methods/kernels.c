/* proxbench: one-pass CPU loops for the quantizers of the W1A1 methods (methods/kernels.py).
 *
 * Every array is float32 and contiguous; n counts elements. Loops over elements are split across
 * `threads` OpenMP threads (the process's libgomp, the pool torch itself uses), and run on one thread
 * below PARALLEL_MIN elements. Built with -ffp-contract=off: no fused multiply-add unless written (FDA's
 * series), so the other elementwise results are bit for bit those of the eager PyTorch forms in
 * methods/activations.py (for finite gradients: where B' = 0 an infinite gradient gives 0 here, NaN there
 * for DoReFa); the sums (ReCU's statistics, RSign's per-channel gradient) are taken in a fixed order per
 * sample or channel, whatever the thread count: in double over an activation, in float over a weight
 * channel's few hundred elements.
 *
 * sign(x) = +1 for x >= 0 (so sign(+0) = sign(-0) = +1), -1 otherwise (NaN included).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define PARALLEL_MIN 32768

/* glibc's vector math library (libmvec, glibc >= 2.22 on x86-64, linked through libm) has SIMD forms of
 * sinf and cosf: declared so, the loops below that call them vectorise (FDA's noise term). Elsewhere (an
 * older glibc's headers, as a conda sysroot's, other systems) they stay scalar calls. */
#if defined(__GLIBC__) && defined(__x86_64__) && defined(__GLIBC_PREREQ)
#if __GLIBC_PREREQ(2, 22)
__attribute__((__simd__("notinbranch"))) float sinf(float);
__attribute__((__simd__("notinbranch"))) float cosf(float);
#endif
#endif

static inline float sign1(float x) { return x >= 0.0f ? 1.0f : -1.0f; }

/* [lo, hi): the calling thread's share of count items in an OpenMP team (all of them outside one) */
static inline void thread_block(int64_t count, int64_t *lo, int64_t *hi) {
    int t = 0, team = 1;
#ifdef _OPENMP
    t = omp_get_thread_num();
    team = omp_get_num_threads();
#endif
    *lo = count * t / team;
    *hi = count * (t + 1) / team;
}

/* max(0, 2 - 2|d|): Bi-Real's ApproxSign'; the order of the eager form |d|*(-2) + 2, then the clamp (NaN kept) */
static inline float approx_sign_grad(float d) {
    float t = fabsf(d) * -2.0f + 2.0f;
    return t < 0.0f ? 0.0f : t;
}

/* out = sign(x) */
void pb_sign(const float *x, float *out, int64_t n, int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = sign1(x[i]);
}

/* out = grad * max(0, 2 - 2|x|) */
void pb_approx_sign_backward(const float *grad, const float *x, float *out, int64_t n, int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = approx_sign_grad(x[i]) * grad[i];
}

/* DoReFa's 1-bit activation backward: out = grad where 0 <= x <= 1 (-0 included), else 0 */
void pb_unit_interval_backward(const float *grad, const float *x, float *out, int64_t n, int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = (x[i] >= 0.0f && x[i] <= 1.0f) ? grad[i] : 0.0f;
}

/* FDA's backward: out = grad * sum_k c[k] x^(2k) where |x| <= 1, else 0 (Horner's rule in u = x^2, each
 * step one fused multiply-add: the series is float32-rounded anyway, and a chain of 16 separate multiplies
 * and adds would take twice as long). The caller pads c with zeros to FOURIER_TERMS: a fixed trip count lets
 * the compiler unroll the terms and vectorise across elements (leading zero terms leave p = 0) */
#define FOURIER_TERMS 16
void pb_fourier_backward(const float *grad, const float *x, const float *c, float *out, int64_t n, int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        float u = x[i] * x[i], p = 0.0f;
        for (int k = FOURIER_TERMS - 1; k >= 0; k--) p = fmaf(p, u, c[k]);
        out[i] = fabsf(x[i]) <= 1.0f ? grad[i] * p : 0.0f;
    }
}

/* FDA's activation with the noise term of a layer without hidden noise layers (fewer than 64 inputs):
 * out = sign(x) + sin(x) * c, c = 0.1 * lambda(t) */
void pb_fda_forward(const float *x, float *out, float c, int64_t n, int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = sign1(x[i]) + sinf(x[i]) * c;
}

/* ... and its backward: out = grad * sum_k c[k] x^(2k) where |x| <= 1 (else 0), plus (grad * c) * cos(x),
 * the two terms as pb_fourier_backward and autograd's sin/mul backward compute them */
void pb_fda_backward(const float *grad, const float *x, const float *coef, float c, float *out, int64_t n,
                     int threads) {
#pragma omp parallel for simd num_threads(threads) schedule(static) if (n >= PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        float u = x[i] * x[i], p = 0.0f;
        for (int k = FOURIER_TERMS - 1; k >= 0; k--) p = fmaf(p, u, coef[k]);
        const float series = fabsf(x[i]) <= 1.0f ? grad[i] * p : 0.0f;
        out[i] = series + (grad[i] * c) * cosf(x[i]);
    }
}

/* x seen as [outer, channels, inner], beta one value per channel: out = sign(x - beta) */
void pb_rsign_forward(const float *x, const float *beta, float *out, int64_t outer, int64_t channels,
                      int64_t inner, int threads) {
    int64_t rows = outer * channels;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * inner >= PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        const float b = beta[r % channels];
        const float *xr = x + r * inner;
        float *o = out + r * inner;
#pragma omp simd
        for (int64_t i = 0; i < inner; i++) o[i] = sign1(xr[i] - b);
    }
}

/* h = grad * ApproxSign'(x - beta) into out, and grad_beta[c] = -sum of h over channel c */
void pb_rsign_backward(const float *grad, const float *x, const float *beta, float *out, float *grad_beta,
                       int64_t outer, int64_t channels, int64_t inner, int threads) {
#pragma omp parallel num_threads(threads) if (outer * channels * inner >= PARALLEL_MIN)
    {
        int64_t c0, c1; /* each thread owns a block of channels and walks every row of its block in memory order */
        thread_block(channels, &c0, &c1);
        double *acc = calloc((size_t)(c1 - c0) + 1, sizeof(double));
        for (int64_t o = 0; o < outer; o++) {
            for (int64_t c = c0; c < c1; c++) {
                const int64_t base = (o * channels + c) * inner;
                const float b = beta[c];
                double s = 0.0;
#pragma omp simd reduction(+ : s)
                for (int64_t i = 0; i < inner; i++) {
                    float h = approx_sign_grad(x[base + i] - b) * grad[base + i];
                    out[base + i] = h;
                    s += h;
                }
                acc[c - c0] += s;
            }
        }
        for (int64_t c = c0; c < c1; c++) grad_beta[c] = (float)-acc[c - c0];
        free(acc);
    }
}

/* ReCU's activation forward, x seen as [samples, m]: out = sign(x); per sample the mean and
 * s = sqrt(unbiased variance + 1e-5), the variance from the centred values (two passes over a sample) */
void pb_recu_forward(const float *x, float *out, float *mean, float *s, int64_t samples, int64_t m, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (samples * m >= PARALLEL_MIN)
    for (int64_t r = 0; r < samples; r++) {
        const float *xr = x + r * m;
        float *o = out + r * m;
        double sum = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < m; i++) {
            sum += xr[i];
            o[i] = sign1(xr[i]);
        }
        const double mu = sum / (double)m;
        double sq = 0.0;
#pragma omp simd reduction(+ : sq)
        for (int64_t i = 0; i < m; i++) {
            double d = (double)xr[i] - mu;
            sq += d * d;
        }
        mean[r] = (float)mu;
        s[r] = (float)sqrt(sq / (double)(m - 1) + 1e-5);
    }
}

/* ReCU's activation backward per sample (inv = 1/s): h = grad * max(0, 2 inv - 2|x| inv^2),
 * out = h - (sum h x) inv^2 / (m - 1) * (x - mean) */
void pb_recu_backward(const float *grad, const float *x, const float *mean, const float *s, float *out,
                      int64_t samples, int64_t m, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (samples * m >= PARALLEL_MIN)
    for (int64_t r = 0; r < samples; r++) {
        const float *xr = x + r * m, *gr = grad + r * m;
        float *o = out + r * m;
        const float inv = 1.0f / s[r], inv_sq = inv * inv, slope = inv_sq * -2.0f, top = inv * 2.0f;
        double hx = 0.0;
#pragma omp simd reduction(+ : hx)
        for (int64_t i = 0; i < m; i++) {
            float t = fabsf(xr[i]) * slope + top;
            float h = (t < 0.0f ? 0.0f : t) * gr[i];
            o[i] = h;
            hx += (double)h * (double)xr[i];
        }
        const float k = (float)hx * (inv_sq / (float)(m - 1)), mu = mean[r];
#pragma omp simd
        for (int64_t i = 0; i < m; i++) o[i] = o[i] - (xr[i] - mu) * k;
    }
}

/* ReCU's weight forward, w seen as [channels, m], a one scale per channel: per channel the mean and
 * r = sqrt(unbiased variance + 1e-5) / (2 sqrt 2) of the standardisation w_hat = (w - mean) / r; out = a * sign(w_hat);
 * q[0] = mean |w_hat| over the whole tensor times log_term = -ln(2 - 2 tau) (the clamp threshold Q_tau) */
void pb_recu_weight_forward(const float *w, const float *a, float log_term, float *out, float *mean, float *r,
                            float *q, int64_t channels, int64_t m, int threads) {
    double *abs_sums = malloc((size_t)channels * sizeof(double));
    double total = 0.0;
#pragma omp parallel for num_threads(threads) schedule(static) if (channels * m >= PARALLEL_MIN)
    for (int64_t c = 0; c < channels; c++) {
        const float *wc = w + c * m;
        float *o = out + c * m;
        double sum = 0.0, sq = 0.0;
#pragma omp simd reduction(+ : sum)
        for (int64_t i = 0; i < m; i++) sum += wc[i];
        const float mu = (float)(sum / (double)m);
#pragma omp simd reduction(+ : sq)
        for (int64_t i = 0; i < m; i++) {
            double d = (double)(wc[i] - mu);
            sq += d * d;
        }
        const float rc = (float)(sqrt(sq / (double)(m - 1) + 1e-5) / (2.0 * sqrt(2.0)));
        double abs_sum = 0.0;
#pragma omp simd reduction(+ : abs_sum)
        for (int64_t i = 0; i < m; i++) {
            float w1 = (wc[i] - mu) / rc;
            o[i] = sign1(w1) * a[c];
            abs_sum += fabsf(w1);
        }
        mean[c] = mu;
        r[c] = rc;
        abs_sums[c] = abs_sum;
    }
    for (int64_t c = 0; c < channels; c++) total += abs_sums[c]; /* channel by channel: no thread-count effect */
    free(abs_sums);
    q[0] = (float)(total / (double)(channels * m)) * log_term;
}

/* ReCU's weight backward (straight through sign, the clamp's derivative 1[|w_hat| <= q], the
 * standardisation's): g = grad * a / r inside the clamp, 0 outside; d w0 = g - (sum g w0) w0 / (8 (m - 1) r^2);
 * grad_w = d w0 - its channel mean; grad_a[c] = sum grad * sign(w_hat) (when grad_a is not NULL) */
void pb_recu_weight_backward(const float *grad, const float *w, const float *a, const float *mean, const float *r,
                             float q, float *grad_w, float *grad_a, int64_t channels, int64_t m, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (channels * m >= PARALLEL_MIN)
    for (int64_t c = 0; c < channels; c++) {
        const float *wc = w + c * m, *gc = grad + c * m;
        float *o = grad_w + c * m;
        const float mu = mean[c], rc = r[c], a_over_r = a[c] / rc;
        const float coef = 1.0f / (rc * rc * (float)(-8.0 * (double)(m - 1)));
        float k = 0.0f, ga = 0.0f;  /* a channel has few elements: float sums, as the eager form's */
        double s = 0.0;
#pragma omp simd reduction(+ : k, ga)
        for (int64_t i = 0; i < m; i++) {
            const float w0 = wc[i] - mu, w1 = w0 / rc;
            const float g = fabsf(w1) <= q ? gc[i] * a_over_r : 0.0f;
            o[i] = g;
            k += g * w0;
            ga += w1 >= 0.0f ? gc[i] : -gc[i];
        }
        const float kc = k * coef;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < m; i++) {
            o[i] = o[i] + (wc[i] - mu) * kc;
            s += o[i];
        }
        const float shift = (float)(s / (double)m);
#pragma omp simd
        for (int64_t i = 0; i < m; i++) o[i] = o[i] - shift;
        if (grad_a) grad_a[c] = ga;
    }
}
