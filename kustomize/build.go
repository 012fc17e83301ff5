package kustomize

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// Default limits, used for the Options fields left at zero. They build
// every real-world manifest set we know of (Argo CD's install is one 1.4 MB
// file; kubeflow's manifests render about 1,000 objects) and stop a hostile
// commit long before the daemon's memory is at stake.
const (
	DefaultMaxFileSize    = 16 << 20  // 16 MiB
	DefaultMaxTotalRead   = 256 << 20 // 256 MiB
	DefaultMaxOutputSize  = 64 << 20  // 64 MiB
	DefaultMaxObjects     = 20_000
	DefaultMaxYAMLDepth   = 500
	DefaultMaxBuildMemory = 512 << 20 // 512 MiB
	DefaultMaxBuildTime   = 2 * time.Minute
)

// Options configures a Builder. The zero value is the safe default: no
// remote content, the default limits, each build in a worker process.
type Options struct {
	// AllowRemoteBases lets kustomizations name remote bases and resources
	// (http(s) URLs, git repositories), which kustomize fetches during the
	// build. Off, a build that names one fails before anything is fetched,
	// and the worker cannot open a connection at all whatever a file spells
	// (see sandbox): by default a build depends on the snapshot alone, so
	// that a revision always renders the same objects and a third party
	// cannot change what is applied (DESIGN safety rule). Even when set,
	// file:// URLs are refused: they would clone a repository from anywhere
	// on this machine.
	AllowRemoteBases bool

	// MaxFileSize is the largest file a build reads from the snapshot, in
	// bytes, so that a stray large file (a database dump, a binary) fails
	// the build instead of filling memory. Zero or less means
	// DefaultMaxFileSize.
	MaxFileSize int64

	// MaxTotalRead bounds the bytes a build reads from the snapshot in all,
	// a file read twice counting twice, so that many files under the size
	// limit cannot add up to the same problem. Zero or less means
	// DefaultMaxTotalRead.
	MaxTotalRead int64

	// MaxOutputSize bounds the rendered YAML, in bytes: generators and
	// patches can make the output much larger than the input, and the
	// output is held in memory and sent to the API server. Zero or less
	// means DefaultMaxOutputSize.
	MaxOutputSize int64

	// MaxObjects bounds the objects a build may render, counted in the
	// files as they are read (a base read twice counts twice), so that
	// 100,000 small objects fail at once instead of spinning in kustomize's
	// id lookups, which grow with the square of the count. Zero or less
	// means DefaultMaxObjects.
	MaxObjects int

	// MaxYAMLDepth bounds how deeply a YAML document read by the build may
	// nest, aliases expanded: kustomize's encoders recurse and indent per
	// level. Real manifests (CRD schemas included) stay under 100. Zero or
	// less means DefaultMaxYAMLDepth. Aliases are bounded too, by a rule
	// with no option: they may at most double a document (see bounds.go).
	MaxYAMLDepth int

	// MaxBuildMemory bounds the memory of the worker process a build runs
	// in, in bytes: the worker is stopped when the Go runtime holds more,
	// and an allocation past it plus the runtime's address-space reserve
	// fails at once. Zero or less means DefaultMaxBuildMemory. In a
	// container, the memory limit must leave room for it beside the daemon.
	MaxBuildMemory int64

	// MaxBuildTime bounds a build's wall-clock time and its CPU time; the
	// worker is killed at either. Zero or less means DefaultMaxBuildTime.
	MaxBuildTime time.Duration

	// InProcess runs builds in this process, without a worker: only for
	// content that is trusted (tests' fixtures, benchmarks of kustomize
	// itself). The file-system confinement and read limits still apply;
	// memory, time and network do not.
	InProcess bool

	// SpareWorker starts the next build's worker as soon as a build ends,
	// so that its start-up and kustomize's initialisation (about 40 ms)
	// are done before the next build asks for it: for a daemon, which
	// builds again at the next commit. The spare waits, idle (about 14 MiB
	// of its own memory), for its request; it is one for the whole process,
	// and is killed with it. One-shot commands leave it off.
	SpareWorker bool

	// WorkerExecutable is the binary a worker runs, with WorkerArg as its
	// only argument. Empty means this process's own executable, which is
	// what gitopsd wants; tests of other binaries set it.
	WorkerExecutable string
}

