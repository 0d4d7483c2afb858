//go:build linux

package retrieval

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// evict hands the pages of rows [lo, hi) of segment s back to the kernel
// if the segment is a file mapping (KeySegment.Mapped): they leave the
// process's resident set and are read again from the page cache or the
// file if touched later. The range is widened to whole pages, which stay
// inside the mapping (it starts on a page and covers whole pages).
func (k *Keys) evict(s, lo, hi int) {
	seg := &k.Segments[s]
	if !seg.Mapped || hi <= lo {
		return
	}
	rowBytes := k.Dim * seg.DType.Size()
	page := uintptr(os.Getpagesize())
	base := unsafe.Pointer(&seg.Data[lo*rowBytes])
	head := uintptr(base) & (page - 1)
	n := (head + uintptr((hi-lo)*rowBytes) + page - 1) &^ (page - 1)
	start := unsafe.Add(base, -int(head))
	// Advice is a hint: a failure leaves the pages resident, nothing worse.
	_ = unix.Madvise(unsafe.Slice((*byte)(start), n), unix.MADV_DONTNEED)
}
