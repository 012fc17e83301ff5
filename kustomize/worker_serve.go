package kustomize

import (
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// ServeWorker is the worker side of an isolated build: it initialises
// kustomize, reads one request from stdin, confines its own process (see
// sandbox), builds, and writes the response to stdout. It returns the
// process exit code. A worker is started before its build is known (see
// takeWorker), so everything up to the request costs the build nothing;
// nothing of the snapshot is read before the sandbox is in place. main
// calls it, before anything else, when os.Args[1] is WorkerArg; so does the
// TestMain of a package whose tests build in workers.
//
// A build error is a response like a result (exit 0). Hitting the memory
// bound exits with its own code, and the CPU bound is the kernel's SIGKILL:
// the parent tells them apart (see Builder.workerFailure).
func ServeWorker(stdin io.Reader, stdout, stderr io.Writer) int {
	warmUp()
	var req request
	if err := json.NewDecoder(io.LimitReader(stdin, 1<<20)).Decode(&req); err != nil {
		fmt.Fprintln(stderr, "gitopsd build worker: read request:", err)
		return exitUsage
	}
	if !filepath.IsAbs(req.Tmp) {
		fmt.Fprintln(stderr, "gitopsd build worker: no private directory in the request")
		return exitUsage
	}
	// kustomize clones remote bases under os.TempDir, and git reads HOME.
	os.Setenv("TMPDIR", req.Tmp)
	os.Setenv("HOME", req.Tmp)
	opts := req.Options.withDefaults()
	if err := sandbox(opts); err != nil {
		// A worker that cannot confine itself does not build.
		fmt.Fprintln(stderr, "gitopsd build worker: sandbox:", err)
		return exitUsage
	}
	go watchMemory(opts.MaxBuildMemory, stderr)

	b := &Builder{opts: opts, run: runKrusty}
	res, secrets, err := b.build(req.Root, req.Dir, req.Path)
	var resp response
	if err != nil {
		resp.Err = secrets.Redact(err.Error())
		if le := (*LimitError)(nil); errors.As(err, &le) {
			resp.Limit, resp.LimitIn = le.Limit, secrets.Redact(le.Msg)
		}
	} else {
		resp.YAML, resp.Objects, resp.Hash = res.YAML, res.objectsJSON, res.Hash
	}
	if err := gob.NewEncoder(stdout).Encode(&resp); err != nil {
		fmt.Fprintln(stderr, "gitopsd build worker: write response:", err)
		return exitUsage
	}
	return 0
}

// warmUpKustomization is a build of constants that makes kustomize load
// what every build needs and a first build would otherwise pay for (kyaml's
// OpenAPI schema, the builtin plugins' configuration): about 40 ms.
var warmUpKustomization = map[string]string{
	"kustomization.yaml": "resources:\n- d.yaml\nlabels:\n- pairs: {a: b}\npatches:\n- patch: |\n    apiVersion: apps/v1\n    kind: Deployment\n    metadata: {name: d}\n    spec: {replicas: 2}\n",
	"d.yaml":             "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  template:\n    spec:\n      containers: [{name: a, image: b}]\n",
}

// warmUp builds warmUpKustomization in memory. Its result is not used, and
// an error of it is not this worker's concern.
func warmUp() {
	fSys := filesys.MakeFsInMemory()
	for name, content := range warmUpKustomization {
		if err := fSys.WriteFile("/warm-up/"+name, []byte(content)); err != nil {
			return
		}
	}
	_, _ = runKrusty(fSys, "/warm-up")
}

// watchMemory ends the process with exitMemory once the memory the Go
// runtime holds from the OS goes over max. debug.SetMemoryLimit makes the
// collector work to stay under it first; the address-space rlimit of the
// sandbox stops an allocation too large for this check to see in time.
//
// The collector runs at a quarter of the default pace (GOGC 400): a worker
// lives for one build, starts with an empty heap that the default would
// collect at every doubling, and the memory limit still makes it collect
// before the bound. That is about 50 ms of a 1,000-object build.
func watchMemory(max int64, stderr io.Writer) {
	debug.SetMemoryLimit(max / 10 * 9)
	debug.SetGCPercent(400)
	samples := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	for range time.Tick(5 * time.Millisecond) {
		metrics.Read(samples)
		if held := int64(samples[0].Value.Uint64() - samples[1].Value.Uint64()); held > max {
			fmt.Fprintf(stderr, "gitopsd build worker: memory limit: %d bytes held, limit %d\n", held, max)
			os.Exit(exitMemory)
		}
	}
}

// errNetworkOff is what a build that tries to fetch gets when remote bases
// are off, from the HTTP transport; the sandbox refuses the socket itself
// too, where the kernel allows (see sandbox).
var errNetworkOff = errors.New("network access is off for builds (remote bases are not allowed)")

// refuseNetwork makes every HTTP request of this process fail before a
// connection is attempted. kustomize fetches remote files with an
// http.Client that uses http.DefaultTransport.
func refuseNetwork() {
	dial := func(network, addr string) (net.Conn, error) { return nil, errNetworkOff }
	http.DefaultTransport = &http.Transport{
		Proxy:   nil,
		Dial:    dial,
		DialTLS: dial,
	}
	http.DefaultClient.Transport = http.DefaultTransport
}
