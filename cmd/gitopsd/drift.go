package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gitopsd/gitopsd/reconciler"
	"github.com/gitopsd/gitopsd/reconciler/drift"
)

// driftOptions are the drift checks' settings, shared by run and drift.
type driftOptions struct {
	podNotReadyGrace, podMissingGrace, pvcPendingGrace time.Duration
	reclaimPolicy                                      string
	ignoreFields, ignoreManagers                       []string
}

func driftFlags(fs *pflag.FlagSet, o *driftOptions) {
	fs.DurationVar(&o.podNotReadyGrace, "pod-not-ready-grace", 30*time.Second, "how long a pod may be Running but not Ready before pod-not-ready")
	fs.DurationVar(&o.podMissingGrace, "pod-missing-grace", time.Minute, "how long a workload may miss a running pod before pod-missing")
	fs.DurationVar(&o.pvcPendingGrace, "pvc-pending-grace", 2*time.Minute, "how long a claim may stay Pending before pvc-pending")
	fs.StringVar(&o.reclaimPolicy, "expected-reclaim-policy", "", "the reclaim policy every managed PV must have (default: its StorageClass's)")
	fs.StringSliceVar(&o.ignoreFields, "drift-ignore-fields", nil, `field paths that are never drift, e.g. "spec.replicas" or "StatefulSet:spec.replicas" (also the gitopsd.io/drift-ignore annotation)`)
	fs.StringSliceVar(&o.ignoreManagers, "drift-ignore-managers", []string{"kube-controller-manager"}, "field managers whose changes are not drift (say an autoscaler's)")
}

func (o driftOptions) checks() drift.Options {
	return drift.Options{PodNotReadyGrace: o.podNotReadyGrace, PodMissingGrace: o.podMissingGrace,
		PVCPendingGrace: o.pvcPendingGrace, ReclaimPolicy: o.reclaimPolicy,
		IgnoreFields: o.ignoreFields, IgnoreManagers: append([]string{}, o.ignoreManagers...)}
}

func newDriftCommand(stdout io.Writer) *cobra.Command {
	o := &options{}
	var output string
	cmd := &cobra.Command{
		Use:   "drift",
		Short: "Report how the cluster differs from git now; exit 1 if it does",
		Long: `drift builds the source, reads the managed objects, their pods, claims and
volumes, and prints every drift finding (the codes of the daemon's alerts):
a table, or JSON lines with -o json. It exits 0 when there is none, 1 when
there is some, and 2 on error: for cron jobs and CI. A finding whose grace
period has not passed yet is left out.`,
		Example: "  gitopsd drift --git-url https://github.com/acme/mysql-stack --path overlays/prod -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := applyEnv(cmd.Flags()); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "gitopsd:", err)
				return exitError(2)
			}
			if output != "table" && output != "json" {
				fmt.Fprintln(cmd.ErrOrStderr(), "gitopsd: -o must be table or json")
				return exitError(2)
			}
			findings, err := currentDrift(cmd, o)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "gitopsd:", err)
				return exitError(2)
			}
			if err := printFindings(stdout, output, findings); err != nil {
				return err
			}
			if len(findings) > 0 {
				return exitError(1)
			}
			return nil
		},
	}
	sourceFlags(cmd.Flags(), o)
	clusterFlags(cmd.Flags(), o)
	driftFlags(cmd.Flags(), &o.drift)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table or json (one finding per line)")
	return cmd
}

func currentDrift(cmd *cobra.Command, o *options) ([]drift.Finding, error) {
	src, err := newSource(o, nil)
	if err != nil {
		return nil, err
	}
	c, err := newClients(o, nil)
	if err != nil {
		return nil, err
	}
	desired, _, err := newSyncer(o, src, c, nil).Desired(cmd.Context())
	if err != nil {
		return nil, err
	}
	w := reconciler.NewWatcher(c.cs, c.dyn, c.mapper, reconciler.WatcherOptions{Drift: o.drift.checks()})
	return w.Once(cmd.Context(), desired)
}

// printFindings writes findings as a table or as JSON lines whose keys are
// those of the daemon's `drift detected` records.
func printFindings(w io.Writer, output string, findings []drift.Finding) error {
	if output == "json" {
		enc := json.NewEncoder(w)
		for _, f := range findings {
			rec := map[string]any{"drift": string(f.Code), "object": f.Object.String(), "detail": f.Detail}
			for _, a := range f.Attrs {
				rec[a.Key] = a.Value.Resolve().Any()
			}
			if err := enc.Encode(rec); err != nil {
				return err
			}
		}
		return nil
	}
	if len(findings) == 0 {
		_, err := fmt.Fprintln(w, "no drift")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DRIFT\tOBJECT\tDETAIL")
	for _, f := range findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.Code, f.Object, f.Detail)
	}
	return tw.Flush()
}
