package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dinoclip/dinoclip/train"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
)

// runOptions reads the options a run was started with from its run.json.
func runOptions(t *testing.T, run string) train.Options {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(run, train.RunFile))
	if err != nil {
		t.Fatal(err)
	}
	var st train.State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	return st.Options
}

func writeFile(t *testing.T, path, text string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConfigPrecedence checks flags > DINOCLIP_* variables > --config file >
// defaults, one layer at a time, on the options a training run records.
func TestConfigPrecedence(t *testing.T) {
	data := makeData(t)
	eval := makeEvalSet(t, "tiny-eval")
	dir := t.TempDir()
	// YAML: the data, the model and the batch come from the file; keys of
	// other commands (model, in) are ignored; lr is an integer in YAML and
	// still a float flag.
	yamlConfig := writeFile(t, filepath.Join(dir, "train.yaml"), `
data: `+data+`
eval:
  - `+eval+`
epochs: 3
batch: 16
lr: 1
hidden-dim: 8
blocks: 1
keep: 5
model: ignored/by/train
`)
	jsonConfig := writeFile(t, filepath.Join(dir, "train.json"),
		`{"data": "`+data+`", "eval": "`+eval+`", "epochs": 3, "batch": 16, "lr": 0.5, "hidden-dim": 8, "blocks": 1, "seed": 7}`)

	n := 0
	start := func(args ...string) train.Options {
		t.Helper()
		n++
		run := filepath.Join(dir, "run", string(rune('a'+n)))
		mustRun(t, append([]string{"train", "--out", run}, args...)...)
		return runOptions(t, run)
	}

	// The file alone, over the defaults.
	o := start("--config", yamlConfig)
	if o.Epochs != 3 || o.MaxLR != 1 || o.Keep != 5 || o.Batch != 16 || o.LogEvery != train.DefaultOptions().LogEvery {
		t.Errorf("config file: %+v", o)
	}
	o = start("--config", jsonConfig)
	if o.Epochs != 3 || o.MaxLR != 0.5 || o.Seed != 7 {
		t.Errorf("JSON config file: %+v", o)
	}
	// The environment over the file.
	t.Setenv("DINOCLIP_EPOCHS", "2")
	t.Setenv("DINOCLIP_LR", "0.25")
	o = start("--config", yamlConfig)
	if o.Epochs != 2 || o.MaxLR != 0.25 || o.Keep != 5 {
		t.Errorf("environment over config file: %+v", o)
	}
	// Flags over the environment.
	o = start("--config", yamlConfig, "--epochs", "4", "--keep", "1")
	if o.Epochs != 4 || o.MaxLR != 0.25 || o.Keep != 1 {
		t.Errorf("flags over environment and config file: %+v", o)
	}
	// The config file itself, and required flags, from the environment.
	t.Setenv("DINOCLIP_CONFIG", jsonConfig)
	o = start()
	if o.Epochs != 2 || o.Seed != 7 {
		t.Errorf("DINOCLIP_CONFIG: %+v", o)
	}
	os.Unsetenv("DINOCLIP_CONFIG")
	t.Setenv("DINOCLIP_DATA", data)
	o = start("--batch", "16", "--hidden-dim", "8", "--blocks", "1")
	if o.Epochs != 2 || o.MaxLR != 0.25 || o.Keep != train.DefaultOptions().Keep {
		t.Errorf("environment without config file: %+v", o)
	}
}

func TestConfigDefaults(t *testing.T) {
	data := makeData(t)
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, "train", "--data", data, "--out", run, "--batch", "32", "--hidden-dim", "8", "--blocks", "1")
	o := runOptions(t, run)
	d := train.DefaultOptions()
	d.Batch = 32
	if o != d {
		t.Errorf("options with no flags: %+v, want the defaults %+v", o, d)
	}
}

