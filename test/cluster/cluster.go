package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/gitopsd/gitopsd/test/cluster/ebscsi"
)

const (
	serviceCIDR = "10.96.0.0/16"
	serviceIP   = "10.96.0.1" // the kubernetes Service's ClusterIP, first of serviceCIDR
	podCIDR     = "10.244.0.0/16"
)

// Options configures a local cluster. The zero value starts three EKS-like
// nodes in a temporary directory with binaries built on demand.
type Options struct {
	// Dir holds the cluster's state: certificates, etcd data, component logs
	// and the admin kubeconfig. Default: a new temporary directory, removed by
	// Stop. A Dir given here is kept, so logs can be read after a failure.
	Dir string
	// Nodes are the simulated worker nodes. Default: DefaultNodes().
	Nodes []Node
	// Binaries are the control-plane executables. Default: EnsureBinaries.
	Binaries *BuildResult
	// Progress receives a line per start-up step. Default: os.Stderr.
	Progress io.Writer
	// Logger receives the in-process EBS CSI driver's logs. Default: discard.
	Logger *slog.Logger
}

// Cluster is a running local control plane: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok as child processes, and a
// simulated EBS CSI driver in this process.
type Cluster struct {
	dir        string
	removeDir  bool
	kubeconfig string
	config     *rest.Config
	bins       BuildResult
	procs      []*process
	progress   io.Writer

	mu       sync.Mutex         // guards procs and watching
	watching bool               // component deaths are reported (watchProcesses)
	cancel   context.CancelFunc // stops in-process controllers
	wg       sync.WaitGroup
	failed   chan error // receives when a component dies while running
	stopOnce sync.Once

	// StartDuration is how long Start took once binaries were ready.
	StartDuration time.Duration
}

// Start brings up a cluster and returns once every node is Ready and the
// controllers are serving. On error everything started is stopped again and
// the failing component's log tail is in the error.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c := &Cluster{progress: opts.Progress, failed: make(chan error, 1)}
	if c.progress == nil {
		c.progress = os.Stderr
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if len(opts.Nodes) == 0 {
		opts.Nodes = DefaultNodes()
	}
	if opts.Binaries == nil {
		b, err := EnsureBinaries(ctx, BuildOptions{Progress: c.progress})
		if err != nil {
			return nil, err
		}
		opts.Binaries = &b
	}
	c.bins = *opts.Binaries
	if err := c.makeDir(opts.Dir); err != nil {
		return nil, err
	}
	started := time.Now()
	if err := c.start(ctx, opts); err != nil {
		c.Stop()
		return nil, err
	}
	c.StartDuration = time.Since(started)
	return c, nil
}

func (c *Cluster) makeDir(dir string) error {
	if dir == "" {
		tmp, err := os.MkdirTemp("", "gitopsd-cluster-")
		if err != nil {
			return err
		}
		c.dir, c.removeDir = tmp, true
		return nil
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	reapStale(abs)
	// Old state (etcd data, certificates) belongs to a cluster that is gone.
	for _, sub := range []string{"etcd", "pki", "logs", "kubeconfig", "kwok.yaml"} {
		if err := os.RemoveAll(filepath.Join(abs, sub)); err != nil {
			return err
		}
	}
	c.dir = abs
	return os.MkdirAll(abs, 0o755)
}

func (c *Cluster) start(ctx context.Context, opts Options) error {
	p, err := newPKI(filepath.Join(c.dir, "pki"))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	ports, err := freePorts(6)
	if err != nil {
		return err
	}
	etcdPort, peerPort, apiPort, kcmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]

	c.step("etcd")
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	if err := c.run(ctx, "etcd", etcdArgs(c.dir, etcdURL, peerPort), httpReady(etcdURL+"/health", nil)); err != nil {
		return err
	}

	c.step("kube-apiserver")
	serving, err := p.serving("apiserver")
	if err != nil {
		return err
	}
	admin, err := p.client("admin", "kubernetes-admin", "system:masters")
	if err != nil {
		return err
	}
	apiURL := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	adminTLS, err := tlsClient(p.caPEM(), admin)
	if err != nil {
		return err
	}
	if err := c.run(ctx, "kube-apiserver", apiserverArgs(c.dir, p, serving, etcdURL, apiPort), httpReady(apiURL+"/readyz", adminTLS)); err != nil {
		return err
	}
	// Written only now, so a script that waits for the file finds a server.
	c.kubeconfig = filepath.Join(c.dir, "kubeconfig")
	if err := writeKubeconfig(c.kubeconfig, apiURL, p.caPEM(), admin); err != nil {
		return err
	}
	if c.config, err = clientcmd.BuildConfigFromFlags("", c.kubeconfig); err != nil {
		return err
	}

	c.step("kube-controller-manager, kube-scheduler, kwok")
	if err := c.startControllers(ctx, p, apiURL, kcmPort, schedPort, kwokPort); err != nil {
		return err
	}

	c.step(fmt.Sprintf("%d simulated nodes and the EBS CSI driver", len(opts.Nodes)))
	cs, err := kubernetes.NewForConfig(c.config)
	if err != nil {
		return err
	}
	if err := createNodes(ctx, cs, opts.Nodes); err != nil {
		return err
	}
	c.runInProcess(func(ctx context.Context) error {
		return ebscsi.Run(ctx, rest.CopyConfig(c.config), ebscsi.Options{Logger: opts.Logger})
	})
	if err := waitNodesReady(ctx, cs, len(opts.Nodes)); err != nil {
		return c.withLogs(err, "kwok")
	}
	// The token controller gives every namespace its default ServiceAccount;
	// pods cannot be created before it, so a usable cluster has one.
	if err := waitServiceAccount(ctx, cs, "default"); err != nil {
		return c.withLogs(err, "kube-controller-manager")
	}
	c.watchProcesses()
	return nil
}

