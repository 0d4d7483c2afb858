//go:build cuda && cudaemu

// tensorcore.cpp: the emulated twins of ../../kernels/tensorcore.cuh, the
// emulator's tensor-map layout, and the asynchronous state (cp.async
// groups, wgmma groups, TMA loads in flight) of the cluster being run.
//
// Layouts follow the PTX ISA:
//   mma.m16n8k16 (lane = 4 group + t): A regs {0,1,2,3} hold rows
//   {g, g+8, g, g+8}, columns {2t, 2t, 2t+8, 2t+8} (+1 in the high half);
//   B regs {0,1} hold k {2t, 2t+8} (+1 high), column g; C/D {0,1,2,3} hold
//   (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1).
//   ldmatrix: lanes 8i..8i+7 give the row addresses of matrix i; lane l
//   gets row l/4, columns 2(l%4), +1 of each matrix (.trans: rows 2(l%4),
//   +1 of column l/4).
//   wgmma m64nNk16: warp w of the warpgroup owns rows 16w..16w+15 and holds
//   them as mma.m16n8k16 does, for each 8-column block j in d[4j..4j+3];
//   A in registers likewise as the m16n8k16 A fragment of its 16 rows.
//   Shared-memory operands are K-major: element (row r, k) of a descriptor
//   lies at start + (r/8) SBO + (r%8) 16 + (k/8) LBO + (k%8) 2 without
//   swizzle, at start + (r/8) SBO + (r%8) S + 2k with an S-byte swizzle,
//   and the swizzle XORs address bits [4, 4+log2(S/16)) with bits [7, ...):
//   the same address function the TMA writes its swizzled boxes with.
//   MN-major operands (imm-trans-a/b = 1, bf16/f16 only): element (row r
//   in M or N, k) lies at start + (r/8) SBO + (k/8) LBO + (k%8) 16 +
//   (r%8) 2 without swizzle; with an S-byte swizzle, whose S/2-element
//   column blocks in M or N are LBO apart and whose 8-row groups in K are
//   SBO apart, at start + (r/(S/2)) LBO + (k/8) SBO + (k%8) S + (r%(S/2)) 2,
//   swizzled as above.
#include <stdio.h>

#include <deque>
#include <functional>
#include <vector>

#include "emu.h"
#include "../../kernels/tensorcore.cuh"

