package atomicfile

import (
	"os"
	"path/filepath"
	"testing"
)

// ExchangeDirs swaps two directories whole.
func TestExchangeDirs(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for _, d := range []string{a, b} {
		os.Mkdir(d, 0o755)
		os.WriteFile(filepath.Join(d, "name"), []byte(filepath.Base(d)), 0o644)
	}
	if err := ExchangeDirs(a, b); err != nil {
		t.Skipf("this filesystem cannot exchange directories (callers fall back): %v", err)
	}
	for d, want := range map[string]string{a: "b", b: "a"} {
		if got, err := os.ReadFile(filepath.Join(d, "name")); err != nil || string(got) != want {
			t.Errorf("%s holds %q (%v) after the exchange, want %q", d, got, err, want)
		}
	}
}
