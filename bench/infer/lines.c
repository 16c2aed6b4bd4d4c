/* Bit-packed W1A1 convolution, AVX-512 VPOPCNTDQ, with output positions in the vector lanes ("line" layout).
 *
 * engine.c's ie_conv puts 16 output channels in the lanes and gathers each tile's receptive fields into a
 * scratch buffer, then transposes the results into the NCHW planes. Here the lanes hold 8 consecutive
 * output positions of one output row instead: the packed input is laid out so that, for every tap and word,
 * those 8 positions' input words are 8 consecutive words, one unaligned load, no gather; each output
 * channel's 16 results are then one 64-byte store into its NCHW plane, no transpose.
 *
 * Layout ("lines"): [N][Hp][Cw][L] uint64, Hp = H + 2·pad, Wp = W + 2·pad; line (n, row, q) holds word q of
 * every padded column j of that row, padding rows and columns 0; with stride s the columns are stored by
 * phase, j at (j mod s)·Ws + j div s (Ws = ceil(Wp/s), L = s·Ws), so that output ox, tap kx reads index
 * ox + kx div s of phase kx mod s: consecutive outputs are consecutive words for every stride.
 *
 * The products are engine.c's: m = Σ popcount(x xor w) over the whole field, the padded taps' words 0, so
 * each such tap adds popcount of its weight words, wpc[co][t], which is subtracted exactly (bipolar: dot =
 * C·(valid taps) − 2·m); {0, 1} inputs: dot = wrow[co] − m, no correction (a padded tap is a 0 input). Then
 * out = float(dot)·scale[co] (·sample[n]): the same float operations, in the same order, as ie_conv.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>
#include <sys/mman.h>

#define NP 16   /* output positions per tile (two vectors of 8) */
#define CG 8    /* output channels per register block */
#define MAXK 4096

int ie_cpu_isa(void);
void ie_pack_words(const float *x, const float *thr, int unipolar, int64_t C, int64_t sc, int64_t Cw, uint64_t *dst,
                   int64_t step);

/* words of one image's packed lines and the index of padded column j in its line */
static inline int64_t line_len(int64_t W, int64_t pad, int64_t stride)
{
    int64_t wp = W + 2 * pad;
    return stride * ((wp + stride - 1) / stride);
}

/* Transparent huge pages for a large output buffer, asked for before its first write: a fresh buffer costs a
   page fault per 4 KiB page touched (a 51 MB map: 12 500 faults, about half of the layer's time), against one
   per 2 MiB. Only advice (the kernel may decline); the whole 2 MiB pages inside [p, p + bytes). */
void ie_advise_huge(void *p, int64_t bytes)
{
    const uintptr_t huge = (uintptr_t)1 << 21;
    const uintptr_t a = ((uintptr_t)p + huge - 1) & ~(huge - 1), e = ((uintptr_t)p + (uintptr_t)bytes) & ~(huge - 1);
    if (e > a) madvise((void *)a, e - a, MADV_HUGEPAGE);
}

/* ---- packing: float x (n, c, y, x) at x[n·sn + c·sc + y·sh + x·sw] -> lines; bit as engine.c's ie_pack ---- */
__attribute__((target("avx512f")))
static void pack_line_rows(const float *x, const float *thr, int unipolar, int64_t C, int64_t sc, int64_t W,
                           int64_t Cw, int64_t pad, int64_t stride, int64_t L, uint64_t *row)
{
    const int64_t ws = L / stride;
    uint64_t words[16];
    for (int64_t w = 0; w < Cw; w++) {
        uint64_t *line = row + w * L;
        int64_t c1 = w * 64 + 64 < C ? w * 64 + 64 : C;
        for (int64_t x0 = 0; x0 < W; x0 += 16) {
            const int64_t count = W - x0 < 16 ? W - x0 : 16;
            const __mmask16 valid = count == 16 ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1);
            __m512i a = _mm512_setzero_si512(), b = _mm512_setzero_si512();
            for (int64_t c = w * 64; c < c1; c++) {
                __m512 v = _mm512_maskz_loadu_ps(valid, x + c * sc + x0);
                if (thr) v = _mm512_add_ps(v, _mm512_set1_ps(thr[c]));
                __mmask16 m = unipolar ? _mm512_mask_cmp_ps_mask(valid, v, _mm512_set1_ps(0.5f), _CMP_GT_OQ)
                                       : _mm512_mask_cmp_ps_mask(valid, v, _mm512_setzero_ps(), _CMP_GE_OQ);
                const __m512i bit = _mm512_set1_epi64((long long)(1ULL << (c - w * 64)));
                a = _mm512_mask_or_epi64(a, (__mmask8)m, a, bit);
                b = _mm512_mask_or_epi64(b, (__mmask8)(m >> 8), b, bit);
            }
            _mm512_storeu_si512((void *)words, a);
            _mm512_storeu_si512((void *)(words + 8), b);
            for (int64_t i = 0; i < count; i++) {
                int64_t j = x0 + i + pad;
                line[(j % stride) * ws + j / stride] = words[i];
            }
        }
    }
}

