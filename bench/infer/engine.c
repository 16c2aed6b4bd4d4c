/* Bit-packed W1A1 inference: binary convolution and linear layers as XNOR-popcount over 64-bit words.
 *
 * Layout (channels last): an activation map is [N][H][W][Cw] uint64, Cw = ceil(C/64), bit c%64 of word c/64
 * is 1 where the binary input is +1 (channel padding bits are 0). Weights are [Co/16][KH][KW][Cw][16]: for
 * each block of 16 output channels and each word of the receptive field, the 16 channels' words side by
 * side (padding channels and padding bits 0). wpc[co][tap] = popcount of the weight words of one tap.
 *
 * dot(x, w) over the K = C·(valid taps) real products: mismatches m = popcount(x xor w) over the valid
 * taps' words (padding channel bits are 0 in both, so they never count), dot = K − 2m. A padded tap
 * (outside the image) is a 0 input in PyTorch, i.e. no product: the tap's words are gathered as 0 and its
 * xor is the weight itself, so m_valid = m_all − Σ_{padded taps t} wpc[co][t], exactly.
 *
 * {0, 1} inputs (DoReFa's tensorpack form, bit = x > 0.5): dot = Σ_{x=1} s_w = 2·popcount(x and w) −
 * popcount(x) = popcount(w) − popcount(x xor w) over the whole field (popcount(x and w) = (popcount(x) +
 * popcount(w) − popcount(x xor w))/2); a padded tap has x = 0 there, which is exactly its 0 input, so no
 * correction: wrow[co] = popcount of the channel's weight bits.
 *
 * Three kernels compute the same integers: AVX-512 VPOPCNTDQ (16 channels = 2 zmm), AVX2 (nibble-table
 * popcount, 4 ymm) and portable C (__builtin_popcountll); ie_conv's isa argument picks one. With AVX-512,
 * maps at least 16 wide run lines.c's ie_conv_lines instead (output positions in the lanes; same integers,
 * same float operations).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

#define PT 8   /* output positions per tile */
#define CB 16  /* output channels per weight block */
#define MAXK 4096 /* words per receptive field (KH·KW·Cw) */

/* ---- packing: float x, element (n, c, p) at x[n·sn + c·sc + p·sp] -> bits [N][P][Cw] ------------------ */
/* bit = (x + thr[c] >= 0) (thr NULL: x >= 0): the sign of methods.functional.sign (+1 at ±0, −1 at NaN); the
   addition is the same float32 operation as torch's x + β (no contraction: -ffp-contract=off). */
/* the Cw words of one position (channel c at x[c·sc]) into dst[w·step] (portable; lines.c uses it too) */
void ie_pack_words(const float *x, const float *thr, int unipolar, int64_t C, int64_t sc, int64_t Cw, uint64_t *dst,
                   int64_t step)
{
    for (int64_t w = 0; w < Cw; w++) {
        uint64_t word = 0;
        int64_t c0 = w * 64, c1 = c0 + 64 < C ? c0 + 64 : C;
        for (int64_t c = c0; c < c1; c++) {
            float v = x[c * sc];
            if (thr) v = v + thr[c];
            word |= (uint64_t)(unipolar ? v > 0.5f : v >= 0.0f) << (c - c0);
        }
        dst[w * step] = word;
    }
}

__attribute__((target("avx512f")))
static void pack_avx512(const float *x, const float *thr, int unipolar, int64_t P, int64_t C, int64_t sc, int64_t sp,
                        int64_t Cw, uint64_t *dst, int64_t p)
{
    const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i step = _mm512_set1_epi32((int)sc);
    const float *base = x + p * sp;
    for (int64_t w = 0; w < Cw; w++) {
        uint64_t word = 0;
        for (int q = 0; q < 4; q++) {
            int64_t c0 = w * 64 + q * 16;
            if (c0 >= C) break;
            __mmask16 valid = C - c0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (C - c0)) - 1);
            __m512 v = sc == 1 ? _mm512_maskz_loadu_ps(valid, base + c0)
                               : _mm512_mask_i32gather_ps(_mm512_setzero_ps(), valid, _mm512_mullo_epi32(lanes, step),
                                                          base + c0 * sc, 4);
            if (thr) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(valid, thr + c0));
            __mmask16 bits = unipolar ? _mm512_mask_cmp_ps_mask(valid, v, _mm512_set1_ps(0.5f), _CMP_GT_OQ)
                                      : _mm512_mask_cmp_ps_mask(valid, v, _mm512_setzero_ps(), _CMP_GE_OQ);
            word |= (uint64_t)bits << (q * 16);
        }
        dst[w] = word;
    }
    (void)P;
}

