package main

import (
	"errors"
	"fmt"
	"testing"
)

// An engine's error is said once as the flag's, its own "cuda: " dropped,
// and stays the error it wraps.
func TestDeviceError(t *testing.T) {
	oom := errors.New("out of memory")
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("cuda: %w", oom), "--device cuda: out of memory"},
		{oom, "--device cuda: out of memory"},
		{fmt.Errorf("the GPU's cuda: %w", oom), "--device cuda: the GPU's cuda: out of memory"},
	} {
		err := error(deviceError{"cuda", c.err})
		if err.Error() != c.want {
			t.Errorf("deviceError of %q: %q, want %q", c.err, err, c.want)
		}
		if !errors.Is(err, oom) {
			t.Errorf("deviceError of %q does not wrap it", c.err)
		}
	}
}