namespace {

// ---- shared memory ---------------------------------------------------------

// A shared::cluster address of another block carries its rank + 1 in bits
// 24-27 (cluster_map); the block's own addresses are plain offsets.
constexpr uint32_t kRankShift = 24;

unsigned char* smem_ptr(uint32_t addr, uint32_t bytes, const char* what) {
    const int rank = (int)(addr >> kRankShift) - 1;
    const uint32_t off = addr & ((1u << kRankShift) - 1);
    if ((uint64_t)off + bytes > emu_smem_bytes())
        emu_fail("%s: shared address %#x + %u bytes is outside the block's %u bytes of shared memory", what, off, bytes,
                 emu_smem_bytes());
    return emu_smem(rank) + off;
}

uint32_t swizzle(uint32_t addr, int span) {  // span: 0 (none), 32, 64 or 128 bytes
    switch (span) {
        case 128: return addr ^ (((addr >> 7) & 7) << 4);
        case 64: return addr ^ (((addr >> 7) & 3) << 4);
        case 32: return addr ^ (((addr >> 7) & 1) << 4);
        default: return addr;
    }
}

float bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float f16(uint16_t h) {
    const uint32_t s = (h >> 15) & 1, e = (h >> 10) & 31, m = h & 1023;
    float v;
    if (e == 0)
        v = ldexpf((float)m, -24);
    else if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = ldexpf((float)(m | 1024), (int)e - 25);
    return s ? -v : v;
}

float half_of(uint32_t reg, int hi, bool is_f16) {
    const uint16_t h = (uint16_t)(hi ? reg >> 16 : reg);
    return is_f16 ? f16(h) : bf16(h);
}

// ---- mma.sync m16n8k16 -----------------------------------------------------

struct Mma {
    float* d;
    const uint32_t *a, *b;
    const float* c;
    bool f16;
};

// a_elem is element (row, k) of the 16x16 A fragment held by the warp, as
// lane and register index say (regs: the lane's 4 registers).
float a_elem(void** ops, int row, int k, bool is_f16) {
    const int g = row % 8, t = (k % 8) / 2;
    const int reg = (row >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
    return half_of(((Mma*)ops[g * 4 + t])->a[reg], k % 2, is_f16);
}

void mma_16816(void** ops, int n) {
    const bool is_f16 = ((Mma*)ops[0])->f16;
    float out[32][4];
    for (int l = 0; l < n; ++l) {
        const int g = l / 4, t = l % 4;
        for (int i = 0; i < 4; ++i) {
            const int row = g + (i >= 2 ? 8 : 0), col = 2 * t + (i % 2);
            float acc = ((Mma*)ops[l])->c[i];
            for (int k = 0; k < 16; ++k) {
                // B element (k, col) is in lane 4 col + (k%8)/2, register k/8.
                const Mma* bl = (Mma*)ops[col * 4 + (k % 8) / 2];
                acc += a_elem(ops, row, k, is_f16) * half_of(bl->b[k / 8], k % 2, is_f16);
            }
            out[l][i] = acc;
        }
    }
    // Write after reading everything: d may alias c.
    for (int l = 0; l < n; ++l) memcpy(((Mma*)ops[l])->d, out[l], sizeof out[l]);
}

// ---- ldmatrix ------------------------------------------------------------

struct Ldm {
    uint32_t* r;
    uint32_t addr;
    int n;
    bool trans;
};

void ldmatrix(void** ops, int n) {
    const int mats = ((Ldm*)ops[0])->n;
    const bool trans = ((Ldm*)ops[0])->trans;
    for (int l = 0; l < n; ++l)
        if (((Ldm*)ops[l])->n != mats || ((Ldm*)ops[l])->trans != trans)
            emu_fail("ldmatrix: the lanes of the warp disagree on the shape");
    uint32_t out[32][4];
    for (int l = 0; l < n; ++l)
        for (int m = 0; m < mats; ++m) {
            uint16_t h[2];
            for (int e = 0; e < 2; ++e) {
                const int row = trans ? 2 * (l % 4) + e : l / 4;
                const int col = trans ? l / 4 : 2 * (l % 4) + e;
                const uint32_t row_addr = ((Ldm*)ops[m * 8 + row])->addr;
                if (row_addr % 16) emu_fail("ldmatrix: row address %#x is not 16-byte aligned", row_addr);
                memcpy(&h[e], smem_ptr(row_addr + 2 * col, 2, "ldmatrix"), 2);
            }
            out[l][m] = (uint32_t)h[0] | ((uint32_t)h[1] << 16);
        }
    for (int l = 0; l < n; ++l) memcpy(((Ldm*)ops[l])->r, out[l], 4 * mats);
}

// ---- asynchronous state of the cluster run ---------------------------------

struct Copy {
    unsigned char* dst;
    const unsigned char* src;
    int bytes, src_bytes;
};

// cp.async groups of each thread: the open group, then the committed ones
// oldest first.
struct ThreadCopies {
    std::vector<Copy> open;
    std::deque<std::vector<Copy>> committed;
};

struct WgmmaOp {
    std::vector<float*> d;           // each thread's accumulators
    std::vector<uint32_t> a_regs;    // 4 per thread when A is in registers
    uint64_t a, b;
    int n, scale_d;
    int trans_a, trans_b;
    int cta;
};
struct Warpgroup {
    std::vector<WgmmaOp> open;
    std::deque<std::vector<WgmmaOp>> committed;
};

// A TMA load in flight: the box, already gathered and swizzled, is written
// into dst and its bytes completed on the mbarrier when a thread waits on
// that mbarrier.
struct TmaLoad {
    unsigned char* dst;
    uint64_t* bar;
    std::vector<unsigned char> box;
};

std::vector<ThreadCopies> copies;
std::vector<Warpgroup> groups;  // cta * 8 + warpgroup
std::vector<TmaLoad> loads;
const char* pending_error;

void run_copies(std::vector<Copy>& v) {
    for (const Copy& c : v) {
        memcpy(c.dst, c.src, c.src_bytes);
        memset(c.dst + c.src_bytes, 0, c.bytes - c.src_bytes);
    }
    v.clear();
}

// ---- wgmma -----------------------------------------------------------------

struct Desc {
    uint32_t start, lbo, sbo;
    int span;
};

Desc decode(uint64_t d, const char* which) {
    static const int spans[4] = {0, 128, 64, 32};
    if ((d >> 49) & 7) emu_fail("wgmma: %s descriptor has a matrix base offset; the emulator supports 0", which);
    const Desc s{(uint32_t)(d & 0x3fff) << 4, (uint32_t)((d >> 16) & 0x3fff) << 4, (uint32_t)((d >> 32) & 0x3fff) << 4,
                 spans[d >> 62]};
    // A swizzled operand whose start is off its pattern's period (the row
    // bits the XOR reads, 7 and up, not 0) needs the base offset the PTX
    // ISA defines for it, (start >> 7) & 7; what the hardware does with 0
    // there is not documented, so a kernel that starts there is refused
    // rather than emulated by a guess. (A k16 step, +32 bytes, stays on it.)
    if (s.span && ((s.start >> 7) & (s.span / 16 - 1)))
        emu_fail("wgmma: %s descriptor starts at %#x, off its %d-byte swizzle's %d-byte period, with base offset 0", which,
                 s.start, s.span, 8 * s.span);
    return s;
}

// desc_elem reads element (row, k) of a K-major operand, or of an
// MN-major one (rows contiguous) if mn_major.
float desc_elem(const Desc& s, int row, int k, bool mn_major, unsigned char* base, const char* which) {
    uint32_t addr;
    if (mn_major && s.span == 0)
        addr = s.start + (row / 8) * s.sbo + (k / 8) * s.lbo + (k % 8) * 16 + (row % 8) * 2;
    else if (mn_major)
        addr = swizzle(s.start + (row / (s.span / 2)) * s.lbo + (k / 8) * s.sbo + (k % 8) * s.span + (row % (s.span / 2)) * 2, s.span);
    else if (s.span == 0)
        addr = s.start + (row / 8) * s.sbo + (row % 8) * 16 + (k / 8) * s.lbo + (k % 8) * 2;
    else
        addr = swizzle(s.start + (row / 8) * s.sbo + (row % 8) * s.span + 2 * k, s.span);
    if ((uint64_t)addr + 2 > emu_smem_bytes())
        emu_fail("wgmma: %s element (%d, %d) at shared address %#x is outside the block's %u bytes", which, row, k, addr,
                 emu_smem_bytes());
    uint16_t h;
    memcpy(&h, base + addr, 2);
    return bf16(h);
}

void wgmma_run(const WgmmaOp& op) {
    unsigned char* base = emu_smem(op.cta);
    const Desc da = decode(op.a, "A"), db = decode(op.b, "B");
    float A[64][16], B[256][16];
    for (int m = 0; m < 64; ++m)
        for (int k = 0; k < 16; ++k) {
            if (op.a_regs.empty()) {
                A[m][k] = desc_elem(da, m, k, op.trans_a, base, "A");
            } else {
                // Row m is warp m/16's fragment row m%16.
                const int w = m / 16, r = m % 16, g = r % 8, t = (k % 8) / 2;
                const int reg = (r >= 8 ? 1 : 0) + (k >= 8 ? 2 : 0);
                A[m][k] = half_of(op.a_regs[(w * 32 + g * 4 + t) * 4 + reg], k % 2, false);
            }
        }
    for (int n = 0; n < op.n; ++n)
        for (int k = 0; k < 16; ++k) B[n][k] = desc_elem(db, n, k, op.trans_b, base, "B");
    for (int th = 0; th < 128; ++th) {
        const int w = th / 32, l = th % 32, g = l / 4, t = l % 4;
        float* d = op.d[th];
        for (int j = 0; j < op.n / 8; ++j)
            for (int i = 0; i < 4; ++i) {
                const int row = 16 * w + g + (i >= 2 ? 8 : 0), col = 8 * j + 2 * t + (i % 2);
                float acc = op.scale_d ? d[4 * j + i] : 0.0f;
                for (int k = 0; k < 16; ++k) acc += A[row][k] * B[col][k];
                d[4 * j + i] = acc;
            }
    }
}

struct WgmmaIssue {
    float* d;
    const uint32_t* a_regs;
    uint64_t a, b;
    int n, scale_d;
    int trans_a, trans_b;
};

Warpgroup& my_group() { return groups[emu_cta_rank() * 8 + (int)(threadIdx.x + threadIdx.y * blockDim.x + threadIdx.z * blockDim.x * blockDim.y) / 128]; }

void wgmma_issue(void** ops, int n) {
    const WgmmaIssue* first = (WgmmaIssue*)ops[0];
    WgmmaOp op{{}, {}, first->a, first->b, first->n, first->scale_d, first->trans_a, first->trans_b, emu_cta_rank()};
    if (first->a_regs && first->trans_a) emu_fail("wgmma: A from registers cannot be transposed");
    for (int t = 0; t < n; ++t) {
        const WgmmaIssue* w = (WgmmaIssue*)ops[t];
        if (w->a != first->a || w->b != first->b || w->n != first->n || w->scale_d != first->scale_d ||
            w->trans_a != first->trans_a || w->trans_b != first->trans_b ||
            (w->a_regs == nullptr) != (first->a_regs == nullptr))
            emu_fail("wgmma: the threads of the warpgroup disagree on its operands (thread %d)", t);
        op.d.push_back(w->d);
        if (w->a_regs) op.a_regs.insert(op.a_regs.end(), w->a_regs, w->a_regs + 4);
    }
    my_group().open.push_back(std::move(op));
}

void wgmma_commit_all(void**, int) {
    Warpgroup& g = my_group();
    g.committed.push_back(std::move(g.open));
    g.open.clear();
}

int wait_depth;  // the argument of the wgmma.wait_group being completed
void wgmma_wait_all(void**, int) {
    Warpgroup& g = my_group();
    while ((int)g.committed.size() > wait_depth) {
        for (const WgmmaOp& op : g.committed.front()) wgmma_run(op);
        g.committed.pop_front();
    }
}

// ---- mbarrier --------------------------------------------------------------
//
// The emulator's mbarrier, in its 8 bytes: word 0 holds the arrivals still
// pending in the current phase (bits 0-15) and the expected count (16-31);
// word 1 the transaction count (bits 1-31, signed) and the phase parity
// (bit 0). 0xffff/0xffff is the poison fill: never initialised.

struct MbarState {
    uint32_t pending, expected, phase;
    int32_t tx;
};

MbarState mbar_get(const uint64_t* p) {
    const uint32_t w0 = (uint32_t)*p, w1 = (uint32_t)(*p >> 32);
    return MbarState{w0 & 0xffff, w0 >> 16, w1 & 1, (int32_t)w1 >> 1};
}

void mbar_put(uint64_t* p, MbarState s) {
    if (s.pending == 0 && s.tx == 0) {  // the phase completes
        s.phase ^= 1;
        s.pending = s.expected;
    }
    *p = (uint64_t)(s.pending | (s.expected << 16)) | ((uint64_t)(((uint32_t)s.tx << 1) | s.phase) << 32);
}

uint64_t* mbar_ptr(uint32_t bar, const char* what) {
    if (bar % 8) emu_fail("%s: mbarrier address %#x is not 8-byte aligned", what, bar);
    uint64_t* p = (uint64_t*)smem_ptr(bar, 8, what);
    const MbarState s = mbar_get(p);
    if (s.expected == 0xffff && s.pending == 0xffff) emu_fail("%s: mbarrier at %#x was never initialised", what, bar);
    return p;
}

// deliver completes the TMA loads in flight that signal bar.
void deliver(uint64_t* bar) {
    for (size_t i = 0; i < loads.size();) {
        if (loads[i].bar != bar) {
            ++i;
            continue;
        }
        memcpy(loads[i].dst, loads[i].box.data(), loads[i].box.size());
        MbarState s = mbar_get(bar);
        s.tx -= (int32_t)loads[i].box.size();
        mbar_put(bar, s);
        loads.erase(loads.begin() + i);
    }
}

struct PhaseWait {
    uint64_t* bar;
    uint32_t parity;
};

bool phase_done(const void* arg) {
    const PhaseWait* w = (const PhaseWait*)arg;
    deliver(w->bar);
    return mbar_get(w->bar).phase != w->parity;
}

// ---- the tensor map --------------------------------------------------------
//
// The emulator's layout inside the 128 bytes (EncodeTensorMap writes it
// through emu_encode_tensor_map below).
struct EmuTensorMap {
    uint32_t magic;
    uint8_t rank, elem_bytes, swizzle_span_log2, nan_fill;  // span: 0 none, else 1 << value
    uint64_t base;
    uint64_t dims[5];
    uint64_t strides[4];  // bytes, dimensions 1..rank-1
    uint16_t box[5];
    uint8_t elem_strides[5];
};
static_assert(sizeof(EmuTensorMap) <= 128, "the tensor map is 128 bytes");
constexpr uint32_t kMagic = 0x454d5554;  // "TUME"

const EmuTensorMap* map_of(const dc_tensor_map* m) {
    const EmuTensorMap* t = (const EmuTensorMap*)m;
    if (t->magic != kMagic) emu_fail("TMA: the tensor map was not made by EncodeTensorMap");
    if (t->rank != 2) emu_fail("TMA: a 2-D copy of a rank-%d tensor map", t->rank);
    return t;
}

int span_of(const EmuTensorMap* t) { return t->swizzle_span_log2 ? 1 << t->swizzle_span_log2 : 0; }

}  // namespace

// ---- the twins ---------------------------------------------------------------

void emu_tc_begin(int threads, int ctas) {
    copies.assign(threads, ThreadCopies{});
    groups.assign((size_t)ctas * 8, Warpgroup{});
    loads.clear();
}

const char* emu_tc_end() {
    for (const Warpgroup& g : groups)
        if (!g.open.empty() || !g.committed.empty()) return "wgmma operations were never waited on (wgmma.wait_group)";
    if (!loads.empty()) return "TMA loads were never waited on (no wait on their mbarrier)";
    return nullptr;
}

uint32_t emu_smem_addr(const void* p) {
    const unsigned char* base = emu_smem(-1);
    const unsigned char* q = (const unsigned char*)p;
    if (base == nullptr || q < base || q >= base + emu_smem_bytes())
        emu_fail("smem_addr: %p is not in the block's dynamic shared memory", p);
    return (uint32_t)(q - base);
}

unsigned char* emu_dynamic_smem() { return emu_smem(-1); }

uint32_t emu_cluster_map(uint32_t addr, int rank) {
    if (rank < 0 || rank >= emu_cluster_ctas()) emu_fail("mapa: block rank %d in a cluster of %d", rank, emu_cluster_ctas());
    return ((uint32_t)(rank + 1) << kRankShift) | (addr & ((1u << kRankShift) - 1));
}

void emu_mma_16816(float* d, const uint32_t* a, const uint32_t* b, const float* c, bool is_f16) {
    Mma m{d, a, b, c, is_f16};
    emu_collective(32, is_f16 ? "mma.sync f16" : "mma.sync bf16", mma_16816, &m);
}

void emu_ldmatrix(uint32_t* r, uint32_t addr, int n, bool trans) {
    Ldm l{r, addr, n, trans};
    emu_collective(32, "ldmatrix", ldmatrix, &l);
}

void emu_cp_async(uint32_t dst, const void* src, int bytes, int src_bytes) {
    if (dst % bytes) emu_fail("cp.async: shared address %#x is not %d-byte aligned", dst, bytes);
    if ((uintptr_t)src % bytes) emu_fail("cp.async: global address %p is not %d-byte aligned", src, bytes);
    if (src_bytes < 0 || src_bytes > bytes) emu_fail("cp.async: source size %d of %d", src_bytes, bytes);
    unsigned char* d = smem_ptr(dst, bytes, "cp.async");
    memset(d, 0xff, bytes);  // poison until the group is waited on
    copies[emu_thread_slot()].open.push_back(Copy{d, (const unsigned char*)src, bytes, src_bytes});
}

void emu_cp_async_commit() {
    ThreadCopies& c = copies[emu_thread_slot()];
    c.committed.push_back(std::move(c.open));
    c.open.clear();
}

void emu_cp_async_wait(int n) {
    ThreadCopies& c = copies[emu_thread_slot()];
    while ((int)c.committed.size() > n) {
        run_copies(c.committed.front());
        c.committed.pop_front();
    }
}

void emu_wgmma(float* d, int n, uint64_t a, const uint32_t* a_regs, uint64_t b, int scale_d, int trans_a, int trans_b) {
    WgmmaIssue w{d, a_regs, a, b, n, scale_d, trans_a, trans_b};
    emu_collective(128, "wgmma.mma_async", wgmma_issue, &w);
}

void emu_wgmma_commit() { emu_collective(128, "wgmma.commit_group", wgmma_commit_all, nullptr); }

namespace {
struct WaitDepth {
    int n;
};
void wgmma_wait_op(void** ops, int members) {
    wait_depth = ((WaitDepth*)ops[0])->n;
    wgmma_wait_all(ops, members);
}
}  // namespace

void emu_wgmma_wait(int n) {
    WaitDepth w{n};
    emu_collective(128, "wgmma.wait_group", wgmma_wait_op, &w);
}

void emu_mbar_init(uint32_t bar, uint32_t count) {
    if (bar % 8) emu_fail("mbarrier.init: address %#x is not 8-byte aligned", bar);
    if (count < 1 || count >= 0xffff) emu_fail("mbarrier.init: count %u (the emulator takes 1..65534)", count);
    uint64_t* p = (uint64_t*)smem_ptr(bar, 8, "mbarrier.init");
    *p = (uint64_t)(count | (count << 16));  // pending = expected = count, tx 0, phase 0
}

void emu_mbar_arrive(uint32_t bar, uint32_t tx_bytes) {
    uint64_t* p = mbar_ptr(bar, "mbarrier.arrive");
    MbarState s = mbar_get(p);
    if (s.pending == 0) emu_fail("mbarrier.arrive: more arrivals than the %u expected", s.expected);
    s.tx += (int32_t)tx_bytes;
    s.pending--;
    const bool completes = s.pending == 0 && s.tx == 0;
    mbar_put(p, s);
    // The arrival that completes a phase lets the threads waiting on it run
    // before it goes on, as a GPU may: a stage released before the wgmma
    // reading it has been waited for is then refilled (and poisoned) by the
    // producer first, in every schedule (tc_check_ring).
    if (completes) emu_yield_turn();
}

bool emu_mbar_try_wait(uint32_t bar, uint32_t parity, bool block) {
    PhaseWait w{mbar_ptr(bar, "mbarrier.try_wait"), parity & 1};
    if (block) {
        emu_wait_until(phase_done, &w, "an mbarrier phase");
        return true;
    }
    const bool done = phase_done(&w);
    if (!done) emu_wait_until(nullptr, nullptr, nullptr);  // let the others run
    return done;
}

void emu_tma_load_2d(uint32_t dst, const dc_tensor_map* map, int x, int y, uint32_t bar, uint16_t mask) {
    const EmuTensorMap* t = map_of(map);
    const int span = span_of(t);
    // (128 with or without a swizzle: the CUDA Programming Guide's
    // alignment rule for a tensor copy's shared memory.)
    if (dst % 128) emu_fail("TMA load: shared address %#x is not 128-byte aligned", dst);
    const int bw = t->box[0], bh = t->box[1], eb = t->elem_bytes;
    const uint32_t row_bytes = (uint32_t)bw * eb, bytes = row_bytes * bh;
    // Gather the box as it will lie in shared memory: row r at r*row_bytes
    // from dst, 16-byte chunks swizzled by the destination's address bits.
    std::vector<unsigned char> box(bytes);
    for (int r = 0; r < bh; ++r)
        for (int c = 0; c < bw; ++c) {
            const int64_t gx = (int64_t)x + c, gy = (int64_t)y + r;
            const uint32_t at = swizzle(dst + r * row_bytes + c * eb, span) - dst;
            unsigned char* out = box.data() + at;
            if (gx < 0 || gy < 0 || (uint64_t)gx >= t->dims[0] || (uint64_t)gy >= t->dims[1]) {
                memset(out, t->nan_fill ? 0xff : 0, eb);
                continue;
            }
            memcpy(out, (const unsigned char*)t->base + gy * t->strides[0] + gx * eb, eb);
        }
    const uint32_t off = dst & ((1u << kRankShift) - 1), bar_off = bar & ((1u << kRankShift) - 1);
    const int me = emu_cta_rank();
    if (mask == 0) mask = (uint16_t)(1u << me);
    for (int rank = 0; rank < emu_cluster_ctas(); ++rank) {
        if (!(mask >> rank & 1)) continue;
        const uint32_t rank_bits = rank == me ? 0 : (uint32_t)(rank + 1) << kRankShift;
        unsigned char* d = smem_ptr(rank_bits | off, bytes, "TMA load");
        uint64_t* b = mbar_ptr(rank_bits | bar_off, "TMA load");
        memset(d, 0xff, bytes);  // poison until a thread waits on the mbarrier
        loads.push_back(TmaLoad{d, b, box});
    }
    if (mask >> emu_cluster_ctas()) emu_fail("TMA multicast: mask %#x names blocks beyond the cluster of %d", mask, emu_cluster_ctas());
}

void emu_tma_store_2d(const dc_tensor_map* map, int x, int y, uint32_t src) {
    const EmuTensorMap* t = map_of(map);
    const int span = span_of(t);
    if (src % 128) emu_fail("TMA store: shared address %#x is not 128-byte aligned", src);
    const int bw = t->box[0], bh = t->box[1], eb = t->elem_bytes;
    const uint32_t row_bytes = (uint32_t)bw * eb;
    const unsigned char* s = smem_ptr(src, row_bytes * bh, "TMA store");
    for (int r = 0; r < bh; ++r)
        for (int c = 0; c < bw; ++c) {
            const int64_t gx = (int64_t)x + c, gy = (int64_t)y + r;
            if (gx < 0 || gy < 0 || (uint64_t)gx >= t->dims[0] || (uint64_t)gy >= t->dims[1]) continue;
            const uint32_t at = swizzle(src + r * row_bytes + c * eb, span) - src;
            memcpy((unsigned char*)t->base + gy * t->strides[0] + gx * eb, s + at, eb);
        }
}

extern "C" {

// emu_encode_tensor_map writes the emulator's tensor map into out (128
// bytes) and returns nullptr, or a message saying what the emulated TMA
// cannot copy. The driver has validated the spec as cuTensorMapEncodeTiled
// would.
const char* emu_encode_tensor_map(unsigned char* out, int rank, int elem_bytes, int swizzle_span, int nan_fill,
                                  uint64_t base, const uint64_t* dims, const uint64_t* strides, const uint32_t* box,
                                  const uint32_t* elem_strides) {
    if (rank < 1 || rank > 5) return "rank must be 1..5";
    EmuTensorMap t{};
    t.magic = kMagic;
    t.rank = (uint8_t)rank;
    t.elem_bytes = (uint8_t)elem_bytes;
    t.swizzle_span_log2 = (uint8_t)(swizzle_span == 0 ? 0 : __builtin_ctz((unsigned)swizzle_span));
    t.nan_fill = (uint8_t)(nan_fill != 0);
    t.base = base;
    for (int i = 0; i < rank; ++i) {
        t.dims[i] = dims[i];
        if (box[i] < 1 || box[i] > 256) return "box dimensions must be 1..256";
        t.box[i] = (uint16_t)box[i];
        if (elem_strides[i] != 1) return "the emulated TMA copies only element strides of 1";
        if (i == 0 && swizzle_span != 0 && box[0] * (uint32_t)elem_bytes != (uint32_t)swizzle_span)
            return "the emulated TMA needs a swizzled box's inner dimension to be exactly the swizzle span in bytes";
        t.elem_strides[i] = 1;
        if (i > 0) t.strides[i - 1] = strides[i - 1];
    }
    memset(out, 0, 128);
    memcpy(out, &t, sizeof t);
    return nullptr;
}

}  // extern "C"