/* 16 consecutive positions of one image (sp = 1: NCHW), every channel: one contiguous load, compare and masked
   OR per channel and 16 positions (the masks are the bit-matrix transpose: lane j collects position j's bits) */
__attribute__((target("avx512f")))
static void pack_rows_avx512(const float *x, const float *thr, int unipolar, int64_t C, int64_t sc, int64_t Cw, uint64_t *dst,
                             int64_t p0, int64_t count)
{
    const __mmask16 valid = count >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1);
    uint32_t lo[16], hi[16];
    for (int64_t w = 0; w < Cw; w++) {
        __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
        int64_t c1 = w * 64 + 64 < C ? w * 64 + 64 : C;
        for (int64_t c = w * 64; c < c1; c++) {
            __m512 v = _mm512_maskz_loadu_ps(valid, x + c * sc + p0);
            if (thr) v = _mm512_add_ps(v, _mm512_set1_ps(thr[c]));
            __mmask16 m = unipolar ? _mm512_mask_cmp_ps_mask(valid, v, _mm512_set1_ps(0.5f), _CMP_GT_OQ)
                                   : _mm512_mask_cmp_ps_mask(valid, v, _mm512_setzero_ps(), _CMP_GE_OQ);
            int bit = (int)(c - w * 64);
            if (bit < 32) a = _mm512_mask_or_epi32(a, m, a, _mm512_set1_epi32((int)(1u << bit)));
            else b = _mm512_mask_or_epi32(b, m, b, _mm512_set1_epi32((int)(1u << (bit - 32))));
        }
        _mm512_storeu_si512((void *)lo, a);
        _mm512_storeu_si512((void *)hi, b);
        for (int64_t j = 0; j < count; j++) dst[j * Cw + w] = (uint64_t)lo[j] | ((uint64_t)hi[j] << 32);
    }
}

void ie_plane_words(const float *x, const float *thr, int unipolar, int64_t C, int64_t sc, int64_t HW, int64_t w,
                    uint64_t *acc);

void ie_pack(const float *x, const float *thr, int unipolar, int64_t N, int64_t P, int64_t C, int64_t sn, int64_t sc, int64_t sp,
             int64_t Cw, uint64_t *out, int isa, int threads)
{
    if (isa >= 2 && sp == 1 && P >= 16) {  /* NCHW: per image and word, its planes read front to back (lines.c) */
        int failed = 0;
        #pragma omp parallel num_threads(threads)
        {
            uint64_t *acc = malloc((size_t)(P + 16) * 8);
            #pragma omp for schedule(static)
            for (int64_t t = 0; t < N * Cw; t++) {
                if (!acc) { failed = 1; continue; }
                const int64_t n = t / Cw, w = t % Cw;
                ie_plane_words(x + n * sn, thr, unipolar, C, sc, P, w, acc);
                for (int64_t p = 0; p < P; p++) out[(n * P + p) * Cw + w] = acc[p];
            }
            free(acc);
        }
        if (!failed) return;
    }
    if (isa >= 2 && sp == 1 && P >= 16) {  /* no scratch: blocks of 16 positions, every channel */
        int64_t blocks = (P + 15) / 16;
        #pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t t = 0; t < N * blocks; t++) {
            int64_t n = t / blocks, p0 = (t % blocks) * 16, count = P - p0 < 16 ? P - p0 : 16;
            pack_rows_avx512(x + n * sn, thr, unipolar, C, sc, Cw, out + (n * P + p0) * Cw, p0, count);
        }
        return;
    }
    /* channels contiguous (channels last, linear inputs): 16 channels per vector (a gather otherwise) */
    int vector = isa >= 2 && (sc == 1 || 16 * sc < (1LL << 31));
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t m = 0; m < N * P; m++) {
        int64_t n = m / P, p = m % P;
        if (vector) pack_avx512(x + n * sn, thr, unipolar, P, C, sc, sp, Cw, out + m * Cw, p);
        else ie_pack_words(x + n * sn + p * sp, thr, unipolar, C, sc, Cw, out + m * Cw, 1);
    }
}

