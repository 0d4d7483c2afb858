package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/dinoclip/dinoclip/internal/dataset"
	"github.com/dinoclip/dinoclip/internal/madedirs"
	"github.com/dinoclip/dinoclip/internal/plural"
	"github.com/dinoclip/dinoclip/internal/printable"
	"github.com/dinoclip/dinoclip/npy"
	"github.com/dinoclip/dinoclip/retrieval"
	"github.com/urfave/cli/v2"
)

// Files of a search's output directory (docs/FORMAT.md).
const (
	searchIDsFile    = "ids.npy"
	searchScoresFile = "scores.npy"
	searchInfoFile   = "search.json"
	searchImagesFile = "images.txt"
	// searchResultsFile is the answer for people: each query (its text,
	// where the record of the queries gives it) and its rows, best first.
	searchResultsFile = "results.txt"
)

// maxSearchInfoBytes bounds what info reads of a searchInfoFile: a few
// paths and numbers.
const maxSearchInfoBytes = 1 << 20

// limitHeap sets the Go collector's memory limit to what a CPU search
// is to hold: the budget, the answer, the queries and the keys of a .npy
// (read whole; an index's pages are mapped, outside the heap), plus the
// runtime's own. Without it the collector lets garbage grow the heap to
// twice what is live: at a large k, twice the memory --help promises. A
// GOMEMLIMIT the user set is left as it is. The function returned puts
// the previous limit back.
func limitHeap(budget, answer, queries, keys int64) (restore func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	limit := budget + answer + queries + keys + searchRuntimeBytes
	previous := debug.SetMemoryLimit(limit)
	return func() { debug.SetMemoryLimit(previous) }
}

// searchRuntimeBytes is what limitHeap allows the Go runtime itself
// (stacks, the collector's metadata, the progress bar) beyond the search.
const searchRuntimeBytes = 64 << 20

// maxAnswer bounds queries × k, the size of the answer held in memory and
// written (12 bytes each).
const maxAnswer = 1 << 30

// maxSearchMemory bounds --memory (MiB) so that the budget in bytes, MiB
// << 20, cannot wrap around; 2^30 MiB is a PiB, more than any machine.
const maxSearchMemory = 1 << 30

// deviceSearcher returns the Searcher of a device other than the CPU, and
// a function that releases it; a build with -tags cuda sets it
// (device_cuda.go), and without it --device cuda fails as newEngine does.
var deviceSearcher func(device string) (retrieval.Searcher, func(), error)

