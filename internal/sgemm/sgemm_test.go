package sgemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// shapes are ragged on purpose: not multiples of any tile (6x16, 8x32,
// the reference's 4x4) or block, 1x1, exactly one tile of each kernel,
// one row or column more than a tile or two, k = 1 and other small k
// (fewer than one unrolled iteration of the kernels' loops, or one and a
// remainder), k across several kc blocks, n across nc blocks, m across mc
// blocks (with k across kc blocks too, and split along n, so that each
// worker has more than one block of A), a huge k, and products large
// enough to be split among workers along n (with A packed once for all of
// them, and k across kc blocks) and along m (with B packed once).
var shapes = []struct{ m, n, k int }{
	{1, 1, 1}, {1, 1, 7}, {3, 5, 1}, {6, 16, 1}, {8, 32, 1}, {7, 17, 3}, {9, 33, 2},
	{17, 65, 5}, {15, 31, 9}, {13, 37, 300}, {6, 16, 256}, {8, 32, 256}, {12, 32, 257},
	{25, 9, 513}, {150, 70, 40}, {65, 1030, 33}, {2, 3, 20000}, {200, 40, 300},
	{281, 19, 270}, {270, 1000, 9}, {20, 300, 600},
}

func randMat(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

type problem struct {
	transA, transB, accumulate bool
	m, n, k, lda, ldb, ldc     int
	a, b, c0                   []float32
}

func (p problem) String() string {
	return fmt.Sprintf("m%d n%d k%d transA %v transB %v accumulate %v", p.m, p.n, p.k, p.transA, p.transB, p.accumulate)
}

func problems(seed uint64) []problem {
	rng := rand.New(rand.NewPCG(seed, 7))
	var ps []problem
	for _, s := range shapes {
		for _, tA := range []bool{false, true} {
			for _, tB := range []bool{false, true} {
				for _, acc := range []bool{false, true} {
					p := problem{transA: tA, transB: tB, accumulate: acc, m: s.m, n: s.n, k: s.k}
					// Strides wider than the matrices, to test them too.
					p.lda, p.ldb, p.ldc = s.k+1, s.n+2, s.n+3
					ra, rb := s.m, s.k
					if tA {
						p.lda, ra = s.m+1, s.k
					}
					if tB {
						p.ldb, rb = s.k+2, s.n
					}
					p.a, p.b, p.c0 = randMat(rng, ra*p.lda), randMat(rng, rb*p.ldb), randMat(rng, s.m*p.ldc)
					ps = append(ps, p)
				}
			}
		}
	}
	return ps
}

func (p problem) at(x []float32, ld int, trans bool, i, j int) float64 {
	if trans {
		return float64(x[j*ld+i])
	}
	return float64(x[i*ld+j])
}

func (p problem) run(kern *kernel, workers int) []float32 {
	c := append([]float32(nil), p.c0...)
	gemmWith(kern, workers, p.transA, p.transB, p.m, p.n, p.k, p.a, p.lda, p.b, p.ldb, c, p.ldc, p.accumulate)
	return c
}

// TestAgainstFloat64 checks every kernel against a float64 product with the
// worst-case bound of a length-k chain of float32 FMAs:
// |c - exact| <= gamma(k+1) (|c0| + sum |a b|), gamma(n) = n u/(1 - n u),
// u = 2^-24. Entries outside the m x n window must be left alone.
func TestAgainstFloat64(t *testing.T) {
	ks := append(kernels(), reference)
	for _, p := range problems(1) {
		for _, kern := range ks {
			c := p.run(kern, 2)
			n := float64(p.k + 1)
			gamma := n * 0x1p-24 / (1 - n*0x1p-24)
			for i := 0; i < p.m; i++ {
				for j := 0; j < p.ldc; j++ {
					got := c[i*p.ldc+j]
					if j >= p.n {
						if got != p.c0[i*p.ldc+j] {
							t.Fatalf("%s %v: C[%d,%d] outside the product changed", kern.name, p, i, j)
						}
						continue
					}
					var want, mag float64
					if p.accumulate {
						want, mag = float64(p.c0[i*p.ldc+j]), math.Abs(float64(p.c0[i*p.ldc+j]))
					}
					for q := 0; q < p.k; q++ {
						v := p.at(p.a, p.lda, p.transA, i, q) * p.at(p.b, p.ldb, p.transB, q, j)
						want += v
						mag += math.Abs(v)
					}
					if d := math.Abs(float64(got) - want); !(d <= gamma*mag) {
						t.Fatalf("%s %v: C[%d,%d] = %g, float64 %g: error %.3g > bound %.3g", kern.name, p, i, j, got, want, d, gamma*mag)
					}
				}
			}
		}
	}
}

// TestBitIdentical checks that every kernel on this CPU, the reference
// kernel, and every number of workers give the same bits.
// (TestKernelsOnThisCPU checks that kernels() lists every kernel the CPU
// runs.)
func TestBitIdentical(t *testing.T) {
	ks := kernels()
	if len(ks) == 0 {
		t.Log("no assembly kernel on this CPU or build: comparing the reference kernel with itself across workers only")
	}
	for _, kern := range ks {
		t.Logf("checking %s (%dx%d) against %s", kern.name, kern.mr, kern.nr, reference.name)
	}
	for _, p := range problems(2) {
		want := p.run(reference, 1)
		for _, kern := range append(ks, reference) {
			for _, workers := range []int{1, 2, 3, 8} {
				got := p.run(kern, workers)
				for i := range want {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%s with %d workers, %v: element %d is %g, reference kernel on 1 worker %g", kern.name, workers, p, i, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestGOMAXPROCS runs the public Gemm with each kernel, at GOMAXPROCS 1
// and 2, on a product big enough to be split and ragged for every tile,
// and checks the bits against the reference kernel's.
func TestGOMAXPROCS(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	m, n, k := 97, 203, 300
	a, b := randMat(rng, m*k), randMat(rng, n*k)
	want := make([]float32, m*n)
	gemmWith(reference, 1, false, true, m, n, k, a, k, b, k, want, n, false)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer useKernel(best)
	for _, kern := range append(kernels(), reference) {
		useKernel(kern)
		for _, procs := range []int{1, 2} {
			runtime.GOMAXPROCS(procs)
			got := make([]float32, m*n)
			Gemm(false, true, m, n, k, a, k, b, k, got, n, false)
			for i := range want {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("%s at GOMAXPROCS %d: element %d is %g, reference kernel %g", Kernel(), procs, i, got[i], want[i])
				}
			}
		}
	}
}

// useKernel makes Gemm and Pack use kern (nil: the gonum fallback).
func useKernel(kern *kernel) { best = kern }

func TestBadArguments(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func()
	}{
		{"short A", func() {
			Gemm(false, false, 2, 2, 2, make([]float32, 3), 2, make([]float32, 4), 2, make([]float32, 4), 2, false)
		}},
		{"short C", func() {
			Gemm(false, false, 2, 2, 2, make([]float32, 4), 2, make([]float32, 4), 2, make([]float32, 3), 2, false)
		}},
		{"narrow lda", func() {
			Gemm(false, false, 2, 2, 2, make([]float32, 4), 1, make([]float32, 4), 2, make([]float32, 4), 2, false)
		}},
		{"negative", func() { Gemm(false, false, -1, 2, 2, nil, 2, nil, 2, nil, 2, false) }},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", tc.name)
				}
			}()
			tc.f()
		}()
	}
}

func TestZeroK(t *testing.T) {
	c := []float32{1, 2, 3, 4}
	Gemm(false, false, 2, 2, 0, nil, 1, nil, 2, c, 2, true)
	if c[0] != 1 || c[3] != 4 {
		t.Errorf("k = 0 with accumulate changed C: %v", c)
	}
	Gemm(false, false, 2, 2, 0, nil, 1, nil, 2, c, 2, false)
	if c[0] != 0 || c[3] != 0 {
		t.Errorf("k = 0 without accumulate left C at %v", c)
	}
}

// TestPacked checks that GemmPacked with op(B) packed once gives the bits
// of the reference kernel on the same product, with B packed by each
// kernel and multiplied while Gemm uses another (GemmPacked must use the
// kernel that packed), at GOMAXPROCS 1 and 2, one PackedB reused across
// all the shapes (so that its memory is reused for smaller and larger B);
// and that the gonum fallback packs nothing.
func TestPacked(t *testing.T) {
	var pb PackedB
	if len(kernels()) == 0 {
		if pb.Pack(false, 2, 2, make([]float32, 4), 2) {
			t.Fatal("packed B without a packed kernel")
		}
		return
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer useKernel(best)
	ks := append(kernels(), reference)
	for _, p := range problems(4) {
		want := p.run(reference, 1)
		for i, kern := range ks {
			useKernel(kern)
			if !pb.Pack(p.transB, p.k, p.n, p.b, p.ldb) {
				t.Fatal("Pack packed nothing with a packed kernel")
			}
			useKernel(ks[(i+1)%len(ks)])
			for _, procs := range []int{1, 2} {
				runtime.GOMAXPROCS(procs)
				c := append([]float32(nil), p.c0...)
				GemmPacked(p.transA, p.m, p.a, p.lda, &pb, c, p.ldc, p.accumulate)
				for i := range want {
					if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
						t.Fatalf("packed by %s, GOMAXPROCS %d, %v: element %d is %g, want %g", pb.kern.name, procs, p, i, c[i], want[i])
					}
				}
			}
		}
	}
}

// TestPack checks packA and packB (with their assembly for whole panels
// where the CPU has it: 6 and multiples of 8 wide) against the
// definition, for the panel sizes of every kernel: panel t of A's holds
// op(A)[ic+t*mr+i, pc+q] at t*mr*kb + q*mr+i, of B's op(B)[pc+q,
// jc+t*nr+j] at t*nr*kb + q*nr+j, zeros past the block's rows or columns,
// and nothing is written past the panels.
func TestPack(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, side := range []string{"A", "B"} {
		for _, r := range []int{4, 6, 8, 16, 32} {
			// size: rows of op(A) or columns of op(B) in the block; kb:
			// its steps.
			for _, s := range []struct{ size, kb int }{{r, 8}, {r, 7}, {2 * r, 17}, {2*r + 1, 64}, {r - 1, 40}, {mc, kc}, {1, 1}} {
				for _, trans := range []bool{false, true} {
					const lo, pc = 3, 5 // the block's first row or column, and step
					size, steps := lo+s.size, pc+s.kb+3
					var X matrix // op(A) [size, steps] or op(B) [steps, size]
					at := func(q, i int) float32 { return X.data[i*X.rs+q*X.cs] }
					rows, cols := size, steps
					if side == "B" {
						rows, cols = steps, size
						at = func(q, j int) float32 { return X.data[q*X.rs+j*X.cs] }
					}
					X = operand(randMat(rng, rows*(cols+1)), cols+1, false, rows, cols, side)
					if trans {
						X = operand(randMat(rng, cols*(rows+2)), rows+2, true, rows, cols, side)
					}
					panels := (s.size + r - 1) / r
					dst := make([]float32, panels*r*s.kb+16)
					for i := range dst {
						dst[i] = float32(math.NaN())
					}
					if side == "A" {
						packA(dst, X, lo, s.size, pc, s.kb, r)
					} else {
						packB(dst, X, pc, s.kb, lo, s.size, r)
					}
					for t0 := 0; t0 < panels*r; t0 += r {
						for q := 0; q < s.kb; q++ {
							for i := 0; i < r; i++ {
								var want float32
								if t0+i < s.size {
									want = at(pc+q, lo+t0+i)
								}
								if got := dst[t0*s.kb+q*r+i]; math.Float32bits(got) != math.Float32bits(want) {
									t.Fatalf("%s panels %d wide, %dx%d, trans %v: %d of step %d is %g, want %g", side, r, s.size, s.kb, trans, t0+i, q, got, want)
								}
							}
						}
					}
					for i := panels * r * s.kb; i < len(dst); i++ {
						if dst[i] == dst[i] {
							t.Fatalf("%s panels %d wide, %dx%d, trans %v: wrote %g past the panels at %d", side, r, s.size, s.kb, trans, dst[i], i)
						}
					}
				}
			}
		}
	}
}
