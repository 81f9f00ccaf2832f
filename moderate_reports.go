package main

import "github.com/urfave/cli/v2"

// reportCommands are `occase moderate reports|dismiss|remove`.
// Skeleton: the reports branch fills it.
func reportCommands() []*cli.Command { return nil }
