// Fused D2S op (design.md §3): PixelShuffle(r=2) -> depthwise 3x3 (zero padding 1) -> +bias.
//
//   x    [N, C, H, W]      C = 4 * Co, NCHW contiguous
//   w    [Co, 1, 3, 3]     depthwise filters (same dtype as x)
//   b    [Co]              bias (same dtype as x)
//   out  [N, Co, 2H, 2W]   NCHW contiguous
//
// The shuffled tensor S is never written: S[n, c, Y, X] is read straight from
// x[n, 4c + 2(Y % 2) + (X % 2), Y / 2, X / 2]. Shuffled row 2i is made of sub-channels 4c+0
// (even X) and 4c+1 (odd X) at input row i; shuffled row 2i+1 of 4c+2 and 4c+3.
//
// Work split: one thread owns one output channel c, R consecutive input rows i0..i0+R-1 and
// V consecutive input columns j0..j0+V-1, i.e. output rows 2*i0 .. 2*(i0+R)-1 and output
// columns 2*j0 .. 2*j0+2V-1. It loads the R+2 shuffled-row segments it needs (each one
// vector of V elements from both sub-channels plus one halo element on each side), so the
// input is read about (R+1)/R times from cache and once from DRAM; every output is written
// once, with vector stores. Accumulation is FP32 for both FP32 and FP16 tensors.
//
// Vector width V requires W % V == 0 and 16-byte-aligned (V * sizeof(T)) base pointers; the
// launcher (csrinfer/plugins/launch.py) picks the widest V that fits and falls back to V = 1.
//
// Entry points: d2s_fused_<f32|f16>_v<V>_r<R>, all with the same C signature
//   (const T* x, const T* w, const T* b, T* out, int N, int C, int H, int W)
// launched on a 1-D grid of 1-D blocks of D2S_BLOCK threads covering
// N * Co * ceil(H / R) * (W / V) threads (see launch.py: the one place that computes it).
//
// No includes: the same source compiles with NVRTC, nvcc, and (for the CPU emulation test)
// a host C++ compiler. FP16 values travel as their 16-bit patterns (unsigned short).

#define D2S_BLOCK 256

typedef unsigned short d2s_half;  // IEEE binary16 bit pattern

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define D2S_DEVICE __device__ __forceinline__
__device__ __forceinline__ float d2s_to_float(d2s_half h) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
}
__device__ __forceinline__ d2s_half d2s_from_float(float f, d2s_half) {
    d2s_half h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
}
#else  // host emulation (tests only): the harness supplies the CUDA built-ins
#define D2S_DEVICE static inline
static inline float d2s_to_float(d2s_half h) {
    _Float16 v;
    __builtin_memcpy(&v, &h, 2);
    return (float)v;
}
static inline d2s_half d2s_from_float(float f, d2s_half) {
    _Float16 v = (_Float16)f;
    d2s_half h;
    __builtin_memcpy(&h, &v, 2);
    return h;
}
#endif

D2S_DEVICE float d2s_to_float(float v) { return v; }
D2S_DEVICE float d2s_from_float(float f, float) { return f; }

// V elements loaded or stored together (ld/st.v2/v4). The alignment is capped at 16 bytes, all
// the launcher guarantees: a 32-byte output pack is stored as two 16-byte stores.
template <typename T, int V>
struct alignas(sizeof(T) * V < 16 ? sizeof(T) * V : 16) D2SPack {
    T v[V];
};

// One shuffled row between shuffled columns 2*j0-1 and 2*j0+2V (2V+2 values), raw:
// `even` = sub-channel of even X at cols j0..j0+V-1, `odd` = sub-channel of odd X at the same
// cols, `left` = odd sub-channel at j0-1 (X = 2*j0-1), `right` = even sub-channel at j0+V.
template <typename T, int V>
struct D2SRow {
    D2SPack<T, V> even, odd;
    T left, right;
};

