package vec32

// LayerNorm's backward pass over a block of rows in one sweep: each row's
// two sums, its dx, and the columns' sums of dgamma and dbeta, taken while
// the row is in cache rather than in a separate walk down the columns that
// reads dy and xhat a second time. The conversions from float32 to float64
// are what limits these loops, so gamma comes converted once, by the
// caller, rather than again for every row.

// LayerNormBackwardRows does LayerNorm's backward pass for rows rows of
// width d, row r at r*d of dx, dy and xhat, with gamma given in float64
// (each the float32 gamma converted exactly). For each row, with
// g[j] = dy[j]*gamma[j] (exact in float64), it sums
//
//	sumG  = sum of g[j]
//	sumGX = sum of g[j]*xhat[j]   (each product rounded to float64)
//
// in the fixed lane order of reduce.go, and sets
//
//	dx[j] = float32(rstd[r] * ((g[j] - sumG/d) - xhat[j]*(sumGX/d)))
//
// each float64 operation rounded in that order, none fused. For each
// column j it adds, over the rows in order,
//
//	prod[j] += dy[j]*xhat[j]   (the product exact in float64)
//	sum[j]  += dy[j]
//
// LayerNorm's dgamma and dbeta over the block. dx may alias dy; gamma,
// prod and sum must be d long.
func LayerNormBackwardRows(dx, dy, xhat, rstd []float32, gamma []float64, rows, d int, prod, sum []float64) {
	if rows <= 0 || d <= 0 {
		return
	}
	dx, dy, xhat = dx[:rows*d], dy[:rows*d], xhat[:rows*d]
	rstd, gamma, prod, sum = rstd[:rows], gamma[:d], prod[:d], sum[:d]
	n := prefix(d)
	for g0 := 0; g0 < rows; g0 += lnRowGroup {
		g1 := min(g0+lnRowGroup, rows)
		var ls [lnRowGroup]rowLanes
		// The first sweep, over the lanes' prefix of the columns, a chunk
		// of columns at a time across the group's rows so that the
		// chunk's float64 column sums stay in L1, and two rows at a time.
		// Each row's lanes and each column's sums still take their terms
		// in the order of the definition (columns in order within a row,
		// the chunks starting at multiples of the lanes; rows in order
		// within a column), so neither changes a bit.
		for c := 0; c < n; c += lnColumnChunk {
			e := min(c+lnColumnChunk, n)
			r := g0
			if useAsm {
				for ; r+1 < g1; r += 2 {
					lnBackwardColumns2(e-c, d, &dy[r*d+c], &gamma[c], &xhat[r*d+c], (*[2]rowLanes)(ls[r-g0:]), &prod[c], &sum[c])
				}
			}
			for ; r < g1; r++ {
				dyr, hr, l := dy[r*d+c:r*d+e], xhat[r*d+c:r*d+e], &ls[r-g0]
				if useAsm {
					lnBackwardColumns(e-c, &dyr[0], &gamma[c], &hr[0], &l[0], &l[1], &prod[c], &sum[c])
				} else {
					lnBackwardColumnsGo(dyr, gamma[c:e], hr, &l[0], &l[1], prod[c:e], sum[c:e])
				}
			}
		}
		for r := g0; r < g1; r++ {
			dyr, hr, dxr := dy[r*d:(r+1)*d], xhat[r*d:(r+1)*d], dx[r*d:(r+1)*d]
			sumG, sumGX := combineLanes(&ls[r-g0][0]), combineLanes(&ls[r-g0][1])
			for j := n; j < d; j++ {
				g := float64(dyr[j]) * gamma[j]
				sumG += g
				sumGX += float64(g * float64(hr[j]))
				prod[j] += float64(dyr[j]) * float64(hr[j])
				sum[j] += float64(dyr[j])
			}
			meanG, meanGX, rs := sumG/float64(d), sumGX/float64(d), float64(rstd[r])
			m := 0
			if useAsm && n > 0 {
				m = n
				lnBackwardApply(n, &dxr[0], &dyr[0], &hr[0], &gamma[0], meanG, meanGX, rs)
			}
			lnBackwardApplyGo(dxr[m:], dyr[m:], hr[m:], gamma[m:], meanG, meanGX, rs)
		}
	}
}

// rowLanes are one row's lanes of the sums of g and g*xhat.
type rowLanes [2]lanes

const (
	// lnRowGroup is how many rows the first sweep takes before the
	// second: at the model's widths their dy and xhat (2 rows of 2048
	// floats, 16 KiB, each) stay in L2 for the second.
	// It is even, for the two-row loop.
	lnRowGroup = 8
	// lnColumnChunk is how many columns the first sweep takes at once
	// across a group's rows, a multiple of reduceLanes: their float64
	// column sums are 8 KiB.
	lnColumnChunk = 512
)

// lnBackwardColumnsGo adds one row's terms of sumG and sumGX to its lanes
// (as the lane loops of reduce.go) and its terms of the column sums to
// prod and sum: the definition lnBackwardColumns copies.
func lnBackwardColumnsGo(dy []float32, gamma []float64, xhat []float32, l1, l2 *lanes, prod, sum []float64) {
	for j, v := range dy {
		g := float64(v) * gamma[j]
		l1[j%reduceLanes] += g
		l2[j%reduceLanes] += float64(g * float64(xhat[j]))
		prod[j] += float64(v) * float64(xhat[j])
		sum[j] += float64(v)
	}
}

// lnBackwardApplyGo sets one row's dx from its means of g and g*xhat: the
// definition lnBackwardApply copies.
func lnBackwardApplyGo(dx, dy, xhat []float32, gamma []float64, meanG, meanGX, rstd float64) {
	for j, v := range dy {
		g := float64(v) * gamma[j]
		dx[j] = float32(rstd * ((g - meanG) - float64(float64(xhat[j])*meanGX)))
	}
}
