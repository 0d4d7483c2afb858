//go:build cuda

package cuda

import (
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/cuda/driver"
	"github.com/dinoclip/dinoclip/cuda/launch"
	"github.com/dinoclip/dinoclip/retrieval"
)

// freshSearchVerdict forgets the process's verdict on the GPU search for
// the test, so that the next search checks, and restores it afterwards.
func freshSearchVerdict(t *testing.T) {
	setAside(t, &searchVerdict.Mutex, &searchVerdict.searchOutcome)
}

// searchChecked runs the process's check of the GPU search on d, with its
// own driver, unless it has run: a test that then changes d's driver sees
// its own searches, not the check's.
func searchChecked(t *testing.T, d *Device) {
	t.Helper()
	if failed, err := checkSearch(context.Background(), d); err != nil || failed != "" {
		t.Fatalf("the check of the GPU search: %q, %v", failed, err)
	}
}

// noPinned refuses pinned host memory: an error of the host, not of a
// kernel.
type noPinned struct{ fullDriver }

func (noPinned) HostAlloc(int) ([]byte, error) { return nil, errors.New("no pinned memory here") }

// skipKeys launches the search's ranking kernel with 8 keys fewer than
// its chunk has: a GPU ranking that never sees some keys, while their
// re-scores, and so the host's proof, look right.
type skipKeys struct {
	fullDriver
	hits *int
}

func (l skipKeys) LaunchEx(k int, cfg driver.LaunchConfig, params [][]byte) error {
	if launch.Kernel(k) == launch.KSearchF16Topw {
		if nk := binary.LittleEndian.Uint32(params[5]); nk > 8 {
			params[5] = binary.LittleEndian.AppendUint32(nil, nk-8)
			*l.hits++
		}
	}
	return l.fullDriver.LaunchEx(k, cfg, params)
}

// wideRefuser refuses the launches of the ranking kernel over more than
// 128 keys, which only the check's search in one chunk makes (its other
// two take chunks of 128).
type wideRefuser struct{ fullDriver }

func (l wideRefuser) LaunchEx(k int, cfg driver.LaunchConfig, params [][]byte) error {
	if launch.Kernel(k) == launch.KSearchF16Topw && binary.LittleEndian.Uint32(params[5]) > 128 {
		return errors.New("a test's refused launch")
	}
	return l.fullDriver.LaunchEx(k, cfg, params)
}

// searchCase is a search to run: 40 queries against 500 float32 keys.
func searchCase(t *testing.T) ([]float32, *retrieval.Keys, *retrieval.Neighbors) {
	rng := rand.New(rand.NewPCG(7, 8))
	const nq, nk, dim, k = 40, 500, 64, 5
	queries, x := unitNormals(t, rng, nq, dim), unitNormals(t, rng, nk, dim)
	keys, err := retrieval.Float32Keys("keys", x, nk, dim)
	if err != nil {
		t.Fatal(err)
	}
	want, err := (&retrieval.CPUSearcher{}).Search(context.Background(), queries, nq, keys, k)
	if err != nil {
		t.Fatal(err)
	}
	return queries, keys, want
}

