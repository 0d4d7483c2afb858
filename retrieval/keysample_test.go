package retrieval

import "testing"

// keysSample covers the first and last bytes and evenly spread windows of
// a large file, and the length always.
func TestKeysSample(t *testing.T) {
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	base := keysSample(data)
	span := len(data) - keysSampleWindow
	for _, off := range []int{0, keysSampleWindow - 1, span / (keysSampleWindows - 1), span + 5, len(data) - 1} {
		changed := append([]byte(nil), data...)
		changed[off] ^= 1
		if keysSample(changed) == base {
			t.Errorf("a byte changed at %d (inside a window) leaves the sample as it was", off)
		}
	}
	if keysSample(data[:len(data)-2]) == keysSample(data[:len(data)-1]) {
		t.Error("two lengths give one sample")
	}
	small := data[:1000]
	changed := append([]byte(nil), small...)
	changed[500] ^= 1
	if keysSample(small) == keysSample(changed) {
		t.Error("a small file is not hashed whole")
	}
}