static void pack_line_rows_strided(const float *x, const float *thr, int unipolar, int64_t C, int64_t sc, int64_t sw,
                                   int64_t W, int64_t Cw, int64_t pad, int64_t stride, int64_t L, uint64_t *row)
{
    const int64_t ws = L / stride;
    for (int64_t xx = 0; xx < W; xx++) {
        const int64_t j = xx + pad;
        ie_pack_words(x + xx * sw, thr, unipolar, C, sc, Cw, row + (j % stride) * ws + j / stride, L);
    }
}

/* word w of all HW positions of one image from its contiguous channel planes (x: the image, channel c's
   plane at x + c·sc): 8 planes read front to back together, their bits ORed into acc[HW] (a scratch that stays
   in cache), one read-modify-write per 8 channels; bit = ie_pack's */
__attribute__((target("avx512f")))
void ie_plane_words(const float *x, const float *thr, int unipolar, int64_t C, int64_t sc, int64_t HW, int64_t w,
                    uint64_t *acc)
{
    const int64_t c1 = w * 64 + 64 < C ? w * 64 + 64 : C;
    memset(acc, 0, (size_t)HW * 8);
    for (int64_t c0 = w * 64; c0 < c1; c0 += 8) {  /* 8 planes at a time: one read-modify-write of acc */
        const int g = c1 - c0 < 8 ? (int)(c1 - c0) : 8;
        for (int64_t p = 0; p < HW; p += 16) {
            const __mmask16 valid = HW - p >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (HW - p)) - 1);
            __m512i a = _mm512_maskz_loadu_epi64((__mmask8)valid, acc + p);
            __m512i b = _mm512_maskz_loadu_epi64((__mmask8)(valid >> 8), acc + p + 8);
            for (int k = 0; k < g; k++) {
                const int64_t c = c0 + k;
                __m512 v = _mm512_maskz_loadu_ps(valid, x + c * sc + p);
                if (thr) v = _mm512_add_ps(v, _mm512_set1_ps(thr[c]));
                const __mmask16 m = unipolar ? _mm512_mask_cmp_ps_mask(valid, v, _mm512_set1_ps(0.5f), _CMP_GT_OQ)
                                             : _mm512_mask_cmp_ps_mask(valid, v, _mm512_setzero_ps(), _CMP_GE_OQ);
                const __m512i bit = _mm512_set1_epi64((long long)(1ULL << (c - w * 64)));
                a = _mm512_mask_or_epi64(a, (__mmask8)m, a, bit);
                b = _mm512_mask_or_epi64(b, (__mmask8)(m >> 8), b, bit);
            }
            _mm512_mask_storeu_epi64(acc + p, (__mmask8)valid, a);
            _mm512_mask_storeu_epi64(acc + p + 8, (__mmask8)(valid >> 8), b);
        }
    }
}

