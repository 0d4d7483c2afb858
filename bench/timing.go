package bench

import (
	"fmt"
	"slices"
	"time"
)

// Timing says how long to measure something: Warmup untimed runs, then at
// least Steps timed runs and, if MinTime is set, runs until their total
// reaches MinTime, but never more than MaxSteps (default 100 x Steps, at
// least 1000).
type Timing struct {
	Warmup   int           `json:"warmup"`
	Steps    int           `json:"steps"`
	MinTime  time.Duration `json:"min_time_ns"`
	MaxSteps int           `json:"max_steps,omitempty"`
}

func (t Timing) validate() error {
	switch {
	case t.Warmup < 0:
		return fmt.Errorf("warm-up of %d runs", t.Warmup)
	case t.Steps < 1:
		return fmt.Errorf("%d timed runs: need at least 1", t.Steps)
	case t.MinTime < 0:
		return fmt.Errorf("minimum time %v", t.MinTime)
	case t.MaxSteps != 0 && t.MaxSteps < t.Steps:
		return fmt.Errorf("at most %d runs, fewer than the %d asked for", t.MaxSteps, t.Steps)
	}
	return nil
}

func (t Timing) maxSteps() int {
	if t.MaxSteps > 0 {
		return t.MaxSteps
	}
	return max(1000, 100*t.Steps)
}

// repeat runs fn(i) for i = 0, 1, ... as t says and times each timed run
// on its own, through sync when sync is not nil (so that asynchronous work
// is inside the run that queued it). It returns the timed runs' statistics
// and how many warm-up runs preceded them.
func repeat(t Timing, sync func() error, fn func(i int) error) (Stats, error) {
	if err := t.validate(); err != nil {
		return Stats{}, err
	}
	wait := func() error {
		if sync == nil {
			return nil
		}
		return sync()
	}
	i := 0
	for ; i < t.Warmup; i++ {
		if err := fn(i); err != nil {
			return Stats{}, err
		}
	}
	if err := wait(); err != nil {
		return Stats{}, err
	}
	var samples []float64
	var total time.Duration
	for len(samples) < t.Steps || (total < t.MinTime && len(samples) < t.maxSteps()) {
		start := time.Now()
		if err := fn(i); err != nil {
			return Stats{}, err
		}
		if err := wait(); err != nil {
			return Stats{}, err
		}
		d := time.Since(start)
		total += d
		samples = append(samples, d.Seconds())
		i++
	}
	return NewStats(samples), nil
}

// NewStats summarises samples (seconds).
func NewStats(samples []float64) Stats {
	if len(samples) == 0 {
		return Stats{}
	}
	s := Stats{Samples: slices.Clone(samples)}
	sorted := slices.Sorted(slices.Values(samples))
	n := len(sorted)
	if n%2 == 1 {
		s.Median = sorted[n/2]
	} else {
		s.Median = (sorted[n/2-1] + sorted[n/2]) / 2
	}
	s.Min, s.Max = sorted[0], sorted[n-1]
	for _, v := range sorted {
		s.Mean += v
	}
	s.Mean /= float64(n)
	return s
}