/* ---- the tile kernels: acc[i][j] = Σ_k popcount(rows[i][k] xor wb[k][j]) for PT positions × CB channels */
static void tile_portable(const uint64_t *rows, const uint64_t *wb, int64_t K, int32_t *acc)
{
    for (int i = 0; i < PT; i++)
        for (int j = 0; j < CB; j++) {
            int64_t s = 0;
            for (int64_t k = 0; k < K; k++) s += __builtin_popcountll(rows[i * K + k] ^ wb[k * CB + j]);
            acc[i * CB + j] = (int32_t)s;
        }
}

__attribute__((target("avx2")))
static inline __m256i popcnt256(__m256i v)
{
    const __m256i table = _mm256_setr_epi8(0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4,
                                           0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2, 3, 2, 3, 3, 4);
    const __m256i low = _mm256_set1_epi8(0x0f);
    __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(v, low));
    __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(v, 4), low));
    return _mm256_sad_epu8(_mm256_add_epi8(lo, hi), _mm256_setzero_si256()); /* 4 × u64 */
}

__attribute__((target("avx2")))
static void tile_avx2(const uint64_t *rows, const uint64_t *wb, int64_t K, int32_t *acc)
{
    for (int i0 = 0; i0 < PT; i0 += 2) {  /* two positions × 16 channels: 8 accumulators */
        __m256i a[2][4];
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 4; j++) a[i][j] = _mm256_setzero_si256();
        for (int64_t k = 0; k < K; k++) {
            const __m256i *w = (const __m256i *)(wb + k * CB);
            for (int i = 0; i < 2; i++) {
                __m256i x = _mm256_set1_epi64x((long long)rows[(i0 + i) * K + k]);
                for (int j = 0; j < 4; j++)
                    a[i][j] = _mm256_add_epi64(a[i][j], popcnt256(_mm256_xor_si256(x, _mm256_loadu_si256(w + j))));
            }
        }
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 4; j++) {
                int64_t tmp[4];
                _mm256_storeu_si256((__m256i *)tmp, a[i][j]);
                for (int q = 0; q < 4; q++) acc[(i0 + i) * CB + 4 * j + q] = (int32_t)tmp[q];
            }
    }
}

__attribute__((target("avx512f,avx512vpopcntdq")))
static void tile_avx512(const uint64_t *rows, const uint64_t *wb, int64_t K, int32_t *acc)
{
    __m512i a[PT][2];
    for (int i = 0; i < PT; i++) a[i][0] = a[i][1] = _mm512_setzero_si512();
    for (int64_t k = 0; k < K; k++) {
        __m512i w0 = _mm512_loadu_si512((const void *)(wb + k * CB));
        __m512i w1 = _mm512_loadu_si512((const void *)(wb + k * CB + 8));
        for (int i = 0; i < PT; i++) {
            __m512i x = _mm512_set1_epi64((long long)rows[i * K + k]);
            a[i][0] = _mm512_add_epi64(a[i][0], _mm512_popcnt_epi64(_mm512_xor_si512(x, w0)));
            a[i][1] = _mm512_add_epi64(a[i][1], _mm512_popcnt_epi64(_mm512_xor_si512(x, w1)));
        }
    }
    for (int i = 0; i < PT; i++) {
        _mm256_storeu_si256((__m256i *)(acc + i * CB), _mm512_cvtepi64_epi32(a[i][0]));
        _mm256_storeu_si256((__m256i *)(acc + i * CB + 8), _mm512_cvtepi64_epi32(a[i][1]));
    }
}

/* the float part of a full tile (PT = 8 positions of one image, 16 channels) with AVX-512: float(kbits −
   2·acc)·scale (·k), the same float operations as the scalar path, then an 8×8 transpose per half so that
   each channel's 8 positions are one store into the NCHW plane */
