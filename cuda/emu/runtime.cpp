//go:build cuda && cudaemu

// runtime.cpp: the host emulation's runtime: device memory (malloc, up to a
// 64 GiB limit so that the out-of-memory path can be tested), launches (one
// cluster of blocks after another, every thread of the cluster a fiber) and
// the scheduler's sync objects: block and named barriers, warp and
// warpgroup collectives, waits on a condition, the cluster barrier. emu.h
// has the design.
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <ucontext.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "emu.h"

emu_dim3 threadIdx;
emu_dim3 blockIdx, blockDim, gridDim;

// Every kernel module's table (table_gen.cpp, generated).
void emu_for_each_table(void (*add)(emu_entry* entries, int n));

namespace {

constexpr size_t kStack = 128 * 1024;  // per GPU thread
constexpr int kMaxBlock = 1024;
constexpr int kMaxClusterThreads = 8 * 1024;
constexpr int kBarriers = 16;

// A wait: the fiber runs again once ready(arg) holds.
struct Wait {
    bool (*ready)(const void*) = nullptr;
    const void* arg = nullptr;
    const char* what = nullptr;
};

struct Fiber {
    ucontext_t ctx;
    int cta;       // block rank within the cluster
    int warp;      // warp index within the cluster (the unit the schedule holds back)
    emu_dim3 tid;  // threadIdx
    int lin;       // linear thread index within the block
    bool done;
    bool blocked;
    Wait wait;
};

struct Barrier {
    int arrived = 0, count = 0;
    uint64_t gen = 0;
};

struct Collective {
    int arrived = 0;
    uint64_t gen = 0;
    const char* name = nullptr;
    void* ops[128];
};

struct Cta {
    emu_dim3 idx;  // blockIdx
    unsigned char* smem = nullptr;
    int exited = 0;
    Barrier bars[kBarriers];
    std::vector<Collective> warps, groups;
};

// Launch state of the cluster being run.
struct Run {
    emu_trampoline fn = nullptr;
    const unsigned char* const* params = nullptr;
    int nthreads = 0;  // per block
    std::vector<Fiber> fibers;
    std::vector<Cta> ctas;
    std::vector<char*> stacks;  // kept across launches, grown on demand
    emu_dim3 cluster_dim{1, 1, 1}, cluster_idx{0, 0, 0};
    uint32_t smem_bytes = 0;
    Barrier cluster_bar;
    int round = 0;          // the scheduler's round (emu_yield_turn)
    std::vector<int> held;  // per warp of the cluster: rounds it still sits out
    bool random = false;    // hold warps back (the seed is not 0)
    uint64_t rng = 0;       // the schedule's random state
    Fiber* cur = nullptr;
    ucontext_t sched;
    std::string error;
    bool aborted = false;
};

Run* run;

std::mutex mu;  // one launch at a time, whatever thread asks

// The schedule's seed (emu_set_schedule_seed, DINOCLIP_EMU_SEED): 0 runs
// every warp in every round; any other value holds warps back at random.
uint64_t schedule_seed = 1;
bool schedule_seed_read = false;
std::string schedule_seed_error;

// A warp starts to sit out with odds 1 in kHoldOdds a round, for 1 to
// kHoldRounds rounds: long enough for the others to get a stretch of
// collectives ahead (search.cu's warps run 16 mma.sync after their last
// ldmatrix of a tile), and a round in which nothing moves releases them
// all, so long holds cost little.
constexpr uint64_t kHoldOdds = 8, kHoldRounds = 64;

uint64_t splitmix64(uint64_t& s) {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

// read_schedule_seed takes DINOCLIP_EMU_SEED once, at the first launch or
// the first emu_set_schedule_seed, whichever comes first.
void read_schedule_seed() {
    if (schedule_seed_read) return;
    schedule_seed_read = true;
    const char* v = getenv("DINOCLIP_EMU_SEED");
    if (v == nullptr || *v == 0) return;
    char* end = nullptr;
    errno = 0;
    const unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != 0 || strspn(v, "0123456789") != strlen(v))
        schedule_seed_error = std::string("DINOCLIP_EMU_SEED=") + v + ": not an unsigned decimal integer";
    else
        schedule_seed = x;
}

// cluster_seed gives each cluster run of each kernel its own schedule, the
// same in every process whatever ran before it.
uint64_t cluster_seed(const char* name, int cluster) {
    uint64_t h = 1469598103934665603ull;  // FNV-1a of the name
    for (const char* c = name; *c; ++c) h = (h ^ (unsigned char)*c) * 1099511628211ull;
    uint64_t s = schedule_seed;
    s = splitmix64(s) ^ h;
    s = splitmix64(s) ^ (uint64_t)cluster;
    return splitmix64(s);
}
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

Cta& my_cta() { return run->ctas[run->cur->cta]; }

// block parks the running fiber on w (w.ready == nullptr: just yield) and
// returns when the scheduler resumes it.
void block(Wait w) {
    Fiber* f = run->cur;
    f->blocked = w.ready != nullptr;
    f->wait = w;
    swapcontext(&f->ctx, &run->sched);
}

void fiber_entry() {
    run->fn(run->params);
    Fiber* f = run->cur;
    f->done = true;
    run->ctas[f->cta].exited++;
    // uc_link returns to the scheduler.
}

void set_builtins(const Fiber& f) {
    threadIdx = f.tid;
    blockIdx = run->ctas[f.cta].idx;
}

std::string thread_name(const Fiber& f) {
    const emu_dim3& b = run->ctas[f.cta].idx;
    char buf[96];
    snprintf(buf, sizeof buf, "block (%u,%u,%u) thread (%u,%u,%u)", b.x, b.y, b.z, f.tid.x, f.tid.y, f.tid.z);
    return buf;
}

// deadlock describes why no fiber can run.
std::string deadlock() {
    for (const Fiber& f : run->fibers) {
        if (f.done || !f.blocked) continue;
        const Cta& c = run->ctas[f.cta];
        std::string s = thread_name(f) + " waits on " + (f.wait.what ? f.wait.what : "a condition");
        // A block barrier that threads of the block skipped by exiting is
        // a divergent barrier; anything else nobody can complete is a
        // deadlock.
        if (c.exited > 0 && f.wait.what != nullptr && strncmp(f.wait.what, "barrier ", 8) == 0)
            s = "divergent barrier: " + s + " while " + std::to_string(c.exited) +
                " threads of its block have exited";
        else
            s = "deadlock: " + s + " and no thread can run";
        return s;
    }
    return "deadlock";
}

// hold_warps picks the warps that sit out this round (a random schedule
// only) and says whether any does.
bool hold_warps() {
    if (!run->random) return false;
    bool any = false;
    for (int& h : run->held) {
        if (h > 0)
            --h;
        else if (splitmix64(run->rng) % kHoldOdds == 0)
            h = 1 + (int)(splitmix64(run->rng) % kHoldRounds);
        any = any || h > 0;
    }
    return any;
}

// turn_passed: the round a thread that yielded its turn waits for has come.
bool turn_passed(const void* arg) { return run->round >= *(const int*)arg; }

// schedule runs the fibers of the cluster to their end; false on an error
// (run->error says which).
bool schedule() {
    const int n = (int)run->fibers.size();
    bool may_hold = true;
    for (int round = 0;; ++round) {
        run->round = round;
        bool progressed = false, turn_pending = false;
        int alive = 0;
        const bool holding = may_hold && hold_warps();
        may_hold = true;
        for (int i = 0; i < n; ++i) {
            // Alternate the order of the threads between rounds, so that a
            // missing barrier shows as a changed result.
            Fiber& f = run->fibers[round % 2 == 0 ? i : n - 1 - i];
            if (f.done) continue;
            ++alive;
            // A warp held back lets the others run ahead of it: without
            // this every warp completes one collective a round, in step
            // with the others, and a barrier missing between warps that
            // only meet in collectives never shows.
            if (holding && run->held[f.warp] > 0) continue;
            if (f.blocked) {
                run->cur = &f;  // ready() may act for the waiting thread
                set_builtins(f);
                if (!f.wait.ready(f.wait.arg)) {
                    turn_pending |= f.wait.ready == turn_passed;
                    continue;
                }
                f.blocked = false;
            }
            run->cur = &f;
            set_builtins(f);
            swapcontext(&run->sched, &f.ctx);
            progressed = true;
            if (run->aborted) return false;
        }
        if (alive == 0) return true;
        if (!progressed && turn_pending) continue;  // a yielded thread runs next round
        if (!progressed && holding) {
            // The others may be waiting on the warps held back: release
            // them, and hold none next round, which tells a deadlock.
            std::fill(run->held.begin(), run->held.end(), 0);
            may_hold = false;
            continue;
        }
        if (!progressed) {
            run->error = deadlock();
            return false;
        }
    }
}

bool gen_moved(const void* arg) {
    auto* w = (const std::pair<const uint64_t*, uint64_t>*)arg;
    return *w->first != w->second;
}

// arrive counts the calling thread at b; wait: block until the barrier
// completes.
void arrive(Barrier& b, int count, bool wait, const char* what) {
    if (b.count == 0) b.count = count;
    if (b.count != count) emu_fail("%s: %d threads expected, another thread said %d", what, b.count, count);
    const std::pair<const uint64_t*, uint64_t> w{&b.gen, b.gen};
    if (++b.arrived == b.count) {
        b.arrived = 0;
        b.count = 0;
        b.gen++;
    }
    if (wait) block(Wait{gen_moved, &w, what});
    // Let the others run at every barrier, completed or not, so that the
    // order of the threads changes as it does at a barrier.
    else
        block(Wait{});
}

}  // namespace