func TestConfigErrors(t *testing.T) {
	data := makeData(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	cases := []struct {
		name, text string
		wants      []string
	}{
		{"unknown key", "epoch: 3\n", []string{"unknown key \"epoch\"", "epochs"}},
		// synth's and average's flags: those commands read no --config, so
		// the key is a mistake here, not another command's setting.
		{"a key of a command without --config", "rows: 50\n", []string{"unknown key \"rows\""}},
		{"another such key", "weights: 1,2\n", []string{"unknown key \"weights\""}},
		{"wrong type", "epochs: many\n", []string{"key epochs", "integer", `"many"`}},
		{"fraction for an integer", "batch: 1.5\n", []string{"key batch", "integer"}},
		{"negative seed", "seed: -1\n", []string{"key seed", "from 0 to"}},
		{"seed past uint64", "seed: 1e20\n", []string{"key seed", "from 0 to 18446744073709551615"}},
		{"seed of 2^64", "seed: 1.8446744073709552e19\n", []string{"key seed", "from 0 to"}},
		{"integer of 2^63", "checkpoint-every: 9.223372036854775808e18\n", []string{"key checkpoint-every", "9223372036854775808 is too large"}},
		{"fraction for a count", "epochs: 2.5\n", []string{"key epochs", "want an integer, got 2.5"}},
		{"fraction whose float64 is whole", "seed: 10000000000000000001e-1\n", []string{"key seed", "want an integer, got 10000000000000000001e-1"}},
		{"fraction for an int whose float64 is whole", "epochs: 3.0000000000000001\n", []string{"key epochs", "want an integer, got 3.0000000000000001"}},
		{"octal seed", "seed: 010\n", []string{"key seed", "decimal digits"}},
		{"hexadecimal batch", "batch: 0x10\n", []string{"key batch", "decimal digits"}},
		{"seed read as a float", "seed: 08\n", []string{"key seed", "decimal digits"}},
		{"octal seed tagged an integer", "seed: !!int 010\n", []string{"key seed", "decimal digits"}},
		{"help", "help: true\n", []string{"key help", "no setting"}},
		{"version", "v: true\n", []string{"key v: -v is no setting"}},
		{"a section per command", "train:\n  epochs: 3\n", []string{"key train: a mapping, which no flag takes (a section? the file is one mapping of flag names to values, without sections"}},
		// (Named as a flag of this command, it was a value of the wrong
		// kind; as another command's, dropped.)
		{"a section named as a flag", "eval:\n  batch: 64\n", []string{"key eval: a mapping, which no flag takes (a section?"}},
		{"a section named as another command's flag", "index:\n  k: 3\n", []string{"key index: a mapping, which no flag takes (a section?"}},
		{"a list", "- epochs\n- 3\n", []string{"line 1: the file is a list, not a mapping (lines of NAME: VALUE)"}},
		{"a TOML section", "[train]\nepochs = 3\n", []string{"line 1: the file is a list, not a mapping"}},
		{"a number", "3\n", []string{"the file is a number, not a mapping"}},
		{"quoted octal seed", "seed: \"010\"\n", []string{"key seed", "decimal digits"}},
		{"quoted octal learning rate", "lr: \"010\"\n", []string{"key lr", "decimal digits"}},
		{"octal learning rate", "lr: 010\n", []string{"key lr", "decimal digits"}},
		{"hexadecimal learning rate", "lr: 0x10\n", []string{"key lr", "decimal digits"}},
		{"learning rate with an underscore", "lr: 1_0.5\n", []string{"key lr", "decimal digits"}},
		{"underflowing moving average", "ema: 1e-400\n", []string{"key ema", "1e-400", "reads as 0"}},
		{"overflowing learning rate", "lr: 1e999\n", []string{"key lr: 1e999: beyond the range of a float64"}},
		{"overflowing negative learning rate", "lr: -1e999\n", []string{"key lr: -1e999: beyond the range of a float64"}},
		{"quoted underflowing learning rate", "lr: \"0.1e-399\"\n", []string{"key lr", "0.1e-399", "reads as 0"}},
		{"bad second document", "epochs: 3\n---\n: : :\n", []string{"not a YAML or JSON mapping"}},
		// An alias of another command's key (skipped) is checked where
		// it is used, and a string flag takes it as written.
		{"alias of an octal", "k: &a 010\nseed: *a\n", []string{"key seed", "decimal digits"}},
		{"alias for a string", "k: &a 0101\ndevice: *a\n", []string{"0101"}},
		{"number in a list of strings", "eval: [0101]\n", []string{"0101"}},
		{"two documents", "epochs: 3\n---\nepochs: 5\n", []string{"more than one YAML document"}},
		{"hexadecimal tagged an integer", "batch: !!int 0x10\n", []string{"key batch", "decimal digits"}},
		{"list for a string", "data: [a, b]\n", []string{"key data", "string"}},
		{"not a mapping", "- a\n- b\n", []string{"not a YAML or JSON mapping"}},
		{"bad JSON", `{"epochs": 3`, []string{"not a YAML or JSON mapping"}},
		{"a key twice", `{"batch": 64, "batch": 32}`, []string{"values: line 1: mapping key \"batch\" already defined at line 1"}}, // (one line)
		{"nested config", "config: other.yaml\n", []string{"cannot name another"}},
		{"bad value", "epochs: -2\n", []string{"--epochs -2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeFile(t, filepath.Join(dir, strings.ReplaceAll(c.name, " ", "-")+".yaml"), c.text)
			wants := append([]string{}, c.wants...)
			if c.name != "bad value" && c.name != "alias for a string" && c.name != "number in a list of strings" {
				wants = append(wants, path)
			}
			wantError(t, []string{"train", "--data", data, "--out", run, "--config", path}, wants...)
		})
	}
	// The largest seed, which YAML reads as a uint64, is one.
	maxSeed := writeFile(t, filepath.Join(dir, "max-seed.yaml"), "seed: 18446744073709551615\nepochs: 1\nbatch: 16\nhidden-dim: 8\nblocks: 1\n")
	mustRun(t, "train", "--data", data, "--out", run, "--config", maxSeed)
	if o := runOptions(t, run); o.Seed != math.MaxUint64 {
		t.Errorf("seed: 18446744073709551615 in a config file: the run's seed is %d", o.Seed)
	}
	// A seed written as a float is read from its digits: 2^53+1 is not
	// the 2^53 its float64 is; a quoted number is read in decimal.
	for text, want := range map[string]uint64{"seed: 9007199254740993.0\n": 1<<53 + 1, "seed: 1.8446744073709551615e19\n": math.MaxUint64, "seed: \"10\"\n": 10} {
		cfg := writeFile(t, filepath.Join(dir, "seed.yaml"), text+"epochs: 1\nbatch: 16\nhidden-dim: 8\nblocks: 1\n")
		seedRun := filepath.Join(t.TempDir(), "run")
		mustRun(t, "train", "--data", data, "--out", seedRun, "--config", cfg)
		if o := runOptions(t, seedRun); o.Seed != want {
			t.Errorf("%q in a config file: the run's seed is %d, want %d", text, o.Seed, want)
		}
	}
	missing := filepath.Join(dir, "missing.yaml")
	wantError(t, []string{"train", "--data", data, "--out", run, "--config", missing}, missing)
	// Not read without end: a device, or a file far larger than any
	// configuration.
	wantError(t, []string{"train", "--data", data, "--out", run, "--config", "/dev/zero"}, "/dev/zero", fmt.Sprintf("over %d bytes", maxConfigBytes))
	huge := writeFile(t, filepath.Join(dir, "huge.yaml"), "epochs: 3\n#"+strings.Repeat("x", maxConfigBytes)+"\n")
	wantError(t, []string{"train", "--data", data, "--out", run, "--config", huge}, huge, fmt.Sprintf("over %d bytes", maxConfigBytes))
}

// Number flags are decimal: a value Go's flag package would read in
// another base (010 as 8, 0x10 as 16) is refused on the command line, and
// so is one the environment would read in decimal though it is not written
// so (DINOCLIP_EPOCHS=010 is not 10); a plain decimal one is read.
func TestIntegerFlagsDecimal(t *testing.T) {
	for _, arg := range [][]string{{"--k", "010"}, {"--k=0x10"}, {"-k", "1_0"}, {"--k", "+07"}} {
		wantError(t, append([]string{"search", "--index", "ix", "--queries", "q.npy", "--out", "hits"}, arg...), "--k", "decimal digits")
	}
	data := makeData(t)
	t.Setenv("DINOCLIP_EPOCHS", "10")
	t.Setenv("DINOCLIP_LR", "00.5e-2")
	run := filepath.Join(t.TempDir(), "run")
	mustRun(t, "train", "--data", data, "--out", run, "--batch", "16", "--seed", "0", "--blocks=1", "--hidden-dim", "8")
	if o := runOptions(t, run); o.Epochs != 10 || o.MaxLR != 0.005 {
		t.Errorf("DINOCLIP_EPOCHS=10, DINOCLIP_LR=00.5e-2: %d epochs, lr %v; want 10 and 0.005", o.Epochs, o.MaxLR)
	}
}

// Every number flag of every command refuses a value not written in
// decimal, from its environment variable (DINOCLIP_SYNTH_* for synth) as
// on the command line, integer and float flags alike; the check comes
// before the command looks at its other flags.
func TestNumberFlagsDecimalEverywhere(t *testing.T) {
	checked := 0
	for _, c := range newApp().Commands {
		for _, f := range c.Flags {
			number, float := numberFlag(f)
			if !number {
				continue
			}
			// The forms the command line's parser reads, and others:
			// the environment's (Base 10 for integers) reads 010 as 10,
			// and fails on the rest with strconv's words.
			bad := []string{"010", "0x10", "1_0"}
			if float {
				bad = []string{"010", "0x1p4", "-010"}
			}
			name := f.Names()[0]
			for _, v := range bad {
				wantError(t, []string{c.Name, "--" + name, v}, "--"+name+" "+v, "decimal digits")
			}
			// No number at all, said so (it was "parse error", or "write
			// the number in decimal digits"); a fraction for a count.
			wantError(t, []string{c.Name, "--" + name, "abc"}, "--"+name+" abc: not a number")
			if !float {
				for _, v := range []string{"1.5", "Inf", "nan"} {
					wantError(t, []string{c.Name, "--" + name, v}, "--"+name+" "+v+": not a whole number")
				}
			}
			if float {
				// A number that reads as 0 (--ema 1e-400 meant no moving average).
				wantError(t, []string{c.Name, "--" + name, "1e-400"}, "--"+name+" 1e-400", "reads as 0")
				// And one beyond float64's range, said so, not "value out of range".
				wantError(t, []string{c.Name, "--" + name, "1e400"}, "--"+name+" 1e400", "beyond the range of a float64")
				if ev, ok := f.(interface{ GetEnvVars() []string }); ok && len(ev.GetEnvVars()) > 0 {
					env := ev.GetEnvVars()[0]
					t.Run(c.Name+"/"+env+"=1e-400", func(t *testing.T) {
						t.Setenv(env, "1e-400")
						wantError(t, []string{c.Name}, env+"=1e-400", "reads as 0")
						t.Setenv(env, "1e400")
						wantError(t, []string{c.Name}, env+"=1e400", "beyond the range of a float64")
					})
				}
			}
			ev, ok := f.(interface{ GetEnvVars() []string })
			if !ok || len(ev.GetEnvVars()) == 0 {
				continue
			}
			for _, v := range bad {
				env := ev.GetEnvVars()[0]
				t.Run(c.Name+"/"+env+"="+v, func(t *testing.T) {
					t.Setenv(env, v)
					wantError(t, []string{c.Name}, env+"="+v, "decimal digits")
					// Also when the command line overrides it.
					wantError(t, []string{c.Name, "--" + name, "1"}, env+"="+v, "decimal digits")
				})
				checked++
			}
			t.Run(c.Name+"/"+ev.GetEnvVars()[0]+"=abc", func(t *testing.T) {
				t.Setenv(ev.GetEnvVars()[0], "abc")
				wantError(t, []string{c.Name}, ev.GetEnvVars()[0]+"=abc: not a number")
			})
			t.Run(c.Name+"/"+ev.GetEnvVars()[0]+"= 1", func(t *testing.T) {
				t.Setenv(ev.GetEnvVars()[0], " 1")
				wantError(t, []string{c.Name}, ev.GetEnvVars()[0]+`=" 1": spaces around the number`)
			})
			if !float {
				// Beyond int64 and uint64 both: said in the variable's
				// terms, not in strconv's.
				env, huge := ev.GetEnvVars()[0], "99999999999999999999"
				t.Run(c.Name+"/"+env+"="+huge, func(t *testing.T) {
					t.Setenv(env, huge)
					wantError(t, []string{c.Name}, env+"="+huge, "beyond the numbers this flag can hold")
				})
			}
		}
	}
	// train's, index's, project's, search's and synth's at least.
	if checked < 20 {
		t.Fatalf("only %d environment variables checked", checked)
	}
	// A switch's variable that is neither true nor false, said so (it was
	// strconv's "invalid syntax").
	switches := 0
	for _, c := range newApp().Commands {
		for _, f := range c.Flags {
			ev, ok := f.(interface{ GetEnvVars() []string })
			_, isAltsrc := f.(*altsrc.BoolFlag)
			_, isCLI := f.(*cli.BoolFlag)
			if !ok || !isAltsrc && !isCLI || len(ev.GetEnvVars()) == 0 {
				continue
			}
			env := ev.GetEnvVars()[0]
			t.Run(c.Name+"/"+env+"=yes", func(t *testing.T) {
				t.Setenv(env, "yes")
				wantError(t, []string{c.Name}, env+"=yes: not true or false")
			})
			switches++
		}
	}
	if switches < 3 {
		t.Fatalf("only %d switches' variables checked", switches)
	}
	// Help is shown whatever the variables say.
	t.Run("help", func(t *testing.T) {
		t.Setenv("DINOCLIP_BATCH", "0x10")
		t.Setenv("DINOCLIP_LR", "1e-400")
		if out := mustRun(t, "train", "--help"); !strings.Contains(out, "dinoclip train - ") {
			t.Errorf("train --help with DINOCLIP_BATCH=0x10 and DINOCLIP_LR=1e-400:\n%s", out)
		}
	})
	t.Setenv("DINOCLIP_SYNTH_SEED", "-1") // (a seed is unsigned)
	wantError(t, []string{"synth", "--out", t.TempDir()}, "DINOCLIP_SYNTH_SEED=-1", "a sign, where this flag takes digits alone (0 or more)")
	t.Setenv("DINOCLIP_SYNTH_SEED", "+1")
	wantError(t, []string{"synth", "--out", t.TempDir()}, "DINOCLIP_SYNTH_SEED=+1", "a sign, where this flag takes digits alone")
	t.Setenv("DINOCLIP_SYNTH_SEED", "")
	t.Setenv("DINOCLIP_SYNTH_ROWS", "010")
	wantError(t, []string{"synth", "--out", t.TempDir()}, "DINOCLIP_SYNTH_ROWS=010", "decimal digits")
	t.Setenv("DINOCLIP_SYNTH_ROWS", "")
	t.Setenv("DINOCLIP_BATCH", "010")
	wantError(t, []string{"train", "--data", "d", "--out", "o"}, "DINOCLIP_BATCH=010", "decimal digits")
}

// A string flag takes an unquoted number as written: out: 0101 is the
// directory 0101, not the 65 YAML reads.
func TestConfigStringAsWritten(t *testing.T) {
	data := makeData(t)
	dir := t.TempDir()
	t.Chdir(dir)
	for written, want := range map[string]string{"0101": "0101", "!!binary aGVsbG8=": "aGVsbG8="} {
		cfg := writeFile(t, filepath.Join(dir, "c.yaml"), "out: "+written+"\ndata: "+data+"\nbatch: 16\nepochs: 1\nhidden-dim: 8\nblocks: 1\n")
		mustRun(t, "train", "--config", cfg)
		if _, err := os.Stat(filepath.Join(dir, want, "run.json")); err != nil {
			t.Errorf("out: %s did not train into %s: %v", written, want, err)
		}
	}
}

// A DINOCLIP_ variable set but empty sets nothing: the --config file's
// value applies, as it does with the variable unset.
func TestEmptyEnvironmentVariable(t *testing.T) {
	data := makeData(t)
	dir := t.TempDir()
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), "seed: 7\nepochs: 1\nbatch: 16\nhidden-dim: 8\nblocks: 1\n")
	t.Setenv("DINOCLIP_SEED", "")
	run := filepath.Join(dir, "run")
	mustRun(t, "train", "--data", data, "--out", run, "--config", cfg)
	if o := runOptions(t, run); o.Seed != 7 {
		t.Errorf("DINOCLIP_SEED= with seed: 7 in the config file: the run's seed is %d", o.Seed)
	}
}

