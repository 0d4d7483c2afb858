package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/dinoclip/dinoclip/internal/atomicfile"
	"github.com/urfave/cli/v2"
	"github.com/urfave/cli/v2/altsrc"
	"golang.org/x/term"
	"gopkg.in/yaml.v3"
)

// Every flag of a command that takes --config can be given three more ways,
// and the first that is present wins:
//
//  1. on the command line: --epochs 8
//  2. in the environment: DINOCLIP_EPOCHS=8 (the flag name upper-cased,
//     dashes turned to underscores, after the prefix DINOCLIP_)
//  3. in the configuration file named by --config (or DINOCLIP_CONFIG), a
//     YAML or JSON mapping whose keys are flag names: {"epochs": 8}
//
// and then the flag's default. The file is read with urfave/cli's altsrc:
// the flags are altsrc wrappers, and applyConfig (the command's Before)
// feeds them the file's values, which altsrc applies only to flags not set
// on the command line or in the environment.

// envPrefix starts the name of every environment variable dinoclip reads.
const envPrefix = "DINOCLIP_"

// envVar is the environment variable of flag name.
func envVar(name string) []string {
	return []string{envPrefix + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
}

// commandEnvVar is the environment variable of a command's flag name
// whose meaning is the command's own: DINOCLIP_COMMAND_NAME. Every
// command's --out is one (a run directory for train, a file for project
// and average, an index or search directory), so that a DINOCLIP_TRAIN_OUT
// exported for training is never where another command writes; so is
// every flag of synth, whose --seed and --out are not train's.
func commandEnvVar(command, name string) []string {
	return envVar(command + "-" + name)
}

// outFlag is command's --out, whose variable is its own (commandEnvVar).
func outFlag(command, usage string) *altsrc.StringFlag {
	return altsrc.NewStringFlag(&cli.StringFlag{Name: "out", Usage: usage, EnvVars: commandEnvVar(command, "out")})
}

// flagEnvVar is the environment variable that the current command's flag
// name reads ("" if it reads none).
func flagEnvVar(cCtx *cli.Context, name string) string {
	for _, f := range cCtx.Command.Flags {
		if ev, ok := f.(interface{ GetEnvVars() []string }); ok && slices.Contains(f.Names(), name) && len(ev.GetEnvVars()) > 0 {
			return ev.GetEnvVars()[0]
		}
	}
	return ""
}

func stringFlag(name, usage, value string) *altsrc.StringFlag {
	return altsrc.NewStringFlag(&cli.StringFlag{Name: name, Usage: usage, Value: value, EnvVars: envVar(name)})
}

func stringSliceFlag(name, usage string) *altsrc.StringSliceFlag {
	return altsrc.NewStringSliceFlag(&cli.StringSliceFlag{Name: name, Usage: usage, EnvVars: envVar(name)})
}

// Integer flags are read in decimal from the environment (Base 10: the
// default 0 reads 010 as 8 and 0x10 as 16); decimalNumbers refuses other
// forms on the command line, which the flag package reads with Go's
// prefixes, and in the environment, where Base 10 reads 010 as 10.
func intFlag(name, usage string, value int) *altsrc.IntFlag {
	return altsrc.NewIntFlag(&cli.IntFlag{Name: name, Usage: usage, Value: value, EnvVars: envVar(name), Base: 10})
}

func uint64Flag(name, usage string, value uint64) *altsrc.Uint64Flag {
	return altsrc.NewUint64Flag(&cli.Uint64Flag{Name: name, Usage: usage, Value: value, EnvVars: envVar(name), Base: 10})
}

// numberFlag reports whether f takes a number, and whether a float.
func numberFlag(f cli.Flag) (number, float bool) {
	switch f.(type) {
	case *altsrc.IntFlag, *altsrc.Int64Flag, *altsrc.UintFlag, *altsrc.Uint64Flag,
		*cli.IntFlag, *cli.Int64Flag, *cli.UintFlag, *cli.Uint64Flag:
		return true, false
	case *altsrc.Float64Flag, *cli.Float64Flag:
		return true, true
	}
	return false, false
}

// decimalNumbers refuses a value of a number flag on the command line
// (decimalEnv, in its environment variable) that is not plain decimal:
// Go's flag package would read --k 010 as 8, --k 0x10 as 16 and --k 1_0
// as 10, the environment's Base 10 reads DINOCLIP_K=010 as 10, and a
// float flag reads 010 as 10 where a configuration file's YAML reads 8;
// none is surely what the user means. (The configuration file's values
// are checked by readConfig.)
func decimalNumbers(cCtx *cli.Context) error {
	numbers := map[string]cli.Flag{} // by each of its names
	for _, f := range cCtx.Command.Flags {
		if number, _ := numberFlag(f); number {
			for _, n := range f.Names() {
				numbers[n] = f
			}
		}
	}
	for _, tok := range flagTokens(cCtx) {
		f, number := numbers[tok.name]
		if !number || !tok.hasValue {
			continue
		}
		if why := numberWhy(f, tok.value); why != "" {
			return fmt.Errorf("--%s %s: %s", tok.name, tok.value, why)
		}
	}
	return nil
}

// numberWhy is why v, the value of number flag f, is refused ("" where it
// is not): not written in decimal, a float's that underflows or
// overflows, an integer beyond what f holds, or a sign on an unsigned
// flag's. An environment variable's is judged before urfave/cli reads it,
// which would quote strconv's "value out of range" or "invalid syntax";
// the command line's after urfave/cli has parsed it, which refuses the
// last three itself, in words numberUsageError replaces with these.
func numberWhy(f cli.Flag, v string) string {
	_, float := numberFlag(f)
	switch {
	case !readsAsNumber(v):
		return notNumberWhy
	case !float && !readsAsInteger(v):
		return notWholeWhy // (1.5, 1e3, Inf, NaN, 0x1p4)
	case !isDecimalNumber(v, float):
		return notDecimalWhy
	case float && underflows(v):
		return underflowWhy
	case float && overflows(v):
		return overflowWhy
	case float:
		return ""
	}
	bits, signed := 64, true
	switch f.(type) {
	case *altsrc.IntFlag, *cli.IntFlag:
		bits = strconv.IntSize
	case *altsrc.UintFlag, *cli.UintFlag:
		bits, signed = strconv.IntSize, false
	case *altsrc.Uint64Flag, *cli.Uint64Flag:
		signed = false
	case *altsrc.Int64Flag, *cli.Int64Flag:
	default:
		return ""
	}
	var err error
	limit := ""
	if signed {
		_, err = strconv.ParseInt(v, 10, bits)
		most := int64(math.MaxInt64) >> (64 - bits)
		limit = fmt.Sprintf("%d to %d", -most-1, most)
	} else {
		if strings.HasPrefix(v, "-") || strings.HasPrefix(v, "+") {
			return unsignedSignWhy
		}
		_, err = strconv.ParseUint(v, 10, bits)
		limit = fmt.Sprintf("0 to %d", uint64(math.MaxUint64)>>(64-bits))
	}
	if errors.Is(err, strconv.ErrRange) {
		return "beyond the numbers this flag can hold (" + limit + ")"
	}
	return ""
}

// unsignedSignWhy is why a signed number for an unsigned flag is refused.
const unsignedSignWhy = "a sign, where this flag takes digits alone (0 or more)"

// notDecimalWhy is why a number not written in decimal is refused.
const notDecimalWhy = "write the number in decimal digits (a leading 0, 0x or _ reads it another way)"

// notNumberWhy is why a value that no syntax reads as a number is
// refused; notWholeWhy, why a fraction or an exponent is, for a flag that
// counts.
const (
	notNumberWhy = "not a number"
	notWholeWhy  = "not a whole number in decimal digits, where this flag counts"
)

// readsAsNumber reports whether v is a number in some syntax Go reads
// (decimal, a float, 0x, 0o, 0b, underscores), whatever its range: one
// that is not is refused as no number, before how it is written is.
func readsAsNumber(v string) bool {
	_, err := strconv.ParseFloat(v, 64)
	return parsed(err) || readsAsInteger(v)
}

// readsAsInteger reports whether v is an integer in some syntax Go reads
// (decimal, 0x, 0o, 0b, underscores), whatever its range.
func readsAsInteger(v string) bool {
	_, ierr := strconv.ParseInt(v, 0, 64)
	_, uerr := strconv.ParseUint(v, 0, 64)
	return parsed(ierr) || parsed(uerr)
}

// parsed reports whether a strconv parse that returned err read a number,
// in range or not.
func parsed(err error) bool { return err == nil || errors.Is(err, strconv.ErrRange) }

// decimalEnv is decimalNumbers for the environment variables of the number
// flags of the command the app is about to run (named by the app's first
// argument): checked before the command's flags are set up, where
// urfave/cli would stop at one it cannot parse (DINOCLIP_BATCH=0x10) with
// strconv's "invalid syntax"; and checked even when the command line
// overrides it, as urfave/cli refuses one it cannot parse. The variable
// of a switch (DINOCLIP_RESUME=yes) is refused in words too.
func decimalEnv(cCtx *cli.Context) error {
	c := cCtx.App.Command(cCtx.Args().First())
	if c == nil {
		return nil
	}
	// Help is shown whatever the variables (helpArgs has made a request
	// for it among the command's flags COMMAND --help): one urfave/cli
	// cannot parse is let go, as a flag's value would not be read.
	help := cCtx.Args().Len() == 2 && cCtx.Args().Get(1) == "--help"
	refuse := func(name, v, why string) error {
		if help {
			return os.Unsetenv(name)
		}
		return fmt.Errorf("%s=%s: %s", name, v, why)
	}
	for _, f := range c.Flags {
		number, _ := numberFlag(f)
		_, isSwitch := f.(*altsrc.BoolFlag)
		if _, ok := f.(*cli.BoolFlag); ok {
			isSwitch = true
		}
		ev, ok := f.(interface{ GetEnvVars() []string })
		if !number && !isSwitch || !ok {
			continue
		}
		// The variable urfave/cli reads: the first one present.
		for _, name := range ev.GetEnvVars() {
			if v, set := os.LookupEnv(name); set {
				if v == "" {
					break
				}
				if _, err := strconv.ParseBool(v); isSwitch && err != nil {
					return refuse(name, v, "not true or false (1 and 0 do too)")
				}
				if why := numberWhy(f, v); number && why != "" {
					if trimmed := strings.TrimSpace(v); trimmed != v && numberWhy(f, trimmed) == "" {
						return refuse(name, strconv.Quote(v), "spaces around the number")
					}
					return refuse(name, v, why)
				}
				break
			}
		}
	}
	return nil
}

// overflowWhy is why a number beyond float64's range is refused (YAML
// reads it as a string, the command line's parser says "value out of
// range").
const overflowWhy = "beyond the range of a float64 (about ±1.8e308)"

// underflowWhy is why a number that underflows is refused.
const underflowWhy = "too small a number for a float64: it reads as 0 (write 0 if 0 is meant)"

// underflows reports whether s is a number other than zero that reads as
// 0 (1e-400): --ema 1e-400 meant no moving average, silently.
func underflows(s string) bool {
	x, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	mantissa, _, _ := strings.Cut(strings.ToLower(s), "e")
	return err == nil && x == 0 && strings.ContainsAny(mantissa, "123456789")
}

// overflows reports whether s is a number beyond float64's range, which
// strconv reads as an infinity.
func overflows(s string) bool {
	_, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return errors.Is(err, strconv.ErrRange)
}

// isDecimalNumber is isDecimal for an integer; a float may also have a
// fraction and an exponent (00.5 and 08.0 read as written), but not the
// forms an integer may not have (010, 0x1p4, 1_0).
func isDecimalNumber(s string, float bool) bool {
	if !float {
		return isDecimal(s)
	}
	return !hasOtherBase(s) || (!strings.ContainsAny(s, "_xX") && strings.ContainsAny(s, ".eE"))
}

// flagToken is a flag as written on the command line: -name or --name,
// with its value when written as name=value or as the next argument.
type flagToken struct {
	name, value string
	hasValue    bool
}

// flagTokens are the flags of the command line (before any "--"), each
// with the argument after it as its value unless written name=value (for
// a flag that takes none, that argument is not its value: harmless for the
// integer flags and flag names looked for here).
func flagTokens(cCtx *cli.Context) []flagToken {
	var toks []flagToken
	for _, args := range commandLines(cCtx) {
		for i, a := range args {
			if a == "--" {
				break
			}
			if len(a) < 2 || a[0] != '-' {
				continue
			}
			name, value, inline := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
			tok := flagToken{name: name, value: value, hasValue: inline}
			if !inline && i+1 < len(args) {
				tok.value, tok.hasValue = args[i+1], true
			}
			toks = append(toks, tok)
		}
	}
	return toks
}

// hasOtherBase reports whether the number s is written as Go or YAML read
// in another base or with separators: a leading 0 before another digit or
// a letter (010, 0x10, 0o7, 08), or an underscore.
func hasOtherBase(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	return strings.Contains(s, "_") || (len(s) > 1 && s[0] == '0' && s[1] != '.' && s[1] != 'e' && s[1] != 'E')
}

// isDecimal reports whether s is an optional sign and decimal digits, with
// no leading zero before another digit.
func isDecimal(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+")
	if s == "" || (len(s) > 1 && s[0] == '0') {
		return false
	}
	return strings.Trim(s, "0123456789") == ""
}

// commandLines are the argument lists of cCtx's lineage: the app's holds
// the whole command line after the app's own flags (the command's name,
// its flags and arguments).
func commandLines(cCtx *cli.Context) [][]string {
	var lines [][]string
	for _, c := range cCtx.Lineage() {
		lines = append(lines, c.Args().Slice())
	}
	return lines
}

func float64Flag(name, usage string, value float64) *altsrc.Float64Flag {
	return altsrc.NewFloat64Flag(&cli.Float64Flag{Name: name, Usage: usage, Value: value, EnvVars: envVar(name)})
}

func boolFlag(name, usage string) *altsrc.BoolFlag {
	return altsrc.NewBoolFlag(&cli.BoolFlag{Name: name, Usage: usage, EnvVars: envVar(name)})
}

// configFlag is --config FILE. It is a plain flag: a configuration file
// cannot name another.
func configFlag() cli.Flag {
	return &cli.StringFlag{
		Name:    "config",
		Usage:   "read flag values from `FILE`, YAML or JSON with flag names as keys; the command line and DINOCLIP_* variables override it, and relative paths in it are taken from the working directory",
		EnvVars: envVar("config"),
	}
}

// deviceFlag is --device, shared by the commands that run the model.
func deviceFlag() *altsrc.StringFlag {
	return stringFlag("device", "`DEVICE` to run the model on: cpu, or cuda (a build with -tags cuda)", "cpu")
}

// applyConfig is the Before of a command with --config: it reads the file,
// checks its keys and values against the command's flags, and hands it to
// altsrc to fill the flags the command line and the environment left unset.
func applyConfig(cCtx *cli.Context) error {
	path := cCtx.String("config")
	if path == "" {
		return nil
	}
	values, err := readConfig(path, cCtx.Command.Flags, otherFlagNames(cCtx))
	if err != nil {
		return err
	}
	src := altsrc.NewMapInputSource(path, values)
	if err := altsrc.ApplyInputSourceValues(cCtx, src, cCtx.Command.Flags); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// flagSetting says how the set flag name got value, for a message about
// it: "--NAME VALUE" on the command line, else "DINOCLIP_NAME=VALUE" in the
// environment (the flag's variable), else "NAME: VALUE in FILE", the
// configuration file, with "(named by DINOCLIP_CONFIG)" after FILE where
// the variable named it (configNamedBy).
func flagSetting(cCtx *cli.Context, name string, value any) string {
	switch env, file := flagSource(cCtx, name); {
	case env != "":
		return fmt.Sprintf("%s=%v", env, value)
	case file != "":
		if by := configNamedBy(cCtx); by != "" {
			file += " (named by " + by + ")"
		}
		return fmt.Sprintf("%s: %v in %s", name, value, file)
	}
	return fmt.Sprintf("--%s %v", name, value)
}

// flagSource is where flag name's value came from when the command line
// does not hold it: its environment variable (env, where set), else the
// configuration file (file); neither where the command line holds it.
func flagSource(cCtx *cli.Context, name string) (env, file string) {
	if onCommandLine(cCtx, name) {
		return "", ""
	}
	if env := flagEnvVar(cCtx, name); env != "" && os.Getenv(env) != "" {
		return env, ""
	}
	return "", cCtx.String("config")
}

// configNamedBy is the variable that named the configuration file
// (DINOCLIP_CONFIG), where it did and the command line did not: a user
// who set it long ago looks for a flag's value in vain otherwise.
func configNamedBy(cCtx *cli.Context) string {
	env := flagEnvVar(cCtx, "config")
	if env == "" || cCtx.String("config") == "" || onCommandLine(cCtx, "config") || os.Getenv(env) == "" {
		return ""
	}
	return env
}

// flagName matches a flag's name in an error's message: --NAME.
var flagName = regexp.MustCompile(`--([a-z0-9][a-z0-9-]*)`)

// valueBytes are the bytes that go on a flag's value in a message, where
// it is quoted: what follows a value whole is none of them.
const valueBytes = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-._/@"

// withFlagSource adds to err, a command's error, where the values it
// quotes of flags came from when the command line does not hold them: the
// flag's environment variable, or the configuration file, where the user
// would otherwise look for them in vain. A flag's value is quoted where
// the message begins with the flag (--batch -5: must be at least 1), or
// names it followed by its value (--init: --hidden-dim 128, but the model
// has 64); a flag named only in advice is not (give --data).
func withFlagSource(cCtx *cli.Context, err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	var notes []string
	for _, m := range flagName.FindAllStringSubmatchIndex(msg, -1) {
		name := msg[m[2]:m[3]]
		value := fmt.Sprint(" ", cCtx.Value(name))
		// (Followed by the value whole: --loss mse is not --loss mse+infonce.)
		rest, quotes := strings.CutPrefix(msg[m[1]:], value)
		quoted := m[0] == 0 || quotes && (rest == "" || !strings.ContainsAny(rest[:1], valueBytes))
		if !quoted || !cCtx.IsSet(name) {
			continue
		}
		note := ""
		switch env, file := flagSource(cCtx, name); {
		case env != "":
			note = fmt.Sprintf("--%s is set by %s in the environment", name, env)
		case file != "":
			note = fmt.Sprintf("--%s is set by its key in the configuration file %s", name, file)
			if by := configNamedBy(cCtx); by != "" {
				note += ", which " + by + " names"
			}
		}
		if note != "" && !slices.Contains(notes, note) {
			notes = append(notes, note)
		}
	}
	if len(notes) == 0 {
		return err
	}
	return fmt.Errorf("%w (%s)", err, strings.Join(notes, "; "))
}

// onCommandLine reports whether the command line names flag name (-name,
// --name, or either with =value), before any "--".
func onCommandLine(cCtx *cli.Context, name string) bool {
	for _, tok := range flagTokens(cCtx) {
		if tok.name == name {
			return true
		}
	}
	return false
}

// otherFlagNames are the flags of the app's other commands that read a
// configuration file (--config): keys a shared file may hold for them,
// which this command ignores. A key only a command without --config has
// (synth's rows, average's weights) is a mistake there, not ignored.
func otherFlagNames(cCtx *cli.Context) map[string]bool {
	names := map[string]bool{}
	if cCtx.App == nil {
		return names
	}
	for _, c := range cCtx.App.Commands {
		if !slices.ContainsFunc(c.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), "config") }) {
			continue
		}
		for _, f := range c.Flags {
			for _, n := range f.Names() {
				names[n] = true
			}
		}
	}
	return names
}

