package train

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A metrics record whose write fails partway (the disk full; here the
// file-size limit, which cuts a write short the same way) is cut off
// again: the log holds whole lines only, for whoever reads it before the
// resume. In a process of its own, the limit being the process's.
func TestMetricsWriteFailingPartwayLeavesNoTornLine(t *testing.T) {
	if dir := os.Getenv("DINOCLIP_TEST_METRICS_DIR"); dir != "" {
		metricsWriteUnderLimit(t, dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestMetricsWriteFailingPartwayLeavesNoTornLine$")
	cmd.Env = append(os.Environ(), "DINOCLIP_TEST_METRICS_DIR="+dir)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("the writing process: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(dir, MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"step":1,"type":"train"}` + "\n"; string(b) != want {
		t.Errorf("the log after a write cut short holds %q, want the one whole record %q", b, want)
	}
}

// metricsWriteUnderLimit writes one record to dir's metrics log, then
// another past a file-size limit that cuts it short, which must fail.
func metricsWriteUnderLimit(t *testing.T, dir string) {
	m, err := openMetrics(t.Context(), filepath.Join(dir, MetricsFile), resumeAt(0, false), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.write(map[string]any{"type": "train", "step": 1}); err != nil {
		t.Fatal(err)
	}
	limit := syscall.Rlimit{Cur: 40, Max: 40} // (26 bytes written: the next record stops partway)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
	if err := m.write(map[string]any{"type": "train", "step": 2, "loss": 0.5}); err == nil {
		t.Fatal("a write past the file-size limit succeeded")
	}
}
