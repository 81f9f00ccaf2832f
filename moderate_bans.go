package main

import "github.com/urfave/cli/v2"

// banCommands are `occase moderate ban|unban`.
// Skeleton: the bans branch fills it.
func banCommands() []*cli.Command { return nil }
