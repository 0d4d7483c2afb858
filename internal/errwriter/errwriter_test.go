package errwriter

import (
	"errors"
	"testing"
)

// failAfter accepts n writes, then fails each with its own error.
type failAfter struct{ n, calls int }

func (f *failAfter) Write(p []byte) (int, error) {
	f.calls++
	if f.calls > f.n {
		return 0, errors.New("write " + string(rune('0'+f.calls)))
	}
	return len(p), nil
}

// The first error is kept, later ones (and writes) pass through.
func TestWriterKeepsFirstError(t *testing.T) {
	under := &failAfter{n: 1}
	w := &Writer{W: under}
	for i := range 3 {
		_, err := w.Write([]byte("x"))
		if (err != nil) != (i > 0) {
			t.Fatalf("write %d: %v", i+1, err)
		}
	}
	if w.Err == nil || w.Err.Error() != "write 2" || under.calls != 3 {
		t.Errorf("kept %v after %d writes, want the second write's error and every write passed on", w.Err, under.calls)
	}
}
