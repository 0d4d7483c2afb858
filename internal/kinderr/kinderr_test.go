package kinderr

import (
	"errors"
	"fmt"
	"io"
	"testing"
)

func TestErrorf(t *testing.T) {
	err := Errorf(io.ErrUnexpectedEOF, "file is %d bytes short", 3)
	if err.Error() != "file is 3 bytes short" {
		t.Errorf("message %q", err)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		t.Errorf("errors.Is does not match exactly the kind")
	}
	wrapped := fmt.Errorf("pkg: name: %w", err)
	var e *Error
	if !errors.Is(wrapped, io.ErrUnexpectedEOF) || !errors.As(wrapped, &e) || e != err {
		t.Errorf("the kind is not reachable through wrapping")
	}
}
