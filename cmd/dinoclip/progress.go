package main

import (
	"github.com/schollz/progressbar/v3"
	"github.com/urfave/cli/v2"
)

// countBar is a progress bar on the command's terminal over work counted in
// units (rows, scores). A nil *countBar, what newCountBar returns when the
// error stream is not a terminal, does nothing: logs and pipes get no bar.
type countBar struct{ bar *progressbar.ProgressBar }

// newCountBar starts a bar over total units of work described as doing
// ("indexing"), in unit ("rows"), showing done/total when showCount.
func newCountBar(cCtx *cli.Context, total int64, doing, unit string, showCount bool) *countBar {
	f := terminal(cCtx)
	if f == nil {
		return nil
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
	return &countBar{bar}
}

// set moves the bar to done units.
func (b *countBar) set(done int64) {
	if b != nil {
		b.bar.Set64(done)
	}
}

// finish clears the bar from the terminal.
func (b *countBar) finish() {
	if b != nil {
		b.bar.Finish()
	}
}