// TestErrorNamesTheFlagsSource checks that a command's error about a
// flag's value says where the value came from when the command line does
// not hold it: the flag's variable, or the configuration file.
func TestErrorNamesTheFlagsSource(t *testing.T) {
	data := makeData(t)
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), "epochs: 0\n")
	base := []string{"train", "--data", data, "--out", run}
	wantError(t, append(slices.Clone(base), "--config", cfg), "--epochs 0: must be at least 1 (--epochs is set by its key in the configuration file "+cfg+")")
	// A file named by the variable is said to be: the user may have set it long ago.
	t.Setenv("DINOCLIP_CONFIG", cfg)
	wantError(t, base, "--epochs 0: must be at least 1 (--epochs is set by its key in the configuration file "+cfg+", which DINOCLIP_CONFIG names)")
	empty := writeFile(t, filepath.Join(dir, "e.yaml"), "init: \"\"\n")
	t.Setenv("DINOCLIP_CONFIG", empty)
	wantError(t, base, `train: init: "" in `+empty+` (named by DINOCLIP_CONFIG) is empty: give --init a value`)
	// --config on the command line is named there: no note.
	_, _, err := runCLI(t, append(slices.Clone(base), "--config", cfg)...)
	if err == nil || strings.Contains(err.Error(), "DINOCLIP_CONFIG") {
		t.Errorf("--config over DINOCLIP_CONFIG: %v", err)
	}
	t.Setenv("DINOCLIP_CONFIG", "")
	t.Setenv("DINOCLIP_BATCH", "-5")
	wantError(t, base, "--batch -5: must be at least 1 (--batch is set by DINOCLIP_BATCH in the environment)")
	// The command line's own is said as it is.
	_, _, err = runCLI(t, append(slices.Clone(base), "--batch", "0")...)
	if err == nil || err.Error() != "--batch 0: must be at least 1" {
		t.Errorf("--batch 0 over DINOCLIP_BATCH=-5: %v", err)
	}
	// A flag quoted with its value after another is said too; one named
	// in advice only is not.
	init, _, _ := trainRun(t)
	t.Setenv("DINOCLIP_BATCH", "")
	t.Setenv("DINOCLIP_HIDDEN_DIM", "128")
	_, _, err = runCLI(t, append(slices.Clone(base), "--init", init)...)
	if err == nil || !strings.HasPrefix(err.Error(), "--init: --hidden-dim 128, but the model") ||
		!strings.HasSuffix(err.Error(), "so drop --hidden-dim (--hidden-dim is set by DINOCLIP_HIDDEN_DIM in the environment)") {
		t.Errorf("DINOCLIP_HIDDEN_DIM=128 with --init: %v", err)
	}
}