// withDefaults returns o with its zero fields set to the defaults.
func (o Options) withDefaults() Options {
	if o.MaxFileSize <= 0 {
		o.MaxFileSize = DefaultMaxFileSize
	}
	if o.MaxTotalRead <= 0 {
		o.MaxTotalRead = DefaultMaxTotalRead
	}
	if o.MaxOutputSize <= 0 {
		o.MaxOutputSize = DefaultMaxOutputSize
	}
	if o.MaxObjects <= 0 {
		o.MaxObjects = DefaultMaxObjects
	}
	if o.MaxYAMLDepth <= 0 {
		o.MaxYAMLDepth = DefaultMaxYAMLDepth
	}
	if o.MaxBuildMemory <= 0 {
		o.MaxBuildMemory = DefaultMaxBuildMemory
	}
	if o.MaxBuildTime <= 0 {
		o.MaxBuildTime = DefaultMaxBuildTime
	}
	return o
}

// Result is the outcome of a build.
type Result struct {
	// Objects are the rendered objects in apply order (see Sort).
	Objects []*unstructured.Unstructured

	// Hash is "sha256:" and the hex SHA-256 of YAML, so it changes with any
	// change to what would be applied, and `gitopsd build | sha256sum`
	// gives the same digits.
	Hash string

	// YAML is the rendered multi-document YAML, the objects in apply order
	// as kustomize formats them, separated by "---" lines.
	YAML []byte

	// objectsJSON is each object as JSON, what a worker sends its parent.
	objectsJSON [][]byte
}

// LogValue implements slog.LogValuer. A Result may hold Secrets, so only
// its hash and object count are logged.
func (r *Result) LogValue() slog.Value {
	return slog.GroupValue(slog.String("hash", r.Hash), slog.Int("objects", len(r.Objects)))
}

// Builder renders kustomizations. Its methods may be called concurrently;
// builds run one at a time (see Build).
type Builder struct {
	opts Options

	// run is the kustomize build itself. Tests replace it to make it panic.
	run func(fSys filesys.FileSystem, dir string) (resmap.ResMap, error)
}

// NewBuilder returns a Builder with opts, defaults filled in.
func NewBuilder(opts Options) *Builder {
	return &Builder{opts: opts.withDefaults(), run: runKrusty}
}

// runKrusty runs kustomize in-process with plugins, exec and container KRM
// functions and helm off, and kustomize's default load restriction (files
// only from within each kustomization's directory; bases may be anywhere in
// the snapshot).
func runKrusty(fSys filesys.FileSystem, dir string) (resmap.ResMap, error) {
	opts := krusty.MakeDefaultOptions()
	opts.PluginConfig = types.DisabledPluginConfig()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	return krusty.MakeKustomizer(opts).Run(fSys, dir)
}

// buildSlot lets one build run at a time in the whole process: in
// process, kustomize keeps state in package variables (kyaml's OpenAPI
// schema is set by every build); in workers, it bounds the memory builds
// take together to one MaxBuildMemory. A channel rather than a mutex so
// that a caller waiting for its turn can give up with its context.
var buildSlot = make(chan struct{}, 1)

