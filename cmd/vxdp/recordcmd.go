package main

// Controller commands that read records the same way for every kind.

import (
	"context"
	"slices"

	"github.com/urfave/cli/v2"

	"github.com/vxdp/vxdp/control"
)

// finder finds the record a command's argument (a name or id) names.
type finder[T any] func(c *cli.Context, ctl *control.Controller, ref string) (T, error)

// byRef is a finder of kinds whose names are looked up in every project.
func byRef[T any](get func(*control.Controller, context.Context, string) (T, error)) finder[T] {
	return func(c *cli.Context, ctl *control.Controller, ref string) (T, error) { return get(ctl, c.Context, ref) }
}

// inProject is a finder of kinds whose names are unique per project: the
// command's --project, when given, says where to look a name up.
func inProject[T any](find func(*control.Controller, context.Context, string, string) (T, error)) finder[T] {
	return func(c *cli.Context, ctl *control.Controller, ref string) (T, error) {
		return find(ctl, c.Context, c.String("project"), ref)
	}
}

// projectFlag says which project a command creates in, or looks names up in.
func projectFlag(creates bool) cli.Flag {
	if creates {
		return &cli.StringFlag{Name: "project", Usage: "owning `PROJECT` (default: " + control.AdminProject + ")"}
	}
	return &cli.StringFlag{Name: "project", Usage: "look names up in `PROJECT` (default: any project; an ambiguous name is refused)"}
}

// withRecord runs f on the record the command's one argument names.
func withRecord[T any](what string, find finder[T], f func(c *cli.Context, ctl *control.Controller, rec T) error) cli.ActionFunc {
	return withController(func(c *cli.Context, ctl *control.Controller) error {
		ref, err := oneArg(c, what)
		if err != nil {
			return err
		}
		rec, err := find(c, ctl, ref)
		if err != nil {
			return err
		}
		return f(c, ctl, rec)
	})
}

// showCommand is `KIND show NAME|ID`.
func showCommand[T any](usage, what string, v view[T], find finder[T], flags ...cli.Flag) *cli.Command {
	return &cli.Command{
		Name: "show", Usage: usage, ArgsUsage: "NAME|ID",
		Flags: slices.Concat(controllerFlags(), flags, outputFlags(v)),
		Action: withRecord(what, find, func(c *cli.Context, _ *control.Controller, rec T) error {
			return printOne(c, v, rec)
		}),
	}
}

// listCommand is `KIND list`; with projectOf, --project narrows it to one
// project.
func listCommand[T any](usage string, v view[T], list func(*control.Controller, context.Context) ([]T, error), projectOf func(T) string) *cli.Command {
	var flags []cli.Flag
	if projectOf != nil {
		flags = append(flags, &cli.StringFlag{Name: "project", Usage: "only those of `PROJECT`"})
	}
	return &cli.Command{
		Name: "list", Usage: usage,
		Flags: slices.Concat(controllerFlags(), flags, outputFlags(v)),
		Action: withController(func(c *cli.Context, ctl *control.Controller) error {
			recs, err := list(ctl, c.Context)
			if err != nil {
				return err
			}
			if p := c.String("project"); projectOf != nil && p != "" {
				recs = slices.DeleteFunc(recs, func(r T) bool { return control.ProjectOf(projectOf(r)) != p })
			}
			return printList(c, v, recs)
		}),
	}
}

// deleteCommand is `KIND delete NAME|ID`.
func deleteCommand[T any](usage, what string, find finder[T], del func(*control.Controller, context.Context, string) error,
	report func(T) deleted, flags ...cli.Flag) *cli.Command {
	return &cli.Command{
		Name: "delete", Usage: usage, ArgsUsage: "NAME|ID",
		Flags: slices.Concat(controllerFlags(), flags, outputFlags(deletedView)),
		Action: withRecord(what, find, func(c *cli.Context, ctl *control.Controller, rec T) error {
			d := report(rec)
			if err := del(ctl, c.Context, d.ID); err != nil {
				return err
			}
			return printDeleted(c, d)
		}),
	}
}
