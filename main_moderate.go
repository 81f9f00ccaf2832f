package main

// `occase moderate`: the operator's tools for a marketplace on the open
// internet. Reported posts (moderate_reports.go) and banned users
// (moderate_bans.go) each bring their own subcommands; both talk to Redis
// with the serve flags' Redis options, as `occase images gc` does.

import "github.com/urfave/cli/v2"

func moderateCommand() *cli.Command {
	return &cli.Command{
		Name:        "moderate",
		Usage:       "moderation tools: reported posts, post removal, banned users",
		Subcommands: append(reportCommands(), banCommands()...),
	}
}
