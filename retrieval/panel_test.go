package retrieval

import (
	"flag"
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/npy"
)

// kernelModes runs f with each set of panel kernels this CPU has
// (AVX-512, AVX2, portable Go).
func kernelModes(t *testing.T, f func(t *testing.T)) {
	for _, k := range availableKernels() {
		t.Run(k.String(), func(t *testing.T) {
			old := kernels
			kernels = k
			defer func() { kernels = old }()
			f(t)
		})
	}
}

// testSegment returns n random rows of dim values (a few huge or tiny
// ones among them) stored as dt, and the values as the search reads them.
func testSegment(rnd *rand.Rand, dt npy.DType, n, dim int) (KeySegment, []float32) {
	vals := make([]float32, n*dim)
	for i := range vals {
		vals[i] = float32(rnd.NormFloat64())
		switch rnd.IntN(50) {
		case 0:
			vals[i] *= 6e4 / 4
		case 1:
			vals[i] *= 1e-6
		}
	}
	seg := KeySegment{Name: "test", DType: dt, Rows: n, Data: make([]byte, n*dim*dt.Size())}
	if dt == npy.Float16 {
		leconv.PutF16(seg.Data, vals)
		leconv.F16ToF32(vals, seg.Data)
	} else {
		leconv.PutF32(seg.Data, vals)
	}
	return seg, vals
}

// packKeys lays rows out as key panels, bit for bit, pads with zero rows,
// and gives the squared norms of decode (the same float64 sums in column
// order) for full panels, ragged ones and widths that are not multiples of
// the kernel's 8 columns.
func TestPackKeys(t *testing.T) {
	kernelModes(t, func(t *testing.T) {
		rnd := rand.New(rand.NewPCG(5, 6))
		for _, dt := range []npy.DType{npy.Float16, npy.Float32} {
			for _, dim := range []int{1, 7, 8, 20, 33, 512} {
				const n = 70
				seg, vals := testSegment(rnd, dt, n, dim)
				keys, err := NewKeys(dim, seg)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range [][2]int{{0, n}, {0, 16}, {3, 19}, {5, 6}, {40, 70}} {
					lo, hi := r[0], r[1]
					rows := (hi - lo + panelKeys - 1) / panelKeys * panelKeys
					dst := make([]float32, rows*dim)
					for i := range dst {
						dst[i] = float32(math.NaN()) // every value must be written
					}
					norms2 := make([]float64, hi-lo)
					if err := keys.packKeys(dst, norms2, make([]float32, dim), 0, lo, hi); err != nil {
						t.Fatal(err)
					}
					want2 := make([]float64, hi-lo)
					if err := keys.decode(make([]float32, (hi-lo)*dim), want2, 0, lo, hi); err != nil {
						t.Fatal(err)
					}
					name := fmt.Sprintf("%s dim %d rows [%d, %d)", dt.Name(), dim, lo, hi)
				check:
					for r := range rows {
						p, j := r/panelKeys, r%panelKeys
						for c := range dim {
							want := float32(0)
							if lo+r < hi {
								want = vals[(lo+r)*dim+c]
							}
							if got := dst[p*panelKeys*dim+c*panelKeys+j]; math.Float32bits(got) != math.Float32bits(want) {
								t.Errorf("%s: row %d column %d packed as %v, want %v", name, r, c, got, want)
								break check
							}
						}
					}
					for r := range hi - lo {
						if norms2[r] != want2[r] {
							t.Errorf("%s: row %d squared norm %v, want %v", name, r, norms2[r], want2[r])
						}
					}
				}
			}
		}
	})
}

// A NaN or an infinity anywhere in a panel the kernel packs is an error
// naming its row and column.
func TestPackKeysNonFinite(t *testing.T) {
	kernelModes(t, func(t *testing.T) {
		rnd := rand.New(rand.NewPCG(7, 8))
		const n, dim = 40, 24
		for _, dt := range []npy.DType{npy.Float16, npy.Float32} {
			for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1)), float32(math.Inf(-1))} {
				seg, vals := testSegment(rnd, dt, n, dim)
				const row, col = 21, 13
				vals[row*dim+col] = bad
				if dt == npy.Float16 {
					leconv.PutF16(seg.Data, vals)
				} else {
					leconv.PutF32(seg.Data, vals)
				}
				keys, err := NewKeys(dim, seg)
				if err != nil {
					t.Fatal(err)
				}
				err = keys.packKeys(make([]float32, 32*dim), make([]float64, 32), make([]float32, dim), 0, 16, n)
				want := fmt.Sprintf("row %d, column %d is %v", row, col, bad)
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("%s %v: error %v, want one saying %q", dt.Name(), bad, err, want)
				}
			}
		}
	})
}