func searchCommand() *cli.Command {
	return &cli.Command{
		Name:      "search",
		Usage:     "exact top-k cosine search of query embeddings in an index",
		UsageText: "dinoclip search --index INDEX|KEYS.npy --queries Q.npy --k K --out OUT [--device cpu|cuda]",
		Description: "For every row of the queries (CLIP text or image embeddings, [n, dim] .npy, e.g. from\n" +
			"python -m dinoclip.extract texts) finds the K rows of the index with the highest cosine\n" +
			"similarity, and writes OUT/ids.npy (int64 [n, K], the rows' ids, best first), OUT/scores.npy\n" +
			"(float32 [n, K], the cosines), OUT/search.json and, when the index lists the image of each\n" +
			"row (extraction's NAME.images.txt), OUT/images.txt: the image of each id, one per line, in\n" +
			"the order of ids.npy. OUT/results.txt gives the same for people: each query, with its text\n" +
			"where Q.json beside Q.npy gives it (as extract texts writes it), then its rows, best first\n" +
			"(rank, score, id, image). Equal scores are ordered by the lower id. Where Q.json and the\n" +
			"index name different CLIP models, the command warns.\n" +
			"Queries are normalised to unit length; so are the rows of a plain KEYS.npy matrix (loaded into\n" +
			"memory as float32), while an index (dinoclip index) is searched in place, memory-mapped.\n\n" +
			"The search is exact: ids and scores are those of a float64 brute force (docs/FORMAT.md). On the\n" +
			"CPU it uses all cores (fewer when fewer let --memory hold more queries a pass) and keeps at\n" +
			"most about half of --memory MiB of the index resident (the rest is working memory); --device\n" +
			"cuda ranks on the GPU's tensor cores (float16, k up to 48; the index copied to GPU memory once\n" +
			"when it fits there, else streamed to the GPU in chunks) and proves the ranking exact the same\n" +
			"way, re-running on the CPU any query whose near-ties float16 cannot settle\n" +
			"(docs/RETRIEVAL.md). search.json then says which (keys_resident) and how long the copy took\n" +
			"(upload_seconds, part of seconds). Before it, the GPU's search is checked against the CPU's on a\n" +
			"small problem (not timed); where they differ, the search runs on the CPU, with a warning, and\n" +
			"search.json says why (cpu_fallback).\n\n" +
			"A NaN or infinite value in the queries or keys is refused, and so is an index row longer than\n" +
			"unit length (float16 rounding aside: docs/FORMAT.md), which only damage makes. A query row\n" +
			"that is all zero has no direction, and its cosine with any row is undefined: it scores 0\n" +
			"against every row, so its answer is ids 0 to K-1 with score 0 (equal scores: the lower id\n" +
			"first); the command warns, naming the rows, and search.json counts them (zero_queries).\n" +
			"All-zero rows of a KEYS.npy matrix score 0 against every query, with a warning likewise. A\n" +
			"row shorter than 1e-12 stays shorter than unit length (as PyTorch's F.normalize leaves it),\n" +
			"with a warning too. Queries with no rows give an answer with none ([0, K]).\n\n" +
			"OUT may not be in a run directory, in a run's checkpoints, in a search index or in another\n" +
			"search's output, where it would be taken for their own.\n\n" +
			"Example:\n" +
			"   dinoclip search --index photos.index --queries sentences.clip.npy --k 10 --out hits",
		Flags: []cli.Flag{
			stringFlag("index", "`INDEX` directory, or a KEYS.npy matrix [rows, dim]", ""),
			stringFlag("queries", "queries `FILE`: .npy matrix [n, dim]", ""),
			intFlag("k", "`K` best rows per query (every row, where the index has fewer)", 10),
			outFlag("search", "output `DIR` (created; replaced if it holds an earlier search's output; a symbolic link is followed)"),
			intFlag("memory", fmt.Sprintf("CPU search memory budget in `MiB`, 16 to %d: resident index pages plus working memory (the queries, 4 bytes a value, the answer, 12 bytes per query and k, and the names of its images where the index lists them, come on top)", maxSearchMemory), retrieval.DefaultMemoryBudget>>20),
			stringFlag("device", "`DEVICE` to search on: cpu, or cuda (a build with -tags cuda)", "cpu"),
			configFlag(),
		},
		Before:       applyConfig,
		OnUsageError: usageError,
		Action:       runSearch,
	}
}

// searchInfo is search.json.
type searchInfo struct {
	Index   string  `json:"index"`
	Queries string  `json:"queries"`
	Rows    int64   `json:"rows"`
	Dim     int     `json:"dim"`
	K       int     `json:"k"`
	Device  string  `json:"device"`
	Model   string  `json:"model_sha256,omitempty"`
	Seconds float64 `json:"seconds"`
	// ZeroQueries counts the query rows that are all zero (see the
	// command's description).
	ZeroQueries int `json:"zero_queries,omitempty"`
	// KeysResident and UploadSeconds (part of Seconds), from a GPU search:
	// whether the keys were copied to GPU memory once, whole (else they
	// were streamed past the GPU), and how long that copy took.
	KeysResident  *bool   `json:"keys_resident,omitempty"`
	UploadSeconds float64 `json:"upload_seconds,omitempty"`
	// CPUFallback is why a device's search failed its check, when it did:
	// the search then ran on the CPU.
	CPUFallback string `json:"cpu_fallback,omitempty"`
	// Unchecked is why a device's search failed its check where it ran on
	// the device anyway (DINOCLIP_CUDA_CHECK=warn): its answer is unproven.
	Unchecked string `json:"unchecked,omitempty"`
}

// searchChecker is a device searcher that checks itself before its first
// search and says why it failed, if it did (cuda.Searcher.Check): why it
// runs on the CPU, or why it runs on the device unchecked.
type searchChecker interface {
	Check(ctx context.Context) (failed string, err error)
	Unchecked() string
}

// keyUploader is a device searcher that says how its last search moved
// the keys to the device (cuda.Searcher).
type keyUploader interface {
	KeysUploaded() (resident bool, seconds float64)
}

