package sgemm

import (
	"fmt"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/dinoclip/dinoclip/internal/parallel"
)

// Block sizes, in elements, chosen for Zen 3's 32 KiB L1d and 512 KiB L2
// per core with the AVX2 kernel; the AVX-512 kernel's wider B panels fit
// the 48 KiB L1d of the AVX-512 Zens (4 and 5). They only change speed,
// never results (see the package comment).
//
// For each block of kc steps, op(A) is packed in blocks of mc rows (264
// KiB), each of which stays in L2 while B's panels (kc x nr: 16 KiB, or 32
// KiB for nr = 32) pass through L1, each multiplied by every A panel of
// the block. mc holds the engine's batch of 256 rows (and a ragged tile)
// in one block, so that A is packed once per product; B, the weight,
// larger, is packed once per block of A rather than A once per block of B.
// B is packed right before its use, in blocks of nc columns where its rows
// are contiguous (read 1 KiB along each; the 256 KiB block stays in L2
// beside A's) and a panel at a time where B is transposed (nr rows read
// along; the panel is written into L1 and multiplied there). The order
// before this one (B in 1 MiB blocks, each sent through L3, A packed for
// each) took up to 25% more CPU time per product with B transposed and
// about the same with B's rows contiguous, measured A/B at the model's
// shapes.
const (
	kc = 256
	mc = 264 // a multiple of each kernel's mr: 8, 6 and the reference's 4
	nc = 256 // a multiple of each kernel's nr: 32, 16 and the reference's 4
)

// kernel is a microkernel: it computes an mr x nr tile of C from a packed A
// panel (k steps of mr values, row index fastest) and a packed B panel (k
// steps of nr values). With load it continues the chains from the tile's
// values; without, from zero. It always writes the full tile.
type kernel struct {
	name   string
	mr, nr int
	run    func(k int, a, b, c []float32, ldc int, load bool)
}

// best is the fastest kernel this CPU runs, or nil when there is none and
// Gemm falls back to gonum (set in kernel_*.go).
var best *kernel

// UseReference makes Gemm use the pure-Go reference microkernel (on) or
// the fastest one again (off), and returns whether the reference was in
// use. The bits of C are the same either way (see the package comment);
// that is what it is for: tests that check so through the whole CPU
// engine. Where there is no packed kernel (the gonum fallback) it does
// nothing and returns false. It must not be called while a Gemm runs.
func UseReference(on bool) (was bool) {
	ks := kernels()
	if len(ks) == 0 {
		return false
	}
	was = best == reference
	best = ks[0]
	if on {
		best = reference
	}
	return was
}

// Kernel names the microkernel Gemm uses on this machine, or "gonum" for the
// fallback.
func Kernel() string {
	if best == nil {
		return "gonum"
	}
	return best.name
}

// Gemm computes C = op(A) op(B), or C += op(A) op(B) when accumulate is
// set, for row-major C [m,n] with row stride ldc. op(A) is [m,k]: A itself
// (row stride lda) or, with transA, the transpose of A [k,m]. op(B) is
// [k,n] likewise with transB. It panics on dimensions or strides that do
// not fit the slices, as gonum does.
func Gemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool) {
	if best != nil {
		gemmWith(best, runtime.GOMAXPROCS(0), transA, transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate)
		return
	}
	if _, _, trivial := check(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate); trivial {
		return
	}
	beta := float32(0)
	if accumulate {
		beta = 1
	}
	tA, tB := blas.NoTrans, blas.NoTrans
	if transA {
		tA = blas.Trans
	}
	if transB {
		tB = blas.Trans
	}
	gonum.Implementation{}.Sgemm(tA, tB, m, n, k, 1, a, lda, b, ldb, beta, c, ldc)
}

// matrix is a read-only row-major operand seen through an optional
// transpose: element (i, j) of op(X) is at data[i*rs + j*cs].
type matrix struct {
	data   []float32
	rs, cs int
}

func operand(data []float32, ld int, trans bool, rows, cols int, what string) matrix {
	stored := [2]int{rows, cols}
	if trans {
		stored = [2]int{cols, rows}
	}
	if ld < max(1, stored[1]) {
		panic(fmt.Sprintf("sgemm: %s has leading dimension %d < %d columns", what, ld, stored[1]))
	}
	if rows > 0 && cols > 0 && len(data) < (stored[0]-1)*ld+stored[1] {
		panic(fmt.Sprintf("sgemm: %s has %d values, too few for %dx%d with stride %d", what, len(data), stored[0], stored[1], ld))
	}
	if trans {
		return matrix{data, 1, ld}
	}
	return matrix{data, ld, 1}
}