// scoreTile's scores are within ErrorBound of the float64 dot products,
// and bit p of its answer is set exactly when some score of key panel p is
// not below its row's threshold or is NaN or -Inf, up to the 64th panel;
// rows with a +Inf threshold never pass.
func TestScoreTile(t *testing.T) {
	kernelModes(t, func(t *testing.T) {
		rnd := rand.New(rand.NewPCG(9, 10))
		for _, sz := range []struct{ dim, panels int }{{1, 1}, {3, 5}, {8, 2}, {13, 64}, {512, 9}, {512, 64}} {
			dim, panels := sz.dim, sz.panels
			q, keys := normalFloats(rnd, panelQueries*dim), normalFloats(rnd, panels*panelKeys*dim)
			ldc := panels*panelKeys + 3
			c := make([]float32, panelQueries*ldc)
			rel, abs := ErrorBound(dim)
			q3, q4 := q[3], q[4]
			for trial := range 8 {
				var thr [panelQueries]float32
				for i := range thr {
					// Mostly around the scores' spread, so that some panels
					// pass and some do not.
					thr[i] = float32((3.2 + 0.3*rnd.NormFloat64()) * math.Sqrt(float64(dim)))
				}
				switch trial {
				case 1:
					thr[2] = float32(math.Inf(-1))
				case 2:
					thr = [panelQueries]float32{}
					for i := range thr {
						thr[i] = float32(math.Inf(1))
					}
				case 3:
					// A NaN score: a NaN query value poisons its row.
					q[4] = float32(math.NaN())
				case 4:
					// Sums that overflow: row 3 scores -Inf against keys whose
					// first value is above 1 and +Inf below -1, and only
					// those pass the thresholds.
					q[3] = -math.MaxFloat32
					for i := range thr {
						thr[i] = math.MaxFloat32
					}
				}
				mask := scoreTile(dim, q, keys, panels, &thr, c, ldc)
				var want, onlyNegInf uint64
				for p := range panels {
					var pass, negInf bool
					for i := range panelQueries {
						for j := range panelKeys {
							s := c[i*ldc+p*panelKeys+j]
							pass = pass || !(s < thr[i])
							negInf = negInf || math.IsInf(float64(s), -1)
							if trial == 3 && i == 4 || trial == 4 && i == 3 {
								continue
							}
							var exact, qn, kn float64
							for d := range dim {
								a, b := float64(q[d*panelQueries+i]), float64(keys[p*panelKeys*dim+d*panelKeys+j])
								exact += a * b
								qn += a * a
								kn += b * b
							}
							if e := rel*math.Sqrt(qn*kn) + abs; !(math.Abs(float64(s)-exact) <= e) {
								t.Fatalf("dim %d panel %d (%d, %d): score %v, float64 %v, beyond the bound %v", dim, p, i, j, s, exact, e)
							}
						}
					}
					if pass || negInf {
						want |= 1 << p
					}
					if negInf && !pass {
						onlyNegInf |= 1 << p
					}
				}
				if mask != want {
					t.Errorf("dim %d, %d panels, trial %d: mask %064b, want %064b", dim, panels, trial, mask, want)
				}
				if trial == 2 && mask != 0 || trial == 3 && bits.OnesCount64(mask) != panels {
					t.Errorf("dim %d, trial %d: mask %064b", dim, trial, mask)
				}
				if trial == 4 && panels >= 9 && onlyNegInf == 0 {
					t.Errorf("dim %d: no key panel passes by a -Inf score alone; the case tests nothing", dim)
				}
				q[3], q[4] = q3, q4
			}
		}
	})
}

