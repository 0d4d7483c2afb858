package main

import "github.com/urfave/cli/v2"

// stopsOnInterrupt names the commands whose actions look at their context
// and, cancelled by a signal, stop cleanly by themselves: train and demo
// save a checkpoint, index, project, search and synth write no partial
// output. A signal to any other command, or to these before their action
// starts (while a --config is read), ends the process at once (see
// signalContext).
var stopsOnInterrupt = map[string]bool{
	"train": true, "demo": true, "index": true, "project": true, "search": true, "synth": true,
}

// commands lists the subcommands, each defined in its own file. Each one's
// Before first refuses numbers not written in decimal (see decimalNumbers).
func commands() []*cli.Command {
	cmds := []*cli.Command{
		trainCommand(),
		evalCommand(),
		projectCommand(),
		indexCommand(), searchCommand(),
		averageCommand(),
		infoCommand(),
		benchCommand(),
		synthCommand(),
		demoCommand(),
	}
	for _, c := range cmds {
		// Only --help and -h ask a command for help: urfave/cli's help
		// subcommand took a path named h or help (a run, a model to
		// average) for a request, printed help and exited 0 having done
		// nothing, and -- did not escape it. (dinoclip help COMMAND, the
		// app's, stays.)
		c.HideHelpCommand = true
		before := c.Before
		c.Before = func(cCtx *cli.Context) error {
			if err := decimalNumbers(cCtx); err != nil {
				return usageError(cCtx, err, true)
			}
			if before != nil {
				if err := before(cCtx); err != nil {
					return err
				}
			}
			return emptyValues(cCtx)
		}
		if action := c.Action; action != nil {
			c.Action = func(cCtx *cli.Context) error {
				if stopsOnInterrupt[c.Name] {
					handleInterrupts(cCtx.Context)
				}
				return withFlagSource(cCtx, action(cCtx))
			}
		}
	}
	return cmds
}
