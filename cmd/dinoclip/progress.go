package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
)

// countBar shows the progress of work counted in units (rows, scores): a
// bar on the command's terminal; where the error stream is no terminal (a
// log, a pipe), a line every progressLogEvery, so that long work piped to
// a file is not silent. A nil *countBar does nothing.
type countBar struct {
	bar *progressbar.ProgressBar // on a terminal, else nil

	mu          sync.Mutex // (held while showing: set may come from workers, and the ticker shows too)
	log         io.Writer
	total       int64
	doing, unit string
	start, last time.Time
	done        int64 // the last set

	// The ticker that shows the bar (or writes its line) though no set
	// comes: a shard of a million rows synthesised, a large file's first
	// chunk, is minutes without one, which looked like a hang.
	stop    chan struct{}
	ticking sync.WaitGroup
}

// countBarTick is how often a countBar is shown again without a set.
const countBarTick = time.Second

// progressLogEvery is how often a countBar without a terminal writes a
// line: work shorter than this writes none.
const progressLogEvery = 30 * time.Second

// newCountBar starts a bar over total units of work described as doing
// ("indexing"), in unit ("rows"), showing done/total when showCount.
func newCountBar(cCtx *cli.Context, total int64, doing, unit string, showCount bool) *countBar {
	f := terminal(cCtx)
	if f == nil {
		now := time.Now()
		return (&countBar{log: cCtx.App.ErrWriter, total: total, doing: doing, unit: unit, start: now, last: now}).tick()
	}
	opts := []progressbar.Option{
		progressbar.OptionSetWriter(f),
		progressbar.OptionSetDescription(doing),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString(unit),
		progressbar.OptionThrottle(100_000_000), // 100 ms between redraws
		progressbar.OptionClearOnFinish(),
	}
	if showCount {
		opts = append(opts, progressbar.OptionShowCount())
	}
	bar := progressbar.NewOptions64(total, opts...)
	// Drawn now, empty: the bar's clock starts at its first drawing, and
	// one first drawn after the first shard or window would count that
	// time out of its rate (billions of rows a second).
	bar.RenderBlank()
	return (&countBar{bar: bar}).tick()
}

// tick starts b's ticker (stopped by finish) and returns b.
func (b *countBar) tick() *countBar {
	b.stop = make(chan struct{})
	b.ticking.Go(func() {
		t := time.NewTicker(countBarTick)
		defer t.Stop()
		for {
			select {
			case <-b.stop:
				return
			case <-t.C:
				b.mu.Lock()
				b.show(b.done)
				b.mu.Unlock()
			}
		}
	})
	return b
}

// set moves the bar to done units.
func (b *countBar) set(done int64) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.done = done
	b.show(done)
}

// show draws the bar at done units, or writes its line when one is due;
// b.mu is held, so the ticker's showing of the last count and a set's
// of a newer one come in turn (the older never drawn after the newer).
func (b *countBar) show(done int64) {
	if b.bar != nil {
		b.bar.Set64(done)
	} else {
		b.logLine(done, time.Now())
	}
}

// logLine writes the line of done units at now when progressLogEvery has
// passed since the last (or the start); b.mu is held.
func (b *countBar) logLine(done int64, now time.Time) {
	if now.Sub(b.last) < progressLogEvery || b.total <= 0 {
		return
	}
	b.last = now
	elapsed := now.Sub(b.start)
	line := fmt.Sprintf("dinoclip: %s: %d of %d %s (%.0f%%) in %s", b.doing, done, b.total, b.unit,
		100*float64(done)/float64(b.total), elapsed.Round(time.Second))
	if done > 0 && done < b.total {
		left := time.Duration(float64(elapsed) * float64(b.total-done) / float64(done))
		line += fmt.Sprintf(", about %s left", left.Round(time.Second))
	}
	fmt.Fprintln(b.log, line)
}

// finish stops the ticker and clears the bar from the terminal.
func (b *countBar) finish() {
	if b == nil || b.stop == nil {
		return
	}
	close(b.stop)
	b.ticking.Wait()
	b.stop = nil
	if b.bar != nil {
		b.bar.Finish()
	}
}
