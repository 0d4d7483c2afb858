//go:build !linux

package retrieval

// evict does nothing where madvise(MADV_DONTNEED) is not available: the
// operating system reclaims the mapped pages under memory pressure.
func (k *Keys) evict(s, lo, hi int) {}
