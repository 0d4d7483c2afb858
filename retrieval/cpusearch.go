package retrieval

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/bits"
	"runtime"
	"sync"
	"sync/atomic"
)

// DefaultMemoryBudget is the working memory of a CPUSearcher whose
// MemoryBudget is 0.
const DefaultMemoryBudget = 512 << 20

// tileBytes is the size of a default key tile once packed in float32:
// its key panels stay in a core's L2 cache (512 KiB on the AMD EPYC
// measured, 1-2 MiB on recent Intel parts) while every query panel streams
// past them.
const tileBytes = 256 << 10

// CPUSearcher is the CPU's exact Searcher.
//
// It cuts the keys into tiles (128 rows at width 512: 256 KiB as
// float32), packs one tile at a time into key panels (float16 keys are
// decoded on the way; no float32 copy of the keys is made), multiplies
// every panel of queries, packed once, with it (scoreTile: an AVX-512 or
// an AVX2/FMA kernel on amd64, whichever the CPU has, portable Go
// elsewhere; see panel.go), and keeps for every query the candidates the
// float32 error bound cannot rule out ([ErrorBound]), which it re-scores
// in float64 to return the exact answer of the [Searcher] contract. The
// kernel compares each score with its query's current threshold (the k-th
// best lower bound less the largest error bound of the tile), so almost
// every score is dismissed there, one vector comparison per 16 scores
// (AVX-512) or 8 (AVX2). Workers (up to Workers goroutines) take tiles in
// turn; each keeps its own candidates per query, merged at the end, so
// the answer does not depend on scheduling.
//
// Memory: the keys are read in windows of half of MemoryBudget; before a
// window is left, the candidates found in it are re-scored (while its rows
// are resident) and its pages of a memory-mapped segment
// (KeySegment.Mapped) are handed back to the kernel, so a search of a
// mapped index keeps about half of MemoryBudget of it resident, whatever
// its size (measured: a 10M × 512 float16 index, 9.7 GiB, searched with a
// 64 MiB budget peaked at 62 MiB resident for the whole dinoclip process;
// bench/RESULTS.md, 2026-12-02).
// The queries are taken in chunks whose candidate lists fit the other
// half. Beyond the budget: the queries, and the answer itself (12 bytes per
// query and neighbour).
//
// Adversarial keys cost time, never correctness: when many keys tie with
// the k-th best score within the error bound (duplicates, all-equal
// scores), every such key is re-scored in float64.
type CPUSearcher struct {
	Workers      int   // goroutines; 0 means GOMAXPROCS, at most the CPUs
	MemoryBudget int64 // bytes, see above; 0 means DefaultMemoryBudget

	// Progress, when set, is called after each window of keys with the
	// number of (query, key) scores done and the total.
	Progress func(done, total int64)

	// Test hooks: smaller tiles and windows reach every edge case.
	keyTile     int
	windowBytes int64
}

// tile is a run of at most keyTile rows of one segment.
type tile struct {
	seg    int
	lo, hi int
}

// searchPlan is how a search is cut.
type searchPlan struct {
	workers, keyTile int
	queryChunk       int      // queries searched together (a multiple of panelQueries, or all)
	windows          [][]tile // tiles searched between two evictions
}

// passQueries is the cost of a pass over the keys, in queries scored
// against them: decoding and packing float16 keys took 3-4% of a search
// of 1,000 queries (docs/RETRIEVAL.md), about 35 queries' worth.
const passQueries = 32

// selectionBytes estimates the memory of one query's selection: the heap
// of k lower bounds, exact and its merge buffer (k each), pending and the
// struct.
func selectionBytes(k int) int64 {
	return int64(k)*8 + 2*int64(k)*16 + int64(max(2*k, 32))*16 + 120
}

