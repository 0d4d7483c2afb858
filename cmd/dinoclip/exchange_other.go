//go:build !linux

package main

import "errors"

// exchangeDirs would swap the directories a and b in one step; this
// system has no such call, and writeSearch moves b aside first instead.
func exchangeDirs(a, b string) error {
	return errors.New("no atomic exchange of directories on this system")
}