// TestEmptyValues checks that a flag given empty is said to be, not
// missing (its variable set is no help), and that an empty entry of a
// repeatable flag is refused before it is taken for a path.
func TestEmptyValues(t *testing.T) {
	dir := t.TempDir()
	features := filepath.Join(dir, "f.npy")
	writeF32(t, features, []int{1, 2}, []float32{1, 2})
	t.Setenv("DINOCLIP_PROJECT_OUT", filepath.Join(dir, "p.npy"))
	wantError(t, []string{"project", "--model", dir, "--in", features, "--out", ""}, `project: --out "" is empty: give --out a value`)
	cfg := writeFile(t, filepath.Join(dir, "c.yaml"), "eval: [a, \"\"]\n")
	wantError(t, []string{"eval", "--model", dir, "--config", cfg}, `eval: an empty --eval (eval: "" in `+cfg+")")
	none := writeFile(t, filepath.Join(dir, "none.yaml"), "eval: []\n")
	wantError(t, []string{"eval", "--model", dir, "--config", none}, "eval: eval: [] in "+none+" is empty: give --eval a value")
	// A flag of a default, or of none, is not taken for left out.
	wantError(t, []string{"eval", "--model", dir, "--eval", dir, "--precision", ""}, `eval: --precision "" is empty: give --precision a value`)
	wantError(t, []string{"train", "--data", dir, "--out", filepath.Join(dir, "run"), "--init="}, `train: --init "" is empty`)
	wantError(t, []string{"bench", "--shape", ""}, `bench: an empty --shape (--shape "")`)
	wantError(t, []string{"index", "--model", dir, "--features", features, "--features", "", "--out", filepath.Join(dir, "ix")}, `index: an empty --features (--features "")`)
}

