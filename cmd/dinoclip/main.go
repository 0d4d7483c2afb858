package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/dinoclip/dinoclip/internal/buildinfo"
	"github.com/dinoclip/dinoclip/internal/errwriter"
	"github.com/dinoclip/dinoclip/internal/printable"
)

func main() {
	os.Exit(run(os.Args))
}

// run executes the CLI and returns the process exit code: 0 on success, 1
// on an error (printed as one line naming what is wrong), 130 when
// interrupted by SIGINT, 143 by SIGTERM and 129 by SIGHUP, 141 when the
// output's reader went away.
func run(args []string) int {
	ctx, stop := signalContext()
	defer stop()
	app := newApp()
	// (Standard output keeping the first error of a write, which the
	// commands' reports, fmt.Fprintf, do not look at.)
	stdout := &errwriter.Writer{W: os.Stdout}
	app.Writer = stdout
	err := app.RunContext(ctx, helpArgs(app.Commands, args))
	if err == nil && stdout.Err != nil && !errors.Is(stdout.Err, syscall.EPIPE) {
		// A command's report lost (dinoclip synth > /dev/full): not a
		// success, though what it wrote to its files is whole. (A reader
		// gone away is not this: train | tee log goes on when tee ends,
		// as it did.)
		err = fmt.Errorf("writing the output: %w", stdout.Err)
	}
	if exitingOnSignal(ctx) {
		select {} // the signal's exit ends the process, with its status (its removals may have failed err)
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, context.Canceled):
		fmt.Fprintln(os.Stderr, "dinoclip: interrupted")
		return interruptedExitCode(ctx)
	case errors.Is(err, syscall.EPIPE):
		// The reader of the output went away (dinoclip info | head):
		// quietly, with the status of a process SIGPIPE ends.
		return 128 + int(syscall.SIGPIPE)
	default:
		fmt.Fprintln(os.Stderr, errorLine(err))
		return 1
	}
}

// errorLine is the line that says what failed: "dinoclip: " and the
// error, with what a terminal would act on in the paths and names it
// quotes (an ESC, a newline, a bidirectional override) written as escapes
// (printable.String).
func errorLine(err error) string {
	return "dinoclip: " + printable.String(err.Error())
}

// helpArgs is args ("dinoclip COMMAND ...") as the app is to run them:
// "dinoclip COMMAND --help" when --help or -h is among COMMAND's flags,
// whatever else is given. urfave/cli took the first argument after a
// command's flags for the name of a command to describe: train --help
// eval described eval, info --help h the help command, and train --help
// foo failed on "No help topic". The flags are read as the command parses
// them: a flag that takes a value takes the next argument unless it has
// "=VALUE", and the first argument that is no flag, or "--", ends them.
func helpArgs(cmds []*cli.Command, args []string) []string {
	if len(args) < 3 {
		return args
	}
	var cmd *cli.Command
	for _, c := range cmds {
		if c.HasName(args[1]) {
			cmd = c
		}
	}
	if cmd == nil {
		return args
	}
	takesValue := map[string]bool{}
	for _, f := range cmd.Flags {
		v, ok := f.(cli.DocGenerationFlag)
		for _, name := range f.Names() {
			takesValue[name] = ok && v.TakesValue()
		}
	}
	for i := 2; i < len(args); i++ {
		a := args[i]
		if a == "--" || len(a) < 2 || a[0] != '-' {
			return args
		}
		name, value, hasValue := strings.Cut(strings.TrimPrefix(a[1:], "-"), "=")
		switch {
		case name == "help" || name == "h":
			if on, err := strconv.ParseBool(value); !hasValue || err == nil && on {
				return []string{args[0], args[1], "--help"}
			}
		case takesValue[name] && !hasValue:
			i++ // (its value)
		}
	}
	return args
}

// helpWidth is the column at which --help wraps its lines: a flag's
// usage, which urfave/cli would print on one line however long, and any
// description line written longer.
const helpWidth = 100

// urfaveFlagString is urfave/cli's own form of a flag in --help: its
// names, a tab, its usage.
var urfaveFlagString = cli.FlagStringer

// flagString is a flag in --help: its names on a line of their own, its
// usage below them, indented and wrapped at helpWidth (beside the names,
// in the column urfave/cli aligns them in, a wrapped usage loses the
// alignment). A one-letter name is written with two dashes, as the usage
// lines and the docs write it (--k): urfave/cli writes it with one (-k),
// and takes both.
func flagString(f cli.Flag) string {
	names, usage, ok := strings.Cut(urfaveFlagString(f), "\t")
	if len(f.Names()[0]) == 1 {
		names = "-" + names
	}
	if !ok {
		return names
	}
	return names + "\n" + usage
}

// urfave/cli's help is set up by package variables: wrapped at helpWidth,
// flags as flagString writes them.
func init() {
	cli.HelpPrinter = func(w io.Writer, templ string, data any) {
		cli.HelpPrinterCustom(w, templ, data, map[string]any{"wrapAt": func() int { return helpWidth }})
	}
	cli.FlagStringer = flagString
}

func newApp() *cli.App {
	return &cli.App{
		Name:  "dinoclip",
		Usage: "train and evaluate a projector from DINOv2 features into CLIP space",
		Description: "dinoclip maps DINOv2 image features into CLIP's image-text embedding space with the\n" +
			"ProjectorWithResiduals model, so a DINOv2 backbone can do CLIP-style text-image retrieval.\n" +
			"Data are .npy files; models are safetensors checkpoints that PyTorch loads into the\n" +
			"original class (see docs/FORMAT.md).",
		Version:        buildinfo.String(),
		Commands:       commands(),
		Action:         runNoCommand,
		Before:         func(cCtx *cli.Context) error { return errors.Join(ignoreEmptyEnv(cCtx), decimalEnv(cCtx)) },
		ExitErrHandler: func(*cli.Context, error) {}, // run prints errors and picks the exit code
		OnUsageError:   usageError,                   // one line, not the whole help (dinoclip --verison)
		// A repeatable flag's value is one entry, as its help says ("repeat
		// for more"): urfave/cli would split --eval a,b into a and b, so a
		// path with a comma could not be given, and a list with both halves
		// present would be read silently as another. The same holds for its
		// environment variable (DINOCLIP_EVAL is one directory); a
		// configuration file gives a list as a YAML list. (bench splits its
		// --shape and --batch at commas itself.)
		DisableSliceFlagSeparator: true,
	}
}

// ignoreEmptyEnv unsets every DINOCLIP_ variable that is set but empty:
// such a variable sets no flag (urfave/cli parses only a value), but
// altsrc took it for set and left the flag's --config value unread, so
// DINOCLIP_K= search --config c.yaml searched for the default k, not the
// file's.
func ignoreEmptyEnv(*cli.Context) error {
	for _, kv := range os.Environ() {
		if name, value, _ := strings.Cut(kv, "="); strings.HasPrefix(name, envPrefix) && value == "" {
			if err := os.Unsetenv(name); err != nil {
				return err
			}
		}
	}
	return nil
}

// runNoCommand is the app's action when no subcommand matched: the overview
// for a bare dinoclip, an error naming an unknown command otherwise.
func runNoCommand(cCtx *cli.Context) error {
	if cCtx.Args().Present() {
		return fmt.Errorf("unknown command %q; 'dinoclip help' lists the commands", cCtx.Args().First())
	}
	return cli.ShowAppHelp(cCtx)
}
