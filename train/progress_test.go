package train

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"
)

// lastDrawn is the last state of the bar that out shows (redraws begin
// with a carriage return).
func lastDrawn(out string) string {
	out = strings.TrimRight(out, " \r\n")
	return out[strings.LastIndex(out, "\r")+1:]
}

// A resumed run's bar counts only this process's steps in its rate and
// time left: steps 600 to 610 of 1000 in about 50 ms are about 200 a
// second, not the thousands the bar's own rate, which took the 600 for
// steps taken in its first instant, showed.
func TestProgressRateAfterResume(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, 1000, 600)
	time.Sleep(50 * time.Millisecond)
	p.set(610, 0.5)
	shown := lastDrawn(out.String())
	i := strings.Index(shown, " step/s")
	if i < 0 || !strings.Contains(shown, "610/1000") {
		t.Fatalf("the bar shows %q, want step 610 and a rate", shown)
	}
	fields := strings.Fields(shown[:i])
	rate, err := strconv.ParseFloat(fields[len(fields)-1], 64)
	if err != nil || rate > 10/0.05 || rate <= 0 {
		t.Errorf("rate %q (%v) after 10 steps in at least 50 ms: want at most 200 a second", fields[len(fields)-1], err)
	}
	if strings.Contains(shown, " 0s left") || strings.Contains(shown, ":0s]") {
		t.Errorf("390 steps left at that rate shown as none: %q", shown)
	}
}

// A step set within the throttle is not drawn, but the evaluation that
// follows shows it, not the last one drawn.
func TestProgressEvaluatingShowsTheStep(t *testing.T) {
	var out bytes.Buffer
	p := newProgress(&out, 60, 0)
	p.set(1, 0.5) // drawn
	p.drawn = time.Now()
	p.set(20, 0.4) // within the throttle (however loaded the machine): not drawn
	if shown := lastDrawn(out.String()); !strings.Contains(shown, "1/60") {
		t.Fatalf("the bar shows %q, want step 1 (step 20 came within the throttle)", shown)
	}
	p.evaluating()
	if shown := lastDrawn(out.String()); !strings.Contains(shown, "evaluating") || !strings.Contains(shown, "20/60") {
		t.Errorf("evaluating after step 20: the bar shows %q", shown)
	}
}

// heartbeat logs its work every heartbeatEvery until stopped, and nothing
// after. (The log is read once the heartbeat has stopped: stop waits for
// its goroutine.)
func TestHeartbeat(t *testing.T) {
	defer func(saved time.Duration) { heartbeatEvery = saved }(heartbeatEvery)
	heartbeatEvery = time.Millisecond
	var log bytes.Buffer
	tr := &Trainer{Log: slog.New(slog.NewTextHandler(&log, nil))}
	stop := tr.heartbeat("computing things")
	time.Sleep(200 * time.Millisecond)
	stop()
	got := log.String()
	if n := strings.Count(got, `msg="computing things" elapsed=`); n < 2 {
		t.Fatalf("%d heartbeats logged in 200 ticks, want 2 or more:\n%s", n, got)
	}
	time.Sleep(10 * time.Millisecond)
	if log.String() != got {
		t.Error("a heartbeat logged after stop")
	}
}
