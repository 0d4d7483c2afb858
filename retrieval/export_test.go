package retrieval

// SmallSearcher is a CPUSearcher with the given blocks, window (bytes of
// keys between evictions) and workers, for the external tests.
func SmallSearcher(queryBlock, keyTile int, windowBytes int64, workers int) *CPUSearcher {
	return &CPUSearcher{Workers: workers, queryBlock: queryBlock, keyTile: keyTile, windowBytes: windowBytes}
}

// UseDot4x2 turns the amd64 kernel on or off (when the CPU has it) and
// returns a function restoring the setting.
func UseDot4x2(on bool) func() {
	old := haveDot4x2
	haveDot4x2 = on && old
	return func() { haveDot4x2 = old }
}
