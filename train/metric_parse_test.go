package train

import (
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/retrieval"
)

// A best metric names a set, a direction and a K exactly: the set is what
// comes before the last "/" (a set's name may hold one), and nothing may
// follow K.
func TestParseMetric(t *testing.T) {
	evals := []*retrieval.Set{{Name: "coco"}, {Name: "a/b"}}
	for _, c := range []struct {
		name, set, dir string
		k              int
	}{
		{"coco/t2i@5", "coco", "t2i", 5},
		{"coco/i2t@10", "coco", "i2t", 10},
		{"a/b/t2i@1", "a/b", "t2i", 1},
	} {
		m, err := ParseMetric(c.name, evals)
		if err != nil || m.set != c.set || m.dir != c.dir || m.k != c.k || m.Name != c.name {
			t.Errorf("ParseMetric(%q) = %+v, %v; want set %q, %s@%d", c.name, m, err, c.set, c.dir, c.k)
		}
	}
	for _, name := range []string{"coco/t2i@5x", "coco/t2i@05", "coco/t2i@3", "coco/t2i", "coco/x2y@5", "coco/t2i@5/", "t2i@5", "/t2i@5", "coco/@5"} {
		if m, err := ParseMetric(name, evals); err == nil || !strings.Contains(err.Error(), "want loss, r5, or SET/t2i@K") && !strings.Contains(err.Error(), "no evaluation set named") {
			t.Errorf("ParseMetric(%q) = %+v, %v; want it refused", name, m, err)
		}
	}
	if _, err := ParseMetric("b/t2i@5", evals); err == nil || !strings.Contains(err.Error(), `no evaluation set named "b" (the run's sets: "coco"`) {
		t.Errorf("a set that is not there: %v, want the sets there named", err)
	}
	if _, err := ParseMetric("b/t2i@5", nil); err == nil || !strings.Contains(err.Error(), "the run has no evaluation sets") {
		t.Errorf("a set without sets: %v", err)
	}
}