// maxConfigBytes bounds a configuration file: a few flags take a few
// hundred bytes, and --config /dev/zero must not read forever.
const maxConfigBytes = 1 << 20

// readConfigFile reads a configuration file (or a pipe, as <(...) gives)
// of at most maxConfigBytes.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.IsDir() {
		return nil, fmt.Errorf("config %s: a directory, not a file", path)
	}
	b, err := atomicfile.ReadAtMost(f, maxConfigBytes)
	if tl := (*atomicfile.TooLargeError)(nil); errors.As(err, &tl) {
		return nil, fmt.Errorf("config %s: %w; a configuration file holds a few flags", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return b, nil
}

// yamlErrorText is err, from yaml.v3, on one line: its unmarshal errors
// (a key given twice, a value of the wrong kind) come as a heading and
// one indented line each, which a one-line error should not carry.
func yamlErrorText(err error) string {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return err.Error()
	}
	texts := slices.Clone(te.Errors)
	for i, e := range texts {
		texts[i] = notMapping.ReplaceAllStringFunc(e, func(m string) string {
			kind, ok := yamlKinds[notMapping.FindStringSubmatch(m)[1]]
			if !ok {
				return m
			}
			return "the file is " + kind + ", not a mapping (lines of NAME: VALUE)"
		})
	}
	return strings.Join(texts, "; ")
}