void emu_fail(const char* fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    run->error = thread_name(*run->cur) + ": " + buf;
    run->aborted = true;
    swapcontext(&run->cur->ctx, &run->sched);
    abort();  // an aborted fiber is never resumed
}

void emu_bar_sync(int id, int count) {
    if (id < 0 || id >= kBarriers) emu_fail("bar.sync %d: barriers are 0..15", id);
    if (count == 0) count = run->nthreads;
    if (count < 1 || count > run->nthreads || (count % 32 != 0 && count != run->nthreads))
        emu_fail("bar.sync %d, %d: the count must be a multiple of 32 up to the block's %d threads", id, count,
                 run->nthreads);
    static const char* names[kBarriers] = {"barrier 0", "barrier 1", "barrier 2",  "barrier 3",
                                           "barrier 4", "barrier 5", "barrier 6",  "barrier 7",
                                           "barrier 8", "barrier 9", "barrier 10", "barrier 11",
                                           "barrier 12", "barrier 13", "barrier 14", "barrier 15"};
    arrive(my_cta().bars[id], count, true, names[id]);
}

void emu_bar_arrive(int id, int count) {
    if (id < 0 || id >= kBarriers) emu_fail("bar.arrive %d: barriers are 0..15", id);
    if (count < 32 || count > run->nthreads || count % 32 != 0)
        emu_fail("bar.arrive %d, %d: the count must be a multiple of 32 up to the block's %d threads", id, count,
                 run->nthreads);
    arrive(my_cta().bars[id], count, false, "bar.arrive");
}