// check panics on dimensions or strides that do not fit the slices, and
// otherwise returns the operands and whether the product is done already
// (an empty C, or k = 0, which leaves C or zeroes it).
func check(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool) (A, B matrix, trivial bool) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("sgemm: negative dimension %dx%dx%d", m, n, k))
	}
	A = operand(a, lda, transA, m, k, "A")
	B = operand(b, ldb, transB, k, n, "B")
	if ldc < max(1, n) || (m > 0 && n > 0 && len(c) < (m-1)*ldc+n) {
		panic(fmt.Sprintf("sgemm: C of %d values with stride %d cannot hold %dx%d", len(c), ldc, m, n))
	}
	if m == 0 || n == 0 {
		return A, B, true
	}
	if k == 0 {
		if !accumulate {
			for i := 0; i < m; i++ {
				clear(c[i*ldc : i*ldc+n])
			}
		}
		return A, B, true
	}
	return A, B, false
}

// gemmWith is Gemm with a given kernel and number of workers.
func gemmWith(kern *kernel, workers int, transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int, accumulate bool) {
	A, B, trivial := check(transA, transB, m, n, k, a, lda, b, ldb, c, ldc, accumulate)
	if trivial {
		return
	}
	run(kern, workers, A, B, nil, m, n, k, c, ldc, accumulate)
}

// run splits C among workers. B's panels come from pre when it is not nil
// (packed by kern), else from one packing shared by the workers where they
// split the rows of C and B is not too large, else each worker packs its
// own; likewise A's from one packing shared by the workers where they
// split the columns of C and A is not too large.
func run(kern *kernel, workers int, A, B matrix, pre *PackedB, m, n, k int, c []float32, ldc int, accumulate bool) {
	// Split C into blocks of whole tiles, one per worker (or a few, see
	// below), along the side with more tiles; small products run on the
	// calling goroutine.
	mt, nt := (m+kern.mr-1)/kern.mr, (n+kern.nr-1)/kern.nr
	if flops := 2 * m * n * k; flops < 1<<21 {
		workers = 1
	}
	alongN := nt >= mt
	tiles, tile := mt, kern.mr
	if alongN {
		tiles, tile = nt, kern.nr
	}
	workers = min(workers, tiles)
	if workers <= 1 {
		block(kern, A, B, nil, pre, c, ldc, 0, m, 0, n, k, accumulate)
		return
	}
	// Every worker multiplies all of A (split along n) or all of B
	// (along m): pack it once, together, rather than once per worker.
	var preA *packedA
	switch {
	case alongN && k*mt*kern.mr <= sharedMax:
		preA = sharedA.get()
		defer sharedA.put(preA)
		preA.pack(kern, A, m, k, workers)
	case !alongN && pre == nil && k*nt*kern.nr <= sharedMax:
		shared := sharedB.get()
		defer sharedB.put(shared)
		shared.pack(kern, B, k, n, workers)
		pre = shared
	}
	parts := workers
	if pre != nil && !alongN {
		// With B packed, a block of rows costs no packing but its own
		// A's: split finer, so that a worker the machine slows down
		// leaves its remaining blocks to the others (parallel.Run).
		// (Along n, with A packed, finer blocks measured no faster, and
		// the input-gradient product up to 20% slower in CPU time in
		// one of two A/B runs; not explained.)
		parts = min(tiles, partsPerWorker*workers)
	}
	parallel.Run(parts, func(w int) {
		lo, hi := tiles*w/parts*tile, tiles*(w+1)/parts*tile
		if alongN {
			block(kern, A, B, preA, pre, c, ldc, 0, m, lo, min(hi, n), k, accumulate)
		} else {
			block(kern, A, B, nil, pre, c, ldc, lo, min(hi, m), 0, n, k, accumulate)
		}
	})
}

// partsPerWorker is how many blocks of rows of C a product with a packed B
// is split into per worker.
const partsPerWorker = 4

// buffers are one worker's packed blocks and edge tile.
type buffers struct{ a, b, tile []float32 }