// notMapping matches yaml's words for a file whose top level is no
// mapping, naming Go's types; yamlKinds, the kinds its tags stand for.
var (
	notMapping = regexp.MustCompile("cannot unmarshal !!(\\w+)(?: `[^`]*`)? into map\\[string\\]interface \\{\\}")
	yamlKinds  = map[string]string{"seq": "a list", "str": "a string", "int": "a number", "float": "a number", "bool": "a true or false", "binary": "binary data", "timestamp": "a date"}
)

// dashed is a flag's name as the command line writes it: -h, --help.
func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// readConfig parses a YAML or JSON configuration file (JSON is read as the
// YAML it is) into the values altsrc expects for each flag: int for
// integer flags, float64 for float flags, a list of strings for repeatable
// flags. A key that is no dinoclip flag, or a value of the wrong kind, is an
// error naming the file and the key; keys of other commands' flags are
// dropped.
func readConfig(path string, flags []cli.Flag, others map[string]bool) (map[any]any, error) {
	b, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("config %s: not a YAML or JSON mapping of flag names to values: %s", path, yamlErrorText(err))
	}
	// yaml.Unmarshal reads the first document only: a second would be
	// dropped without a word. (An empty one, as a trailing --- makes, is
	// no matter.)
	docs := yaml.NewDecoder(bytes.NewReader(b))
	for n := 0; ; {
		var doc yaml.Node
		err := docs.Decode(&doc)
		if err == io.EOF {
			break
		}
		empty := len(doc.Content) == 0 || (len(doc.Content) == 1 && doc.Content[0].ShortTag() == "!!null")
		if n++; err != nil {
			return nil, fmt.Errorf("config %s: not a YAML or JSON mapping of flag names to values: %v", path, err)
		}
		if n > 1 && !empty {
			return nil, fmt.Errorf("config %s: more than one YAML document (a line ---); a configuration file is one mapping", path)
		}
	}
	// The values as written, for the checks below.
	var written map[string]yaml.Node
	yaml.Unmarshal(b, &written)
	byName := map[string]cli.Flag{}
	var known []string
	for _, f := range flags {
		if _, ok := f.(altsrc.FlagInputSourceExtension); !ok {
			continue // --config itself, --help
		}
		for _, n := range f.Names() {
			byName[n] = f
			known = append(known, n)
		}
	}
	slices.Sort(known)
	out := map[any]any{}
	for key, v := range raw {
		f, ok := byName[key]
		switch {
		case key == "config":
			return nil, fmt.Errorf("config %s: key config: a configuration file cannot name another", path)
		case !ok && isHelpOrVersion(key):
			// Every command has --help: without this, others would
			// take the key for another command's flag and drop it.
			return nil, fmt.Errorf("config %s: key %s: %s is no setting; keys are flag names of this command (%s)", path, key, dashed(key), strings.Join(known, ", "))
		case isSection(v):
			// (A section named as a flag of this command or of another,
			// eval: or index:, was a value of the wrong kind, or dropped.)
			return nil, fmt.Errorf("config %s: key %s: a mapping, which no flag takes (a section? the file is one mapping of flag names to values, without sections; every command that takes --config reads its keys, each the flags it has, this one: %s)", path, key, strings.Join(known, ", "))
		case !ok && others[key]:
			continue // another command's flag
		case !ok:
			return nil, fmt.Errorf("config %s: unknown key %q: keys are flag names of this command (%s)", path, key, strings.Join(known, ", "))
		}
		// YAML reads 010 as 8, 0x10 as 16, 1_0 as 10 and 08 as the float
		// 8, tagged !!int or not: a number flag's number must be plain
		// decimal, as on the command line and in the environment
		// (decimalNumbers); so must a quoted one, which YAML leaves a
		// string.
		// An integer written as a float (9007199254740993.0, 1e19) is read
		// from its digits, exactly, not from the float64 YAML rounds it to.
		// A string flag takes an unquoted scalar as written (out: 0101, not
		// the 65 YAML reads), and so does each string of a list flag.
		n := resolveAlias(written[key])
		switch f.(type) {
		case *altsrc.IntFlag, *altsrc.Uint64Flag, *altsrc.Float64Flag:
			_, isFloatFlag := f.(*altsrc.Float64Flag)
			if s, isString := v.(string); isString && hasOtherBase(s) && !isDecimalNumber(s, isFloatFlag) {
				return nil, fmt.Errorf("config %s: key %s: %q: write the number in decimal digits (a leading 0, 0x or _ reads it another way)", path, key, s)
			}
			if isFloatFlag && n.Kind == yaml.ScalarNode && underflows(n.Value) {
				return nil, fmt.Errorf("config %s: key %s: %s: %s", path, key, n.Value, underflowWhy)
			}
			if isFloatFlag && n.Kind == yaml.ScalarNode && overflows(n.Value) {
				return nil, fmt.Errorf("config %s: key %s: %s: %s", path, key, n.Value, overflowWhy)
			}
			if _, isString := v.(string); n.Kind != yaml.ScalarNode || isString {
				break
			}
			// (A float YAML reads as one, 00.5 or 08, means what it says;
			// as an integer, 010 or 0x10, it does not.)
			if _, isFloat := v.(float64); hasOtherBase(n.Value) && (!isFloatFlag || !isFloat || strings.Contains(n.Value, "_")) {
				return nil, fmt.Errorf("config %s: key %s: %s: write the number in decimal digits (a leading 0, 0x or _ reads it another way)", path, key, n.Value)
			}
			if isFloatFlag {
				break
			}
			// (A fraction is refused as written: YAML's float64 of
			// 10000000000000000001e-1 is a whole number.)
			if x, isFloat := v.(float64); isFloat && !math.IsInf(x, 0) && !math.IsNaN(x) {
				if r, ok := new(big.Rat).SetString(n.Value); ok && r.IsInt() {
					v = r.Num().String()
				} else if ok {
					return nil, fmt.Errorf("config %s: key %s: want an integer, got %s", path, key, n.Value)
				}
			}
		case *altsrc.StringFlag:
			v = asWritten(n, v)
		case *altsrc.StringSliceFlag:
			if list, isList := v.([]any); isList && n.Kind == yaml.SequenceNode && len(n.Content) == len(list) {
				for i := range list {
					list[i] = asWritten(resolveAlias(*n.Content[i]), list[i])
				}
			} else {
				v = asWritten(n, v)
			}
		}
		val, err := configValue(f, v)
		if err != nil {
			return nil, fmt.Errorf("config %s: key %s: %w", path, key, err)
		}
		out[key] = val
	}
	return out, nil
}

