//go:build cuda

package cuda

import (
	"fmt"
	"math"
)

// MaxTopK is the largest k that TopK takes.
const MaxTopK = maxTopK

// TopK is retrieval.TopK on the GPU: for each of the nQueries rows of
// queries [nQueries, dim], the min(k, nKeys) rows of keys [nKeys, dim] with
// the largest dot products, best first, higher score first and equal scores
// by the lower key index; indices[q*kOut+p] and scores[q*kOut+p]. It does
// not normalise (retrieval normalises on the host first, with
// retrieval.NormalizeRows) and never forms the score matrix.
//
// Scores are float32 dot products summed in another order than the CPU's,
// so the indices agree with retrieval.TopK exactly when the dot products are
// exact in any order (small-integer data, for example); on real data keys
// whose scores differ in the last bits can swap.
//
// Errors: a shape that does not match its slice, k < 1 or k > MaxTopK, a
// NaN or an infinity in the inputs, or a failure on the GPU.
func (d *Device) TopK(queries, keys []float32, nQueries, nKeys, dim, k int) (indices []int32, scores []float32, err error) {
	return d.topKHost(queries, keys, nQueries, nKeys, dim, k)
}

func (d *Device) topKHost(queries, keys []float32, nq, nk, dim, k int) ([]int32, []float32, error) {
	if err := checkMatrix("queries", queries, nq, dim); err != nil {
		return nil, nil, err
	}
	if err := checkMatrix("keys", keys, nk, dim); err != nil {
		return nil, nil, err
	}
	if k < 1 || k > MaxTopK {
		return nil, nil, fmt.Errorf("cuda: top-k: k = %d, need 1 to %d", k, MaxTopK)
	}
	if nk > math.MaxInt32 || nq > math.MaxInt32 {
		return nil, nil, fmt.Errorf("cuda: top-k: %d queries and %d keys do not fit int32 indices", nq, nk)
	}
	kOut := min(k, nk)
	indices, scores := make([]int32, nq*kOut), make([]float32, nq*kOut)
	err := d.do(func() error {
		var a arena
		layout := func(a *arena) (q, kk buf[float32], idx buf[int32], sc buf[float32]) {
			return carve[float32](a, nq*dim), carve[float32](a, nk*dim), carve[int32](a, nq*kOut), carve[float32](a, nq*kOut)
		}
		layout(&a)
		p, err := d.alloc(a.off)
		if err != nil {
			return d.oom(err, a.off, fmt.Sprintf("top-%d of %d queries over %d keys", k, nq, nk), "", "")
		}
		defer d.free(p)
		a = arena{base: p}
		q, kb, idx, sc := layout(&a)
		if err := upload(d, q, queries); err != nil {
			return err
		}
		if err := upload(d, kb, keys); err != nil {
			return err
		}
		if err := d.topK(idx, sc, q, kb, nq, nk, dim, kOut); err != nil {
			return err
		}
		if err := download(d, indices, idx); err != nil {
			return err
		}
		return download(d, scores, sc)
	})
	if err != nil {
		return nil, nil, err
	}
	return indices, scores, nil
}

// checkMatrix is retrieval's check: x is an n x dim row-major matrix of
// finite values.
func checkMatrix(name string, x []float32, n, dim int) error {
	if n < 1 {
		return fmt.Errorf("cuda: %s has %d rows, need at least 1", name, n)
	}
	if dim < 1 {
		return fmt.Errorf("cuda: dimension %d, need at least 1", dim)
	}
	if len(x)%dim != 0 || len(x)/dim != n {
		return fmt.Errorf("cuda: %s has %d values, want %d rows x %d", name, len(x), n, dim)
	}
	for i, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("cuda: %s[%d][%d] is %v, need finite values", name, i/dim, i%dim, v)
		}
	}
	return nil
}
