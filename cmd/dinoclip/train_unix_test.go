//go:build unix

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/train"
)

// A training set with a shard linked twice is warned of: its rows would
// be trained on twice each epoch without a word.
func TestTrainWarnsOfShardCopies(t *testing.T) {
	data := makeData(t)
	var warned bytes.Buffer
	check := func(want string) {
		t.Helper()
		d, err := train.OpenDataset(data)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		warned.Reset()
		warnShardCopies(&warned, d)
		if got := warned.String(); want == "" && got != "" || !strings.Contains(got, want) {
			t.Errorf("warning: %q, want %q", got, want)
		}
	}
	check("")
	for _, suffix := range []string{train.FeatureSuffix, train.TargetSuffix} {
		if err := os.Symlink("shard-00000"+suffix, filepath.Join(data, "shard-00002"+suffix)); err != nil {
			t.Fatal(err)
		}
	}
	check("1 shard is a link to the files of an earlier shard (shard-00002 is shard-00000)")
}