// isSection reports whether a configuration file's value v is a mapping,
// which no flag takes.
func isSection(v any) bool { _, isMap := v.(map[string]any); return isMap }

// isHelpOrVersion reports whether name names urfave/cli's --help or
// --version, which print and exit rather than set anything.
func isHelpOrVersion(name string) bool {
	for _, f := range []cli.Flag{cli.HelpFlag, cli.VersionFlag} {
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// resolveAlias is the node an alias (*name) stands for, else n.
func resolveAlias(n yaml.Node) yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = *n.Alias
	}
	return n
}

// asWritten is a string flag's value v (decoded by YAML from node n) as
// written when YAML read the scalar as something else: a number, a bool,
// or the bytes a !!binary scalar's base64 decodes to.
func asWritten(n yaml.Node, v any) any {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!binary" {
		return n.Value
	}
	if _, isString := v.(string); isString || v == nil || n.Kind != yaml.ScalarNode {
		return v
	}
	return n.Value
}

// configValue converts one configuration value to the type altsrc wants for
// flag f.
func configValue(f cli.Flag, v any) (any, error) {
	switch f.(type) {
	case *altsrc.StringFlag:
		switch v := v.(type) {
		case string:
			return v, nil
		case int, float64, bool:
			return fmt.Sprint(v), nil
		}
		return nil, fmt.Errorf("want a string, got %v", describeValue(v))
	case *altsrc.StringSliceFlag:
		switch v := v.(type) {
		case string:
			return []any{v}, nil
		case []any:
			for _, e := range v {
				if _, ok := e.(string); !ok {
					return nil, fmt.Errorf("want a list of strings, got an entry %v", describeValue(e))
				}
			}
			return v, nil
		}
		return nil, fmt.Errorf("want a string or a list of strings, got %v", describeValue(v))
	case *altsrc.IntFlag:
		// The flag's own bounds (--epochs at least 1) are its command's
		// to check, with a message naming them; here only the int's,
		// which are no flag's range and name none.
		n, ok := integral(v)
		switch {
		case !ok:
			return nil, fmt.Errorf("want an integer, got %v", describeValue(v))
		case n.Sign() > 0 && (!n.IsInt64() || n.Int64() > math.MaxInt):
			return nil, fmt.Errorf("%v is too large a number", n)
		case n.Sign() < 0 && (!n.IsInt64() || n.Int64() < math.MinInt):
			return nil, fmt.Errorf("%v is too small a number", n)
		}
		return int(n.Int64()), nil
	case *altsrc.Uint64Flag:
		if n, ok := integral(v); ok && n.IsUint64() {
			return n.Uint64(), nil
		}
		return nil, fmt.Errorf("want an integer from 0 to %d, got %v", uint64(math.MaxUint64), describeValue(v))
	case *altsrc.Float64Flag:
		switch v := v.(type) {
		case int:
			return float64(v), nil
		case float64:
			return v, nil
		case string:
			if x, err := strconv.ParseFloat(v, 64); err == nil {
				return x, nil
			}
		}
		return nil, fmt.Errorf("want a number, got %v", describeValue(v))
	case *altsrc.BoolFlag:
		if b, ok := v.(bool); ok {
			return b, nil
		}
		return nil, fmt.Errorf("want true or false, got %v", describeValue(v))
	}
	return nil, fmt.Errorf("this flag cannot be set from a configuration file")
}