// readMatrix reads and normalises the matrix a (npy.OpenMatrix's) of path
// into float32: 4 bytes a value.
func readMatrix(a *npy.Array, path string) ([]float32, error) {
	n, dim := a.Rows(), a.RowLen()
	if a.DType() == npy.Float64 {
		// Normalised in float64 and rounded once (a float64 row beyond
		// float32's range keeps its direction), a block of rows at a time:
		// the float64 matrix is never held whole.
		x := make([]float32, n*dim)
		rows := max(1, float64BlockValues/dim)
		block := make([]float64, min(rows, n)*dim)
		for lo := 0; lo < n; lo += rows {
			hi := min(lo+rows, n)
			b := block[:(hi-lo)*dim]
			if err := a.ReadRows64(b, lo, hi); err != nil {
				return nil, err
			}
			if err := retrieval.NormalizeQueries64(x[lo*dim:hi*dim], b, dim, path, lo); err != nil {
				return nil, err
			}
		}
		return x, nil
	}
	x, err := a.Float32s()
	if err != nil {
		return nil, err
	}
	if err := retrieval.NormalizeQueries(x, dim, path); err != nil {
		return nil, err
	}
	return x, nil
}

// float64BlockValues is how many float64 values readMatrix converts at a
// time (8 MiB).
const float64BlockValues = 1 << 20

// searchKeys is what --index opened: an index (its keys, its model hash,
// and the index itself, to name the images of the rows found), or a .npy
// matrix (matrix, until load reads it into keys).
type searchKeys struct {
	keys   *retrieval.Keys
	model  string
	index  *retrieval.Index
	matrix *npy.Array
	path   string
	rows   int64
	dim    int
}

// openKeys opens --index: an index directory (its keys mapped), or a .npy
// matrix, of which only the header is read until load.
func openKeys(path string) (*searchKeys, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--index: %w", err)
	}
	if st.IsDir() {
		ix, err := retrieval.OpenIndex(path)
		if err != nil {
			return nil, err
		}
		return &searchKeys{keys: ix.Keys, model: ix.Manifest.Model.SHA256, index: ix, path: path, rows: ix.Keys.Rows(), dim: ix.Keys.Dim}, nil
	}
	if dir := describedWhole(path); dir != "" && retrieval.IsIndex(dir) {
		return nil, fmt.Errorf("--index %s is a file of the search index %s: give the index's directory (--index %s)", path, dir, shown(printable.ShellArg(dir)))
	}
	// (Mapped: nothing is read but its header, for readMatrix once its
	// size is known to fit.)
	a, err := npy.OpenMatrix(path, "[n, dim] of embeddings")
	if err != nil {
		return nil, fmt.Errorf("--index: %w", err)
	}
	return &searchKeys{matrix: a, path: path, rows: int64(a.Rows()), dim: a.RowLen()}, nil
}

// matrixBytes is what load holds of a matrix's keys (0 for an index,
// which is mapped).
func (s *searchKeys) matrixBytes() int64 {
	if s.index != nil {
		return 0
	}
	return s.rows * int64(s.dim) * 4
}

// load reads a matrix's keys into memory, normalised, and warns on w of
// its all-zero and too short rows (an index's are mapped already).
func (s *searchKeys) load(w io.Writer) error {
	if s.matrix == nil {
		return nil
	}
	x, err := readMatrix(s.matrix, s.path)
	dt := s.matrix.DType()
	s.matrix.Close()
	s.matrix = nil
	if err != nil {
		return err
	}
	n := int(s.rows)
	warnZeroRows(w, s.path, dt, "they score 0 against every query", retrieval.ZeroRows(x, s.dim), n)
	warnShortRows(w, s.path, retrieval.ShortRows(x, s.dim), n)
	s.keys, err = retrieval.Float32Keys(s.path, x, n, s.dim)
	return err
}

// close releases what openKeys opened.
func (s *searchKeys) close() {
	if s.index != nil {
		s.index.Close()
	}
	if s.matrix != nil {
		s.matrix.Close()
	}
}