func (c *Cluster) startControllers(ctx context.Context, p *pki, apiURL string, kcmPort, schedPort, kwokPort int) error {
	kcm, err := p.client("kube-controller-manager", "system:kube-controller-manager")
	if err != nil {
		return err
	}
	sched, err := p.client("kube-scheduler", "system:kube-scheduler")
	if err != nil {
		return err
	}
	kwok, err := p.client("kwok", "kwok", "system:masters")
	if err != nil {
		return err
	}
	kubeconfigs := map[string]identity{"kube-controller-manager": kcm, "kube-scheduler": sched, "kwok": kwok}
	for name, id := range kubeconfigs {
		if err := writeKubeconfig(filepath.Join(c.dir, name+".kubeconfig"), apiURL, p.caPEM(), id); err != nil {
			return err
		}
	}
	stagesPath := filepath.Join(c.dir, "kwok.yaml")
	if err := writeStages(stagesPath); err != nil {
		return err
	}
	components := []struct {
		name  string
		args  []string
		ready func(context.Context) error
	}{
		{"kube-controller-manager", kcmArgs(c.dir, p, kcmPort), httpReady(fmt.Sprintf("https://127.0.0.1:%d/healthz", kcmPort), insecureTLS())},
		{"kube-scheduler", schedulerArgs(c.dir, schedPort), httpReady(fmt.Sprintf("https://127.0.0.1:%d/healthz", schedPort), insecureTLS())},
		{"kwok", kwokArgs(c.dir, stagesPath, kwokPort), httpReady(fmt.Sprintf("http://127.0.0.1:%d/healthz", kwokPort), nil)},
	}
	errs := make([]error, len(components))
	var wg sync.WaitGroup
	for i, comp := range components {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.run(ctx, comp.name, comp.args, comp.ready)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// run starts one component and waits until ready reports success.
func (c *Cluster) run(ctx context.Context, name string, args []string, ready func(context.Context) error) error {
	proc, err := startProcess(c.dir, name, c.bins.Path(name), args, nil, false)
	if err != nil {
		return err
	}
	proc.args, proc.ready = args, ready
	c.addProc(proc)
	return waitReady(ctx, proc)
}

// waitReady waits up to a minute until proc's ready check succeeds.
func waitReady(ctx context.Context, proc *process) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err := poll(ctx, 100*time.Millisecond, func() error {
		if done, err := proc.exited(); done {
			return stopPolling{err}
		}
		return proc.ready(ctx)
	})
	if err != nil {
		return fmt.Errorf("%s did not become ready: %w\n--- last lines of %s ---\n%s", proc.name, err, proc.logPath, proc.tail(30))
	}
	return nil
}

// Kill kills a component (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler, kwok) with SIGKILL, as a crash would, and returns once
// it has ended. The cluster does not report it as failed; Restart starts
// it again.
func (c *Cluster) Kill(name string) error {
	p := c.proc(name)
	if p == nil {
		return fmt.Errorf("no component %q", name)
	}
	p.killed.Store(true)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	return nil
}

// Restart starts a killed component again, with the same command line and
// state, and returns once it is ready (for kube-apiserver: /readyz).
func (c *Cluster) Restart(ctx context.Context, name string) error {
	old := c.proc(name)
	if old == nil {
		return fmt.Errorf("no component %q", name)
	}
	if done, _ := old.exited(); !done {
		return fmt.Errorf("%s is running", name)
	}
	proc, err := startProcess(c.dir, name, c.bins.Path(name), old.args, nil, true)
	if err != nil {
		return err
	}
	proc.args, proc.ready = old.args, old.ready
	c.mu.Lock()
	for i, p := range c.procs {
		if p == old {
			c.procs[i] = proc
		}
	}
	watching := c.watching
	c.mu.Unlock()
	if watching {
		go c.watchProcess(proc)
	}
	return waitReady(ctx, proc)
}

// proc returns the current process of the component name.
func (c *Cluster) proc(name string) *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

func (c *Cluster) addProc(p *process) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procs = append(c.procs, p)
}