void emu_collective(int width, const char* name, emu_collective_fn fn, void* op) {
    Cta& c = my_cta();
    const int t = run->cur->lin;
    std::vector<Collective>& v = width == 32 ? c.warps : c.groups;
    if (width != 32 && width != 128) emu_fail("collective %s of %d threads", name, width);
    Collective& col = v[t / width];
    const int members = std::min(width, run->nthreads - (t / width) * width);
    if (members != width) emu_fail("%s needs a whole %s; the block's last one has %d threads", name,
                                   width == 32 ? "warp" : "warpgroup", members);
    if (col.arrived == 0)
        col.name = name;
    else if (strcmp(col.name, name) != 0)
        emu_fail("divergent collective: this thread is at %s while others of its %s are at %s", name,
                 width == 32 ? "warp" : "warpgroup", col.name);
    col.ops[t % width] = op;
    const std::pair<const uint64_t*, uint64_t> w{&col.gen, col.gen};
    if (++col.arrived == members) {
        col.arrived = 0;
        fn(col.ops, members);
        col.gen++;
        block(Wait{});
        return;
    }
    block(Wait{gen_moved, &w, name});
}

void emu_wait_until(bool (*ready)(const void*), const void* arg, const char* what) {
    block(Wait{ready, arg, what});
}

void emu_yield_turn() {
    // Skip the next round, in which every other thread that can run does,
    // whatever the order; a plain yield would let this thread run first
    // when it was the last of its round, the order being reversed.
    const int next = run->round + 2;
    block(Wait{turn_passed, &next, "its turn"});
}

int emu_cta_rank() { return run->cur->cta; }
int emu_cluster_ctas() { return (int)run->ctas.size(); }
emu_dim3 emu_cluster_dim() { return run->cluster_dim; }
emu_dim3 emu_cluster_idx() { return run->cluster_idx; }
unsigned char* emu_smem(int rank) {
    if (rank < 0) return my_cta().smem;
    if (rank >= (int)run->ctas.size()) emu_fail("block rank %d in a cluster of %d", rank, (int)run->ctas.size());
    return run->ctas[rank].smem;
}
uint32_t emu_smem_bytes() { return run->smem_bytes; }
int emu_thread_slot() { return (int)(run->cur - run->fibers.data()); }
int emu_threads_in_cluster() { return (int)run->fibers.size(); }

