package retrieval

import (
	"context"
	"fmt"
	"math"
)

// Searcher ranks key rows for query rows by inner product: exact top-k
// search. On unit-norm rows the inner product is the cosine similarity.
//
// # Contract (every implementation, CPU or GPU)
//
// Search returns, for each of the nQueries rows of queries (row-major,
// nQueries×keys.Dim, float32), the kOut = min(k, keys.Rows()) key rows
// with the largest reference scores, best first, equal scores by the lower
// row. The reference score of query q and key row p is
//
//	S(q, p) = Σ_{i=0}^{dim-1} float64(q[i])·float64(key_p[i]),
//
// each product exact in float64 (a float32 times a float16 or float32 has
// at most 48 significant bits) and the sum taken in float64 in the order
// i = 0, 1, ..., dim-1. Neighbors.Rows equal those of this order exactly,
// ties included, and Neighbors.Scores are float32(S) of the rows returned:
// the answer does not depend on the implementation, the blocking or the
// number of threads. An implementation ranks in any fast arithmetic it
// likes (float32, float16 tensor cores) and then re-scores, with S, every
// candidate that the error bound of that arithmetic cannot rule out (see
// [ErrorBound] for float32).
//
// A key row holding NaN or Inf is an error when the search reads it; the
// queries are checked up front by [CheckSearch].
type Searcher interface {
	Search(ctx context.Context, queries []float32, nQueries int, keys *Keys, k int) (*Neighbors, error)
}

// Neighbors is a search's answer: K = min(k, key rows) entries per query.
// Rows[q*K+j] is the key row at 0-based position j of query q's list and
// Scores[q*K+j] its reference score rounded to float32.
type Neighbors struct {
	Queries, K int
	Rows       []int64
	Scores     []float32
}

// CheckSearch validates a search's arguments the same way for every
// Searcher: the shape of queries, finite query values, a key matrix of the
// same width with at least one row, and k >= 1.
func CheckSearch(queries []float32, nQueries int, keys *Keys, k int) error {
	if keys == nil || keys.offsets == nil {
		return fmt.Errorf("retrieval: no keys (build them with NewKeys)")
	}
	if keys.Rows() < 1 {
		return fmt.Errorf("retrieval: the keys have no rows")
	}
	if nQueries < 1 {
		return fmt.Errorf("retrieval: %d queries, need at least 1", nQueries)
	}
	dim := keys.Dim
	if len(queries)%dim != 0 || len(queries)/dim != nQueries {
		if len(queries)%nQueries == 0 {
			return fmt.Errorf("retrieval: queries are %d wide, keys %d", len(queries)/nQueries, dim)
		}
		return fmt.Errorf("retrieval: %d query values, want %d rows × %d", len(queries), nQueries, dim)
	}
	if k < 1 {
		return fmt.Errorf("retrieval: k = %d, need at least 1", k)
	}
	for i, v := range queries {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("retrieval: query %d, column %d is %v, need finite values", i/dim, i%dim, v)
		}
	}
	return nil
}

// Unit round-offs of float32 and float64, and the smallest positive
// float32 (the largest error of a float32 product that underflows).
const (
	unitRound32 = 0x1p-24
	// UnitRound64 is float64's unit round-off.
	UnitRound64   = 0x1p-53
	float32Denorm = 0x1p-149
	// BoundSlack covers the rounding of an error bound's own arithmetic
	// (norms and products computed in float64).
	BoundSlack = 1 + 0x1p-20
)

// Gamma is γ_n(u) = n·u/(1 − n·u): a sum of n products computed with unit
// round-off u, in any order and with or without fused multiply-adds, is
// within γ_n(u)·Σ|x_i·y_i| of the exact sum (Higham, Accuracy and
// Stability of Numerical Algorithms, 2nd ed., §3.1).
func Gamma(n int, u float64) float64 {
	x := float64(n)
	return x * u / (1 - x*u)
}

// ErrorBound returns the coefficients of the bound on how far a float32
// dot product of width dim, summed in any order, can be from the reference
// score S of [Searcher]: for a query of Euclidean norm ‖q‖ and a key row of
// norm ‖k‖,
//
//	|s32 − S| ≤ rel·‖q‖·‖k‖ + abs.
//
// This is the classical bound |fl(xᵀy) − xᵀy| ≤ γ_n·Σ|x_i·y_i| (Gamma)
// applied once to the float32 computation
// (u = 2⁻²⁴) and once to the float64 reference (u = 2⁻⁵³), with
// Σ|x_i·y_i| ≤ ‖q‖·‖k‖ (Cauchy–Schwarz); abs adds dim·2⁻¹⁴⁹ for products
// that underflow float32, which the relative bound does not cover.
func ErrorBound(dim int) (rel, abs float64) {
	return (Gamma(dim, unitRound32) + Gamma(dim, UnitRound64)) * BoundSlack, float64(dim) * float32Denorm
}