// integral returns v as a whole number, exactly, if it is one: YAML gives
// int, or uint64 above math.MaxInt64, or float64 (1e3, 2.0), or a string.
func integral(v any) (*big.Int, bool) {
	switch v := v.(type) {
	case int:
		return big.NewInt(int64(v)), true
	case int64:
		return big.NewInt(v), true
	case uint64:
		return new(big.Int).SetUint64(v), true
	case float64:
		if v != math.Trunc(v) || math.IsInf(v, 0) {
			return nil, false
		}
		n, _ := big.NewFloat(v).Int(nil)
		return n, true
	case string:
		return new(big.Int).SetString(v, 10)
	}
	return nil, false
}

func describeValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "nothing"
	case string:
		return strconv.Quote(v)
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return fmt.Sprint(v)
}

// emptyValues refuses a flag given empty, from any source (--init "",
// "eval: []" in the configuration file), and an empty entry of a
// repeatable one (--eval ""): taken for a path, each failed on a stat of
// nothing, and a flag of a default was silently read as not given.
// (--config "" is no setting: it turns DINOCLIP_CONFIG off. An empty
// variable is unset by then, and sets nothing: ignoreEmptyEnv.)
func emptyValues(cCtx *cli.Context) error {
	for _, f := range cCtx.Command.Flags {
		name := f.Names()[0]
		if name == "config" || !cCtx.IsSet(name) {
			continue
		}
		setting, entry := "", false
		switch f.(type) {
		case *altsrc.StringFlag, *cli.StringFlag:
			if cCtx.String(name) == "" {
				setting = flagSetting(cCtx, name, `""`)
			}
		case *altsrc.StringSliceFlag, *cli.StringSliceFlag:
			// (bench's own lists, of names and numbers, split at commas.)
			_, commas := f.(*cli.StringSliceFlag)
			list := cCtx.StringSlice(name)
			if i := slices.IndexFunc(list, func(v string) bool { return v == "" || commas && strings.Trim(v, ", ") == "" }); i >= 0 {
				setting, entry = flagSetting(cCtx, name, strconv.Quote(list[i])), true
			} else if len(list) == 0 {
				setting = flagSetting(cCtx, name, "[]")
			}
		}
		switch {
		case setting == "":
		case entry:
			return fmt.Errorf("%s: an empty --%s (%s): give each a value; see 'dinoclip %s --help'", cCtx.Command.Name, name, setting, cCtx.Command.Name)
		default:
			return fmt.Errorf("%s: %s is empty: give --%s a value; see 'dinoclip %s --help'", cCtx.Command.Name, setting, name, cCtx.Command.Name)
		}
	}
	return nil
}

