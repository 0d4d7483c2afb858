//go:build cuda && cudaemu

// runtime.cpp: the host emulation's runtime: device memory (malloc, up to a
// 64 GiB limit so that the out-of-memory path can be tested), launches
// (blocks one after another, the threads of a block as fibers) and the
// __syncthreads and shuffle primitives of emu.h.
#include <ucontext.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>

#include "emu.h"

emu_dim3 threadIdx;
emu_dim3 blockIdx, blockDim, gridDim;

// Every kernel module's table (table_gen.cpp, generated).
void emu_for_each_table(void (*add)(emu_entry* entries, int n));

namespace {

constexpr int kThreads = 256;           // every kernel of ../kernels runs blocks of 256
constexpr size_t kStack = 256 * 1024;  // per GPU thread

// A block runs its 256 threads as fibers (ucontext) on the launching OS
// thread: each runs until its next __syncthreads or its end, then the next
// one; a round over all threads is one barrier phase, in increasing thread
// order in even phases and decreasing order in odd ones. A round in which some
// threads wait at a barrier while others have finished is a divergent
// barrier (undefined on the GPU): the launch fails.
struct Block {
    ucontext_t sched;
    ucontext_t ctx[kThreads];
    char* stacks[kThreads];
    bool done[kThreads];
    int cur = 0;
    emu_trampoline fn = nullptr;
    const uint64_t* args = nullptr;
    uint64_t slots[kThreads];

    Block() {
        for (int t = 0; t < kThreads; ++t) stacks[t] = new char[kStack];
    }

    static void entry();

    // run runs one block; it returns false on a divergent barrier.
    bool run(emu_trampoline f, const uint64_t* a) {
        fn = f;
        args = a;
        for (int t = 0; t < kThreads; ++t) {
            getcontext(&ctx[t]);
            ctx[t].uc_stack.ss_sp = stacks[t];
            ctx[t].uc_stack.ss_size = kStack;
            ctx[t].uc_link = &sched;
            makecontext(&ctx[t], entry, 0);
            done[t] = false;
        }
        for (int phase = 0;; ++phase) {
            for (int i = 0; i < kThreads; ++i) {
                // Alternate the order of the threads between phases, so
                // that a missing __syncthreads shows as a changed result.
                const int t = phase % 2 == 0 ? i : kThreads - 1 - i;
                if (done[t]) continue;
                cur = t;
                threadIdx = emu_dim3{(unsigned)t, 0, 0};
                swapcontext(&sched, &ctx[t]);
            }
            int now = 0;
            for (int t = 0; t < kThreads; ++t) now += done[t];
            if (now == kThreads) return true;
            if (now > 0) return false;  // some finished, some wait at a barrier
        }
    }
};

Block* blk;

void Block::entry() {
    blk->fn(blk->args);
    blk->done[blk->cur] = true;  // then uc_link returns to sched
}

std::mutex mu;  // one launch at a time, whatever thread asks
std::unordered_map<std::string, emu_entry>* table;
const int64_t limit = int64_t(64) << 30;  // the emulated device's memory
int64_t used = 0;
std::unordered_map<uintptr_t, int64_t> sizes;

void build_table() {
    table = new std::unordered_map<std::string, emu_entry>;
    auto add = [](emu_entry* e, int n) {
        for (int i = 0; i < n; ++i) (*table)[e[i].name] = e[i];
    };
    emu_for_each_table(add);
}

}  // namespace

void __syncthreads() { swapcontext(&blk->ctx[blk->cur], &blk->sched); }

void emu_exchange(const void* v, void* out, int size, int src_lane, bool valid) {
    const int t = (int)threadIdx.x;
    memcpy(&blk->slots[t], v, size);
    __syncthreads();
    if (valid)
        memcpy(out, &blk->slots[(t & ~31) | src_lane], size);
    else
        memcpy(out, v, size);
    __syncthreads();
}

extern "C" {

// emu_launch returns 0, or 1 for an unknown kernel, 2 for a wrong argument
// count, 3 for a block size other than 256, 4 for a divergent barrier.
int emu_launch(const char* name, int gx, int gy, int block, const uint64_t* args, int nargs) {
    std::lock_guard<std::mutex> lock(mu);
    if (table == nullptr) build_table();
    auto it = table->find(name);
    if (it == table->end()) return 1;
    if (it->second.nargs != nargs) return 2;
    if (block != kThreads) return 3;
    if (blk == nullptr) blk = new Block;
    gridDim = emu_dim3{(unsigned)gx, (unsigned)gy, 1};
    blockDim = emu_dim3{(unsigned)block, 1, 1};
    for (int y = 0; y < gy; ++y)
        for (int x = 0; x < gx; ++x) {
            blockIdx = emu_dim3{(unsigned)x, (unsigned)y, 0};
            if (!blk->run(it->second.call, args)) return 4;
        }
    return 0;
}

// emu_alloc returns 0 when the allocation would pass the limit.
uintptr_t emu_alloc(int64_t bytes) {
    std::lock_guard<std::mutex> lock(mu);
    if (bytes < 1 || used + bytes > limit) return 0;
    void* p = malloc((size_t)bytes);
    if (p == nullptr) return 0;
    memset(p, 0xff, (size_t)bytes);  // NaN everywhere: reading unwritten memory shows
    used += bytes;
    sizes[(uintptr_t)p] = bytes;
    return (uintptr_t)p;
}

void emu_free(uintptr_t p) {
    std::lock_guard<std::mutex> lock(mu);
    auto it = sizes.find(p);
    if (it == sizes.end()) return;
    used -= it->second;
    sizes.erase(it);
    free((void*)p);
}

int64_t emu_limit(void) { return limit; }
int64_t emu_used(void) { return used; }

void emu_to_device(uintptr_t dst, const void* src, int64_t bytes) { memcpy((void*)dst, src, (size_t)bytes); }
void emu_to_host(void* dst, uintptr_t src, int64_t bytes) { memcpy(dst, (const void*)src, (size_t)bytes); }
void emu_zero(uintptr_t dst, int64_t bytes) { memset((void*)dst, 0, (size_t)bytes); }
void emu_copy(uintptr_t dst, uintptr_t src, int64_t bytes) { memmove((void*)dst, (const void*)src, (size_t)bytes); }

}  // extern "C"