func (c *CPUSearcher) plan(nQueries int, keys *Keys, k int) (searchPlan, error) {
	p := searchPlan{workers: c.Workers, keyTile: c.keyTile}
	if p.workers <= 0 {
		// (Threads beyond the CPUs run no faster, and each worker's
		// selections re-score their own top k: GOMAXPROCS=64 on 2 CPUs
		// did several times the work.)
		p.workers = min(runtime.GOMAXPROCS(0), runtime.NumCPU())
	}
	if p.keyTile <= 0 {
		// At least one whole panel: a shorter tile would multiply zeros.
		p.keyTile = max(panelKeys, tileBytes/(4*keys.Dim)/panelKeys*panelKeys)
	}
	p.keyTile = min(max(p.keyTile, 1), maxTilePanels*panelKeys)
	budget := c.MemoryBudget
	if budget <= 0 {
		budget = DefaultMemoryBudget
	}
	dim := int64(keys.Dim)
	tileRows := int64(p.keyTile+panelKeys-1) / panelKeys * panelKeys
	perWorker := tileRows*(dim*4+16) + panelQueries*tileRows*4 + dim*4
	window := c.windowBytes
	if window <= 0 {
		window = budget / 2
	}
	// No more workers than tiles (each holds a selection per query), nor
	// than the budget holds with room for one query: a machine of many
	// threads searches with fewer rather than refuse a small budget.
	tiles := 0
	for _, seg := range keys.Segments {
		tiles += (seg.Rows + p.keyTile - 1) / p.keyTile
	}
	p.workers = min(p.workers, max(tiles, 1))
	// Per query: its selection in every worker, its norm, its packed row
	// (and the rows padding the last query panel).
	fixed := budget - window - panelQueries*dim*4 - 16 - dim*4
	if most := fixed / (perWorker + selectionBytes(k)); most < int64(p.workers) {
		if most < 1 {
			// (A smaller k is offered only where one would fit: the
			// width may be what does not.)
			or := ""
			if fixed/(perWorker+selectionBytes(1)) >= 1 {
				or = " or ask for a smaller k"
			}
			return p, fmt.Errorf("retrieval: a memory budget of %d MiB is too small for top-%d over %d-wide keys, even with one worker; allow more memory%s",
				budget>>20, k, dim, or)
		}
		p.workers = int(most)
	}
	// Each worker's selections take room from the queries searched
	// together, and each chunk of queries is a pass over all the keys
	// (read, from disk for a mapped index, and packed). The workers are
	// as many as the budget holds, unless fewer search faster: a pass
	// costs about what scoring passQueries queries against the keys does,
	// and w workers with chunks of q queries do w·q/(q+passQueries) of
	// the work of one with no passes to make (so, with room for every
	// query, all of them).
	chunk := func(w int64) int64 {
		rest := budget - window - w*perWorker - panelQueries*dim*4
		return min(int64(nQueries), rest/(w*selectionBytes(k)+16+dim*4))
	}
	rate := func(w int64) float64 { q := float64(chunk(w)); return float64(w) * q / (q + passQueries) }
	best := int64(p.workers)
	for w := best - 1; w >= 1 && chunk(best) < int64(nQueries); w-- {
		if rate(w) > rate(best) {
			best = w
		}
	}
	p.workers = int(best)
	p.queryChunk = int(chunk(best))
	if p.queryChunk < nQueries && p.queryChunk >= panelQueries {
		p.queryChunk -= p.queryChunk % panelQueries
	}
	var cur []tile
	var curBytes int64
	for s, seg := range keys.Segments {
		rowBytes := dim * int64(seg.DType.Size())
		for lo := 0; lo < seg.Rows; lo += p.keyTile {
			t := tile{s, lo, min(lo+p.keyTile, seg.Rows)}
			b := int64(t.hi-t.lo) * rowBytes
			if len(cur) > 0 && curBytes+b > window {
				p.windows = append(p.windows, cur)
				cur, curBytes = nil, 0
			}
			cur = append(cur, t)
			curBytes += b
		}
	}
	if len(cur) > 0 {
		p.windows = append(p.windows, cur)
	}
	return p, nil
}