// Build renders the kustomization in the directory path (relative to root,
// like "overlays/dev") of the snapshot directory root, and returns its
// objects in apply order.
//
// The build runs in a worker process (unless Options.InProcess) bounded in
// memory, CPU and wall-clock time, with no network unless remote bases are
// allowed; it is killed when ctx ends. It reads nothing outside root:
// symlinks and "../" that lead out of it, special files, remote bases and
// resources (unless Options.AllowRemoteBases), plugins and exec or
// container KRM functions are all errors, as are files, YAML and outputs
// over the Options limits (a *LimitError). Errors name the offending file
// relative to root, after path, and carry no secret value (see Redactor).
//
// A build with no objects is not an error: it is for the caller to refuse
// to prune everything on an empty build.
//
// Builds run one at a time; a call waits for its turn or for ctx to end.
func (b *Builder) Build(ctx context.Context, root, path string) (*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: build: %w", path, err)
	}
	realRoot, dir, err := b.target(root, path)
	if err != nil {
		return nil, err
	}
	select {
	case buildSlot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("%s: build: %w", path, ctx.Err())
	}
	defer func() { <-buildSlot }()
	if !b.opts.InProcess {
		return b.buildInWorker(ctx, realRoot, dir, path)
	}
	res, secrets, err := b.build(realRoot, dir, path)
	if le := (*LimitError)(nil); errors.As(err, &le) {
		return nil, &LimitError{Path: le.Path, Limit: le.Limit, Msg: secrets.Redact(le.Msg)}
	} else if err != nil {
		return nil, errors.New(secrets.Redact(err.Error()))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: build: %w", path, err)
	}
	return res, nil
}

// target resolves root and checks that path names a directory inside it.
func (b *Builder) target(root, path string) (realRoot, dir string, err error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", root, err)
	}
	realRoot, err = filepath.EvalSymlinks(abs)
	if err != nil {
		return "", "", fmt.Errorf("%s: %w", root, err)
	}
	if !filepath.IsLocal(path) {
		return "", "", fmt.Errorf("%s: the path must be relative and inside the repository root", path)
	}
	// The same checks as every read of the build, so that a symlinked
	// overlay directory cannot lead out of root either.
	fSys := newConfinedFS(realRoot, Options{}.withDefaults())
	dir, err = fSys.resolve(path)
	if err != nil {
		return "", "", err
	}
	if info, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return "", "", fmt.Errorf("%s: no such directory", path)
	} else if err != nil {
		return "", "", fmt.Errorf("%s: %w", path, relError{err, realRoot})
	} else if !info.IsDir() {
		return "", "", fmt.Errorf("%s: not a directory", path)
	}
	return realRoot, dir, nil
}

// build runs the kustomize build of dir on a confined file system over
// root and renders the result, turning a panic into an error. path names
// the build in errors. It returns the secret values the build read, for
// the caller to take out of the error's message.
func (b *Builder) build(root, dir, path string) (res *Result, secrets *Redactor, err error) {
	fSys := newConfinedFS(root, b.opts)
	defer func() {
		if r := recover(); r != nil {
			res, err = nil, fmt.Errorf("%s: kustomize build panicked: %v", path, r)
		}
		// A refusal wins over what kustomize made of it.
		if ferr := fSys.fatalErr(); ferr != nil {
			res, err = nil, fmt.Errorf("%s: %w", path, ferr)
		}
		if le := (*LimitError)(nil); errors.As(err, &le) && le.Path == "" {
			le.Path = path
		}
	}()
	m, err := b.run(fSys, dir)
	if err != nil {
		return nil, fSys.secrets, fmt.Errorf("%s: kustomize build: %w", path, relError{err, root})
	}
	res, err = render(m, b.opts.MaxOutputSize, b.opts.InProcess)
	if err != nil {
		return nil, fSys.secrets, fmt.Errorf("%s: %w", path, err)
	}
	return res, fSys.secrets, nil
}

// relError is a kustomize error with the snapshot root taken out of its
// message, so that files are named relative to it and the message does not
// change from one snapshot directory to the next.
type relError struct {
	err  error
	root string
}

func (e relError) Error() string {
	return relativize(e.err.Error(), e.root)
}

