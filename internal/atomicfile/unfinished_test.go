package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// unfinishedChild is what the child process of TestRemoveUnfinished does
// (DINOCLIP_UNFINISHED_DIR names its directory): it starts a Write that
// never ends, and a checkpoint-like directory (MkdirTempRemovedOnExit),
// and another one forgotten and renamed into place since, and a link to
// each (SymlinkRemovedOnExit), the second's forgotten and renamed into
// place too, and another to the second not forgotten; then it ends at once, as a second Ctrl-C ends dinoclip,
// after RemoveUnfinished.
func unfinishedChild(dir string) {
	started := make(chan struct{})
	go Write(filepath.Join(dir, "out.npy"), func(w io.Writer) error {
		w.Write([]byte("half"))
		close(started)
		select {}
	})
	<-started
	for _, name := range []string{"saving", "saved"} {
		p, release, forget, err := MkdirTempRemovedOnExit(dir, name)
		if err != nil {
			panic(err)
		}
		os.WriteFile(filepath.Join(p, "model.safetensors"), []byte("x"), 0o644)
		forgetLink, err := SymlinkRemovedOnExit(name, filepath.Join(dir, ".link-"+name))
		if err != nil {
			panic(err)
		}
		if name == "saved" {
			forget()
			os.Rename(p, filepath.Join(dir, name))
			forgetLink()
			os.Rename(filepath.Join(dir, ".link-"+name), filepath.Join(dir, "link-"+name))
			// A link to it not forgotten yet: the exit comes between
			// the work's rename and the link's.
			if _, err := SymlinkRemovedOnExit(name, filepath.Join(dir, "pending-"+name)); err != nil {
				panic(err)
			}
		}
		release()
	}
	// A record of work under way, and a directory made for a temporary:
	// the first of each forgotten (the work done), the second not.
	for _, name := range []string{"kept", "gone"} {
		forget, err := WriteBytesRemovedOnExit(filepath.Join(dir, "marker-"+name), []byte("working"))
		if err != nil {
			panic(err)
		}
		made := filepath.Join(dir, "made-"+name)
		os.Mkdir(made, 0o755)
		forgetUndo := UndoOnExit(func() { os.Remove(made) })
		if name == "kept" {
			forget()
			forgetUndo()
		}
	}
	RemoveUnfinished()
	os.Exit(3)
}

func TestMain(m *testing.M) {
	if dir := os.Getenv("DINOCLIP_UNFINISHED_DIR"); dir != "" {
		unfinishedChild(dir)
	}
	os.Exit(m.Run())
}

// A process ending at once removes the temporaries it was writing: the
// file of a Write under way, a MkdirTempRemovedOnExit directory, a
// SymlinkRemovedOnExit link that leads nowhere and a
// WriteBytesRemovedOnExit record, and undoes what UndoOnExit was given;
// not those forgotten (and renamed into place) since, nor a link to work
// done.
func TestRemoveUnfinished(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DINOCLIP_UNFINISHED_DIR="+dir)
	var ee *exec.ExitError
	if out, err := cmd.CombinedOutput(); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("the child: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(dir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"link-saved", "made-kept", "marker-kept", "pending-saved", "saved"}; !slices.Equal(names, want) {
		t.Errorf("left after the child ended: %v, want only %v", names, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.npy")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("out.npy: %v, want it never written", err)
	}
}