func runSearch(cCtx *cli.Context) (err error) {
	if err := noArgs(cCtx); err != nil {
		return err
	}
	if err := requireFlags(cCtx, "index", "queries", "out"); err != nil {
		return err
	}
	k := cCtx.Int("k")
	if err := checkAtLeast("k", k, 1); err != nil {
		return err
	}
	memory := cCtx.Int("memory")
	if err := checkAtLeast("memory", memory, 16); err != nil {
		return err
	}
	if memory > maxSearchMemory {
		return fmt.Errorf("--memory %d: at most %d MiB (%d TiB)", memory, maxSearchMemory, maxSearchMemory>>20)
	}
	device := cCtx.String("device")
	if err := checkDevice(device); err != nil {
		return err
	}
	if device != "cpu" && deviceSearcher == nil { // (a build without the GPU's)
		return deviceError{device, errNoCUDA}
	}
	indexPath, queriesPath, out := cCtx.String("index"), cCtx.String("queries"), cCtx.String("out")
	outDir, err := resolveOut(out)
	if err != nil {
		return err
	}
	if err := checkOutDir(outDir, queriesPath, indexPath); err != nil {
		return err
	}
	if err := checkOutPlace(outDir, "the search's output"); err != nil {
		return err
	}
	sweepLeftovers(cCtx.App.ErrWriter, outDir, isSearchFile)
	// Make (and remove) the temporary directory the output is written
	// into, so an --out that cannot be written fails before the search.
	// The parent directories it made stay for the output, unless the
	// search fails (removing them at once would pull them from under
	// another search making the same --out).
	probe, madeTop, release, err := makeOutTemp(outDir)
	if err != nil {
		return err
	}
	release()
	warnLeft(cCtx.App.ErrWriter, probe, os.Remove(probe))
	defer func() {
		if err != nil {
			madedirs.Remove(filepath.Dir(filepath.Clean(outDir)), madeTop)
		}
	}()
	// The headers first, and everything that would be held counted,
	// before anything is read: a queries file of the wrong width, or one
	// beyond the memory left, ended the search out of memory.
	qa, err := npy.OpenMatrix(queriesPath, "[n, dim] of embeddings")
	if err != nil {
		return fmt.Errorf("--queries: %w", err)
	}
	defer qa.Close()
	nq, qdim := qa.Rows(), qa.RowLen()
	opened, err := openKeys(indexPath)
	if err != nil {
		return err
	}
	defer opened.close()
	rows := opened.rows
	switch {
	case rows == 0:
		return fmt.Errorf("--index %s is empty: there is nothing to search", indexPath)
	case qdim != opened.dim:
		return fmt.Errorf("%s: queries are %d wide, the rows of %s %d (embeddings of another CLIP model?)", queriesPath, qdim, indexPath, opened.dim)
	}
	// A collection smaller than --k (a few photos, the default 10) is
	// searched whole: each query ranks every row.
	if int64(k) > rows {
		// (A warning where --k was given; the default's only a note.)
		what := "dinoclip: the default k"
		if cCtx.IsSet("k") {
			what = "dinoclip: warning: --k"
		}
		fmt.Fprintf(cCtx.App.ErrWriter, "%s %d is more than the %s of %s: searching with k %d (every row, ranked)\n", what, k, plural.Count(rows, "row", "rows"), printable.String(indexPath), rows)
		k = int(rows)
	}
	if int64(nq)*int64(k) > maxAnswer {
		return fmt.Errorf("--k %d for %d queries: an answer of %d entries is more than the %d this command writes", k, nq, int64(nq)*int64(k), maxAnswer)
	}
	texts := queriesRecord(cCtx.App.ErrWriter, queriesPath, indexPath, opened.index, nq)
	// The answer is held whole until it is written, with the names of its
	// rows' images where the index lists them.
	answer := 12 * int64(nq) * int64(k)
	if opened.index != nil {
		answer += opened.index.ImagesBytes(int64(nq) * int64(k))
	}
	held := []struct {
		what  string
		bytes int64
	}{{"the queries", 4 * int64(nq) * int64(qdim)}, {"the keys", opened.matrixBytes()}, {"the answer", answer}}
	if avail, ok := memAvailable(); ok {
		var need int64
		parts := ""
		for _, h := range held {
			if h.bytes > 0 {
				need += h.bytes
				parts += fmt.Sprintf(", %s %s", h.what, sizeText(float64(h.bytes)))
			}
		}
		if uint64(need) > avail {
			return fmt.Errorf("--k %d for %d queries of %s over %s: the search holds about %s (%s), more than the %s of memory available: search the queries in parts, or with a smaller --k",
				k, nq, queriesPath, indexPath, sizeText(float64(need)), parts[2:], sizeText(float64(avail)))
		}
	}
	queries, err := readMatrix(qa, queriesPath)
	if err != nil {
		return err
	}
	if err := opened.load(cCtx.App.ErrWriter); err != nil {
		return err
	}
	keys := opened.keys
	zeroQueries := retrieval.ZeroRows(queries, qdim)
	warnZeroRows(cCtx.App.ErrWriter, queriesPath, qa.DType(), "a zero vector's cosine is undefined: each scores 0 against every row, and its answer is ids 0 to K-1 with score 0", zeroQueries, nq)
	warnShortRows(cCtx.App.ErrWriter, queriesPath, retrieval.ShortRows(queries, qdim), nq)
	var searcher retrieval.Searcher
	var info searchInfo
	if device != "cpu" {
		s, free, err := deviceSearcher(device)
		if err != nil {
			return deviceError{device, err}
		}
		defer free()
		searcher = s
		// The device's check of its own search (cuda.Searcher.Check) runs
		// before the clock starts; where it fails, the search runs on the
		// CPU as --device cpu's does, with a warning, and search.json says
		// why.
		if c, ok := s.(searchChecker); ok && nq > 0 {
			if info.CPUFallback, err = c.Check(cCtx.Context); err != nil {
				return deviceError{device, err}
			}
			info.Unchecked = c.Unchecked()
		}
	}
	if searcher == nil || info.CPUFallback != "" {
		cs := &retrieval.CPUSearcher{MemoryBudget: int64(memory) << 20}
		defer limitHeap(int64(memory)<<20, answer, int64(len(queries))*4, opened.matrixBytes())()
		bar := newCountBar(cCtx, int64(nq)*rows, "searching", "scores", false)
		defer bar.finish()
		cs.Progress = func(done, _ int64) { bar.set(done) }
		searcher = cs
	}
	start := time.Now()
	nb := &retrieval.Neighbors{K: k} // no queries: an answer of shape [0, K]
	if nq > 0 {
		if nb, err = searcher.Search(cCtx.Context, queries, nq, keys, k); err != nil {
			return err
		}
	}
	info.Index, info.Queries, info.Rows, info.Dim, info.K, info.Device = atomicfile.RealOrAbs(indexPath), atomicfile.RealOrAbs(queriesPath), rows, keys.Dim, k, device
	info.Model, info.Seconds, info.ZeroQueries = opened.model, time.Since(start).Seconds(), len(zeroQueries)
	for _, p := range []string{info.Index, info.Queries} {
		warnRecordedAsOther(cCtx.App.ErrWriter, searchInfoFile, p)
	}
	// The images of the rows found, when the index lists its rows' images.
	var images []string
	if opened.index != nil {
		names, listed, err := opened.index.Images(nb.Rows)
		if err != nil {
			return err
		}
		if listed {
			images = names
		} else if listed, needed := opened.index.Manifest.ImageLists(); listed > 0 {
			fmt.Fprintf(cCtx.App.ErrWriter, "dinoclip: warning: %d of the %d shards of %s with rows list their rows' images, the others do not (indexed from features without NAME.images.txt): no %s is written\n",
				listed, needed, printable.String(indexPath), searchImagesFile)
		}
	}
	upload := ""
	if info.CPUFallback != "" {
		upload = ", on the CPU: the GPU's search failed its check"
	}
	if u, ok := searcher.(keyUploader); ok {
		resident, secs := u.KeysUploaded()
		info.KeysResident, info.UploadSeconds = &resident, secs
		if resident {
			upload = fmt.Sprintf(", of which %.3g s copying the keys to the GPU", secs)
		}
	}
	if info.Unchecked != "" {
		upload += "; UNCHECKED: the GPU's search failed its check and ran as DINOCLIP_CUDA_CHECK=warn asks"
	}
	if err := cCtx.Context.Err(); err != nil { // interrupted at the end: write nothing
		return err
	}
	if err := writeSearch(outDir, nb, info, images, texts, cCtx.App.ErrWriter); err != nil {
		return err
	}
	fmt.Fprintf(cCtx.App.ErrWriter, "wrote %s: top-%d of %s for %s (%.3g s%s); each query's answer: %s\n", printable.String(out), k, plural.Count(rows, "row", "rows"), plural.Count(nq, "query", "queries"), info.Seconds, upload, printable.String(filepath.Join(out, searchResultsFile)))
	return nil
}