/* one image's word w into its lines (ie_plane_words, then a copy per row) */
static void pack_planes(const float *x, const float *thr, int unipolar, int64_t C, int64_t sc, int64_t H, int64_t W,
                        int64_t w, int64_t Cw, int64_t pad, int64_t stride, int64_t L, uint64_t *acc, uint64_t *img)
{
    const int64_t ws = L / stride;
    ie_plane_words(x, thr, unipolar, C, sc, H * W, w, acc);
    for (int64_t y = 0; y < H; y++) {
        uint64_t *line = img + ((y + pad) * Cw + w) * L;
        if (stride == 1) memcpy(line + pad, acc + y * W, (size_t)W * 8);
        else
            for (int64_t xx = 0; xx < W; xx++) line[((xx + pad) % stride) * ws + (xx + pad) / stride] = acc[y * W + xx];
    }
}

/* out: N·Hp·Cw·L words (the caller adds ie_lines_slack() more, zeroed here too) */
int64_t ie_lines_size(int64_t N, int64_t H, int64_t W, int64_t Cw, int64_t pad, int64_t stride)
{
    return N * (H + 2 * pad) * Cw * line_len(W, pad, stride) + NP * stride + 64;
}

int ie_pack_lines(const float *x, const float *thr, int unipolar, int64_t N, int64_t C, int64_t H, int64_t W,
                   int64_t sn, int64_t sc, int64_t sh, int64_t sw, int64_t Cw, int64_t pad, int64_t stride,
                   uint64_t *out, int threads)
{
    const int64_t L = line_len(W, pad, stride), Hp = H + 2 * pad, rowwords = Cw * L;
    if (sw == 1 && sh == W) {  /* NCHW planes: per image and word */
        int failed = 0;
        #pragma omp parallel num_threads(threads)
        {
            uint64_t *acc = malloc((size_t)(H * W + 16) * 8);
            #pragma omp for schedule(static)
            for (int64_t t = 0; t < N * Cw; t++) {
                if (!acc) { failed = 1; continue; }
                const int64_t n = t / Cw, w = t % Cw;
                uint64_t *img = out + n * Hp * rowwords;
                for (int64_t y = 0; y < Hp; y++) {  /* padding rows and columns of this word's lines are 0 */
                    uint64_t *line = img + (y * Cw + w) * L;
                    if (y < pad || y >= H + pad) memset(line, 0, (size_t)L * 8);
                    else if (stride == 1) {
                        memset(line, 0, (size_t)pad * 8);
                        memset(line + pad + W, 0, (size_t)(L - pad - W) * 8);
                    } else memset(line, 0, (size_t)L * 8);
                }
                pack_planes(x + n * sn, thr, unipolar, C, sc, H, W, w, Cw, pad, stride, L, acc, img);
            }
            free(acc);
        }
        if (failed) return -1;
    } else {
        #pragma omp parallel for schedule(static) num_threads(threads)
        for (int64_t t = 0; t < N * Hp; t++) {
            const int64_t n = t / Hp, y = t % Hp - pad;
            uint64_t *row = out + t * rowwords;
            memset(row, 0, (size_t)rowwords * 8);  /* padding columns (and rows) are 0 */
            if (y < 0 || y >= H) continue;
            const float *src = x + n * sn + y * sh;
            if (sw == 1) pack_line_rows(src, thr, unipolar, C, sc, W, Cw, pad, stride, L, row);
            else pack_line_rows_strided(src, thr, unipolar, C, sc, sw, W, Cw, pad, stride, L, row);
        }
    }
    memset(out + N * Hp * rowwords, 0, (size_t)(NP * stride + 64) * 8);
    return 0;
}

/* ---- the convolution ----------------------------------------------------------------------------------- */
/* A tile is 16 consecutive positions p0..p0+15 of one image's output plane (p = oy·OW + ox), so that each
   channel's 16 results are one aligned 64-byte store when the plane is (OH·OW a multiple of 16): streamed
   past the caches (non-temporal), which saves reading the output lines in before writing them. A tile that
   spans output rows loads each row's lanes with a masked load ("segments"). */
