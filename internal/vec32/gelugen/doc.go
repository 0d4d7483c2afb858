// Command gelugen derives the coefficients of vec32's float32 GELU (see
// ../gelu.go for the method and its error bounds) and writes them as Go
// (gelu_tables.go) and the assembly's offsets into them
// (gelu_tables_amd64.h). Run it with go generate in internal/vec32.
//
// Everything is computed here in float64 from math.Erfc and math.Expm1:
// each polynomial is a near-minimax fit (Lawson's iteratively reweighted
// least squares, in the Chebyshev basis, on 600 Chebyshev nodes), converted
// to powers of the offset from its interval's centre and rounded to
// float32. It prints each fit's worst error before that rounding.
package main
