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
 * Three kernels compute the same integers: AVX-512 VPOPCNTDQ (16 channels = 2 zmm), AVX2 (nibble-table
 * popcount, 4 ymm) and portable C (__builtin_popcountll); ie_conv's isa argument picks one.
 */
#include <stdint.h>
#include <string.h>
#include <immintrin.h>

#define PT 4   /* output positions per tile */
#define CB 16  /* output channels per weight block */
#define MAXK 4096 /* words per receptive field (KH·KW·Cw) */

/* ---- packing: float x, element (n, c, p) at x[n·sn + c·sc + p·sp] -> bits [N][P][Cw] ------------------ */
/* bit = (x + thr[c] >= 0) (thr NULL: x >= 0): the sign of methods.functional.sign (+1 at ±0, −1 at NaN); the
   addition is the same float32 operation as torch's x + β (no contraction: -ffp-contract=off). */
static void pack_portable(const float *x, const float *thr, int64_t P, int64_t C, int64_t sc, int64_t sp,
                          int64_t Cw, uint64_t *dst, int64_t p)
{
    for (int64_t w = 0; w < Cw; w++) {
        uint64_t word = 0;
        int64_t c0 = w * 64, c1 = c0 + 64 < C ? c0 + 64 : C;
        for (int64_t c = c0; c < c1; c++) {
            float v = x[c * sc + p * sp];
            if (thr) v = v + thr[c];
            word |= (uint64_t)(v >= 0.0f) << (c - c0);
        }
        dst[w] = word;
    }
    (void)P;
}

__attribute__((target("avx512f")))
static void pack_avx512(const float *x, const float *thr, int64_t P, int64_t C, int64_t sc, int64_t sp,
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
            __mmask16 bits = _mm512_mask_cmp_ps_mask(valid, v, _mm512_setzero_ps(), _CMP_GE_OQ);
            word |= (uint64_t)bits << (q * 16);
        }
        dst[w] = word;
    }
    (void)P;
}

void ie_pack(const float *x, const float *thr, int64_t N, int64_t P, int64_t C, int64_t sn, int64_t sc, int64_t sp,
             int64_t Cw, uint64_t *out, int isa, int threads)
{
    /* the gather's 32-bit indices: c·sc within 16 channels of a chunk */
    int vector = isa >= 2 && (sc == 1 || 16 * sc < (1LL << 31));
    #pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t m = 0; m < N * P; m++) {
        int64_t n = m / P, p = m % P;
        if (vector) pack_avx512(x + n * sn, thr, P, C, sc, sp, Cw, out + m * Cw, p);
        else pack_portable(x + n * sn, thr, P, C, sc, sp, Cw, out + m * Cw, p);
    }
}

/* ---- the tile kernels: acc[i][j] = Σ_k popcount(rows[i][k] xor wb[k][j]) for PT positions × CB channels */
static void tile_portable(const uint64_t *rows, const uint64_t *wb, int64_t K, int64_t *acc)
{
    for (int i = 0; i < PT; i++)
        for (int j = 0; j < CB; j++) {
            int64_t s = 0;
            for (int64_t k = 0; k < K; k++) s += __builtin_popcountll(rows[i * K + k] ^ wb[k * CB + j]);
            acc[i * CB + j] = s;
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
static void tile_avx2(const uint64_t *rows, const uint64_t *wb, int64_t K, int64_t *acc)
{
    __m256i a[PT][4];
    for (int i = 0; i < PT; i++)
        for (int j = 0; j < 4; j++) a[i][j] = _mm256_setzero_si256();
    for (int64_t k = 0; k < K; k++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(wb + k * CB));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(wb + k * CB + 4));
        __m256i w2 = _mm256_loadu_si256((const __m256i *)(wb + k * CB + 8));
        __m256i w3 = _mm256_loadu_si256((const __m256i *)(wb + k * CB + 12));
        for (int i = 0; i < PT; i++) {
            __m256i x = _mm256_set1_epi64x((long long)rows[i * K + k]);
            a[i][0] = _mm256_add_epi64(a[i][0], popcnt256(_mm256_xor_si256(x, w0)));
            a[i][1] = _mm256_add_epi64(a[i][1], popcnt256(_mm256_xor_si256(x, w1)));
            a[i][2] = _mm256_add_epi64(a[i][2], popcnt256(_mm256_xor_si256(x, w2)));
            a[i][3] = _mm256_add_epi64(a[i][3], popcnt256(_mm256_xor_si256(x, w3)));
        }
    }
    for (int i = 0; i < PT; i++)
        for (int j = 0; j < 4; j++) _mm256_storeu_si256((__m256i *)(acc + i * CB + 4 * j), a[i][j]);
}

