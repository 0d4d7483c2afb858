package main

import (
	"strings"
	"testing"
	"time"
)

// Without a terminal, a countBar writes a line once progressLogEvery has
// passed since the start or the last line, and none before.
func TestCountBarLogLines(t *testing.T) {
	var log strings.Builder
	start := time.Now()
	b := &countBar{log: &log, total: 200, doing: "indexing", unit: "rows", start: start, last: start}
	b.logLine(10, start.Add(progressLogEvery-time.Second))
	if log.Len() != 0 {
		t.Fatalf("a line before progressLogEvery: %q", log.String())
	}
	b.logLine(50, start.Add(progressLogEvery))
	b.logLine(60, start.Add(progressLogEvery+time.Second))
	want := "dinoclip: indexing: 50 of 200 rows (25%) in 30s, about 1m30s left\n"
	if log.String() != want {
		t.Fatalf("lines %q, want %q", log.String(), want)
	}
	b.logLine(200, start.Add(2*progressLogEvery))
	if !strings.HasSuffix(log.String(), "dinoclip: indexing: 200 of 200 rows (100%) in 1m0s\n") {
		t.Fatalf("lines %q", log.String())
	}
}

// A countBar writes its line when it is due though no set comes (a shard
// of a million rows synthesised is minutes without one), with the count
// last set, and nothing once finished.
func TestCountBarTicksWithoutSet(t *testing.T) {
	var log syncBuffer
	start := time.Now().Add(-progressLogEvery) // (a line is due at once)
	b := (&countBar{log: &log, total: 200, doing: "synthesising", unit: "rows", start: start, last: start}).tick()
	b.mu.Lock()
	b.done = 40
	b.mu.Unlock()
	deadline := time.Now().Add(10 * countBarTick)
	for log.String() == "" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	b.finish()
	if got := log.String(); !strings.HasPrefix(got, "dinoclip: synthesising: 40 of 200 rows (20%) in ") {
		t.Fatalf("lines without a set: %q", got)
	}
	b.finish() // (twice: nothing)
}
