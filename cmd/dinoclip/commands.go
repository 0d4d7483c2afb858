package main

import "github.com/urfave/cli/v2"

// commands lists the subcommands, each defined in its own file. Each one's
// Before first refuses integer flags not written in decimal (see
// decimalInts).
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
		before := c.Before
		c.Before = func(cCtx *cli.Context) error {
			if err := decimalInts(cCtx); err != nil {
				return err
			}
			if before != nil {
				return before(cCtx)
			}
			return nil
		}
	}
	return cmds
}
