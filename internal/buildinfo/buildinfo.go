package buildinfo

import (
	"fmt"
	"runtime/debug"
	"strings"
)

// Version is dinoclip's release version (the Python package's, in
// python/pyproject.toml, is the same).
const Version = "0.1.0"

// Commit is the git commit the binary was built from, with "-dirty" appended
// when the working tree had uncommitted changes. make build sets it:
//
//	go build -ldflags "-X github.com/dinoclip/dinoclip/internal/buildinfo.Commit=$(git rev-parse HEAD)"
//
// A plain go build or go run leaves it empty; Revision then reads the VCS
// stamp that the go command records.
var Commit string

// Revision is the commit the binary was built from and whether the working
// tree had uncommitted changes (nil: unknown). source says where they came
// from: "ldflags", "buildinfo" (the go command's vcs.revision stamp), or ""
// when neither knows (go test binaries, builds outside a git checkout, or
// -buildvcs=false).
func Revision() (commit string, dirty *bool, source string) {
	if Commit != "" {
		c, d := strings.CutSuffix(Commit, "-dirty")
		return c, &d, "ldflags"
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "", nil, ""
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			commit = s.Value
		case "vcs.modified":
			d := s.Value == "true"
			dirty = &d
		}
	}
	if commit == "" {
		return "", nil, ""
	}
	return commit, dirty, "buildinfo"
}

// String is the one line dinoclip --version prints: the version and the
// commit, "+ uncommitted changes" when the tree was dirty.
func String() string {
	commit, dirty, _ := Revision()
	switch {
	case commit == "":
		return Version + " (commit unknown: built without -ldflags or a VCS stamp)"
	case dirty != nil && *dirty:
		return fmt.Sprintf("%s (commit %s + uncommitted changes)", Version, commit)
	default:
		return fmt.Sprintf("%s (commit %s)", Version, commit)
	}
}