void emu_cluster_sync() {
    arrive(run->cluster_bar, (int)run->fibers.size(), true, "the cluster barrier");
}

// Shuffles are warp collectives: each lane's record holds its value, where
// to put the result, and the lane it reads.
namespace {
struct Shuffle {
    const void* in;
    void* out;
    int size, src;
    bool valid;
};
void shuffle(void** ops, int n) {
    for (int i = 0; i < n; ++i) {
        Shuffle* s = (Shuffle*)ops[i];
        const Shuffle* from = s->valid ? (const Shuffle*)ops[s->src] : s;
        memcpy(s->out, from->in, s->size);
    }
}
}  // namespace

void emu_exchange(const void* v, void* out, int size, int src_lane, bool valid) {
    Shuffle s{v, out, size, src_lane & 31, valid};
    emu_collective(32, "a warp shuffle", shuffle, &s);
}

extern "C" {

// emu_kernel_params writes kernel name's parameter sizes (up to max) and
// returns how many it has, or -1 for an unknown kernel.
int emu_kernel_params(const char* name, int* out, int max) {
    std::lock_guard<std::mutex> lock(mu);
    if (table == nullptr) build_table();
    auto it = table->find(name);
    if (it == table->end()) return -1;
    for (int i = 0; i < it->second.nparams && i < max; ++i) out[i] = it->second.sizes[i];
    return it->second.nparams;
}

// emu_launch_ex runs kernel name; dims holds grid, block and cluster (x, y,
// z each; the cluster all ones for none), params each parameter's bytes.
// It returns 0, or 1 with a message in err.
int emu_launch_ex(const char* name, const int* dims, int smem_bytes, const unsigned char* const* params,
                  const int* param_sizes, int nparams, char* err, int errlen) {
    std::lock_guard<std::mutex> lock(mu);
    auto fail = [&](const std::string& s) {
        snprintf(err, errlen, "%s", s.c_str());
        return 1;
    };
    if (table == nullptr) build_table();
    auto it = table->find(name);
    if (it == table->end()) return fail(std::string("no kernel ") + name);
    const emu_entry& e = it->second;
    if (e.nparams != nparams)
        return fail(std::to_string(nparams) + " parameters given, the kernel has " + std::to_string(e.nparams));
    for (int i = 0; i < nparams; ++i)
        if (param_sizes[i] != e.sizes[i])
            return fail("parameter " + std::to_string(i) + " is " + std::to_string(param_sizes[i]) +
                        " bytes, the kernel declares " + std::to_string(e.sizes[i]));
    const int gx = dims[0], gy = dims[1], gz = dims[2], bx = dims[3], by = dims[4], bz = dims[5];
    const int cx = dims[6], cy = dims[7], cz = dims[8];
    for (int i = 0; i < 9; ++i)
        if (dims[i] < 1) return fail("grid, block and cluster dimensions must be at least 1");
    const int64_t threads = (int64_t)bx * by * bz;
    if (threads > kMaxBlock) return fail("block of " + std::to_string(threads) + " threads; at most 1024");
    if (gx % cx || gy % cy || gz % cz) return fail("the grid is not a multiple of the cluster");
    const int nctas = cx * cy * cz;
    if (nctas * threads > kMaxClusterThreads)
        return fail("cluster of " + std::to_string(nctas) + " blocks of " + std::to_string(threads) +
                    " threads: the emulator runs at most 8192 threads at once");
    if (smem_bytes < 0) return fail("negative shared memory");
    read_schedule_seed();
    if (!schedule_seed_error.empty()) return fail(schedule_seed_error);

    if (run == nullptr) run = new Run;
    Run& r = *run;
    r.fn = e.call;
    r.params = params;
    r.nthreads = (int)threads;
    r.smem_bytes = (uint32_t)smem_bytes;
    r.cluster_dim = emu_dim3{(unsigned)cx, (unsigned)cy, (unsigned)cz};
    gridDim = emu_dim3{(unsigned)gx, (unsigned)gy, (unsigned)gz};
    blockDim = emu_dim3{(unsigned)bx, (unsigned)by, (unsigned)bz};
    const int nfib = (int)(nctas * threads);
    while ((int)r.stacks.size() < nfib) r.stacks.push_back(new char[kStack]);
    r.fibers.assign(nfib, Fiber{});
    r.ctas.assign(nctas, Cta{});
    const int warps_per_cta = (int)((threads + 31) / 32);
    const size_t smem_alloc = ((size_t)smem_bytes + 1023) / 1024 * 1024;
    for (Cta& c : r.ctas) {
        c.warps.assign((threads + 31) / 32, Collective{});
        c.groups.assign((threads + 127) / 128, Collective{});
        // 1024-aligned, as the 128-byte swizzle pattern repeats every 1024
        // bytes of the shared address.
        if (smem_alloc > 0) c.smem = (unsigned char*)aligned_alloc(1024, smem_alloc);
    }
    int rc = 0;
    for (int z = 0; z < gz && rc == 0; z += cz)
        for (int y = 0; y < gy && rc == 0; y += cy)
            for (int x = 0; x < gx && rc == 0; x += cx) {
                r.cluster_idx = emu_dim3{(unsigned)(x / cx), (unsigned)(y / cy), (unsigned)(z / cz)};
                r.cluster_bar = Barrier{};
                r.aborted = false;
                r.error.clear();
                r.held.assign(nctas * warps_per_cta, 0);
                const int cluster = (z / cz) * (gy / cy) * (gx / cx) + (y / cy) * (gx / cx) + x / cx;
                r.random = schedule_seed != 0;
                r.rng = r.random ? cluster_seed(name, cluster) : 0;
                int f = 0;
                for (int k = 0; k < nctas; ++k) {
                    Cta& c = r.ctas[k];
                    // Block rank in the cluster: x fastest, as %cluster_ctarank.
                    c.idx = emu_dim3{(unsigned)(x + k % cx), (unsigned)(y + (k / cx) % cy), (unsigned)(z + k / (cx * cy))};
                    c.exited = 0;
                    for (Barrier& b : c.bars) b = Barrier{};
                    for (Collective& col : c.warps) col = Collective{};
                    for (Collective& col : c.groups) col = Collective{};
                    if (c.smem) memset(c.smem, 0xff, smem_alloc);  // NaN: reading unwritten shared memory shows
                    for (int t = 0; t < threads; ++t, ++f) {
                        Fiber& fb = r.fibers[f];
                        fb.cta = k;
                        fb.lin = t;
                        fb.warp = k * warps_per_cta + t / 32;
                        fb.tid = emu_dim3{(unsigned)(t % bx), (unsigned)((t / bx) % by), (unsigned)(t / (bx * by))};
                        fb.done = fb.blocked = false;
                        getcontext(&fb.ctx);
                        fb.ctx.uc_stack.ss_sp = r.stacks[f];
                        fb.ctx.uc_stack.ss_size = kStack;
                        fb.ctx.uc_link = &r.sched;
                        makecontext(&fb.ctx, fiber_entry, 0);
                    }
                }
                emu_tc_begin(nfib, nctas);
                if (!schedule()) {
                    rc = fail(r.error);
                } else if (const char* pending = emu_tc_end()) {
                    rc = fail(pending);
                }
            }
    for (Cta& c : r.ctas) free(c.smem);
    r.ctas.clear();
    r.fibers.clear();
    r.cur = nullptr;
    return rc;
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

// emu_set_schedule_seed sets the schedule's seed for the launches that
// follow (0: lockstep) and returns the one it replaces.
uint64_t emu_set_schedule_seed(uint64_t seed) {
    std::lock_guard<std::mutex> lock(mu);
    read_schedule_seed();
    // A bad DINOCLIP_EMU_SEED stays an error for the launches that follow:
    // a test that sets and restores the seed must not hide it.
    const uint64_t old = schedule_seed;
    schedule_seed = seed;
    return old;
}

// emu_schedule_seed_error writes why DINOCLIP_EMU_SEED is refused into
// err, and returns 1, or returns 0 where it is taken.
int emu_schedule_seed_error(char* err, int errlen) {
    std::lock_guard<std::mutex> lock(mu);
    read_schedule_seed();
    if (schedule_seed_error.empty()) return 0;
    snprintf(err, errlen, "%s", schedule_seed_error.c_str());
    return 1;
}

int64_t emu_limit(void) { return limit; }
int64_t emu_used(void) { return used; }

void emu_to_device(uintptr_t dst, const void* src, int64_t bytes) { memcpy((void*)dst, src, (size_t)bytes); }
void emu_to_host(void* dst, uintptr_t src, int64_t bytes) { memcpy(dst, (const void*)src, (size_t)bytes); }
void emu_zero(uintptr_t dst, int64_t bytes) { memset((void*)dst, 0, (size_t)bytes); }
void emu_copy(uintptr_t dst, uintptr_t src, int64_t bytes) { memmove((void*)dst, (const void*)src, (size_t)bytes); }

}  // extern "C"
