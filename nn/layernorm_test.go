package nn

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/dinoclip/dinoclip/internal/vec32"
)

// The float32 LayerNorm backward pass gives the same bits at GOMAXPROCS 1,
// 2 and 3 and with vec32's assembly or Go loops, and those bits are its
// stated order: dx as vec32.LayerNormBackwardRows over all the rows, and
// dgamma, dbeta as each block of layerNormBackwardBlock rows summed in row
// order, the blocks' sums then added in block order (checked here with
// plain loops). Row counts cover one block, a block and a row, several
// blocks and a partial one.
func TestLayerNormBackwardFloat32Order(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer vec32.UseAssembly(vec32.UseAssembly(true))
	rng := rand.New(rand.NewPCG(21, 22))
	for _, sh := range [][2]int{{1, 7}, {layerNormBackwardBlock, 64}, {layerNormBackwardBlock + 1, 517}, {100, 64}, {4*layerNormBackwardBlock + 5, 1030}} {
		n, d := sh[0], sh[1]
		randoms := func(k int) []float32 {
			v := make([]float32, k)
			for i := range v {
				v[i] = float32(rng.NormFloat64() * math.Pow(10, 2*rng.Float64()-1))
			}
			return v
		}
		dy, xhat, rstd, gamma := randoms(n*d), randoms(n*d), randoms(n), randoms(d)
		wantDx := make([]float32, n*d)
		gamma64 := make([]float64, d)
		for j, v := range gamma {
			gamma64[j] = float64(v)
		}
		vec32.LayerNormBackwardRows(wantDx, dy, xhat, rstd, gamma64, n, d, make([]float64, d), make([]float64, d))
		wantG, wantB := make([]float32, d), make([]float32, d)
		for j := range d {
			var g, b float64
			for lo := 0; lo < n; lo += layerNormBackwardBlock {
				var bg, bb float64
				for r := lo; r < min(lo+layerNormBackwardBlock, n); r++ {
					bg += float64(dy[r*d+j]) * float64(xhat[r*d+j])
					bb += float64(dy[r*d+j])
				}
				g, b = g+bg, b+bb
			}
			wantG[j], wantB[j] = float32(g), float32(b)
		}
		for _, procs := range []int{1, 2, 3} {
			for _, asm := range []bool{true, false} {
				runtime.GOMAXPROCS(procs)
				vec32.UseAssembly(asm)
				what := fmt.Sprintf("n %d d %d, GOMAXPROCS %d, assembly %v", n, d, procs, asm)
				dx, dgamma, dbeta := append([]float32(nil), dy...), make([]float32, d), make([]float32, d)
				LayerNormBackward(dx, dgamma, dbeta, dx, xhat, rstd, gamma, n, d) // dx aliasing dy
				for _, c := range []struct {
					name      string
					got, want []float32
				}{{"dx", dx, wantDx}, {"dgamma", dgamma, wantG}, {"dbeta", dbeta, wantB}} {
					for i := range c.want {
						if math.Float32bits(c.got[i]) != math.Float32bits(c.want[i]) {
							t.Fatalf("%s: %s[%d] = %v, want %v", what, c.name, i, c.got[i], c.want[i])
						}
					}
				}
			}
		}
	}
}

// TestLayerNormBackwardFloat32BlockSums pins the order of dbeta's sum with
// values whose sum depends on it: 2^60 in row 0, -2^60 in the first row of
// the second block and 1 in every other row. Summed over all rows in
// order, the 1s of the first block are lost against 2^60 (its ulp is 256)
// and the rest counted: 3*block - 1. Summed by blocks, the first two
// blocks' sums are 2^60 and -2^60, which cancel, and only the third
// block's 1s count: block.
func TestLayerNormBackwardFloat32BlockSums(t *testing.T) {
	const n, d = 3 * layerNormBackwardBlock, 9
	dy, xhat, rstd, gamma := make([]float32, n*d), make([]float32, n*d), make([]float32, n), make([]float32, d)
	for i := range dy {
		dy[i] = 1
	}
	for j := range d {
		dy[j], dy[layerNormBackwardBlock*d+j] = 0x1p60, -0x1p60
	}
	dgamma, dbeta := make([]float32, d), make([]float32, d)
	LayerNormBackward(make([]float32, n*d), dgamma, dbeta, dy, xhat, rstd, gamma, n, d)
	for j, v := range dbeta {
		if v != layerNormBackwardBlock {
			t.Fatalf("dbeta[%d] = %v, want %d (the sum by blocks of %d rows)", j, v, layerNormBackwardBlock, layerNormBackwardBlock)
		}
	}
}

// ColumnSums gives, at GOMAXPROCS 1, 2 and 3 and on both of vec32's
// paths, each column's float64 sum over the rows in order, rounded once;
// the widths span less than one, one and several column blocks.
func TestColumnSumsFloat32Order(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer vec32.UseAssembly(vec32.UseAssembly(true))
	rng := rand.New(rand.NewPCG(23, 24))
	for _, sh := range [][2]int{{3, 7}, {40, columnBlock}, {70, 2*columnBlock + 9}} {
		n, d := sh[0], sh[1]
		a := make([]float32, n*d)
		for i := range a {
			a[i] = float32(rng.NormFloat64() * math.Pow(10, 4*rng.Float64()-2))
		}
		want := make([]float32, d)
		for j := range d {
			var s float64
			for r := range n {
				s += float64(a[r*d+j])
			}
			want[j] = float32(s)
		}
		for _, procs := range []int{1, 2, 3} {
			for _, asm := range []bool{true, false} {
				runtime.GOMAXPROCS(procs)
				vec32.UseAssembly(asm)
				got := make([]float32, d)
				ColumnSums(got, a, n, d)
				for j := range want {
					if math.Float32bits(got[j]) != math.Float32bits(want[j]) {
						t.Fatalf("n %d d %d, GOMAXPROCS %d, assembly %v: column %d sums to %v, want %v", n, d, procs, asm, j, got[j], want[j])
					}
				}
			}
		}
	}
}
