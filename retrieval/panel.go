package retrieval

import (
	"math"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/npy"
)

// Panels: the layout of the CPU search's score computation, a packed
// matrix product in the manner of BLIS (Van Zee and van de Geijn, "BLIS: A
// Framework for Rapidly Instantiating BLAS Functionality", ACM TOMS 41(3),
// 2015).
//
// A tile of keys is packed into key panels of panelKeys rows: panel p holds
// rows 16p to 16p+15 of the tile column after column, the value of row j
// and column c at c·16 + j, float16 keys decoded to float32 on the way (so
// each key is decoded once per chunk of queries, not once per query), rows
// past the tile's end zero. The queries are packed once into query panels
// of panelQueries rows the same way. scorePanels multiplies one query panel
// with every key panel of a tile: a 6×16 tile of float32 scores per key
// panel, each score one chain of multiply-adds in step order (ErrorBound
// allows any order; the AVX-512 and AVX2 kernels run the same FMA chains,
// so they give the same scores bit for bit), and reports which key panels
// hold a score at or above its query's threshold, so that the selection
// never looks at the others. On
// amd64 with AVX2 the tile lives in twelve of the sixteen 8-lane
// registers (two more hold a step's 16 keys, two the broadcast queries);
// with AVX-512 the kernel takes two neighbouring key panels at once, a
// 6×32 tile in twelve of the 32 16-lane registers, still with one answer
// bit per key panel, so the layout is the same for every kernel. The key
// panels of a tile stay in the core's L2 cache while every query panel
// streams past them.
const (
	panelKeys     = 16
	panelQueries  = 6
	maxTilePanels = 64 // scorePanels's answer has one bit per key panel
)

// panelKernels names a set of kernels for the panels: packing, norms and
// score tiles.
type panelKernels uint8

const (
	goKernels     panelKernels = iota // the portable Go of this file
	avx2Kernels                       // panel_amd64.s: AVX2, FMA and F16C
	avx512Kernels                     // the AVX2 packing; score tiles by panel_avx512_amd64.s
)

func (k panelKernels) String() string {
	return [...]string{"go", "avx2", "avx512"}[k]
}

// kernels is the set the search runs: the fastest this CPU has, a
// variable so that tests and benchmarks can run each.
var kernels = availableKernels()[0]

// packKeys packs rows [lo, hi) of segment s (at most maxTilePanels panels)
// into key panels in dst, ⌈(hi-lo)/16⌉·16·Dim values, and stores each row's
// squared norm, summed in float64 (each square is exact), in norms2. A row
// holding NaN or Inf is an error naming its row and column. row is scratch
// of Dim values.
func (k *Keys) packKeys(dst []float32, norms2 []float64, row []float32, s, lo, hi int) error {
	seg := &k.Segments[s]
	dim := k.Dim
	half := seg.DType == npy.Float16
	rowBytes := dim * seg.DType.Size()
	for p0 := lo; p0 < hi; p0 += panelKeys {
		panel := dst[(p0-lo)*dim : (p0-lo+panelKeys)*dim]
		rows := min(panelKeys, hi-p0)
		src := seg.Data[p0*rowBytes : (p0+rows)*rowBytes]
		done := 0
		if kernels != goKernels && rows == panelKeys {
			done = packPanelAsm(panel, src, rowBytes, dim, half)
		}
		// What the kernel did not pack: columns past its multiple of 8,
		// a panel cut short by the tile's end (its missing rows zero).
		if done < dim {
			for j := range panelKeys {
				if j >= rows {
					for c := done; c < dim; c++ {
						panel[c*panelKeys+j] = 0
					}
					continue
				}
				if half {
					leconv.F16ToF32(row, src[j*rowBytes:(j+1)*rowBytes])
				} else {
					leconv.F32ToF32(row, src[j*rowBytes:(j+1)*rowBytes])
				}
				for c := done; c < dim; c++ {
					panel[c*panelKeys+j] = row[c]
				}
			}
		}
		var n2 [panelKeys]float64
		if kernels != goKernels {
			panelNormsAsm(panel, dim, &n2)
		} else {
			panelNormsGo(panel, dim, &n2)
		}
		for j := range rows {
			if math.IsNaN(n2[j]) || math.IsInf(n2[j], 0) {
				// A square of a finite float32 sums to a finite float64
				// over any width up to maxSearchDim, so a value is not
				// finite: decode finds it and says where.
				return k.decode(row, n2[:1], s, p0+j, p0+j+1)
			}
			if err := k.checkNorm(s, p0+j, n2[j]); err != nil {
				return err
			}
		}
		copy(norms2[p0-lo:], n2[:rows])
	}
	return nil
}