template <typename T, int V>
D2S_DEVICE void d2s_load_row(D2SRow<T, V>& r, const T* __restrict__ even, const T* __restrict__ odd,
                             bool valid, int j0, int W) {
    if (!valid) {  // above the first or below the last row: zero padding
#pragma unroll
        for (int k = 0; k < V; ++k) { r.even.v[k] = T(0); r.odd.v[k] = T(0); }
        r.left = T(0);
        r.right = T(0);
        return;
    }
    r.even = *reinterpret_cast<const D2SPack<T, V>*>(even + j0);
    r.odd = *reinterpret_cast<const D2SPack<T, V>*>(odd + j0);
    r.left = j0 > 0 ? odd[j0 - 1] : T(0);
    r.right = j0 + V < W ? even[j0 + V] : T(0);
}

// Shuffled values in column order: s[k] is shuffled column 2*j0 - 1 + k.
template <typename T, int V>
D2S_DEVICE void d2s_unpack_row(const D2SRow<T, V>& r, float (&s)[2 * V + 2]) {
    s[0] = d2s_to_float(r.left);
#pragma unroll
    for (int k = 0; k < V; ++k) {
        s[2 * k + 1] = d2s_to_float(r.even.v[k]);
        s[2 * k + 2] = d2s_to_float(r.odd.v[k]);
    }
    s[2 * V + 1] = d2s_to_float(r.right);
}

// One output row segment (2V values) from the three shuffled rows around it, stored at `dst`.
template <typename T, int V>
D2S_DEVICE void d2s_conv_row(const D2SRow<T, V>& top, const D2SRow<T, V>& mid, const D2SRow<T, V>& bot,
                             const float (&w)[9], float bias, T* __restrict__ dst) {
    float a[2 * V + 2], m[2 * V + 2], c[2 * V + 2];
    d2s_unpack_row(top, a);
    d2s_unpack_row(mid, m);
    d2s_unpack_row(bot, c);
    D2SPack<T, 2 * V> o;
#pragma unroll
    for (int x = 0; x < 2 * V; ++x) {
        float acc = bias;
        acc += w[0] * a[x] + w[1] * a[x + 1] + w[2] * a[x + 2];
        acc += w[3] * m[x] + w[4] * m[x + 1] + w[5] * m[x + 2];
        acc += w[6] * c[x] + w[7] * c[x + 1] + w[8] * c[x + 2];
        o.v[x] = d2s_from_float(acc, T(0));
    }
    if (V == 1) {  // the variant for unaligned pointers: `dst` may be off by one element
        dst[0] = o.v[0];
        dst[1] = o.v[1];
    } else {
        *reinterpret_cast<D2SPack<T, 2 * V>*>(dst) = o;
    }
}

template <typename T, int V, int R>
D2S_DEVICE void d2s_fused_body(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,
                               T* __restrict__ out, int N, int C, int H, int W) {
    const int Co = C >> 2;
    const int strips = W / V;
    const int groups = (H + R - 1) / R;
    const long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    const long long total = (long long)N * Co * groups * strips;
    if (t >= total) return;
    int s, g, c;
    long long plane;  // n * Co + c
    if (total <= 0x7fffffffLL) {  // the usual case: 32-bit division is several times cheaper
        unsigned u = (unsigned)t;
        s = (int)(u % (unsigned)strips);
        u /= (unsigned)strips;
        g = (int)(u % (unsigned)groups);
        u /= (unsigned)groups;
        plane = u;
        c = (int)(u % (unsigned)Co);
    } else {
        s = (int)(t % strips);
        g = (int)(t / strips % groups);
        plane = t / strips / groups;
        c = (int)(plane % Co);
    }
    const int j0 = s * V, i0 = g * R;

    float wt[9];
#pragma unroll
    for (int k = 0; k < 9; ++k) wt[k] = d2s_to_float(w[c * 9 + k]);
    const float bias = d2s_to_float(b[c]);

    // Input channel 4c of image n is channel 4 * plane of the flattened [N * C] planes.
    const long long hw = (long long)H * W;
    const T* p0 = x + 4 * plane * hw;  // even Y, even X
    const T* p1 = p0 + hw;             // even Y, odd X
    const T* p2 = p1 + hw;             // odd Y, even X
    const T* p3 = p2 + hw;             // odd Y, odd X

    // rows[2k]   = shuffled row 2(i0+k)-1 (odd Y, input row i0+k-1)
    // rows[2k+1] = shuffled row 2(i0+k)   (even Y, input row i0+k), k = 0..R
    // All loads are issued before any arithmetic so that they are in flight together.
    D2SRow<T, V> rows[2 * R + 2];
#pragma unroll
    for (int k = 0; k <= R; ++k) {
        const int up = i0 + k - 1, here = i0 + k;
        d2s_load_row(rows[2 * k], p2 + (long long)up * W, p3 + (long long)up * W, up >= 0 && up < H, j0, W);
        d2s_load_row(rows[2 * k + 1], p0 + (long long)here * W, p1 + (long long)here * W, here < H, j0, W);
    }

    const long long ow = 2LL * W;
    T* dst = out + plane * (4 * hw) + 2LL * i0 * ow + 2 * j0;
#pragma unroll
    for (int k = 0; k < R; ++k) {
        if (i0 + k >= H) break;
        // Output row 2i reads shuffled rows 2i-1, 2i, 2i+1; output row 2i+1 reads 2i, 2i+1, 2i+2.
        // rows[2k+2] is shuffled row 2i+1 (odd Y, input row i), rows[2k+3] is shuffled row 2i+2.
        d2s_conv_row<T, V>(rows[2 * k], rows[2 * k + 1], rows[2 * k + 2], wt, bias, dst);
        d2s_conv_row<T, V>(rows[2 * k + 1], rows[2 * k + 2], rows[2 * k + 3], wt, bias, dst + ow);
        dst += 2 * ow;
    }
}

