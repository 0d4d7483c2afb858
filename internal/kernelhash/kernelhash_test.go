package kernelhash

import (
	"os"
	"path/filepath"
	"testing"
)

// A module's hash changes with its own source and with any header, and
// with nothing else.
func TestSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a.cu", "a")
	write("b.cu", "b")
	write("common.cuh", "h")
	write("notes.txt", "n")
	before, err := Sources(dir)
	if err != nil || len(before) != 2 || before["a"] == before["b"] {
		t.Fatalf("Sources = %v, %v", before, err)
	}
	write("notes.txt", "m")
	write("a.cu", "a2")
	after, _ := Sources(dir)
	if after["a"] == before["a"] || after["b"] != before["b"] {
		t.Errorf("a.cu edited: hashes %v, before %v", after, before)
	}
	write("common.cuh", "h2")
	again, _ := Sources(dir)
	if again["a"] == after["a"] || again["b"] == after["b"] {
		t.Errorf("the header edited: hashes %v, before %v", again, after)
	}
	if _, err := Sources(t.TempDir()); err == nil {
		t.Error("a directory without kernels: no error")
	}
}
