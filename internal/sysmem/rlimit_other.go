//go:build !unix || openbsd

package sysmem

// addressSpaceLeft: no address-space limit to read here (OpenBSD has no
// RLIMIT_AS; its data-segment limit bounds the heap, not the mappings).
func addressSpaceLeft(status []byte) (left uint64, limited bool) { return 0, false }