// freeList holds the buffers of finished products and workers for the
// next ones. It is a free list rather than a sync.Pool because a pool is
// emptied by every garbage collection, and reallocating (and faulting in)
// a worker's buffers per product cost as much as the products themselves.
// It grows to the largest number of them that ever ran at once.
type freeList[T any] struct {
	sync.Mutex
	list  []*T
	fresh func() *T
}

func (f *freeList[T]) get() *T {
	f.Lock()
	defer f.Unlock()
	if n := len(f.list); n > 0 {
		x := f.list[n-1]
		f.list = f.list[:n-1]
		return x
	}
	return f.fresh()
}

func (f *freeList[T]) put(x *T) {
	f.Lock()
	f.list = append(f.list, x)
	f.Unlock()
}

// spare holds the workers' buffers.
var spare = freeList[buffers]{fresh: func() *buffers {
	return &buffers{a: make([]float32, mc*kc), b: make([]float32, kc*nc), tile: make([]float32, tileLen)}
}}

// tileLen is room for the largest microkernel tile, 8x32.
const tileLen = 8 * 32

// bufferBytes is the packing memory one goroutine of a GEMM takes and
// keeps for reuse.
const bufferBytes = (mc*kc + kc*nc + tileLen) * 4

// WorkspaceBytes is the packing memory Gemm holds on to once it has run on
// this machine: bufferBytes for each of up to GOMAXPROCS goroutines and,
// with more than one, a shared A and a shared B (up to sharedMax elements
// each); none for the gonum fallback.
func WorkspaceBytes() int {
	if best == nil {
		return 0
	}
	procs := runtime.GOMAXPROCS(0)
	if procs == 1 {
		return bufferBytes
	}
	return procs*bufferBytes + 2*sharedMax*4
}

// block computes rows [i0,i1) and columns [j0,j1) of C on one goroutine.
// The k blocks run outermost and in order, so each C element's chain is
// p = 0..k-1. A's and B's panels are packed here, or taken from preA and
// pre.
func block(kern *kernel, A, B matrix, preA *packedA, pre *PackedB, c []float32, ldc, i0, i1, j0, j1, k int, accumulate bool) {
	buf := spare.get()
	defer spare.put(buf)
	mr, nr := kern.mr, kern.nr
	bWidth := nc // B's packed block, in columns (see nc)
	if pre == nil && B.cs != 1 {
		bWidth = nr
	}
	for pc := 0; pc < k; pc += kc {
		kb := min(kc, k-pc)
		load := accumulate || pc > 0
		for ic := i0; ic < i1; ic += mc {
			mb := min(mc, i1-ic)
			aBlock := buf.a
			if preA != nil {
				aBlock = preA.data[pc*preA.height+ic*kb:]
			} else {
				packA(buf.a, A, ic, mb, pc, kb, mr)
			}
			for jc := j0; jc < j1; jc += bWidth {
				nb := min(bWidth, j1-jc)
				bBlock := buf.b
				if pre != nil {
					bBlock = pre.data[pc*pre.width+jc*kb:]
				} else {
					packB(buf.b, B, pc, kb, jc, nb, nr)
				}
				for jr := 0; jr < nb; jr += nr {
					bp := bBlock[jr*kb : (jr+nr)*kb]
					w := min(nr, nb-jr)
					for ir := 0; ir < mb; ir += mr {
						ap := aBlock[ir*kb : (ir+mr)*kb]
						h := min(mr, mb-ir)
						off := (ic+ir)*ldc + jc + jr
						if h == mr && w == nr {
							kern.run(kb, ap, bp, c[off:], ldc, load)
							continue
						}
						// A ragged edge: run the kernel on a full tile
						// in scratch and copy the valid part.
						t := buf.tile[:mr*nr]
						if load {
							for i := 0; i < h; i++ {
								copy(t[i*nr:i*nr+w], c[off+i*ldc:off+i*ldc+w])
							}
						}
						kern.run(kb, ap, bp, t, nr, load)
						for i := 0; i < h; i++ {
							copy(c[off+i*ldc:off+i*ldc+w], t[i*nr:i*nr+w])
						}
					}
				}
			}
		}
	}
}

// PackedB is op(B) [k,n] packed once into the panels the microkernel
// reads, for products that use one B with many A: a weight matrix W^T
// multiplied by batch after batch. GemmPacked with it gives the bits Gemm
// gives with op(B) itself.
type PackedB struct {
	kern  *kernel
	k, n  int
	width int       // n rounded up to whole panels
	data  []float32 // per block of kc rows, in order: width/nr panels of kb x nr
}

