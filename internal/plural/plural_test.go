package plural

import (
	"math"
	"testing"
)

func TestCount(t *testing.T) {
	for _, c := range []struct {
		got, want string
	}{
		{Count(0, "row", "rows"), "0 rows"},
		{Count(1, "row", "rows"), "1 row"},
		{Count(2, "query", "queries"), "2 queries"},
		{Count(-1, "row", "rows"), "-1 rows"},
		{Count(int64(1), "image", "images"), "1 image"},
		{Count(int64(math.MaxInt64), "row", "rows"), "9223372036854775807 rows"},
	} {
		if c.got != c.want {
			t.Errorf("got %q, want %q", c.got, c.want)
		}
	}
}
