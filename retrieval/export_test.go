package retrieval

// SmallSearcher is a CPUSearcher with the given key tile, window (bytes of
// keys between evictions) and workers, for the external tests.
func SmallSearcher(keyTile int, windowBytes int64, workers int) *CPUSearcher {
	return &CPUSearcher{Workers: workers, keyTile: keyTile, windowBytes: windowBytes}
}

// UseAsm turns the amd64 kernels on or off (when the CPU has them) and
// returns a function restoring the setting.
func UseAsm(on bool) func() {
	old := haveAsm
	haveAsm = on && old
	return func() { haveAsm = old }
}