// Search implements Searcher.
func (c *CPUSearcher) Search(ctx context.Context, queries []float32, nQueries int, keys *Keys, k int) (*Neighbors, error) {
	if err := CheckSearch(queries, nQueries, keys, k); err != nil {
		return nil, err
	}
	nKeys := keys.Rows()
	kOut := int(min(int64(k), nKeys))
	if int64(nQueries)*int64(kOut) > math.MaxInt/16 {
		return nil, fmt.Errorf("retrieval: %d queries × top-%d is too large an answer", nQueries, kOut)
	}
	p, err := c.plan(nQueries, keys, kOut)
	if err != nil {
		return nil, err
	}
	out := &Neighbors{Queries: nQueries, K: kOut, Rows: make([]int64, nQueries*kOut), Scores: make([]float32, nQueries*kOut)}
	dim := keys.Dim
	qNorm := make([]float64, nQueries)
	for q := range nQueries {
		var sum float64
		for _, v := range queries[q*dim : (q+1)*dim] {
			sum += float64(v) * float64(v)
		}
		qNorm[q] = math.Sqrt(sum)
	}
	total := int64(nQueries) * nKeys
	var done int64
	packed := make([]float32, (p.queryChunk+panelQueries-1)/panelQueries*panelQueries*dim)
	// Every worker's selection of every query of a chunk, made once and
	// reset for each chunk (the plan counted them once).
	chunkSels := make([][]selection, p.workers)
	for w := range chunkSels {
		chunkSels[w] = make([]selection, min(p.queryChunk, nQueries))
		for i := range chunkSels[w] {
			chunkSels[w][i] = newSelection(kOut)
		}
	}
	sels := make([][]selection, p.workers)
	for q0 := 0; q0 < nQueries; q0 += p.queryChunk {
		qn := min(p.queryChunk, nQueries-q0)
		packQueries(packed, queries[q0*dim:(q0+qn)*dim], qn, dim)
		for w := range sels {
			sels[w] = chunkSels[w][:qn]
			for i := range sels[w] {
				sels[w][i].reset()
			}
		}
		chunk := queryChunk{keys: keys, queries: queries[q0*dim : (q0+qn)*dim], packed: packed, qNorm: qNorm[q0 : q0+qn], n: qn}
		for _, win := range p.windows {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			err := chunk.searchWindow(ctx, p, win, sels)
			// Hand the window's pages back whether or not it ran to its end
			// (an interrupted window can be the whole index).
			rows := int64(0)
			for _, t := range win {
				keys.evict(t.seg, t.lo, t.hi)
				rows += int64(t.hi - t.lo)
			}
			if err != nil {
				return nil, err
			}
			done += rows * int64(qn)
			if c.Progress != nil {
				c.Progress(done, total)
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := chunk.merge(sels, out.Rows[q0*kOut:(q0+qn)*kOut], out.Scores[q0*kOut:(q0+qn)*kOut], kOut); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// queryChunk is the queries searched together and what is known of them.
type queryChunk struct {
	keys    *Keys
	queries []float32 // n×dim
	packed  []float32 // the queries in query panels (packQueries)
	qNorm   []float64
	n       int
}

// score returns the reference score of query i and a key row (see Keys.exactScore).
func (c *queryChunk) score(i int, row []float32) func(int64) float64 {
	q := c.queries[i*c.keys.Dim : (i+1)*c.keys.Dim]
	return func(p int64) float64 { return c.keys.exactScore(q, p, row) }
}

// searchWindow runs the workers over the tiles of one window; worker w
// offers its scores to sels[w]. The workers stop at their next tile once
// ctx is done (a window can be the whole index).
func (c *queryChunk) searchWindow(ctx context.Context, p searchPlan, win []tile, sels [][]selection) error {
	dim := c.keys.Dim
	rel, abs := ErrorBound(dim)
	var next atomic.Int64
	errs := make([]error, p.workers)
	var wg sync.WaitGroup
	for w := range min(p.workers, len(win)) {
		wg.Go(func() {
			tileRows := (p.keyTile + panelKeys - 1) / panelKeys * panelKeys
			keyPanels := make([]float32, tileRows*dim)
			norms2 := make([]float64, tileRows)
			keyNorm := make([]float64, tileRows)
			scores := make([]float32, panelQueries*tileRows)
			row := make([]float32, dim)
			sel := sels[w]
			var stopErr error
			faultErr := c.keys.guard(func() {
				for {
					ti := int(next.Add(1) - 1)
					if ti >= len(win) {
						if ctx.Err() != nil {
							return // interrupted: the selections are dropped
						}
						// Re-score what this window left pending while
						// its rows are still resident: once the window is
						// evicted, reading them back would fault pages in
						// again, outside the memory budget.
						for i := range sel {
							sel[i].flush(c.score(i, row))
						}
						return
					}
					if err := ctx.Err(); err != nil {
						stopErr = err
						next.Store(int64(len(win))) // stop the others
						return
					}
					t := win[ti]
					kn := t.hi - t.lo
					if err := c.keys.packKeys(keyPanels, norms2, row, t.seg, t.lo, t.hi); err != nil {
						stopErr = err
						next.Store(int64(len(win))) // stop the others
						return
					}
					maxNorm := 0.0
					for j := range kn {
						keyNorm[j] = math.Sqrt(norms2[j])
						maxNorm = max(maxNorm, keyNorm[j])
					}
					panels := (kn + panelKeys - 1) / panelKeys
					ldc := panels * panelKeys
					first := c.keys.Offset(t.seg) + int64(t.lo)
					for b0 := 0; b0 < c.n; b0 += panelQueries {
						bn := min(panelQueries, c.n-b0)
						var thr [panelQueries]float32
						for i := range panelQueries {
							thr[i] = float32(math.Inf(1)) // rows past the queries: never
							if i < bn {
								thr[i] = threshold(sel[b0+i].floor, rel*c.qNorm[b0+i]*maxNorm+abs)
							}
						}
						mask := scoreTile(dim, c.packed[b0*dim:(b0+panelQueries)*dim], keyPanels, panels, &thr, scores, ldc)
						for mask != 0 {
							pn := bits.TrailingZeros64(mask)
							mask &= mask - 1
							j0, j1 := pn*panelKeys, min((pn+1)*panelKeys, kn)
							for i := range bn {
								s := &sel[b0+i]
								relQ := rel * c.qNorm[b0+i]
								for j, v := range scores[i*ldc+j0 : i*ldc+j1] {
									e := relQ*keyNorm[j0+j] + abs
									if float64(v)+e < s.floor && !math.IsInf(float64(v), -1) {
										continue // (an overflowed sum is offer's to judge)
									}
									if s.offer(first+int64(j0+j), v, e) {
										s.flush(c.score(b0+i, row))
									}
								}
							}
						}
					}
				}
			})
			errs[w] = cmp.Or(stopErr, faultErr)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// merge re-scores what the workers still hold for each query of the chunk
// and writes the k best of all of them, in the reference order.
func (c *queryChunk) merge(sels [][]selection, rows []int64, scores []float32, k int) error {
	row := make([]float32, c.keys.Dim)
	all := make([]scored, 0, len(sels)*k)
	return c.keys.guard(func() {
		for i := range c.n {
			all = all[:0]
			for w := range sels {
				s := &sels[w][i]
				s.flush(c.score(i, row))
				all = append(all, s.exact...)
			}
			sortRanked(all)
			for j := range k {
				rows[i*k+j] = all[j].row
				scores[i*k+j] = float32(all[j].score)
			}
		}
	})
}
