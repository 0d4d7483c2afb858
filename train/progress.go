package train

import (
	"fmt"
	"io"

	"github.com/schollz/progressbar/v3"
)

// progress is a terminal progress bar over optimizer steps; the zero value
// (no terminal) does nothing.
type progress struct{ bar *progressbar.ProgressBar }

func newProgress(w io.Writer, total, done int) progress {
	if w == nil {
		return progress{}
	}
	bar := progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("training"),
		progressbar.OptionShowCount(),
		progressbar.OptionShowIts(),
		progressbar.OptionSetItsString("step"),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionThrottle(100_000_000),
		progressbar.OptionClearOnFinish(),
	)
	bar.Set(done)
	return progress{bar: bar}
}

func (p progress) set(step int, loss float64) {
	if p.bar == nil {
		return
	}
	p.bar.Describe(fmt.Sprintf("training  loss %.3e", loss))
	p.bar.Set(step)
}

func (p progress) finish() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
