package npy

// DType is an element type this package can read and write.
type DType uint8

// The supported dtypes. The zero value is not a valid dtype.
const (
	Float16 DType = iota + 1 // '<f2', IEEE 754 binary16
	Float32                  // '<f4'
	Float64                  // '<f8'
	Int32                    // '<i4'
	Int64                    // '<i8'
)

// Size is the number of bytes per element (0 for an invalid DType).
func (d DType) Size() int {
	switch d {
	case Float16:
		return 2
	case Float32, Int32:
		return 4
	case Float64, Int64:
		return 8
	}
	return 0
}

// String is the numpy descr string, e.g. "<f4".
func (d DType) String() string {
	switch d {
	case Float16:
		return "<f2"
	case Float32:
		return "<f4"
	case Float64:
		return "<f8"
	case Int32:
		return "<i4"
	case Int64:
		return "<i8"
	}
	return "invalid"
}

// Name is the dtype as numpy names it, e.g. "float32" (String is its
// descr, "<f4").
func (d DType) Name() string {
	switch d {
	case Float16:
		return "float16"
	case Float32:
		return "float32"
	case Float64:
		return "float64"
	case Int32:
		return "int32"
	case Int64:
		return "int64"
	}
	return "invalid"
}

// IsFloat reports whether d is a floating-point dtype.
func (d DType) IsFloat() bool { return d == Float16 || d == Float32 || d == Float64 }

// IsInt reports whether d is an integer dtype.
func (d DType) IsInt() bool { return d == Int32 || d == Int64 }

func (d DType) valid() bool { return d >= Float16 && d <= Int64 }

// dtypeFromDescr maps a descr string to a DType. The error explains why an
// unsupported descr is unsupported, since the fix differs (astype('<f4') for
// big-endian, a different save for object arrays, ...).
func dtypeFromDescr(descr string) (DType, error) {
	switch descr {
	case "<f2":
		return Float16, nil
	case "<f4":
		return Float32, nil
	case "<f8":
		return Float64, nil
	case "<i4":
		return Int32, nil
	case "<i8":
		return Int64, nil
	}
	switch {
	case len(descr) > 0 && descr[0] == '>':
		return 0, errorf(ErrDType, "big-endian dtype %q is not supported; convert with arr.astype('<%s')", descr, descr[1:])
	case descr == "|O" || descr == "O" || descr == "<O" || descr == ">O":
		return 0, errorf(ErrDType, "object arrays (dtype %q) are not supported", descr)
	}
	return 0, errorf(ErrDType, "dtype %q is not supported; want one of <f2, <f4, <f8 (floats: features, embeddings) or <i4, <i8 (integers: index arrays such as caption -> image)", descr)
}
