package retrieval

// SmallSearcher is a CPUSearcher with the given blocks, window (bytes of
// keys between evictions) and workers, for the external tests.
func SmallSearcher(queryBlock, keyTile int, windowBytes int64, workers int) *CPUSearcher {
	return &CPUSearcher{Workers: workers, queryBlock: queryBlock, keyTile: keyTile, windowBytes: windowBytes}
}
