package retrieval

import (
	"os"
	"syscall"
	"time"
)

// SmallSearcher is a CPUSearcher with the given key tile, window (bytes of
// keys between evictions) and workers, for the external tests.
func SmallSearcher(keyTile int, windowBytes int64, workers int) *CPUSearcher {
	return &CPUSearcher{Workers: workers, keyTile: keyTile, windowBytes: windowBytes}
}

// Kernels names the panel kernels this CPU runs, the search's default
// first.
func Kernels() []string {
	var names []string
	for _, k := range availableKernels() {
		names = append(names, k.String())
	}
	return names
}

// ABKernels is Kernels repeated as many times as the benchmarks' -rounds
// flag asks.
func ABKernels() []string {
	var names []string
	for _, k := range abKernels() {
		names = append(names, k.String())
	}
	return names
}

// UseKernels makes the search run the named panel kernels (one of
// Kernels) and returns a function restoring the setting.
func UseKernels(name string) func() {
	old := kernels
	for _, k := range availableKernels() {
		if k.String() == name {
			kernels = k
			return func() { kernels = old }
		}
	}
	panic("retrieval: no kernels named " + name + " on this CPU")
}

// Planned is how many workers s plans for a search of nq queries for the
// top k of keys, and how many queries it searches together.
func Planned(s *CPUSearcher, nq int, keys *Keys, k int) (workers, queryChunk int, err error) {
	p, err := s.plan(nq, keys, k)
	return p.workers, p.queryChunk, err
}

// SetMinCommitInterval sets the least time between an append's writes of
// its manifest and returns a function restoring it.
func SetMinCommitInterval(d time.Duration) func() {
	old := minCommitInterval
	minCommitInterval = d
	return func() { minCommitInterval = old }
}

// Abandon releases w's lock without committing, as a killed process does.
func Abandon(w *IndexWriter) {
	w.unlock()
	w.unlock = nil
}

// FillDisk makes manifest writes larger than room bytes fail with full
// (syscall.ENOSPC: a full disk; syscall.EDQUOT: a full quota), and returns
// a function restoring the writes.
func FillDisk(room int, full syscall.Errno) func() {
	old := writeManifest
	writeManifest = func(path string, data []byte) error {
		if len(data) > room {
			return &os.PathError{Op: "write", Path: path, Err: full}
		}
		return old(path, data)
	}
	return func() { writeManifest = old }
}

// MaxManifestBytes is maxManifestBytes, for the external tests.
const MaxManifestBytes = maxManifestBytes
