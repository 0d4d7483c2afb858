//go:build cuda

package driver

import (
	"strings"
	"testing"
)

// A bf16 activation matrix of 8192 rows of 768, loaded in boxes of 64x128
// with the 128-byte swizzle: the shape a wgmma main loop reads.
func goodSpec() TensorMapSpec {
	return TensorMapSpec{DataType: TensorBFloat16, Base: 0x7f0000000000, Dims: []uint64{768, 8192},
		Strides: []uint64{768 * 2}, Box: []uint32{64, 128}, Swizzle: Swizzle128B}
}

func TestTensorMapSpecValidate(t *testing.T) {
	good := map[string]func(*TensorMapSpec){
		"as is":       func(*TensorMapSpec) {},
		"rank 1":      func(s *TensorMapSpec) { s.Dims, s.Strides, s.Box = []uint64{768}, nil, []uint32{64} },
		"rank 5":      func(s *TensorMapSpec) { rank5(s) },
		"padded rows": func(s *TensorMapSpec) { s.Strides = []uint64{2048} },
		"float32, 32-byte swizzle": func(s *TensorMapSpec) {
			s.DataType, s.Box[0], s.Strides[0], s.Swizzle = TensorFloat32, 8, 768*4, Swizzle32B
		},
		"float16, 64-byte swizzle": func(s *TensorMapSpec) { s.DataType, s.Box[0], s.Swizzle = TensorFloat16, 32, Swizzle64B },
		"no swizzle, wide box":     func(s *TensorMapSpec) { s.Box[0], s.Swizzle = 256, SwizzleNone },
		"element strides":          func(s *TensorMapSpec) { s.ElemStrides = []uint32{1, 8} },
		"NaN fill":                 func(s *TensorMapSpec) { s.NaNFill = true },
		"dimension of 2^32": func(s *TensorMapSpec) {
			s.Dims, s.Strides, s.Box = []uint64{64, 1 << 32}, []uint64{128}, []uint32{64, 1}
		},
		"stride just below 2^40": func(s *TensorMapSpec) { s.Dims, s.Strides = []uint64{768, 4}, []uint64{1<<40 - 16} },
	}
	for name, edit := range good {
		s := goodSpec()
		edit(&s)
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := []struct {
		name, want string
		edit       func(*TensorMapSpec)
	}{
		{"unknown data type", "data type", func(s *TensorMapSpec) { s.DataType = 3 }},
		{"rank 0", "rank 0", func(s *TensorMapSpec) { s.Dims, s.Strides, s.Box = nil, nil, nil }},
		{"rank 6", "rank 6", func(s *TensorMapSpec) {
			rank5(s)
			s.Dims, s.Strides, s.Box = append(s.Dims, 1), append(s.Strides, 1<<30), append(s.Box, 1)
		}},
		{"strides for rank 3", "strides", func(s *TensorMapSpec) { s.Strides = []uint64{1536, 1536 * 8192} }},
		{"box of rank 1", "box", func(s *TensorMapSpec) { s.Box = []uint32{64} }},
		{"element strides of rank 1", "element strides", func(s *TensorMapSpec) { s.ElemStrides = []uint32{1} }},
		{"null base", "base address", func(s *TensorMapSpec) { s.Base = 0 }},
		{"base 8-byte aligned", "base address", func(s *TensorMapSpec) { s.Base += 8 }},
		{"empty dimension", "dimension 1", func(s *TensorMapSpec) { s.Dims[1] = 0 }},
		{"dimension above 2^32", "dimension 1", func(s *TensorMapSpec) { s.Dims[1] = 1<<32 + 1 }},
		{"stride not a multiple of 16", "multiple of 16", func(s *TensorMapSpec) { s.Strides[0] = 1544 }},
		{"stride of 2^40", "below 2^40", func(s *TensorMapSpec) { s.Dims, s.Strides = []uint64{768, 4}, []uint64{1 << 40} }},
		{"rows overlap", "less than", func(s *TensorMapSpec) { s.Strides[0] = 1520 }},
		{"planes overlap", "less than", func(s *TensorMapSpec) {
			s.Dims, s.Strides, s.Box = []uint64{768, 16, 4}, []uint64{1536, 1536 * 15}, []uint32{64, 16, 1}
		}},
		{"empty box", "box dimension 1", func(s *TensorMapSpec) { s.Box[1] = 0 }},
		{"box of 257", "box dimension 1", func(s *TensorMapSpec) { s.Box[1] = 257 }},
		{"inner box of 8 bytes", "multiple of 16", func(s *TensorMapSpec) { s.Box[0], s.Swizzle = 4, SwizzleNone }},
		{"inner box wider than the swizzle", "swizzle span", func(s *TensorMapSpec) { s.Box[0] = 128 }},
		{"inner box wider than 32 bytes", "32-byte swizzle", func(s *TensorMapSpec) { s.Box[0], s.Swizzle = 32, Swizzle32B }},
		{"unknown swizzle", "swizzle 4", func(s *TensorMapSpec) { s.Swizzle = 4 }},
		{"element stride 0", "element stride 1", func(s *TensorMapSpec) { s.ElemStrides = []uint32{1, 0} }},
		{"element stride 9", "element stride 0", func(s *TensorMapSpec) { s.ElemStrides = []uint32{9, 1} }},
	}
	for _, tc := range bad {
		s := goodSpec()
		tc.edit(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}

// rank5 makes s a 5-dimensional tensor of 768 x 4 x 3 x 2 x 2 bf16.
func rank5(s *TensorMapSpec) {
	s.Dims = []uint64{768, 4, 3, 2, 2}
	s.Strides = []uint64{1536, 1536 * 4, 1536 * 12, 1536 * 24}
	s.Box = []uint32{64, 4, 3, 2, 1}
}

func TestLaunchConfigValidate(t *testing.T) {
	base := LaunchConfig{Grid: [3]int{132, 4, 1}, Block: [3]int{128, 1, 1}}
	good := map[string]func(*LaunchConfig){
		"plain":                func(*LaunchConfig) {},
		"cluster of 2":         func(c *LaunchConfig) { c.Cluster = [3]int{2, 1, 1} },
		"cluster of 8":         func(c *LaunchConfig) { c.Cluster = [3]int{2, 4, 1} },
		"227 KiB shared":       func(c *LaunchConfig) { c.SharedBytes = 227 << 10 },
		"1024 threads in 3-D":  func(c *LaunchConfig) { c.Block = [3]int{16, 16, 4} },
		"widest grid":          func(c *LaunchConfig) { c.Grid = [3]int{1<<31 - 1, 65535, 65535} },
		"3 warpgroups, 2 by 2": func(c *LaunchConfig) { c.Block, c.Cluster = [3]int{384, 1, 1}, [3]int{1, 2, 1} },
	}
	for name, edit := range good {
		c := base
		edit(&c)
		if err := c.Validate(SM90); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	bad := []struct {
		name, want string
		lim        DeviceLimits
		edit       func(*LaunchConfig)
	}{
		{"empty grid", "grid", SM90, func(c *LaunchConfig) { c.Grid[2] = 0 }},
		{"grid y of 65536", "grid", SM90, func(c *LaunchConfig) { c.Grid[1] = 65536 }},
		{"empty block", "block", SM90, func(c *LaunchConfig) { c.Block[0] = 0 }},
		{"1025 threads", "block", SM90, func(c *LaunchConfig) { c.Block = [3]int{1025, 1, 1} }},
		{"2048 threads in 2-D", "block", SM90, func(c *LaunchConfig) { c.Block = [3]int{64, 32, 1} }},
		{"block z of 65", "block", SM90, func(c *LaunchConfig) { c.Block = [3]int{1, 1, 65} }},
		{"cluster not dividing the grid", "not a multiple", SM90, func(c *LaunchConfig) { c.Cluster = [3]int{8, 1, 1} }},
		{"cluster of 16", "at most 8", SM90, func(c *LaunchConfig) { c.Grid, c.Cluster = [3]int{128, 4, 1}, [3]int{4, 4, 1} }},
		{"partial cluster", "at least 1", SM90, func(c *LaunchConfig) { c.Cluster = [3]int{2, 0, 1} }},
		{"cluster before Hopper", "no thread-block clusters", DeviceLimits{MaxDynamicShared: 163 << 10},
			func(c *LaunchConfig) { c.Cluster = [3]int{2, 1, 1} }},
		{"228 KiB shared", "dynamic shared memory", SM90, func(c *LaunchConfig) { c.SharedBytes = 228 << 10 }},
		{"negative shared", "dynamic shared memory", SM90, func(c *LaunchConfig) { c.SharedBytes = -1 }},
	}
	for _, tc := range bad {
		c := base
		tc.edit(&c)
		err := c.Validate(tc.lim)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
}
