package main

// Controller commands that read records the same way for every kind.

import (
	"context"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
)

// withRecord runs f on the record the command's one argument (a name or
// id) names, as get finds it.
func withRecord[T any](what string, get func(*control.Controller, context.Context, string) (T, error),
	f func(c *cli.Context, ctl *control.Controller, rec T) error) cli.ActionFunc {
	return withController(func(c *cli.Context, ctl *control.Controller) error {
		ref, err := oneArg(c, what)
		if err != nil {
			return err
		}
		rec, err := get(ctl, c.Context, ref)
		if err != nil {
			return err
		}
		return f(c, ctl, rec)
	})
}

// showCommand is `KIND show NAME|ID`.
func showCommand[T any](usage, what string, v view[T], get func(*control.Controller, context.Context, string) (T, error)) *cli.Command {
	return &cli.Command{
		Name: "show", Usage: usage, ArgsUsage: "NAME|ID",
		Flags: append(controllerFlags(), outputFlags(v)...),
		Action: withRecord(what, get, func(c *cli.Context, _ *control.Controller, rec T) error {
			return printOne(c, v, rec)
		}),
	}
}

// listCommand is `KIND list` for kinds listed without filters.
func listCommand[T any](usage string, v view[T], list func(*control.Controller, context.Context) ([]T, error)) *cli.Command {
	return &cli.Command{
		Name: "list", Usage: usage,
		Flags: append(controllerFlags(), outputFlags(v)...),
		Action: withController(func(c *cli.Context, ctl *control.Controller) error {
			recs, err := list(ctl, c.Context)
			if err != nil {
				return err
			}
			return printList(c, v, recs)
		}),
	}
}