// relativize replaces root in msg: "root/a/b" becomes "a/b" and root itself
// becomes ".". An occurrence that only starts with root ("root2/a") is left
// alone.
func relativize(msg, root string) string {
	if root == string(filepath.Separator) {
		return msg
	}
	var out strings.Builder
	for {
		i := strings.Index(msg, root)
		if i < 0 {
			out.WriteString(msg)
			return out.String()
		}
		out.WriteString(msg[:i])
		rest := msg[i+len(root):]
		switch {
		case strings.HasPrefix(rest, string(filepath.Separator)):
			rest = rest[1:]
		case rest == "" || !isPathChar(rest[0]):
			out.WriteString(".")
		default:
			out.WriteString(root)
		}
		msg = rest
	}
}

// isPathChar reports whether c commonly continues a file name.
func isPathChar(c byte) bool {
	return c == '.' || c == '-' || c == '_' ||
		'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

func (e relError) Unwrap() error { return e.err }

// rendered is one object of the output with its YAML.
type rendered struct {
	obj  *unstructured.Unstructured // nil unless render was asked for objects
	yaml []byte
	json []byte
	rank int
}

// render converts m into a Result, objects in apply order.
func render(m resmap.ResMap, maxOutput int64, objects bool) (*Result, error) {
	items := make([]rendered, 0, m.Size())
	var size int64
	for i, r := range m.Resources() {
		item, err := renderOne(r, objects)
		if err != nil {
			return nil, err
		}
		size += int64(len(item.yaml))
		if i > 0 {
			size += int64(len("---\n"))
		}
		if size > maxOutput {
			return nil, &LimitError{Limit: "MaxOutputSize", Msg: fmt.Sprintf("the rendered output is over %d bytes", maxOutput)}
		}
		items = append(items, item)
	}
	slices.SortStableFunc(items, func(a, b rendered) int {
		return cmp.Compare(a.rank, b.rank)
	})
	res := &Result{Objects: make([]*unstructured.Unstructured, len(items)), objectsJSON: make([][]byte, len(items))}
	var out bytes.Buffer
	for i, item := range items {
		if i > 0 {
			out.WriteString("---\n")
		}
		out.Write(item.yaml)
		res.Objects[i], res.objectsJSON[i] = item.obj, item.json
	}
	sum := sha256.Sum256(out.Bytes())
	res.YAML = out.Bytes()
	res.Hash = "sha256:" + hex.EncodeToString(sum[:])
	return res, nil
}

// renderOne converts one kustomize resource: its YAML and JSON, and, when
// objects is set, the object itself (a worker sends JSON; its parent
// decodes it).
func renderOne(r *resource.Resource, objects bool) (rendered, error) {
	// Through JSON so that numbers come out as int64, as unstructured
	// requires for DeepCopy. The YAML is what r.AsYAML returns, which is
	// this conversion of the same JSON: made once, not twice (each costs a
	// YAML encode and parse, a fifth of a build of plain objects).
	j, err := r.MarshalJSON()
	if err != nil {
		return rendered{}, fmt.Errorf("%s: encode: %w", ref(r), err)
	}
	y, err := yaml.JSONToYAML(j)
	if err != nil {
		return rendered{}, fmt.Errorf("%s: encode: %w", ref(r), err)
	}
	gvk := r.GetGvk()
	item := rendered{yaml: y, json: j, rank: rankOf(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, r.GetNamespace())}
	if objects {
		item.obj = &unstructured.Unstructured{}
		if err := item.obj.UnmarshalJSON(j); err != nil {
			return rendered{}, fmt.Errorf("%s: decode: %w", ref(r), err)
		}
	}
	return item, nil
}

// ref names r as Kind/namespace/name, or Kind/name without a namespace.
func ref(r *resource.Resource) string {
	if ns := r.GetNamespace(); ns != "" {
		return r.GetKind() + "/" + ns + "/" + r.GetName()
	}
	return r.GetKind() + "/" + r.GetName()
}
