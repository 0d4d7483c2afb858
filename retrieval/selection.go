package retrieval

import (
	"container/heap"
	"math"
	"slices"
)

// selection is one query's exact top-k over the keys one worker has seen,
// built from float32 scores with their error bounds (see [Searcher] and
// [ErrorBound]).
//
// The invariant: every key the worker has seen that belongs to the k best
// of those keys under the reference order (score S, then lower row) is in
// exact or in pending. It holds because a key is dropped only when an
// upper bound of its S is below floor, and floor is always a lower bound
// of the k-th largest S among the seen keys: it is the k-th largest of
// either the lower bounds s32 − err or the exact scores of keys seen.
type selection struct {
	k       int
	lower   minHeap  // the k largest lower bounds seen
	exact   []scored // up to k keys with their reference scores, best first
	spare   []scored // flush's merge buffer, exact's size, swapped with it
	pending []scored // candidates with the upper bound of their score, not yet re-scored
	floor   float64  // a lower bound of the k-th largest reference score seen; -Inf until k keys are seen
	cap     int      // pending is re-scored when it reaches this length
}

// scored is a key row with a score (or a bound of one).
type scored struct {
	row   int64
	score float64
}

// before reports whether a ranks ahead of b: higher score, then lower row.
func (a scored) before(b scored) bool {
	return a.score > b.score || a.score == b.score && a.row < b.row
}

// sortRanked sorts s best first (before): the one ordering of selections,
// candidates and merges. Elements of distinct rows never compare equal.
func sortRanked(s []scored) {
	slices.SortFunc(s, func(a, b scored) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
}

func newSelection(k int) selection {
	return selection{
		k:     k,
		lower: make(minHeap, 0, k),
		exact: make([]scored, 0, k),
		spare: make([]scored, 0, k),
		floor: math.Inf(-1),
		cap:   max(2*k, 32),
	}
}

// reset empties s for another query, keeping its buffers: a search of
// many query chunks reuses its selections instead of leaving a chunk's
// worth of garbage each time (which, at large k, doubled its peak memory).
func (s *selection) reset() {
	s.lower, s.exact, s.spare, s.pending = s.lower[:0], s.exact[:0], s.spare[:0], s.pending[:0]
	s.floor = math.Inf(-1)
}

// offer considers key row with float32 score s32 whose reference score is
// within err of it. A score that is not finite means the float32 sum
// overflowed, where no error bound holds: the key is kept with the widest
// bounds and left to re-scoring. It returns true when pending is (still)
// half full after dropping what the floor rules out, and must be
// re-scored (flush) before the next offer.
func (sel *selection) offer(row int64, s32 float32, err float64) bool {
	s := float64(s32)
	upper, lower := s+err, s-err
	if math.IsInf(s, 0) || math.IsNaN(s) {
		upper, lower = math.Inf(1), math.Inf(-1)
	}
	if upper < sel.floor {
		return false
	}
	if len(sel.lower) < sel.k {
		heap.Push(&sel.lower, lower)
	} else if lower > sel.lower[0] {
		sel.lower[0] = lower
		heap.Fix(&sel.lower, 0)
	}
	if len(sel.lower) == sel.k {
		sel.floor = max(sel.floor, sel.lower[0])
	}
	sel.pending = append(sel.pending, scored{row, upper})
	if len(sel.pending) < sel.cap {
		return false
	}
	// The floor has risen since most of these were offered: drop what it
	// rules out now, and ask for re-scoring only when that frees less than
	// half of the room (near-ties, duplicates).
	kept := sel.pending[:0]
	for _, c := range sel.pending {
		if c.score >= sel.floor {
			kept = append(kept, c)
		}
	}
	sel.pending = kept
	return len(sel.pending) >= sel.cap/2
}

// flush re-scores the pending candidates that floor does not rule out with
// score (the reference score of a row), sorts them and merges them with
// exact, keeping the k best: O(k + p log p) for p candidates, so a search
// whose k is near the number of keys stays O(n log k), where inserting one
// candidate at a time into a sorted list of k would be O(n k).
func (sel *selection) flush(score func(row int64) float64) {
	fresh := sel.pending[:0] // re-scored in place: each is read before it is overwritten
	for _, c := range sel.pending {
		if c.score >= sel.floor {
			fresh = append(fresh, scored{c.row, score(c.row)})
		}
	}
	sel.pending = sel.pending[:0] // fresh stays valid: its backing array is untouched until the next offer
	if len(fresh) == 0 {
		return
	}
	sortRanked(fresh)
	merged := sel.spare[:0]
	i, j := 0, 0
	for len(merged) < sel.k && (i < len(sel.exact) || j < len(fresh)) {
		if j == len(fresh) || i < len(sel.exact) && sel.exact[i].before(fresh[j]) {
			merged = append(merged, sel.exact[i])
			i++
		} else {
			merged = append(merged, fresh[j])
			j++
		}
	}
	sel.exact, sel.spare = merged, sel.exact
	if len(sel.exact) == sel.k {
		sel.floor = max(sel.floor, sel.exact[sel.k-1].score)
	}
}

// minHeap is a binary min-heap of float64 (container/heap).
type minHeap []float64

func (h minHeap) Len() int           { return len(h) }
func (h minHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h minHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *minHeap) Push(x any)        { *h = append(*h, x.(float64)) }
func (h *minHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
