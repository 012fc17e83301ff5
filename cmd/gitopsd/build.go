package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/kustomize"
	"github.com/gitopsd/gitopsd/reconciler"
	"github.com/gitopsd/gitopsd/sources/dir"
)

func newBuildCommand(stdout io.Writer) *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:     "build",
		Short:   "Print the manifests a sync would apply, in apply order",
		Example: "  gitopsd build --dir . --path overlays/prod",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				return err
			}
			res, err := render(cmd.Context(), o)
			if err != nil {
				return err
			}
			_, err = stdout.Write(res.YAML)
			return err
		},
	}
	sourceFlags(cmd.Flags(), o)
	return cmd
}

// render fetches the source once and builds --path. A --dir source is
// built where it is: a one-shot build needs no revision, so the tree is not
// hashed.
func render(ctx context.Context, o *options) (*kustomize.Result, error) {
	if o.dir != "" && o.gitURL == "" {
		d, err := dir.New(dir.Options{Path: o.dir})
		if err != nil {
			return nil, err
		}
		root, err := d.Dir()
		if err != nil {
			return nil, err
		}
		return kustomize.NewBuilder(builderOptions(o)).Build(ctx, root, o.path)
	}
	src, err := newSource(o, nil)
	if err != nil {
		return nil, err
	}
	snap, err := src.Fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", src, err)
	}
	return kustomize.NewBuilder(builderOptions(o)).Build(ctx, snap.Dir, o.path)
}

func newDiffCommand(stdout io.Writer) *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "diff",
		Short: "Show what an apply would change, per object and field; exit 1 if anything would",
		Long: `diff builds the source, server-side dry-runs every object against the cluster
and prints each object an apply would create or change, with the fields that
would change. Secret values are never printed. It exits 0 when nothing would
change, 1 when something would, and 2 on error: for CI on pull requests.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "gitopsd:", err)
				return exitError(2)
			}
			changes, err := diff(cmd.Context(), o, stdout)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "gitopsd:", err)
				return exitError(2)
			}
			if changes > 0 {
				return exitError(1)
			}
			return nil
		},
	}
	sourceFlags(cmd.Flags(), o)
	clusterFlags(cmd.Flags(), o)
	return cmd
}

func diff(ctx context.Context, o *options, w io.Writer) (int, error) {
	src, err := newSource(o, nil)
	if err != nil {
		return 0, err
	}
	c, err := newClients(o, nil)
	if err != nil {
		return 0, err
	}
	plans, err := newSyncer(o, src, c, nil).Plan(ctx)
	if err != nil {
		return 0, err
	}
	changes := 0
	for _, p := range plans {
		if p.Action == reconciler.Unchanged {
			continue
		}
		changes++
		fmt.Fprintf(w, "%s %s\n", p.Action, p.Ref)
		for _, f := range p.Fields {
			fmt.Fprintf(w, "  %s: %q -> %q\n", f.Path, f.Live, f.Desired)
		}
	}
	if changes == 0 {
		fmt.Fprintln(w, "no changes")
	}
	return changes, nil
}
