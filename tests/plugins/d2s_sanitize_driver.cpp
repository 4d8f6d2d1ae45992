// Runs every entry point of d2s_fused.cu (through the host emulation) on small shapes, with
// buffers of exactly the right size, so that AddressSanitizer / UndefinedBehaviorSanitizer
// catch any out-of-bounds or misaligned access, and checks every output was written. The V = 1
// variants, which the launcher picks for pointers that are not 16-byte aligned, also run with
// every pointer one element off.
// D2S_KERNELS is defined by the test: a list of X(name, T, V, R).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "d2s_host_emulation.cpp"

template <typename T>
static T* buffer(size_t n, unsigned short fill_bits) {
    size_t bytes = ((n * sizeof(T) + 15) / 16) * 16;  // 16-byte aligned, as the launcher requires
    T* p = static_cast<T*>(aligned_alloc(16, bytes));
    for (size_t i = 0; i < n; ++i) {
        if (sizeof(T) == 2) std::memcpy(&p[i], &fill_bits, 2);
        else p[i] = fill_bits ? T(0.5f) : T(0);
    }
    return p;
}

template <typename T>
static bool unwritten(const T* out, size_t n, unsigned short poison) {
    for (size_t i = 0; i < n; ++i) {
        if (sizeof(T) == 2) {
            unsigned short bits;
            std::memcpy(&bits, &out[i], 2);
            if (bits == poison) return true;
        } else if (out[i] != out[i]) {  // NaN poison
            return true;
        }
    }
    return false;
}

template <typename T>
static int run(void (*kernel)(unsigned, unsigned, const T*, const T*, const T*, T*, int, int, int, int),
               const char* name, int V, int R, const int* s, int off) {
    const int N = s[0], C = s[1], H = s[2], W = s[3];
    if (W % V) return 0;
    const size_t n = (size_t)N * C * H * W, co = C / 4;
    const long long threads = (long long)N * co * ((H + R - 1) / R) * (W / V);
    const unsigned short poison = 0x7e00;  // an FP16 NaN
    T *x = buffer<T>(n + off, 0x3800), *w = buffer<T>(co * 9 + off, 0x3800), *b = buffer<T>(co + off, 0x3800);
    T* out = buffer<T>(n + off, poison);
    if (sizeof(T) == 4) for (size_t i = 0; i < n + off; ++i) out[i] = T(__builtin_nanf(""));
    kernel((unsigned)((threads + D2S_BLOCK - 1) / D2S_BLOCK), D2S_BLOCK, x + off, w + off, b + off, out + off,
           N, C, H, W);
    const bool bad = unwritten(out + off, n, poison);
    if (bad) std::printf("%s left outputs unwritten at %dx%dx%dx%d (offset %d)\n", name, N, C, H, W, off);
    free(x), free(w), free(b), free(out);
    return bad;
}

int main() {
    static const int shapes[][4] = {{1, 4, 1, 1}, {1, 4, 1, 8}, {2, 8, 3, 8}, {1, 4, 5, 24}, {2, 12, 2, 2},
                                    {1, 8, 9, 40}, {1, 4, 13, 4}, {3, 8, 7, 5}};
    int failures = 0, runs = 0;
    for (const auto& s : shapes) {
#define X(NAME, T, V, R) \
    for (int off = 0; off <= (V == 1); ++off) failures += run<T>(NAME, #NAME, V, R, s, off), ++runs;
        D2S_KERNELS
#undef X
    }
    std::printf("%d launches, %d with unwritten outputs\n", runs, failures);
    return failures != 0;
}