// panelNormsGo is panelNorms of panel_amd64.s.
func panelNormsGo(panel []float32, dim int, out *[panelKeys]float64) {
	*out = [panelKeys]float64{}
	for c := range dim {
		for j, v := range panel[c*panelKeys : (c+1)*panelKeys] {
			out[j] += float64(v) * float64(v)
		}
	}
}

// packQueries packs the n rows of q (n×dim) into ⌈n/6⌉ query panels in
// dst, rows past n zero.
func packQueries(dst, q []float32, n, dim int) {
	for p0 := 0; p0 < n; p0 += panelQueries {
		panel := dst[p0*dim : (p0+panelQueries)*dim]
		for i := range panelQueries {
			if p0+i >= n {
				for c := range dim {
					panel[c*panelQueries+i] = 0
				}
				continue
			}
			for c, v := range q[(p0+i)*dim : (p0+i+1)*dim] {
				panel[c*panelQueries+i] = v
			}
		}
	}
}

// scoreTile multiplies the query panel q with the first panels key panels
// of keys (dim columns each): score (i, j) of key panel p goes to
// c[i*ldc + 16p + j], and bit p of the result is set when a score of row i
// of that tile is not below thr[i], for any i, or is NaN or -Inf (a float32
// sum that overflowed, which no error bound covers).
func scoreTile(dim int, q, keys []float32, panels int, thr *[panelQueries]float32, c []float32, ldc int) uint64 {
	switch kernels {
	case avx512Kernels:
		return scorePanelsAVX512(dim, q, keys, panels, thr, c, ldc)
	case avx2Kernels:
		return scorePanelsAsm(dim, q, keys, panels, thr, c, ldc)
	}
	return scorePanelsGo(dim, q, keys, panels, thr, c, ldc)
}

// scorePanelsGo is scorePanels of panel_amd64.s, portably.
func scorePanelsGo(dim int, q, keys []float32, panels int, thr *[panelQueries]float32, c []float32, ldc int) uint64 {
	var mask uint64
	for p := range panels {
		kp := keys[p*dim*panelKeys : (p+1)*dim*panelKeys]
		var acc [panelQueries][panelKeys]float32
		for s := range dim {
			qs := q[s*panelQueries : (s+1)*panelQueries]
			ks := kp[s*panelKeys : (s+1)*panelKeys]
			for i, a := range qs {
				for j, b := range ks {
					acc[i][j] += a * b
				}
			}
		}
		for i := range panelQueries {
			copy(c[i*ldc+p*panelKeys:], acc[i][:])
			for _, v := range acc[i] {
				if !(v < thr[i]) || math.IsInf(float64(v), -1) {
					mask |= 1 << p
				}
			}
		}
	}
	return mask
}

// threshold is the float32 score below which a key cannot reach floor:
// the largest float32 t with t ≤ floor − maxErr, less one more float32
// step for the rounding of that subtraction in float64, so that a score
// s < t has s + err < floor for every err ≤ maxErr. -Inf until the floor
// is set.
func threshold(floor, maxErr float64) float32 {
	t := floor - maxErr
	f := float32(t)
	if float64(f) > t {
		f = math.Nextafter32(f, float32(math.Inf(-1)))
	}
	return math.Nextafter32(f, float32(math.Inf(-1)))
}
