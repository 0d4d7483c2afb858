package kinderr

import "fmt"

// Error is an error with a complete message and the sentinel it is a case
// of.
type Error struct {
	kind error
	msg  string
}

func (e *Error) Error() string { return e.msg }

// Unwrap returns the sentinel, for errors.Is and errors.As.
func (e *Error) Unwrap() error { return e.kind }

// Errorf returns an *Error of the given kind whose message is formatted
// as by fmt.Sprintf. The kind is not part of the message.
func Errorf(kind error, format string, args ...any) error {
	return &Error{kind: kind, msg: fmt.Sprintf(format, args...)}
}