__attribute__((target("avx512f,avx2")))
static inline void transpose8(__m256 *r)
{
    __m256 t[8], u[8];
    for (int q = 0; q < 4; q++) {
        t[2 * q] = _mm256_unpacklo_ps(r[2 * q], r[2 * q + 1]);
        t[2 * q + 1] = _mm256_unpackhi_ps(r[2 * q], r[2 * q + 1]);
    }
    for (int q = 0; q < 2; q++) {
        u[4 * q] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * q + 1] = _mm256_shuffle_ps(t[4 * q], t[4 * q + 2], _MM_SHUFFLE(3, 2, 3, 2));
        u[4 * q + 2] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], _MM_SHUFFLE(1, 0, 1, 0));
        u[4 * q + 3] = _mm256_shuffle_ps(t[4 * q + 1], t[4 * q + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int q = 0; q < 4; q++) {
        r[q] = _mm256_permute2f128_ps(u[q], u[q + 4], 0x20);
        r[q + 4] = _mm256_permute2f128_ps(u[q], u[q + 4], 0x31);
    }
}

__attribute__((target("avx512f,avx2")))
static void finalize_avx512(const int32_t *acc, const int32_t *kbits, const int32_t *wr, const float *scl, const float *ks, int ncols,
                            float *dst, int64_t P)
{
    __m256 lo[PT], hi[PT];
    const __m512 s = _mm512_loadu_ps(scl);
    for (int i = 0; i < PT; i++) {
        __m512i a = _mm512_loadu_si512((const void *)(acc + i * CB));
        __m512i d = wr ? _mm512_sub_epi32(_mm512_loadu_si512((const void *)wr), a)
                       : _mm512_sub_epi32(_mm512_set1_epi32(kbits[i]), _mm512_slli_epi32(a, 1));
        __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(d), s);
        if (ks) v = _mm512_mul_ps(v, _mm512_set1_ps(ks[i]));
        lo[i] = _mm512_castps512_ps256(v);
        hi[i] = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    }
    transpose8(lo);
    transpose8(hi);
    for (int j = 0; j < ncols; j++) _mm256_storeu_ps(dst + j * P, j < 8 ? lo[j] : hi[j - 8]);
}

typedef void (*tile_fn)(const uint64_t *, const uint64_t *, int64_t, int32_t *);

/* 2 = AVX-512 VPOPCNTDQ, 1 = AVX2, 0 = portable: what this CPU can run (checked at run time) */
int ie_cpu_isa(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq")) return 2;
    if (__builtin_cpu_supports("avx2")) return 1;
    return 0;
}

/* ---- binary convolution (a linear layer is a 1×1 convolution on a 1×1 map) -----------------------------
 * x: [N][H][W][Cw] packed input; wt: [ceil(Co/16)][KH·KW·Cw][16]; wpc: [Co][KH·KW]; C: real input channels;
 * scale: [Co] (α per output channel); sample: [N] or NULL (XNOR's per-sample K); out: [N][Co][OH][OW] float,
 * out = dot·scale[co] (·sample[n]). Returns 0, or −1 for an isa this CPU lacks or a too-large field. */