// Pack packs op(B) [k,n] (B itself with row stride ldb or, with transB, the
// transpose of B [n,k]) into p, reusing p's memory where it is large
// enough. It returns false, packing nothing, where Gemm has no packed
// kernel (the gonum fallback): callers use Gemm then. It panics on
// dimensions that do not fit b, as Gemm does.
func (p *PackedB) Pack(transB bool, k, n int, b []float32, ldb int) bool {
	if best == nil {
		return false
	}
	if k < 1 || n < 1 {
		panic(fmt.Sprintf("sgemm: packing a %dx%d B", k, n))
	}
	B := operand(b, ldb, transB, k, n, "B")
	workers := runtime.GOMAXPROCS(0)
	if k*n < 1<<16 {
		workers = 1
	}
	p.pack(best, B, k, n, workers)
	return true
}

// pack packs op(B) [k,n] for kern into p on up to workers goroutines.
func (p *PackedB) pack(kern *kernel, B matrix, k, n, workers int) {
	nr := kern.nr
	p.kern, p.k, p.n, p.width = kern, k, n, (n+nr-1)/nr*nr
	if cap(p.data) < k*p.width {
		p.data = make([]float32, k*p.width)
	}
	p.data = p.data[:k*p.width]
	packWhole(p.data, n, k, nr, workers, func(dst []float32, lo, count, pc, kb int) { packB(dst, B, pc, kb, lo, count, nr) })
}

// packWhole packs a whole operand of k steps and size panels of r (rows
// of op(A) or columns of op(B)) into data, block of kc steps after block,
// each block's panels in order, as packBlock packs count of them from lo
// in the block of kb steps from pc. Panels are independent: up to workers
// goroutines take a share each.
func packWhole(data []float32, size, k, r, workers int, packBlock func(dst []float32, lo, count, pc, kb int)) {
	padded := (size + r - 1) / r * r
	panels := padded / r
	workers = min(workers, panels)
	parallel.Run(workers, func(w int) {
		lo, hi := panels*w/workers*r, min(panels*(w+1)/workers*r, size)
		for pc := 0; pc < k; pc += kc {
			kb := min(kc, k-pc)
			packBlock(data[pc*padded+lo*kb:], lo, hi-lo, pc, kb)
		}
	})
}

// sharedMax is the largest packed operand (k x n elements of op(B), n
// rounded up to whole panels, or m x k of op(A) likewise) that a product split
// along the other side of C packs once for all its workers (8 MiB); a
// larger one each worker packs block by block itself.
const sharedMax = 1 << 21

// sharedA and sharedB hold the packed operands that products share among
// their workers: a product takes one and gives it back. (A shared A, the
// batch at the engine's shapes, is allocated at the size first needed.)
var (
	sharedA = freeList[packedA]{fresh: func() *packedA { return new(packedA) }}
	sharedB = freeList[PackedB]{fresh: func() *PackedB { return &PackedB{data: make([]float32, 0, sharedMax)} }}
)

// packedA is op(A) [m,k] packed whole, for a product whose workers split
// the columns of C and so each multiply all of A.
type packedA struct {
	height int       // m rounded up to whole panels
	data   []float32 // per block of kc steps, in order: height/mr panels of kb x mr
}

// pack packs op(A) [m,k] for kern into p on up to workers goroutines.
func (p *packedA) pack(kern *kernel, A matrix, m, k, workers int) {
	mr := kern.mr
	p.height = (m + mr - 1) / mr * mr
	if cap(p.data) < k*p.height {
		p.data = make([]float32, k*p.height)
	}
	p.data = p.data[:k*p.height]
	packWhole(p.data, m, k, mr, workers, func(dst []float32, lo, count, pc, kb int) { packA(dst, A, lo, count, pc, kb, mr) })
}

// GemmPacked is Gemm with op(B) from p: C [m, p's n] = op(A) op(B), or
// C += that with accumulate; op(A) is [m, p's k].
func GemmPacked(transA bool, m int, a []float32, lda int, p *PackedB, c []float32, ldc int, accumulate bool) {
	if p.kern == nil {
		panic("sgemm: GemmPacked with a PackedB never packed")
	}
	n, k := p.n, p.k
	A := operand(a, lda, transA, m, k, "A")
	if m < 0 {
		panic(fmt.Sprintf("sgemm: negative dimension %d", m))
	}
	if ldc < max(1, n) || (m > 0 && len(c) < (m-1)*ldc+n) {
		panic(fmt.Sprintf("sgemm: C of %d values with stride %d cannot hold %dx%d", len(c), ldc, m, n))
	}
	if m == 0 {
		return
	}
	run(p.kern, runtime.GOMAXPROCS(0), A, matrix{}, p, m, n, k, c, ldc, accumulate)
}