// TestSearchCheck: the process's first GPU search checks the GPU's; right
// kernels pass and the search runs on the GPU; a ranking that skips keys
// fails it, and every search of the process then runs on the CPU with the
// CPU's answer, which the device's description tells; no pinned memory
// and a lost context are errors and leave no verdict.
func TestSearchCheck(t *testing.T) {
	queries, keys, want := searchCase(t)
	search := func(t *testing.T, s *Searcher) error {
		t.Helper()
		got, err := s.Search(context.Background(), queries, want.Queries, keys, want.K)
		if err == nil && (!slices.Equal(got.Rows, want.Rows) || !slices.Equal(got.Scores, want.Scores)) {
			t.Fatalf("the search's answer is not the CPU's")
		}
		return err
	}
	verdict := func() (bool, string) {
		searchVerdict.Lock()
		defer searchVerdict.Unlock()
		return searchVerdict.done, searchVerdict.wrong
	}

	t.Run("right kernels", func(t *testing.T) {
		freshSearchVerdict(t)
		s := &Searcher{Dev: testDevice(t)}
		if err := search(t, s); err != nil {
			t.Fatal(err)
		}
		if done, wrong := verdict(); !done || wrong != "" || s.Last.Unproven != 0 || strings.Contains(s.Dev.String(), "searches on the CPU") {
			t.Fatalf("verdict (%v, %q); %d queries on the CPU; %s", done, wrong, s.Last.Unproven, s.Dev)
		}
	})
	t.Run("a ranking that skips keys", func(t *testing.T) {
		freshSearchVerdict(t)
		d, _ := openDevice(t)
		var hits int
		on(t, d, func() error { l := skipKeys{d.drv.(fullDriver), &hits}; d.drv, d.tc.ext = l, l; return nil })
		s := &Searcher{Dev: d}
		for range 2 {
			if err := search(t, s); err != nil {
				t.Fatal(err)
			}
			if done, wrong := verdict(); !done || !strings.Contains(wrong, "query ") || s.Last.Unproven != want.Queries || s.Last.CheckFailed != wrong {
				t.Fatalf("verdict (%v, %q); %d queries on the CPU; Last.CheckFailed %q", done, wrong, s.Last.Unproven, s.Last.CheckFailed)
			}
		}
		if hits == 0 {
			t.Fatal("no ranking launch was changed")
		}
		if desc := d.String(); !strings.Contains(desc, "; searches on the CPU: the GPU search failed its check (keys resident") {
			t.Fatalf("the device's description says nothing of it: %s", desc)
		}
	})
	// Under DINOCLIP_CUDA_CHECK=warn, a search whose check found wrong
	// rows runs on the GPU anyway, and the description says so; one that
	// cannot start runs on the CPU as before, found where it is wrong
	// first (each way of searching runs under warn: the last refused).
	t.Run("warn", func(t *testing.T) {
		t.Setenv(checkEnv, "warn")
		for _, c := range []struct {
			name  string
			lie   func(fullDriver) fullDriver
			onGPU bool
			desc  string
		}{
			{"a ranking that skips keys", func(f fullDriver) fullDriver { return skipKeys{f, new(int)} }, true, "; UNCHECKED GPU search: it failed its check (keys resident"},
			{"launches refused", func(f fullDriver) fullDriver { return refusedLaunches{f, nil} }, false, "; searches on the CPU: the GPU search failed its check (the search (keys resident"},
			{"wrong, the last way refused", func(f fullDriver) fullDriver { return wideRefuser{skipKeys{f, new(int)}} }, false,
				"; searches on the CPU: the GPU search failed its check (the search (keys resident, in one chunk) failed: "},
		} {
			freshSearchVerdict(t)
			d, _ := openDevice(t)
			on(t, d, func() error { l := c.lie(d.drv.(fullDriver)); d.drv, d.tc.ext = l, l; return nil })
			fallback, err := (&Searcher{Dev: d}).Check(context.Background())
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			if done, wrong := verdict(); !done || wrong == "" || (fallback == "") != c.onGPU || !strings.Contains(d.String(), c.desc) {
				t.Fatalf("%s: verdict (%v, %q), the searches' fallback %q; %s; want on the GPU %v and %q", c.name, done, wrong, fallback, d, c.onGPU, c.desc)
			}
		}
	})
	t.Run("no pinned memory", func(t *testing.T) {
		freshSearchVerdict(t)
		d, _ := openDevice(t)
		var inner fullDriver
		on(t, d, func() error {
			inner = d.drv.(fullDriver)
			d.drv, d.tc.ext = noPinned{inner}, noPinned{inner}
			return nil
		})
		_, err := (&Searcher{Dev: d}).Check(context.Background())
		on(t, d, func() error { d.drv, d.tc.ext = inner, inner; return nil })
		if err == nil || !strings.Contains(err.Error(), "no pinned memory here") {
			t.Fatalf("the check says %v", err)
		}
		if done, _ := verdict(); done {
			t.Fatal("an error of the host left a verdict")
		}
	})
	t.Run("a lost context", func(t *testing.T) {
		freshSearchVerdict(t)
		d, _ := openDevice(t)
		var lost bool
		var inner fullDriver
		on(t, d, func() error {
			inner = d.drv.(fullDriver)
			l := lostContext{inner, &lost}
			d.drv, d.tc.ext = l, l
			return nil
		})
		err := search(t, &Searcher{Dev: d})
		on(t, d, func() error { d.drv, d.tc.ext = inner, inner; return nil })
		if err == nil || !strings.Contains(err.Error(), "checking the GPU search") {
			t.Fatalf("the search says %v", err)
		}
		if done, _ := verdict(); done {
			t.Fatal("a lost context left a verdict")
		}
	})
}