#ifndef D2S_ENTRY
#define D2S_ENTRY(NAME, T, V, R)                                                                     \
    extern "C" __global__ void __launch_bounds__(D2S_BLOCK)                                          \
        NAME(const T* __restrict__ x, const T* __restrict__ w, const T* __restrict__ b,              \
             T* __restrict__ out, int N, int C, int H, int W) {                                      \
        d2s_fused_body<T, V, R>(x, w, b, out, N, C, H, W);                                           \
    }
#endif

// FP32: V up to 4 (16-byte loads); FP16: V up to 8 (16-byte loads). R in {1, 2, 4}.
D2S_ENTRY(d2s_fused_f32_v1_r1, float, 1, 1)
D2S_ENTRY(d2s_fused_f32_v1_r2, float, 1, 2)
D2S_ENTRY(d2s_fused_f32_v1_r4, float, 1, 4)
D2S_ENTRY(d2s_fused_f32_v2_r1, float, 2, 1)
D2S_ENTRY(d2s_fused_f32_v2_r2, float, 2, 2)
D2S_ENTRY(d2s_fused_f32_v2_r4, float, 2, 4)
D2S_ENTRY(d2s_fused_f32_v4_r1, float, 4, 1)
D2S_ENTRY(d2s_fused_f32_v4_r2, float, 4, 2)
D2S_ENTRY(d2s_fused_f32_v4_r4, float, 4, 4)
D2S_ENTRY(d2s_fused_f16_v1_r1, d2s_half, 1, 1)
D2S_ENTRY(d2s_fused_f16_v1_r2, d2s_half, 1, 2)
D2S_ENTRY(d2s_fused_f16_v1_r4, d2s_half, 1, 4)
D2S_ENTRY(d2s_fused_f16_v2_r1, d2s_half, 2, 1)
D2S_ENTRY(d2s_fused_f16_v2_r2, d2s_half, 2, 2)
D2S_ENTRY(d2s_fused_f16_v2_r4, d2s_half, 2, 4)
D2S_ENTRY(d2s_fused_f16_v4_r1, d2s_half, 4, 1)
D2S_ENTRY(d2s_fused_f16_v4_r2, d2s_half, 4, 2)
D2S_ENTRY(d2s_fused_f16_v4_r4, d2s_half, 4, 4)
D2S_ENTRY(d2s_fused_f16_v8_r1, d2s_half, 8, 1)
D2S_ENTRY(d2s_fused_f16_v8_r2, d2s_half, 8, 2)
D2S_ENTRY(d2s_fused_f16_v8_r4, d2s_half, 8, 4)