typedef struct {
    int nseg;
    int64_t delta[2];     /* per segment: word offset of lane 0's field origin (the lane index subtracted) */
    __mmask8 ma[2], mb[2];  /* its lanes in the low and high 8 */
    int ntaps;            /* padded taps as lane masks */
    int32_t tap[64];
    __mmask16 lanes[64];
    __m512i kb;           /* C·(valid taps) per lane */
    __mmask16 keep;       /* the lanes that are output positions */
    int stream;           /* every channel's 16 results one aligned full store */
    const int32_t *wpc, *wrow;
    const float *scale, *ks;
    int64_t T, P;
    float *out;           /* this tile's first position in channel 0's plane */
} tile_ctx;

/* float(dot)·scale[co] (·ks) of 16 lanes of m (the bipolar padded taps' weight words subtracted), stored */
__attribute__((target("avx512f")))
static inline void finish(const tile_ctx *c, __m512i m, int64_t co)
{
    for (int q = 0; q < c->ntaps && !c->wrow; q++)  /* padded taps: their xor was the weight itself (exact) */
        m = _mm512_mask_sub_epi32(m, c->lanes[q], m, _mm512_set1_epi32(c->wpc[co * c->T + c->tap[q]]));
    const __m512i d = c->wrow ? _mm512_sub_epi32(_mm512_set1_epi32(c->wrow[co]), m)
                              : _mm512_sub_epi32(c->kb, _mm512_slli_epi32(m, 1));
    __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(d), _mm512_set1_ps(c->scale[co]));
    if (c->ks) v = _mm512_mul_ps(v, _mm512_set1_ps(*c->ks));
    if (c->stream) _mm512_stream_ps(c->out + co * c->P, v);
    else _mm512_mask_storeu_ps(c->out + co * c->P, c->keep, v);
}

/* 16 positions × CG channels: m[j][i] = Σ_k popcount(x[field_i + off[k]] xor w[k][j]) (w: a [K][16] block) */
__attribute__((target("avx512f,avx512vpopcntdq"), always_inline))
static inline void block(const uint64_t *xp, const int64_t *off, const uint64_t *wb, int64_t K, int64_t co0,
                         int ncols, const tile_ctx *c, const int two)
{
    __m512i a[CG], b[CG];
    for (int j = 0; j < CG; j++) a[j] = b[j] = _mm512_setzero_si512();
    const uint64_t *one = xp + c->delta[0], *two_ = xp + c->delta[1];
    for (int64_t k = 0; k < K; k++) {
        __m512i xa, xb;
        if (!two) {
            xa = _mm512_loadu_si512((const void *)(one + off[k]));
            xb = _mm512_loadu_si512((const void *)(one + off[k] + 8));
        } else {  /* two row segments: lanes of the first row, then of the second */
            const uint64_t *p = one + off[k], *q = two_ + off[k];
            xa = _mm512_mask_loadu_epi64(_mm512_maskz_loadu_epi64(c->ma[0], (const void *)p), c->ma[1],
                                         (const void *)q);
            xb = _mm512_mask_loadu_epi64(_mm512_maskz_loadu_epi64(c->mb[0], (const void *)(p + 8)), c->mb[1],
                                         (const void *)(q + 8));
        }
        const uint64_t *w = wb + k * 16;
        for (int j = 0; j < CG; j++) {
            const __m512i wj = _mm512_set1_epi64((long long)w[j]);
            a[j] = _mm512_add_epi64(a[j], _mm512_popcnt_epi64(_mm512_xor_si512(xa, wj)));
            b[j] = _mm512_add_epi64(b[j], _mm512_popcnt_epi64(_mm512_xor_si512(xb, wj)));
        }
    }
    for (int j = 0; j < ncols; j++)
        finish(c, _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi64_epi32(a[j])),
                                     _mm512_cvtepi64_epi32(b[j]), 1), co0 + j);
}