func (c *Cluster) runInProcess(f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		if err := f(ctx); err != nil && ctx.Err() == nil {
			c.fail(fmt.Errorf("ebs csi driver: %w", err))
		}
	}()
}

// watchProcesses reports the first component that dies while the cluster
// runs, unless a test killed it (Kill).
func (c *Cluster) watchProcesses() {
	c.mu.Lock()
	procs := append([]*process(nil), c.procs...)
	c.watching = true
	c.mu.Unlock()
	for _, p := range procs {
		go c.watchProcess(p)
	}
}

func (c *Cluster) watchProcess(p *process) {
	<-p.done
	if !p.killed.Load() {
		c.fail(fmt.Errorf("%s exited: %v\n--- last lines of %s ---\n%s", p.name, p.err, p.logPath, p.tail(30)))
	}
}

func (c *Cluster) fail(err error) {
	select {
	case c.failed <- err:
	default:
	}
}

// Failed receives an error when a component dies while the cluster runs
// (also when Stop stops them).
func (c *Cluster) Failed() <-chan error { return c.failed }

func (c *Cluster) withLogs(err error, name string) error {
	return fmt.Errorf("%w\n--- last lines of %s log ---\n%s", err, name, tailFile(filepath.Join(c.dir, "logs", name+".log"), 30))
}

func (c *Cluster) step(what string) {
	fmt.Fprintf(c.progress, "cluster: starting %s\n", what)
}

// Stop stops every component, newest first, and removes a temporary state
// directory. It is safe to call more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		if c.cancel != nil {
			c.cancel()
		}
		c.wg.Wait()
		c.mu.Lock()
		procs := c.procs
		c.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(10 * time.Second)
		}
		if c.removeDir {
			_ = os.RemoveAll(c.dir)
		} else if c.kubeconfig != "" {
			// A kubeconfig on disk promises a server; the logs stay.
			_ = os.Remove(c.kubeconfig)
		}
	})
}

// Dir is the cluster's state directory.
func (c *Cluster) Dir() string { return c.dir }

// Kubeconfig is the path of the admin kubeconfig.
func (c *Cluster) Kubeconfig() string { return c.kubeconfig }

// RESTConfig returns a copy of the admin client configuration.
func (c *Cluster) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Binaries says where the control-plane executables (kubectl among them) are.
func (c *Cluster) Binaries() BuildResult { return c.bins }

// LogPath is the log file of a component (etcd, kube-apiserver, ...).
func (c *Cluster) LogPath(component string) string {
	return filepath.Join(c.dir, "logs", component+".log")
}

// CPUTime is the CPU time (user + system) the control plane's processes
// have used since they started: etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok (not the simulated CSI
// driver, which runs in the caller's process). Linux only. make bench reads
// it around each run to show what a run cost the cluster besides the tool.
func (c *Cluster) CPUTime() (time.Duration, error) {
	c.mu.Lock()
	procs := append([]*process(nil), c.procs...)
	c.mu.Unlock()
	var total time.Duration
	for _, p := range procs {
		t, err := cpuTime(p.cmd.Process.Pid)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", p.name, err)
		}
		total += t
	}
	return total, nil
}

// ProcessNames lists the running components, for diagnostics.
func (c *Cluster) ProcessNames() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.procs))
	for i, p := range c.procs {
		names[i] = p.name
	}
	return strings.Join(names, ", ")
}