// warnShortRows warns of the rows of path that were shorter than 1e-12
// (retrieval.ShortRows), naming the first ten.
func warnShortRows(w io.Writer, path string, short []int, n int) {
	warnRows(w, path, short, n, "are shorter than 1e-12", "normalisation divides them by 1e-12 (as PyTorch's F.normalize), so they stay shorter than unit length and score below their cosines")
}

// warnZeroRows writes a warning naming the all-zero rows (the first ten)
// of the n rows of path, and what that does (effect).
func warnZeroRows(w io.Writer, path string, dt npy.DType, effect string, zero []int, n int) {
	are := "are all zero"
	if dt == npy.Float64 {
		// (Normalised in float64, a row shorter than F.normalize's 1e-12
		// is divided by 1e-12, and one of values below about 1e-57 then
		// rounds to 0 in float32.)
		are = "are all zero, or so short that normalised they round to zero in float32"
	}
	warnRows(w, path, zero, n, are, effect)
}

// warnRows writes a warning that rows of the n rows of path are what they
// are, naming the first ten, and what that does (effect).
func warnRows(w io.Writer, path string, rows []int, n int, are, effect string) {
	if len(rows) == 0 {
		return
	}
	named := fmt.Sprint(rows[:min(len(rows), 10)])
	if len(rows) > 10 {
		named = named[:len(named)-1] + " ...]"
	}
	fmt.Fprintf(w, "dinoclip: warning: %s: %d of %d rows %s (rows %s): %s\n", printable.String(path), len(rows), n, are, named, effect)
}