/* xp: lines (ie_pack_lines with the same pad and stride); wt, wpc, wrow, scale, sample, out as ie_conv */
__attribute__((target("avx512f,avx512vpopcntdq")))
int ie_conv_lines(const uint64_t *xp, int64_t N, int64_t H, int64_t W, int64_t Cw, const uint64_t *wt,
                  const int32_t *wpc, const int32_t *wrow, int64_t Co, int64_t KH, int64_t KW, int64_t stride,
                  int64_t pad, int64_t OH, int64_t OW, int64_t C, const float *scale, const float *sample, float *out,
                  int threads)
{
    if (ie_cpu_isa() < 2) return -1;
    const int64_t T = KH * KW, K = T * Cw, P = OH * OW, blocks = (Co + 15) / 16;
    if (T > 64 || K > MAXK || OW < NP) return -1;  /* narrow maps: ie_conv (a tile would span 3+ rows) */
    const int64_t L = line_len(W, pad, stride), ws = L / stride, Hp = H + 2 * pad, rowwords = Cw * L;
    const int64_t tiles = (P + NP - 1) / NP, tasks = N * tiles;
    int64_t *off = malloc((size_t)K * sizeof(int64_t));
    if (!off) return -1;
    for (int64_t ky = 0; ky < KH; ky++)  /* k = (ky·KW + kx)·Cw + q, as the weight blocks */
        for (int64_t kx = 0; kx < KW; kx++)
            for (int64_t q = 0; q < Cw; q++)
                off[(ky * KW + kx) * Cw + q] = ky * rowwords + q * L + (kx % stride) * ws + kx / stride;
    #pragma omp parallel num_threads(threads)
    {
        #pragma omp for schedule(dynamic, 4)
        for (int64_t t = 0; t < tasks; t++) {
            const int64_t n = t / tiles, p0 = (t % tiles) * NP;
            const int count = P - p0 < NP ? (int)(P - p0) : NP;
            tile_ctx c;
            c.nseg = 0, c.ntaps = 0, c.delta[1] = 0;
            c.keep = count == NP ? (__mmask16)0xffff : (__mmask16)((1u << count) - 1);
            c.wpc = wpc, c.wrow = wrow, c.scale = scale, c.ks = sample ? sample + n : NULL, c.T = T, c.P = P;
            c.out = out + n * Co * P + p0;
            c.stream = count == NP && P % 16 == 0 && !((uintptr_t)out & 63);
            for (int i = 0; i < count;) {  /* the row segments of the tile */
                const int64_t oy = (p0 + i) / OW, ox = (p0 + i) % OW;
                const int len = (int)(OW - ox < count - i ? OW - ox : count - i);
                const uint32_t lanes = ((1u << len) - 1) << i;
                c.delta[c.nseg] = (n * Hp + oy * stride) * rowwords + ox - i;
                c.ma[c.nseg] = (__mmask8)(lanes & 0xff);
                c.mb[c.nseg++] = (__mmask8)(lanes >> 8);
                i += len;
            }
            __m512i kb = _mm512_set1_epi32((int32_t)(C * T));
            for (int64_t ky = 0; ky < KH; ky++)  /* padded taps, as lane masks */
                for (int64_t kx = 0; kx < KW; kx++) {
                    __mmask16 lanes = 0;
                    for (int i = 0; i < count; i++) {
                        const int64_t iy = ((p0 + i) / OW) * stride - pad + ky;
                        const int64_t ix = ((p0 + i) % OW) * stride - pad + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W) lanes |= (__mmask16)(1u << i);
                    }
                    if (!lanes) continue;
                    c.tap[c.ntaps] = (int32_t)(ky * KW + kx);
                    c.lanes[c.ntaps++] = lanes;
                    kb = _mm512_mask_sub_epi32(kb, lanes, kb, _mm512_set1_epi32((int32_t)C));
                }
            c.kb = kb;
            for (int64_t b = 0; b < blocks; b++)
                for (int64_t co0 = b * 16; co0 < b * 16 + 16 && co0 < Co; co0 += CG) {
                    const int ncols = Co - co0 < CG ? (int)(Co - co0) : CG;
                    const uint64_t *wb = wt + b * K * 16 + (co0 - b * 16);
                    if (c.nseg == 1) block(xp, off, wb, K, co0, ncols, &c, 0);
                    else block(xp, off, wb, K, co0, ncols, &c, 1);
                }
        }
        _mm_sfence();  /* the streamed stores are visible before the caller reads the output */
    }
    free(off);
    return 0;
}
