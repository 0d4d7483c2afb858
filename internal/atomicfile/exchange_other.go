//go:build !linux

package atomicfile

import "errors"

// ExchangeDirs would swap the directories a and b in one step; this
// system has no such call, and the caller moves b aside first instead.
func ExchangeDirs(a, b string) error {
	return errors.New("no atomic exchange of directories on this system")
}
