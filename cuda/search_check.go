//go:build cuda

package cuda

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"sync"

	"github.com/dinoclip/dinoclip/internal/leconv"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
)

// The check of the GPU search at its first use.
//
// The search's kernels (kernels/search.cu: the mma.sync float16 ranking,
// the merge of running candidate lists, the float64 re-scoring the host's
// proof takes as exact) are proven in the host emulator; only a GPU can
// prove the emulator's reading of mma.sync and ldmatrix right, and a wrong
// ranking with right-looking re-scores could pass the proof and return
// wrong neighbours. So a process's first GPU search (or Searcher.Check,
// which dinoclip search calls before it starts its clock) runs a small
// one and compares it with package retrieval's CPU search, which it must
// equal bit for bit (rows and scores: docs/RETRIEVAL.md): 130 queries (a
// whole and a ragged block) against 300 keys of width 70 (padded to 72)
// in a float16 and a float32 segment, in chunks of 128 (the running lists
// merge), with the keys resident and streamed, and in one chunk (ranked in
// key splits on a GPU of many multiprocessors). Random unit vectors have no
// near-ties, so the GPU must prove every query itself: a query it leaves to
// the CPU fails the check too. Where it fails, or a kernel cannot start,
// every search of the process runs on the CPU (the Searcher's Fallback),
// exact and slower, with a warning; with DINOCLIP_CUDA_CHECK=warn
// (checkEnv), a search that ran and failed runs on the GPU anyway, with a
// warning, and the device's description says it is unchecked. A lost CUDA
// context, or a copy or an allocation that fails, is an error and no
// verdict.

// searchVerdict is the check's outcome for the process (every Device of a
// process opens the same GPU with the same kernels): why the GPU search
// failed it, or "" once it passed, and whether it runs on the GPU anyway
// (checkEnv).
var searchVerdict struct {
	sync.Mutex
	searchOutcome
}

// searchOutcome is what searchVerdict keeps (apart from its lock, so that
// a test can set it aside).
type searchOutcome struct {
	done  bool
	wrong string
	onGPU bool // where wrong is not "": the search runs on the GPU anyway
}

// checkSearch runs the check once per process, on d, and returns its
// verdict: why searches run on the CPU, or "" where they run on the GPU.
func checkSearch(ctx context.Context, d *Device) (fallback string, err error) {
	searchVerdict.Lock()
	defer searchVerdict.Unlock()
	if !searchVerdict.done {
		warn, err := checksWarn()
		if err != nil {
			return "", err
		}
		wrong, refused, err := runSearchCheck(ctx, d, warn)
		if err != nil {
			return "", err
		}
		onGPU := wrong != "" && warn && !refused
		if wrong != "" {
			var gpu string
			d.do(func() error { gpu = d.drv.Name(); return nil })
			if onGPU {
				slog.Warn("cuda: the GPU search failed its check on this GPU; searches run on it anyway, unproven, as "+checkEnv+"=warn asks", "gpu", gpu, "why", wrong)
			} else {
				slog.Warn("cuda: the GPU search failed its check on this GPU; searches run on the CPU (exact, slower)", "gpu", gpu, "why", wrong)
			}
		}
		searchVerdict.done, searchVerdict.wrong, searchVerdict.onGPU = true, wrong, onGPU
	}
	if searchVerdict.onGPU {
		return "", nil
	}
	return searchVerdict.wrong, nil
}

// searchFailed is why the GPU search failed its check in this process, or
// "" where it passed or has not run, and whether it runs on the GPU anyway.
func searchFailed() (wrong string, onGPU bool) {
	searchVerdict.Lock()
	defer searchVerdict.Unlock()
	return searchVerdict.wrong, searchVerdict.onGPU
}

// runSearchCheck searches the check's problem on d and on the CPU and
// says where they differ, or "" where they do not, and whether it is for a
// search that could not start (refused); err is an error of the device or
// of ctx. The first way of searching that differs decides; under warn
// (checkEnv), every way runs still, so that one that cannot start is known
// before searches run on the GPU.
func runSearchCheck(ctx context.Context, d *Device, warn bool) (wrong string, refused bool, err error) {
	const nq, n16, n32, dim, k = 130, 200, 100, 70, 10
	rng := rand.New(rand.NewPCG(3, 4)) // the same problem on every GPU
	unit, err := unitRandn(rng, nq+n16+n32, dim)
	if err != nil {
		return "", false, err
	}
	queries, k16, k32 := unit[:nq*dim], unit[nq*dim:(nq+n16)*dim], unit[(nq+n16)*dim:]
	half, wide := make([]byte, 2*len(k16)), make([]byte, 4*len(k32))
	leconv.PutF16(half, k16)
	leconv.PutF32(wide, k32)
	keys, err := retrieval.NewKeys(dim,
		retrieval.KeySegment{Name: "the check's float16 keys", DType: npy.Float16, Rows: n16, Data: half},
		retrieval.KeySegment{Name: "the check's float32 keys", DType: npy.Float32, Rows: n32, Data: wide})
	if err != nil {
		return "", false, err
	}
	want, err := (&retrieval.CPUSearcher{}).Search(ctx, queries, nq, keys, k)
	if err != nil {
		return "", false, err
	}
	for _, g := range []*Searcher{{Dev: d, ChunkRows: 128}, {Dev: d, ChunkRows: 128, NoResident: true}, {Dev: d}} {
		how := fmt.Sprintf("keys resident, in chunks of %d", g.ChunkRows)
		switch {
		case g.NoResident:
			how = fmt.Sprintf("keys streamed, in chunks of %d", g.ChunkRows)
		case g.ChunkRows == 0:
			how = "keys resident, in one chunk"
		}
		got, err := g.search(ctx, queries, nq, keys, k)
		var launch launchError
		switch {
		case err == nil:
		case ctx.Err() != nil, d.do(d.sync) != nil, !errors.As(err, &launch):
			return "", false, fmt.Errorf("cuda: checking the GPU search (%s): %w", how, err)
		default:
			return fmt.Sprintf("the search (%s) failed: %v", how, err), true, nil
		}
		why := ""
		if g.Last.Unproven > 0 {
			why = fmt.Sprintf("%s: the GPU proved %d of the %d queries, all of which it must prove", how, nq-g.Last.Unproven, nq)
		}
		for i := 0; why == "" && i < len(want.Rows); i++ {
			if got.Rows[i] != want.Rows[i] || math.Float32bits(got.Scores[i]) != math.Float32bits(want.Scores[i]) {
				why = fmt.Sprintf("%s: query %d, rank %d: row %d of score %v, the CPU's row %d of score %v",
					how, i/k, i%k+1, got.Rows[i], got.Scores[i], want.Rows[i], want.Scores[i])
			}
		}
		if why != "" && !warn {
			return why, false, nil
		}
		if wrong == "" {
			wrong = why
		}
	}
	return wrong, false, nil
}

// unitRandn returns rows×dim normal values with every row scaled to unit
// length by the product's rule (retrieval.NormalizeRows).
func unitRandn(rng *rand.Rand, rows, dim int) ([]float32, error) {
	return retrieval.NormalizeRows(randn(rng, rows*dim, 1), rows, dim)
}
