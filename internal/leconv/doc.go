// Package leconv converts between little-endian element bytes, as the .npy
// and safetensors formats store them, and Go slices: decoding float16,
// bfloat16, float32, float64 and integers into []float32, []float64 and
// []int64, and encoding those slices back.
//
// The functions are correct on any host and at any alignment (neither
// format aligns its data reliably), and on little-endian hosts the
// conversions between identical types are a plain memory copy.
//
// A decoder XToY(dst, src) fills all of dst from the first len(dst)
// elements of src, and panics if src is shorter. An encoder PutX(dst, src)
// writes all of src to the start of dst, and panics if dst is shorter.
package leconv