// isSearchFile reports whether name is one of the files of a search's
// output directory.
func isSearchFile(name string) bool {
	switch name {
	case searchIDsFile, searchScoresFile, searchInfoFile, searchImagesFile, searchResultsFile:
		return true
	}
	return false
}

// checkOutDir refuses an --out that exists and is not an earlier search's
// output, which writeSearch would replace.
func checkOutDir(out string, inputs ...string) error {
	st, err := os.Stat(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("--out %s is %s; want a directory to write %s and %s in", out, atomicfile.Kind(st.Mode()), searchIDsFile, searchScoresFile)
	}
	// The output replaces the directory whole, by renaming.
	if err := checkReplaceable(out, st); err != nil {
		return err
	}
	if retrieval.IsIndex(out) || retrieval.IsUnfinishedIndex(out) {
		return fmt.Errorf("--out %s is a search index, which the output would replace; choose another directory", out)
	}
	entries, err := os.ReadDir(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil // another search writing --out moved it aside meanwhile
	}
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	for _, e := range entries {
		// (A directory or a link by an output's name is no search's: the
		// output replacing the directory would take what it holds.)
		if !isSearchFile(e.Name()) || !e.Type().IsRegular() {
			return fmt.Errorf("--out %s holds %s, not only an earlier search's output; choose another directory", out, e.Name())
		}
		// An input named like an output (--queries hits/ids.npy, or a
		// symbolic link to it) would go with the directory it replaces.
		// (A hard link elsewhere keeps the file.)
		real, err := atomicfile.RealPath(filepath.Join(out, e.Name()))
		if err != nil {
			continue
		}
		for _, in := range inputs {
			if r, err := atomicfile.RealPath(in); err == nil && r == real {
				return fmt.Errorf("--out %s holds %s, which is the input %s: the output replaces the directory whole; choose another --out", out, e.Name(), in)
			}
		}
	}
	return nil
}

// resolveOut is the directory --out names: out itself (cleaned), or where
// out leads when it is a symbolic link (which the output is written into,
// rather than replacing the link by a directory). The working directory
// is refused: the output replaces its directory whole.
func resolveOut(out string) (string, error) {
	// "link/" names the link, not what it leads to; "link/../hits" is
	// beside where the link leads, as the system reads it (not "hits",
	// as filepath.Clean would make it).
	if trimmed := strings.TrimRight(out, `/`+string(filepath.Separator)); trimmed != "" {
		out = trimmed
	}
	out = filepath.Clean(atomicfile.ResolveDir(out))
	if st, err := os.Lstat(out); err == nil && st.Mode()&fs.ModeSymlink != 0 {
		// (Followed by the system first: /dev/stdout leads to a pipe by a
		// name, "pipe:[N]", that is no path.)
		if end, err := os.Stat(out); err == nil && !end.IsDir() {
			return "", fmt.Errorf("--out %s is a symbolic link to %s, not a directory; choose another --out", out, atomicfile.Kind(end.Mode()))
		}
		target, err := filepath.EvalSymlinks(out)
		if err != nil {
			return "", fmt.Errorf("--out %s is a symbolic link that leads nowhere (%w); point it at a directory or choose another --out", out, err)
		}
		out = target
	}
	real, err := atomicfile.RealPath(out)
	if err != nil {
		return out, nil // a missing out is created; other errors are checkOutDir's
	}
	if wd, err := os.Getwd(); err == nil {
		if wd, err = filepath.EvalSymlinks(wd); err == nil && wd == real {
			return "", fmt.Errorf("--out %s is the working directory, which the output would replace whole; name a directory for it (e.g. --out hits)", out)
		}
	}
	return out, nil
}