// requireFlags reports the first of names that no source set. (One set
// empty, emptyValues has refused.)
func requireFlags(cCtx *cli.Context, names ...string) error {
	for _, n := range names {
		if !cCtx.IsSet(n) {
			or := flagEnvVar(cCtx, n)
			if slices.ContainsFunc(cCtx.Command.Flags, func(f cli.Flag) bool { return slices.Contains(f.Names(), "config") }) {
				or += fmt.Sprintf(", or %q in the --config file", n)
			}
			return fmt.Errorf("%s: missing --%s (or %s); see 'dinoclip %s --help'", cCtx.Command.Name, n, or, cCtx.Command.Name)
		}
	}
	return nil
}

// noArgs refuses positional arguments to a command that takes only flags.
func noArgs(cCtx *cli.Context) error {
	if cCtx.Args().Present() {
		return fmt.Errorf("%s: unexpected argument %q (this command takes only flags; see 'dinoclip %s --help')",
			cCtx.Command.Name, cCtx.Args().First(), cCtx.Command.Name)
	}
	return nil
}

// numberUsageError says in numberWhy's words, as for an environment
// variable, why a number flag's value on the command line was refused
// where Go's flag package said only "value out of range" or "parse
// error"; any other error is returned as it is.
func numberUsageError(cCtx *cli.Context, err error) error {
	m := flagValueError.FindStringSubmatch(err.Error())
	if m == nil || cCtx.Command == nil {
		return err
	}
	value, name := m[1], m[2]
	for _, f := range cCtx.Command.Flags {
		if !slices.Contains(f.Names(), name) {
			continue
		}
		if _, isDuration := f.(*cli.DurationFlag); isDuration {
			return fmt.Errorf("--%s %s: not a duration (write a number with its unit, such as 3s, 500ms or 2m, up to 2562047h)", name, value)
		}
		if number, _ := numberFlag(f); !number {
			continue
		}
		if why := numberWhy(f, value); why != "" {
			return fmt.Errorf("--%s %s: %s", name, value, why)
		}
	}
	return err
}

