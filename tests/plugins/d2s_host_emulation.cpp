// CPU emulation of d2s_fused.cu for tests: each entry point becomes a host function that runs
// every (block, thread) of the launch one after the other. The kernel uses no shared memory
// and no barriers, so a sequential run computes exactly what the GPU computes.
struct D2SDim3 {
    unsigned x, y, z;
};
static D2SDim3 blockIdx, blockDim, threadIdx;

#define __global__
#define __launch_bounds__(n)
#define D2S_ENTRY(NAME, T, V, R)                                                                     \
    extern "C" void NAME(unsigned grid, unsigned block, const T* x, const T* w, const T* b, T* out, \
                         int N, int C, int H, int W) {                                              \
        blockDim = {block, 1, 1};                                                                    \
        for (unsigned bx = 0; bx < grid; ++bx)                                                       \
            for (unsigned tx = 0; tx < block; ++tx) {                                                \
                blockIdx = {bx, 0, 0};                                                               \
                threadIdx = {tx, 0, 0};                                                              \
                d2s_fused_body<T, V, R>(x, w, b, out, N, C, H, W);                                   \
            }                                                                                        \
    }

#include "d2s_fused.cu"