// A flag the command line gets wrong is one line naming it as the help
// writes it (--name, a one-letter one too: --k) and pointing at the help, for the
// app's own flags too (not the whole help).
func TestUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"--verison"}, []string{"flag provided but not defined: --verison; see 'dinoclip --help'"}},
		{[]string{"train", "--nope"}, []string{"train: flag provided but not defined: --nope; see 'dinoclip train --help'"}},
		{[]string{"train", "--epochs", "x"}, []string{"train: --epochs x: not a number; see 'dinoclip train --help'"}},
		{[]string{"search", "-k", "x"}, []string{"search: --k x: not a number"}},
		{[]string{"bench", "--min-time", "5"}, []string{"bench: --min-time 5: not a duration (write a number with its unit, such as 3s"}},
		{[]string{"search", "--k"}, []string{"search: flag needs an argument: --k; see 'dinoclip search --help'"}},
		// A number a flag cannot hold is said as for its variable, not in
		// Go's flag package's "value out of range" or "parse error".
		{[]string{"train", "--epochs", "99999999999999999999"}, []string{"train: --epochs 99999999999999999999: beyond the numbers this flag can hold (-9223372036854775808 to 9223372036854775807); see 'dinoclip train --help'"}},
		{[]string{"search", "--k", "-99999999999999999999"}, []string{"--k -99999999999999999999: beyond the numbers this flag can hold"}},
		{[]string{"synth", "--seed", "18446744073709551616"}, []string{"--seed 18446744073709551616: beyond the numbers this flag can hold (0 to 18446744073709551615)"}},
		{[]string{"synth", "--seed", "-1"}, []string{"synth: --seed -1: a sign, where this flag takes digits alone (0 or more)"}},
		{[]string{"synth", "--seed", "+1"}, []string{"--seed +1: a sign, where this flag takes digits alone"}},
		{[]string{"train", "--lr", "1e999"}, []string{"train: --lr 1e999: beyond the range of a float64"}},
		{[]string{"train", "--lr", "-1e999"}, []string{"--lr -1e999: beyond the range of a float64"}},
		// A float for an integer flag is no whole number, two signs no
		// number.
		{[]string{"train", "--epochs", "1.5"}, []string{"--epochs 1.5: not a whole number"}},
		{[]string{"train", "--epochs", "-+1"}, []string{"--epochs -+1: not a number"}},
	} {
		stdout, _, err := runCLI(t, c.args...)
		if err == nil {
			t.Errorf("dinoclip %v: no error", c.args)
			continue
		}
		for _, w := range c.wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("dinoclip %v: %q lacks %q", c.args, err, w)
			}
		}
		if stdout != "" {
			t.Errorf("dinoclip %v printed the help:\n%s", c.args, stdout)
		}
	}
}

// Every command's --out reads a variable of its own: a DINOCLIP_TRAIN_OUT
// exported for training is where train writes, and no other command takes
// it for its output.
func TestOutVariablePerCommand(t *testing.T) {
	data := makeData(t)
	run := filepath.Join(t.TempDir(), "run")
	t.Setenv("DINOCLIP_TRAIN_OUT", run)
	mustRun(t, "train", "--data", data, "--batch", "16", "--hidden-dim", "8", "--blocks", "1", "--epochs", "1")
	if _, err := os.Stat(filepath.Join(run, train.RunFile)); err != nil {
		t.Fatalf("train with DINOCLIP_TRAIN_OUT: %v", err)
	}
	in := filepath.Join(data, "shard-00000.dino.npy")
	for _, args := range [][]string{
		{"project", "--model", run, "--in", in},
		{"average", run, run},
		{"index", "--model", run, "--features", in},
		{"search", "--index", in, "--queries", in},
	} {
		env := "DINOCLIP_" + strings.ToUpper(args[0]) + "_OUT"
		wantError(t, args, "missing --out (or "+env)
	}
}
