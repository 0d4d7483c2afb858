//go:build cuda

package cuda

import (
	"fmt"
	"os"
)

// The GPU engine's settings from the process's environment. Each is read
// where it applies and refused when it is neither of its values, before
// anything opens a device: a mistyped value taken for the default would
// mislead the one who set it.

// graphsEnv turns the captured step off when it is "off" (a debugging aid
// on a GPU whose driver mishandles graphs); "on" or unset keeps it.
const graphsEnv = "DINOCLIP_CUDA_GRAPHS"

// graphsOff reads graphsEnv.
func graphsOff() (bool, error) {
	return onOff(graphsEnv, "off")
}

// checkEnv says what the first-use checks (gemm_check.go, engine_check.go,
// search_check.go) do with code that computes wrong values: "on" or unset
// refuses it (or falls back to what passed), "warn" warns and runs it
// anyway, unproven, where nothing that passed can run instead. It is for
// measuring a GPU whose checks are in doubt
// (scripts/device-run.sh's benches, so that a check that refuses a good
// GPU cannot cost a whole lease its numbers), and for a user who must go
// on before a fix, at their own risk; not for training as a habit. A
// kernel that cannot start, or that faults, is refused or falls back
// either way: there is nothing to run.
const checkEnv = "DINOCLIP_CUDA_CHECK"

// checksWarn reads checkEnv.
func checksWarn() (bool, error) {
	return onOff(checkEnv, "warn")
}

// onOff reads the setting name, which takes "on" (or unset) or other,
// and says whether it is other.
func onOff(name, other string) (bool, error) {
	switch v := os.Getenv(name); v {
	case "", "on":
		return false, nil
	case other:
		return true, nil
	default:
		return false, fmt.Errorf("cuda: %s=%q: want %s or on (or unset)", name, v, other)
	}
}