// packA copies op(A)[ic:ic+mb, pc:pc+kb] into dst as panels of mr rows,
// each kb steps of mr values, padding the last panel's missing rows with
// zeros.
func packA(dst []float32, A matrix, ic, mb, pc, kb, mr int) {
	if A.cs == 1 {
		// Rows of A are contiguous: read along them, a panel at a time.
		for ir := 0; ir < mb; ir += mr {
			p := dst[ir*kb : (ir+mr)*kb]
			h := min(mr, mb-ir)
			done := 0
			if h == mr {
				done = transposeRows(p, A.data[(ic+ir)*A.rs+pc:], mr, A.rs, kb)
			}
			for i := 0; i < h; i++ {
				row := A.data[(ic+ir+i)*A.rs+pc:]
				for q := done; q < kb; q++ {
					p[q*mr+i] = row[q]
				}
			}
		}
	} else {
		// Columns of op(A) are contiguous (A transposed, rows of the
		// stored A): read each once, front to back, and deal it out to
		// the panels, as packB does (a panel at a time would read kb
		// rows far apart per panel, mr values of each).
		done := dealRows(dst, A.data[pc*A.cs+ic:], mr, A.cs, kb, mb, kb*mr)
		for q := 0; q < kb; q++ {
			row := A.data[(pc+q)*A.cs+ic : (pc+q)*A.cs+ic+mb]
			for ir := done; ir < mb; ir += mr {
				// An element loop: copy's call costs more than mr moves.
				to, from := dst[ir*kb+q*mr:ir*kb+q*mr+min(mr, mb-ir)], row[ir:]
				for i := range to {
					to[i] = from[i]
				}
			}
		}
	}
	// Zero the rows of the last panel past mb.
	if h := mb % mr; h != 0 {
		p := dst[(mb-h)*kb : (mb-h+mr)*kb]
		for q := 0; q < kb; q++ {
			clear(p[q*mr+h : (q+1)*mr])
		}
	}
}

// packB copies op(B)[pc:pc+kb, jc:jc+nb] into dst as panels of nr columns,
// each kb steps of nr values, padding the last panel's missing columns with
// zeros.
func packB(dst []float32, B matrix, pc, kb, jc, nb, nr int) {
	if B.cs == 1 {
		// Rows of B are contiguous: read each once, front to back, and
		// deal it out to the panels (walking one panel at a time instead
		// reads kb rows far apart per panel and misses the TLB on each).
		done := dealRows(dst, B.data[pc*B.rs+jc:], nr, B.rs, kb, nb, kb*nr)
		for q := 0; q < kb; q++ {
			row := B.data[(pc+q)*B.rs+jc : (pc+q)*B.rs+jc+nb]
			for jr := done; jr < nb; jr += nr {
				w := min(nr, nb-jr)
				// An element loop: copy's call costs more than nr moves.
				dst, src := dst[jr*kb+q*nr:jr*kb+q*nr+w], row[jr:jr+w]
				for j := range dst {
					dst[j] = src[j]
				}
			}
		}
	} else {
		// B transposed: columns of op(B) are rows of the stored B.
		for jr := 0; jr < nb; jr += nr {
			p := dst[jr*kb : (jr+nr)*kb]
			w := min(nr, nb-jr)
			done := 0
			if w == nr {
				done = transposeRows(p, B.data[(jc+jr)*B.cs+pc:], nr, B.cs, kb)
			}
			for j := 0; j < w; j++ {
				col := B.data[(jc+jr+j)*B.cs+pc:]
				for q := done; q < kb; q++ {
					p[q*nr+j] = col[q]
				}
			}
		}
	}
	// Zero the columns of the last panel past nb (they only feed columns of
	// the tile that are never copied out, but stale values there could be
	// anything, NaN included, and zeros keep that obvious).
	if w := nb % nr; w != 0 {
		p := dst[(nb-w)*kb : (nb-w+nr)*kb]
		for q := 0; q < kb; q++ {
			clear(p[q*nr+w : (q+1)*nr])
		}
	}
}
