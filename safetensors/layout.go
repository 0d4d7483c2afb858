package safetensors

// Validation of the data buffer against the header: each tensor's byte
// range is exactly its shape times its dtype's size, and the ranges tile the
// buffer with no gap or overlap.

import (
	"fmt"
	"math"
	"sort"
)

// byteSize is the byte length of a tensor. It fails if the size overflows
// or, for sub-byte dtypes, is not a whole number of bytes. As in npy, a
// zero dimension does not excuse an overflow among the others.
func byteSize(dt DType, shape []int) (int, error) {
	bits := dt.Bits()
	limit := math.MaxInt / bits
	n, nz := 1, 1
	for _, d := range shape {
		if d == 0 {
			n = 0
			continue
		}
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in shape %v", shape)
		}
		if nz > limit/d {
			return 0, fmt.Errorf("shape %v of %s is too large: the data size overflows", shape, dt)
		}
		nz *= d
		n *= d
	}
	if n*bits%8 != 0 {
		return 0, fmt.Errorf("shape %v of %d-bit %s does not fill a whole number of bytes", shape, bits, dt)
	}
	return n * bits / 8, nil
}

// checkLayout enforces that the byte ranges lie in the buffer and tile it
// exactly, then leaves tensors sorted in buffer order (header order among
// empty tensors at the same offset).
func checkLayout(tensors []TensorInfo, bufLen int) error {
	for _, t := range tensors {
		if t.End > bufLen {
			return errorf(ErrDataCutShort, "tensor %q: data_offsets [%d, %d] extend past the %d-byte data buffer (file truncated?)",
				t.Name, t.Begin, t.End, bufLen)
		}
	}
	sort.SliceStable(tensors, func(i, j int) bool {
		if tensors[i].Begin != tensors[j].Begin {
			return tensors[i].Begin < tensors[j].Begin
		}
		return tensors[i].End < tensors[j].End
	})
	pos, prev := 0, ""
	for _, t := range tensors {
		switch {
		case t.Begin < pos:
			return errorf(ErrOffsets, "tensor %q: data_offsets [%d, %d] overlap tensor %q, which ends at %d",
				t.Name, t.Begin, t.End, prev, pos)
		case t.Begin > pos:
			return errorf(ErrOffsets, "%d bytes of the data buffer before tensor %q (at %d) belong to no tensor",
				t.Begin-pos, t.Name, t.Begin)
		}
		pos = t.End
		prev = t.Name
	}
	if pos != bufLen {
		// (As the Python reader, dinoclip.checkpoint, says it.)
		extra, s := bufLen-pos, "s"
		if extra == 1 {
			s = ""
		}
		return errorf(ErrOffsets, "the file holds %d byte%s more than its header describes (trailing data)", extra, s)
	}
	return nil
}