// oneDashFlag is a flag name after one dash in an error of Go's flag
// package (of one letter too: --help writes search's k as --k).
var oneDashFlag = regexp.MustCompile(`(provided but not defined: |flag needs an argument: |for (?:flag )?)-([A-Za-z0-9][A-Za-z0-9_-]*)`)

// flagValueError is Go's flag package's error for a value a number or
// duration flag cannot hold: out of its range, or not read as its kind.
var flagValueError = regexp.MustCompile(`^invalid value "(.*)" for flag -([A-Za-z0-9][A-Za-z0-9_-]*): (value out of range|parse error)$`)

// usageError turns a flag parsing error into one line pointing at --help,
// instead of urfave/cli's default of printing the whole help.
func usageError(cCtx *cli.Context, err error, _ bool) error {
	err = numberUsageError(cCtx, err)
	// Go's flag package names a flag with one dash; the help writes --name.
	err = errors.New(oneDashFlag.ReplaceAllString(err.Error(), "${1}--$2"))
	if cCtx.Command == nil || cCtx.Command.Name == "" || cCtx.Command.Name == cCtx.App.Name { // the app's own flags
		return fmt.Errorf("%w; see 'dinoclip --help'", err)
	}
	name := cCtx.Command.Name
	return fmt.Errorf("%s: %w; see 'dinoclip %s --help'", name, err, name)
}

// checkAtLeast validates an integer flag with a message that names it.
func checkAtLeast(name string, v, least int) error {
	if v < least {
		return fmt.Errorf("--%s %d: must be at least %d", name, v, least)
	}
	return nil
}

// terminal returns the command's error stream when it is a terminal (where
// progress bars go), else nil.
func terminal(cCtx *cli.Context) *os.File {
	f, ok := cCtx.App.ErrWriter.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil
	}
	return f
}

// checkDir reports a path that is missing or not a directory, naming it as
// what.
func checkDir(what, path string) error {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s %s: no such directory", what, path)
		}
		return fmt.Errorf("%s: %w", what, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%s %s: not a directory", what, path)
	}
	return nil
}