// makeOutTemp makes the temporary directory beside out (and out's parent
// directories) that writeSearch writes and renames into place, locked
// until release (see atomicfile.RemoveStale). madeTop is the topmost
// parent directory it made ("" if none), for madedirs.Remove(parent,
// madeTop) after a failure.
func makeOutTemp(out string) (tmp, madeTop string, release func(), err error) {
	parent := filepath.Dir(filepath.Clean(out))
	for attempt := 1; ; attempt++ {
		// A directory of the path that vanishes meanwhile was removed by
		// another search that failed: made again.
		var top string
		top, err = madedirs.MkdirAll(parent)
		if madeTop == "" {
			madeTop = top
		}
		if errors.Is(err, fs.ErrNotExist) && attempt < 10 {
			continue
		}
		if err != nil {
			return "", "", nil, fmt.Errorf("--out: %w", err)
		}
		tmp, release, err = atomicfile.MkdirTemp(parent, filepath.Base(filepath.Clean(out)))
		if !errors.Is(err, fs.ErrNotExist) || attempt == 10 {
			break
		}
	}
	if err == nil {
		// An output replacing an earlier one keeps its directory's mode
		// (a private one stays private); a new one has the umask's.
		if st, serr := os.Stat(out); serr == nil {
			if err = os.Chmod(tmp, st.Mode().Perm()); err != nil {
				release()
				os.Remove(tmp)
			}
		}
	}
	if err != nil {
		madedirs.Remove(parent, madeTop)
		return "", "", nil, fmt.Errorf("--out %s: cannot write beside it: %w", out, err)
	}
	return tmp, madeTop, release, nil
}

// writeSearch writes the output directory whole: into a temporary
// directory beside out, renamed over it (an earlier output is moved aside
// first and removed after), so out never holds ids and scores of two
// different searches. images, when not nil, names the image of each row
// found, in the order of ids.npy's values: written as images.txt, one per
// line. results.txt gives each query's answer under its text (texts, one
// per query, or nil). What it cannot remove afterwards (its temporary or
// the earlier output) it says on warn.
func writeSearch(out string, nb *retrieval.Neighbors, info searchInfo, images, texts []string, warn io.Writer) (err error) {
	tmp, madeTop, release, err := makeOutTemp(out)
	if err != nil {
		return err
	}
	parent := filepath.Dir(filepath.Clean(out))
	defer func() {
		release()
		warnLeft(warn, tmp, atomicfile.RemoveDir(tmp, isSearchFile)) // (this output if it failed, else the earlier one)
		if err != nil {
			madedirs.Remove(parent, madeTop)
		}
	}()
	shape := []int{nb.Queries, nb.K}
	if err := npy.WriteInt64(filepath.Join(tmp, searchIDsFile), shape, nb.Rows); err != nil {
		return err
	}
	if err := npy.WriteFloat32(filepath.Join(tmp, searchScoresFile), shape, nb.Scores); err != nil {
		return err
	}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.WriteBytes(filepath.Join(tmp, searchInfoFile), append(b, '\n')); err != nil {
		return err
	}
	if images != nil {
		// Streamed: the names of queries × k rows, held once more as one
		// text (and its copy), went over the heap limit the search keeps to.
		if err := atomicfile.Write(filepath.Join(tmp, searchImagesFile), func(w io.Writer) error {
			for _, name := range images {
				if _, err := io.WriteString(w, name+"\n"); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
	}
	if err := atomicfile.Write(filepath.Join(tmp, searchResultsFile), func(w io.Writer) error {
		return writeResults(w, nb, images, texts)
	}); err != nil {
		return err
	}
	// Put this output in the place of an earlier one: in one step where
	// the system exchanges two directories (Linux), so that a kill finds
	// one output or the other there, never none; else by moving the
	// earlier one aside first. Another search writing the same --out at
	// the same time can put its output there between the two renames (the
	// second then finds a directory in the way): that one is moved aside
	// too, and the last search to finish leaves its output, as searches
	// run one after the other would.
	for attempt := 1; ; attempt++ {
		// Both may have changed since the start: a run started meanwhile
		// where the output goes (its checkpoints/ made empty there, say).
		if err := checkOutDir(out); err != nil {
			return err
		}
		if err := checkOutPlace(out, "the search's output"); err != nil {
			return err
		}
		if _, err := os.Stat(out); err == nil {
			if err := atomicfile.ExchangeDirs(tmp, out); err == nil {
				break // tmp now holds the earlier output, removed on return
			}
			old := atomicfile.TempPath(parent, filepath.Base(filepath.Clean(out)))
			if err := os.Rename(out, old); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("--out: %w", err)
			}
			defer func() { warnLeft(warn, old, atomicfile.RemoveDir(old, isSearchFile)) }()
		}
		err := os.Rename(tmp, out)
		if err == nil {
			break
		}
		if attempt == 10 || !(errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY)) {
			return fmt.Errorf("--out %s: %w (is another search writing it at the same time?)", out, err)
		}
	}
	atomicfile.SyncDir(parent)
	return nil
}

// warnLeft says on w that the temporary path could not be removed (err),
// unless it is gone already: the search's result stands, and the next
// search into the same place removes it once stale.
func warnLeft(w io.Writer, path string, err error) {
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return
	}
	fmt.Fprintf(w, "dinoclip: warning: could not remove %s (%s): remove it, or the next search there will once it is a minute old\n", printable.String(path), printable.String(err.Error()))
}