__attribute__((target("avx512f,avx512vpopcntdq")))
static void tile_avx512(const uint64_t *rows, const uint64_t *wb, int64_t K, int64_t *acc)
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
        _mm512_storeu_si512((void *)(acc + i * CB), a[i][0]);
        _mm512_storeu_si512((void *)(acc + i * CB + 8), a[i][1]);
    }
}

typedef void (*tile_fn)(const uint64_t *, const uint64_t *, int64_t, int64_t *);

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
            int64_t Co, int64_t KH, int64_t KW, int64_t stride, int64_t pad, int64_t OH, int64_t OW, int64_t C,
            const float *scale, const float *sample, float *out, int isa, int threads)
{
    if (isa > ie_cpu_isa() || isa < 0) return -1;
    const int64_t T = KH * KW, K = T * Cw, M = N * OH * OW, blocks = (Co + CB - 1) / CB;
    if (K > MAXK || T > 64) return -1;
    tile_fn tile = isa == 2 ? tile_avx512 : isa == 1 ? tile_avx2 : tile_portable;
    const int64_t tiles = (M + PT - 1) / PT;
    #pragma omp parallel num_threads(threads)
    {
        uint64_t rows[PT * MAXK] __attribute__((aligned(64)));
        int64_t acc[PT * CB] __attribute__((aligned(64)));
        int32_t invalid[PT][64];
        int32_t ninvalid[PT];
        #pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < tiles; t++) {
            /* gather the receptive fields of up to PT positions (rows past M: zeros, results dropped) */
            for (int i = 0; i < PT; i++) {
                int64_t m = t * PT + i;
                uint64_t *row = rows + i * K;
                ninvalid[i] = 0;
                if (m >= M) { memset(row, 0, (size_t)K * 8); continue; }
                int64_t n = m / (OH * OW), oy = (m / OW) % OH, ox = m % OW;
                for (int64_t ky = 0; ky < KH; ky++)
                    for (int64_t kx = 0; kx < KW; kx++) {
                        int64_t iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                        uint64_t *dst = row + (ky * KW + kx) * Cw;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
                            for (int64_t q = 0; q < Cw; q++) dst[q] = 0;
                            if (ninvalid[i] < 64) invalid[i][ninvalid[i]] = (int32_t)(ky * KW + kx);
                            ninvalid[i]++;
                        } else {
                            const uint64_t *src = x + ((n * H + iy) * W + ix) * Cw;
                            for (int64_t q = 0; q < Cw; q++) dst[q] = src[q];
                        }
                    }
            }
            for (int64_t b = 0; b < blocks; b++) {
                tile(rows, wt + b * K * CB, K, acc);
                for (int i = 0; i < PT; i++) {
                    int64_t m = t * PT + i;
                    if (m >= M) break;
                    int64_t n = m / (OH * OW);
                    int64_t kbits = C * (T - ninvalid[i]);
                    for (int j = 0; j < CB; j++) {
                        int64_t co = b * CB + j;
                        if (co >= Co) break;
                        int64_t mis = acc[i * CB + j];
                        for (int q = 0; q < ninvalid[i] && q < 64; q++) mis -= wpc[co * T + invalid[i][q]];
                        float v = (float)(kbits - 2 * mis) * scale[co];
                        if (sample) v *= sample[n];
                        out[(n * Co + co) * OH * OW + m % (OH * OW)] = v;
                    }
                }
            }
        }
    }
    return 0;
}