int ie_conv(const uint64_t *x, int64_t N, int64_t H, int64_t W, int64_t Cw, const uint64_t *wt, const int32_t *wpc,
            const int32_t *wrow,
            int64_t Co, int64_t KH, int64_t KW, int64_t stride, int64_t pad, int64_t OH, int64_t OW, int64_t C,
            const float *scale, const float *sample, float *out, int isa, int threads)
{
    if (isa > ie_cpu_isa() || isa < 0) return -1;
    const int64_t T = KH * KW, K = T * Cw, P = OH * OW, M = N * P, blocks = (Co + CB - 1) / CB;
    if (T > 64 || K > MAXK) return -1;
    tile_fn tile = isa == 2 ? tile_avx512 : isa == 1 ? tile_avx2 : tile_portable;
    const int64_t tiles = (M + PT - 1) / PT;
    int failed = 0;
    #pragma omp parallel num_threads(threads)
    {
        uint64_t *rows = aligned_alloc(64, (size_t)(PT * K * 8 + 63) / 64 * 64);
        int32_t acc[PT * CB], invalid[PT][64], ninvalid[PT], kbits[PT];
        float vals[PT][CB], scl[CB], ks[PT];
        #pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tiles; t++) {
            if (!rows) { failed = 1; continue; }
            const int64_t m0 = t * PT, count = M - m0 < PT ? M - m0 : PT;
            /* gather the receptive fields of the tile's positions (past M: zeros, results dropped) */
            int64_t n = m0 / P, oy = (m0 % P) / OW, ox = m0 % OW;
            for (int i = 0; i < PT; i++) {
                uint64_t *row = rows + i * K;
                ninvalid[i] = 0;
                if (m0 + i >= M) { memset(row, 0, (size_t)K * 8); kbits[i] = 0; continue; }
                const int64_t iy0 = oy * stride - pad, ix0 = ox * stride - pad;
                if (iy0 >= 0 && iy0 + KH <= H && ix0 >= 0 && ix0 + KW <= W) {  /* inside: KW·Cw words per row */
                    const uint64_t *src = x + ((n * H + iy0) * W + ix0) * Cw;
                    for (int64_t ky = 0; ky < KH; ky++)
                        for (int64_t q = 0; q < KW * Cw; q++) row[ky * KW * Cw + q] = src[ky * W * Cw + q];
                } else {
                    for (int64_t ky = 0; ky < KH; ky++)
                        for (int64_t kx = 0; kx < KW; kx++) {
                            int64_t iy = iy0 + ky, ix = ix0 + kx;
                            uint64_t *dst = row + (ky * KW + kx) * Cw;
                            if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                                for (int64_t q = 0; q < Cw; q++) dst[q] = 0;
                                invalid[i][ninvalid[i]++] = (int32_t)(ky * KW + kx);
                            } else {
                                const uint64_t *src = x + ((n * H + iy) * W + ix) * Cw;
                                for (int64_t q = 0; q < Cw; q++) dst[q] = src[q];
                            }
                        }
                }
                kbits[i] = (int32_t)(C * (T - ninvalid[i]));
                ks[i] = sample ? sample[n] : 1.0f;
                if (++ox == OW) { ox = 0; if (++oy == OH) { oy = 0; n++; } }
            }
            const int64_t n0 = m0 / P, p0 = m0 % P;
            const int same_image = p0 + count <= P;
            for (int64_t b = 0; b < blocks; b++) {
                tile(rows, wt + b * K * CB, K, acc);
                for (int j = 0; j < CB; j++) scl[j] = b * CB + j < Co ? scale[b * CB + j] : 0.0f;
                int32_t wr[CB];  /* {0, 1} inputs: dot = popcount(w over the field) − popcount(x xor w) */
                for (int j = 0; j < CB; j++) wr[j] = wrow && b * CB + j < Co ? wrow[b * CB + j] : 0;
                for (int i = 0; i < count && !wrow; i++)
                    if (ninvalid[i])  /* padded taps: their xor was the weight itself (exact correction) */
                        for (int j = 0; j < CB && b * CB + j < Co; j++)
                            for (int q = 0; q < ninvalid[i]; q++) acc[i * CB + j] -= wpc[(b * CB + j) * T + invalid[i][q]];
                const int ncols = Co - b * CB < CB ? (int)(Co - b * CB) : CB;
                if (isa == 2 && same_image && count == PT) {
                    finalize_avx512(acc, kbits, wrow ? wr : NULL, scl, sample ? ks : NULL, ncols, out + (n0 * Co + b * CB) * P + p0, P);
                    continue;
                }
                for (int i = 0; i < count; i++) {
                    for (int j = 0; j < CB; j++)
                        vals[i][j] = (float)(wrow ? wr[j] - acc[i * CB + j] : kbits[i] - 2 * acc[i * CB + j]) * scl[j];
                    if (sample)
                        for (int j = 0; j < CB; j++) vals[i][j] *= ks[i];
                }
                for (int j = 0; j < ncols; j++) {
                    const int64_t co = b * CB + j;
                    if (same_image) {
                        float *dst = out + (n0 * Co + co) * P + p0;
                        for (int i = 0; i < count; i++) dst[i] = vals[i][j];
                    } else {
                        for (int i = 0; i < count; i++) {
                            int64_t m = m0 + i;
                            out[((m / P) * Co + co) * P + m % P] = vals[i][j];
                        }
                    }
                }
            }
        }
        free(rows);
    }
    return failed ? -1 : 0;
}
