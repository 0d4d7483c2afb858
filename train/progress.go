package train

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
)

// progress is a terminal progress bar over optimizer steps that shares its
// terminal with the log: the loop clears it before every log line (the
// bar is drawn again at the next step), and it says when the run is
// evaluating rather than freeze. It reaches 100% at the last step and
// stays on screen as the run's last line of progress. The zero value (no
// terminal) does nothing.
//
// The rate and the time left are this process's own (steps since it
// started over the time since): the bar's, which counts a resumed run's
// earlier steps as taken in its first instant, would say thousands of
// steps a second and no time left.
type progress struct {
	bar     *progressbar.ProgressBar
	w       io.Writer
	total   int
	first   int       // the step the process started at
	start   time.Time // when it started
	step    int       // the last step set, drawn or not
	drawn   time.Time // last redraw, for the throttle
	note    string    // a line shown after the bar finished ("evaluating…")
	stopped bool      // ended early (interrupt, error): no more drawing
}

// progressThrottle is the least time between two redraws of the bar.
const progressThrottle = 100 * time.Millisecond

func newProgress(w io.Writer, total, done int) *progress {
	if w == nil {
		return &progress{}
	}
	p := &progress{w: w, total: total, first: done, step: done, start: time.Now()}
	p.bar = progressbar.NewOptions(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription("training"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(false), // (pace's, not the bar's: see progress)
		progressbar.OptionThrottle(0),           // throttled by set, so that a state change always shows
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)
	p.bar.Set(done)
	return p
}

func (p *progress) active() bool { return p.bar != nil && !p.stopped && !p.bar.IsFinished() }

// set moves the bar to step; redraws are throttled, except the last step's.
func (p *progress) set(step int, loss float64) {
	p.step = step
	if !p.active() || (step < p.total && time.Since(p.drawn) < progressThrottle) {
		return
	}
	p.bar.Describe(fmt.Sprintf("training  loss %.3e%s", loss, p.pace()))
	p.bar.Set(step)
	p.drawn = time.Now()
}

// pace is the rate of this process's steps and the time left at it, as
// "  12.3 step/s, 4m10s left"; "" before a step is taken.
func (p *progress) pace() string {
	steps, secs := p.step-p.first, time.Since(p.start).Seconds()
	if steps <= 0 || secs <= 0 {
		return ""
	}
	rate := float64(steps) / secs
	left := time.Duration(float64(p.total-p.step) / rate * float64(time.Second)).Round(time.Second)
	return fmt.Sprintf("  %.3g step/s, %s left", rate, left)
}

// evaluating shows that the run is evaluating: on the bar, or, once the bar
// has finished, on a line of its own until the next log line.
func (p *progress) evaluating() {
	switch {
	case p.active():
		p.bar.Describe("evaluating…")
		p.bar.Set(p.step) // (a step set within the throttle was not drawn)
		p.drawn = time.Now()
	case p.bar != nil && !p.stopped:
		p.note = "evaluating…"
		fmt.Fprint(p.w, p.note)
	}
}

// clear takes the bar (or the note) off the current line, so that a log
// line can be written there.
func (p *progress) clear() {
	switch {
	case p.active():
		p.bar.Clear()
		p.drawn = time.Time{} // draw again at the next step
	case p.note != "":
		fmt.Fprintf(p.w, "\r%s\r", strings.Repeat(" ", len(p.note)))
		p.note = ""
	}
}

// stop ends the bar where it is (an interrupted or failed run) and moves
// to the next line, for the log lines that follow.
func (p *progress) stop() {
	if p.active() {
		p.bar.Exit()
	} else {
		p.clear()
	}
	p.stopped = true
}
