package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gitopsd/gitopsd/sources/git"
)

// options are the command-line settings; every flag can also come from a
// GITOPSD_<FLAG_NAME> environment variable (dashes become underscores).
type options struct {
	gitURL, gitRef, gitSecretDir string
	gitInsecureSkipHostKeyCheck  bool
	gitVerifyKeys                []string
	dir, path                    string
	cacheDir                     string
	allowRemoteBases             bool
	build                        buildLimits
	gitMaxFetch, gitMaxObject    byteSize
	gitMaxSnapshot               byteSize
	gitTimeout                   time.Duration

	kubeconfig, context string

	name, inventoryNamespace string
	interval                 time.Duration
	once                     bool
	prune                    bool
	pruneMaxShare            float64
	forceConflicts           bool
	applyConcurrency         int
	healthTimeout            time.Duration
	wait                     bool

	drift                driftOptions
	selfHeal             bool
	enforceReclaimPolicy bool
	driftRemind          time.Duration
	events               bool
	httpAddr             string
	configFile           string
	webhookSecretFile    string

	leaderElect                               bool
	leaderElectionNamespace, leaderElectionID string

	logFormat, logLevel string
}

func newRootCommand(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "gitopsd",
		Short: "Keep a Kubernetes cluster equal to a git repository of kustomize overlays",
		Long: `gitopsd pulls a git repository (or watches a directory), builds a kustomize
overlay in-process, validates the whole result with a server-side dry-run,
server-side applies what changed, prunes what left git (never volumes, claims
or namespaces) and waits for the changed workloads to become healthy.

Every flag can also be set through the environment: --git-url is GITOPSD_GIT_URL.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newRunCommand(stdout, stderr), newBuildCommand(stdout), newDiffCommand(stdout), newDriftCommand(stdout), newVersionCommand(stdout))
	return root
}

func sourceFlags(fs *pflag.FlagSet, o *options) {
	fs.StringVar(&o.gitURL, "git-url", "", "git repository: https://, ssh://, git@host:path, file:// or a local path")
	fs.StringVar(&o.gitRef, "git-ref", "", "branch, tag, semver range over tags, or full commit SHA (default: the remote's HEAD branch)")
	fs.StringVar(&o.gitSecretDir, "git-secret-dir", "", "directory with git credentials as files: username and password (or token), or identity (SSH key) and known_hosts")
	fs.BoolVar(&o.gitInsecureSkipHostKeyCheck, "git-insecure-skip-host-key-check", false, "allow SSH without known_hosts (unsafe: anyone on the path decides what is applied)")
	fs.StringSliceVar(&o.gitVerifyKeys, "git-verify-keys", nil, "files with ASCII-armored OpenPGP public keys; when set, only commits signed by one of them are applied")
	fs.StringVar(&o.dir, "dir", "", "a plain directory to deploy from instead of git, watched for changes")
	fs.StringVar(&o.path, "path", ".", "the kustomization inside the source, e.g. overlays/prod")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "where clones and snapshots are kept (default: a folder under the system temp dir)")
	fs.BoolVar(&o.allowRemoteBases, "allow-remote-bases", false, "let kustomizations pull bases and resources from remote URLs")
	buildFlags(fs, &o.build)
	o.gitMaxFetch, o.gitMaxObject, o.gitMaxSnapshot = git.DefaultMaxFetchSize, git.DefaultMaxObjectSize, git.DefaultMaxSnapshotSize
	fs.Var(&o.gitMaxFetch, "git-max-fetch-size", "bytes one git fetch may receive (the pack included)")
	fs.Var(&o.gitMaxObject, "git-max-object-size", "largest object (file, once inflated) a git fetch may bring")
	fs.Var(&o.gitMaxSnapshot, "git-max-snapshot-size", "bytes of files one revision's snapshot may hold")
	fs.DurationVar(&o.gitTimeout, "git-timeout", time.Minute, "bound of each git network operation (ls-remote, fetch), however the server stalls; negative: none")
}

func clusterFlags(fs *pflag.FlagSet, o *options) {
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account)")
	fs.StringVar(&o.context, "context", "", "kubeconfig context to use")
	fs.StringVar(&o.name, "name", "", "name of this sync, used for its inventory (default: derived from --path)")
	fs.StringVar(&o.inventoryNamespace, "inventory-namespace", "gitopsd", "namespace of the inventory ConfigMap (the ApplySet parent)")
}

func logFlags(fs *pflag.FlagSet, o *options) {
	fs.StringVar(&o.logFormat, "log-format", "json", "log format: json or text")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
}

// applyEnv fills every flag not given on the command line from its
// GITOPSD_* variable, so that flags win over the environment.
func applyEnv(fs *pflag.FlagSet) error {
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed {
			return
		}
		key := "GITOPSD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", key, err))
			}
		}
	})
	return errors.Join(errs...)
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is neither json nor text", format)
}

func newVersionCommand(stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(stdout, "gitopsd", version())
			return nil
		},
	}
}

// version is the module version, or the VCS revision of a source build.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	for _, s := range info.Settings {
		if s.Key == "vcs.revision" {
			return "devel-" + s.Value
		}
	}
	return "devel"
}

// quietWhile returns h, except that while quiet() holds its records above
// DEBUG are written at DEBUG: for client-go's messages during an outage of
// the API server (a watch retrying, an Event not written), which the
// daemon reports once itself.
func quietWhile(h slog.Handler, quiet func() bool) slog.Handler {
	return &quietHandler{Handler: h, quiet: quiet}
}

type quietHandler struct {
	slog.Handler
	quiet func() bool
}

func (q *quietHandler) Enabled(ctx context.Context, level slog.Level) bool {
	if q.quiet() {
		level = min(level, slog.LevelDebug)
	}
	return q.Handler.Enabled(ctx, level)
}

func (q *quietHandler) Handle(ctx context.Context, r slog.Record) error {
	if q.quiet() && r.Level > slog.LevelDebug {
		r.Level = slog.LevelDebug
		if !q.Handler.Enabled(ctx, r.Level) {
			return nil
		}
	}
	return q.Handler.Handle(ctx, r)
}

func (q *quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &quietHandler{Handler: q.Handler.WithAttrs(attrs), quiet: q.quiet}
}

func (q *quietHandler) WithGroup(name string) slog.Handler {
	return &quietHandler{Handler: q.Handler.WithGroup(name), quiet: q.quiet}
}
