package safetensors

// DType is a safetensors element type, spelled as in the header.
type DType string

// The dtypes of the format. All are accepted when reading (so any valid
// file opens and its raw bytes are reachable); conversions exist for the
// float and integer types the project uses.
const (
	BOOL       DType = "BOOL"
	U8         DType = "U8"
	I8         DType = "I8"
	I16        DType = "I16"
	U16        DType = "U16"
	I32        DType = "I32"
	U32        DType = "U32"
	I64        DType = "I64"
	U64        DType = "U64"
	F16        DType = "F16"
	BF16       DType = "BF16"
	F32        DType = "F32"
	F64        DType = "F64"
	C64        DType = "C64"
	F8E5M2     DType = "F8_E5M2"
	F8E4M3     DType = "F8_E4M3"
	F8E8M0     DType = "F8_E8M0"
	F8E4M3FNUZ DType = "F8_E4M3FNUZ"
	F8E5M2FNUZ DType = "F8_E5M2FNUZ"
	F6E2M3     DType = "F6_E2M3"
	F6E3M2     DType = "F6_E3M2"
	F4         DType = "F4"
)

// dtypeBits is the element width in bits. Sub-byte types (F4, F6_*) only
// make whole bytes in groups, which the size check accounts for.
var dtypeBits = map[DType]int{
	BOOL: 8, U8: 8, I8: 8, F8E5M2: 8, F8E4M3: 8, F8E8M0: 8, F8E4M3FNUZ: 8, F8E5M2FNUZ: 8,
	I16: 16, U16: 16, F16: 16, BF16: 16,
	I32: 32, U32: 32, F32: 32,
	I64: 64, U64: 64, F64: 64, C64: 64,
	F6E2M3: 6, F6E3M2: 6, F4: 4,
}

// Bits is the element width in bits, 0 for an unknown dtype.
func (d DType) Bits() int { return dtypeBits[d] }

// Size is the element width in bytes, 0 for unknown and sub-byte dtypes.
func (d DType) Size() int {
	if b := dtypeBits[d]; b%8 == 0 {
		return b / 8
	}
	return 0
}

// Valid reports whether d is a dtype of the format.
func (d DType) Valid() bool { return dtypeBits[d] != 0 }