// The assembly kernels give the same float32 scores and the same answer
// bits, bit for bit, as the first of them (the search's default), tile
// shapes with an odd number of key panels included.
func TestScoreTileKernelsAgree(t *testing.T) {
	var asm []panelKernels
	for _, k := range availableKernels() {
		if k != goKernels {
			asm = append(asm, k)
		}
	}
	if len(asm) < 2 {
		t.Skipf("this CPU runs %d assembly kernel(s); nothing to compare", len(asm))
	}
	defer func(old panelKernels) { kernels = old }(kernels)
	rnd := rand.New(rand.NewPCG(13, 14))
	for _, sz := range []struct{ dim, panels int }{{1, 1}, {5, 2}, {8, 3}, {31, 7}, {512, 8}, {512, 63}, {100, 64}} {
		dim, panels := sz.dim, sz.panels
		q, keys := normalFloats(rnd, panelQueries*dim), normalFloats(rnd, panels*panelKeys*dim)
		var thr [panelQueries]float32
		for i := range thr {
			thr[i] = float32((2.5 + 0.3*rnd.NormFloat64()) * math.Sqrt(float64(dim)))
		}
		ldc := panels*panelKeys + 5
		var want []float32
		var wantMask uint64
		for n, k := range asm {
			kernels = k
			c := make([]float32, panelQueries*ldc)
			mask := scoreTile(dim, q, keys, panels, &thr, c, ldc)
			if n == 0 {
				want, wantMask = c, mask
				continue
			}
			if mask != wantMask {
				t.Errorf("dim %d, %d panels: %v mask %064b, %v %064b", dim, panels, k, mask, asm[0], wantMask)
			}
			for i := range c {
				if math.Float32bits(c[i]) != math.Float32bits(want[i]) {
					t.Fatalf("dim %d, %d panels: %v scores %v at %d, %v %v", dim, panels, k, c[i], i, asm[0], want[i])
				}
			}
		}
	}
}

// threshold never lets a score through that could reach the floor, and is
// the tightest float32 but for its one extra step.
func TestThreshold(t *testing.T) {
	rnd := rand.New(rand.NewPCG(11, 12))
	for range 10000 {
		floor := rnd.NormFloat64() * math.Pow(10, float64(rnd.IntN(20)-10))
		maxErr := math.Abs(rnd.NormFloat64()) * 1e-4
		th := threshold(floor, maxErr)
		if float64(th)+maxErr >= floor {
			t.Fatalf("floor %v, err %v: threshold %v lets %v reach the floor", floor, maxErr, th, th)
		}
		up := math.Nextafter32(math.Nextafter32(th, float32(math.Inf(1))), float32(math.Inf(1)))
		if float64(up) <= floor-maxErr {
			t.Fatalf("floor %v, err %v: threshold %v is more than two steps below %v", floor, maxErr, th, floor-maxErr)
		}
	}
	if th := threshold(math.Inf(-1), 1); !math.IsInf(float64(th), -1) {
		t.Errorf("no floor yet: threshold %v, want -Inf", th)
	}
	if th, want := threshold(1e300, 1), math.Nextafter32(math.MaxFloat32, 0); th != want {
		t.Errorf("floor 1e300: threshold %v, want %v (one step below the largest float32)", th, want)
	}
}

// benchRounds is how many times the benchmarks run the kernels in turn
// (go test -bench . -args -rounds 3), for an A/B in one process that the
// machine's other load hits alike; -count would run each kernel's rounds
// back to back.
var benchRounds = flag.Int("rounds", 1, "run the benchmarks of each set of panel kernels this many times, in turn")

// abKernels lists each set of panel kernels this CPU has, benchRounds
// times over.
func abKernels() []panelKernels {
	var ks []panelKernels
	for range *benchRounds {
		ks = append(ks, availableKernels()...)
	}
	return ks
}

// BenchmarkScoreTile times each score kernel this CPU has on one key tile
// of the default size at width 512 (its panels in L2) against a stream of
// query panels, as the search runs it, on one goroutine: GFLOP/s of the
// multiply-adds.
func BenchmarkScoreTile(b *testing.B) {
	const dim, nq = 512, 1002
	panels := tileBytes / (4 * dim) / panelKeys
	rnd := rand.New(rand.NewPCG(1, 2))
	q := make([]float32, nq*dim)
	for i := range q {
		q[i] = float32(rnd.NormFloat64())
	}
	keys := make([]float32, panels*panelKeys*dim)
	for i := range keys {
		keys[i] = float32(rnd.NormFloat64())
	}
	c := make([]float32, panelQueries*panels*panelKeys)
	thr := [panelQueries]float32{1e9, 1e9, 1e9, 1e9, 1e9, 1e9}
	for _, k := range abKernels() {
		b.Run(k.String(), func(b *testing.B) {
			old := kernels
			kernels = k
			defer func() { kernels = old }()
			for b.Loop() {
				for b0 := 0; b0 < nq; b0 += panelQueries {
					scoreTile(dim, q[b0*dim:(b0+panelQueries)*dim], keys, panels, &thr, c, panels*panelKeys)
				}
			}
			b.ReportMetric(2*float64(nq*panels*panelKeys*dim)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// normalFloats returns n standard normal values.
func normalFloats(rnd *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rnd.NormFloat64())
	}
	return v
}
