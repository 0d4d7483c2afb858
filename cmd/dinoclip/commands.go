package main

import "github.com/urfave/cli/v2"

// commands lists the subcommands, each defined in its own file.
func commands() []*cli.Command {
	return []*cli.Command{
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
}