// queriesRecord reads the record beside the queries (python -m
// dinoclip.extract texts) and returns their texts, one per query of the nq
// (nil when it gives none). It warns when the record names another CLIP
// model than the one the index's model was trained towards (index: nil
// for a KEYS.npy, whose model is not known), and when the record cannot
// be trusted.
func queriesRecord(w io.Writer, queriesPath, indexPath string, index *retrieval.Index, nq int) []string {
	rec, err := dataset.ReadQueriesRecord(queriesPath)
	if err != nil {
		fmt.Fprintf(w, "dinoclip: warning: %s: its texts and CLIP model are not used\n", printable.String(err.Error()))
		return nil
	}
	if rec == nil {
		return nil
	}
	if index != nil {
		warnEncoders(w, "the index "+indexPath, index.Manifest.Model.Encoders, "the queries "+queriesPath, rec.Encoders)
	}
	if rec.Texts != nil && len(rec.Texts) != nq {
		fmt.Fprintf(w, "dinoclip: warning: %s gives %s for the %s of %s: %s gives none\n",
			printable.String(dataset.QueriesRecordPath(queriesPath)), plural.Count(len(rec.Texts), "text", "texts"), plural.Count(nq, "query", "queries"), printable.String(queriesPath), searchResultsFile)
		return nil
	}
	return rec.Texts
}

// shownText is a query's text or an image's name as results.txt shows
// it: as it is, or
// quoted as Go quotes a string where it holds a character that is not
// printable (a line break in a record would forge a result row), starts
// with a quote, or starts or ends with a space; so a text shown unquoted
// is the text, and a quoted one reads back with strconv.Unquote.
func shownText(t string) string {
	if !dataset.Printable(t) || strings.HasPrefix(t, `"`) || strings.TrimSpace(t) != t {
		return strconv.Quote(t)
	}
	return t
}

// writeResults writes results.txt: for each query, a line "query N" (1-based,
// with ": TEXT" where texts gives it), then a line per row found, best
// first: its rank, score, id and, where images gives them, image; a blank
// line between queries.
func writeResults(w io.Writer, nb *retrieval.Neighbors, images, texts []string) error {
	bw := bufio.NewWriter(w)
	idWidth := 1 // (the ids in one column)
	for _, id := range nb.Rows {
		idWidth = max(idWidth, len(strconv.FormatInt(id, 10)))
	}
	for q := range nb.Queries {
		if q > 0 {
			bw.WriteString("\n")
		}
		fmt.Fprintf(bw, "query %d", q+1)
		if texts != nil {
			bw.WriteString(": " + shownText(texts[q]))
		}
		bw.WriteString("\n")
		for r := range nb.K {
			i := q*nb.K + r
			fmt.Fprintf(bw, "%4d. %8.4f  %*d", r+1, nb.Scores[i], idWidth, nb.Rows[i])
			if images != nil {
				bw.WriteString("  " + shownText(images[i]))
			}
			bw.WriteString("\n")
		}
	}
	return bw.Flush()
}
