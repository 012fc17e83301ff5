package kustomize

// The hostile-build corpus (issue 11): one small repository per class of
// attack a commit can make on the build, each built in a worker as the
// daemon builds it. Every case checks
//
//   - the error: the bound it hit (the LimitError's Limit, through
//     errors.As) or the documented refusal, as a substring;
//   - that a TCP listener on 127.0.0.1, which every URL in the corpus
//     names, accepted no connection (it counts accepts, not requests);
//   - that the case's secret, where its inputs hold one, is in no spelling
//     (raw, base64, hex, Go byte list) in the error nor in anything the
//     worker wrote to its stdout and stderr (see teeWorker: the parent
//     keeps the first 64 KiB of a worker's stderr only to recognize an
//     out-of-memory crash and never shows it, so the test captures it
//     itself);
//   - that it returned within its time bound, and that the parent's heap
//     did not grow by the bomb: the worker holds the build, the parent
//     only its answer.
//
// Bombs and large inputs are generated into temporary directories, not
// committed. Cases use the default Options except where a lower bound keeps
// them fast; the amplification cases run with MaxBuildMemory 256 MiB and a
// build time of a few seconds and may hit whichever bound comes first.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"
)

// hostileCase is one repository of the corpus and what its build must do.
type hostileCase struct {
	name string
	// files are written under the root, with {{URL}} (http://127.0.0.1:port
	// of the counting listener), {{ADDR}} (127.0.0.1:port), {{SECRET}} (the
	// case's secret) and {{SECRET64}} (its base64) replaced.
	files map[string]string
	setup func(t *testing.T, root string) // what files cannot say: FIFOs, sockets, symlinks, generated bombs
	path  string                          // the kustomization directory; "o" when empty
	opts  Options                         // bounds lowered for the case; the rest are the defaults

	limit  string        // the error is a *LimitError for this Options field (or rule)
	limits []string      // or for one of these: whichever bound comes first
	want   []string      // substrings of the error, each of them
	anyOf  []string      // substrings of the error, one at least
	secret bool          // the inputs hold {{SECRET}}: the build must fail without repeating it
	within time.Duration // the build returns within this; 10 s when zero (the race detector triples it)
}

// refusedRemote are the two ways a build refuses remote content: the
// kustomization check names the field, and whatever gets past it (an
// escaped "builtin") meets the worker's HTTP transport, which fails every
// request before dialling. Under both, the seccomp filter refuses the
// socket itself (TestSandboxRefusesSocketsAndExec).
var refusedRemote = []string{"remote bases and resources are refused (AllowRemoteBases is off)", "network access is off for builds"}

// amplification are the bounds an amplifying build may hit first.
var amplification = []string{"MaxBuildMemory", "MaxOutputSize", "MaxBuildTime"}

// ampOptions bound the amplification cases low, so that they stop in
// seconds: MaxBuildMemory 256 MiB and a build time of a few seconds.
var ampOptions = Options{MaxBuildMemory: 256 << 20, MaxBuildTime: 4 * time.Second}

const (
	cmYAML = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n"
	// secretYAML is a Secret whose stringData holds the case's secret.
	secretYAML = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nstringData:\n  password: {{SECRET}}\n"
	// indexOutOfBounds is a replacement whose source option asks for the
	// tenth ","-separated part of a field of Secret s (%s), which has one:
	// kustomize refuses it, quoting the whole value.
	indexOutOfBounds = "replacements:\n- source: {kind: Secret, name: s, fieldPath: %s, options: {delimiter: ',', index: 9}}\n" +
		"  targets:\n  - select: {kind: ConfigMap}\n    fieldPaths: [data.x]\n    options: {create: true}\n"
)

func hostileCases() []hostileCase {
	var cases []hostileCase
	cases = append(cases, yamlBombCases()...)
	cases = append(cases, amplificationCases()...)
	cases = append(cases, objectCountCases()...)
	cases = append(cases, specialFileCases()...)
	cases = append(cases, networkCases()...)
	cases = append(cases, secretCases()...)
	return cases
}

// yamlBombCases: alias bombs and deep nesting, in files (refused by the
// checks before kustomize parses them) and inline in a kustomization
// (which no file check sees: the worker's memory and time bounds stop them).
func yamlBombCases() []hostileCase {
	laughs := laughsYAML(10, 900) // about 50 KB
	return []hostileCase{
		{
			name:  "billion laughs in a resource",
			files: map[string]string{"o/kustomization.yaml": kustomization("bomb.yaml"), "o/bomb.yaml": bombDoc("laughs", laughs)},
			limit: "YAML aliases",
			want:  []string{"o/bomb.yaml: document 1: its aliases expand"},
		},
		{
			name:  "billion laughs in the kustomization file",
			files: map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\n" + laughs, "o/cm.yaml": cmYAML},
			limit: "YAML aliases",
			want:  []string{"o/kustomization.yaml: document 1: its aliases expand"},
		},
		{
			name:  "billion laughs in a patch file",
			files: map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: bomb.yaml\n", "o/cm.yaml": cmYAML, "o/bomb.yaml": cmYAML + "data:\n" + indentYAML(laughs, "  ")},
			limit: "YAML aliases",
			want:  []string{"o/bomb.yaml"},
		},
		{
			name:  "billion laughs in a base",
			files: map[string]string{"o/kustomization.yaml": kustomization("../base"), "base/kustomization.yaml": kustomization("bomb.yaml"), "base/bomb.yaml": bombDoc("laughs", laughs)},
			limit: "YAML aliases",
			want:  []string{"base/bomb.yaml"},
		},
		{
			name:  "billion laughs as a generator's data file",
			files: map[string]string{"o/kustomization.yaml": "configMapGenerator:\n- name: c\n  files: [bomb.yaml]\n", "o/bomb.yaml": laughs},
			limit: "YAML aliases",
			want:  []string{"o/bomb.yaml"},
		},
		{
			name:  "billion laughs in the second document",
			files: map[string]string{"o/kustomization.yaml": kustomization("bomb.yaml"), "o/bomb.yaml": cmYAML + "---\n" + bombDoc("laughs", laughs)},
			limit: "YAML aliases",
			want:  []string{"o/bomb.yaml: document 2"},
		},
		{
			name:  "one large map aliased 4,000 times",
			files: map[string]string{"o/kustomization.yaml": kustomization("bomb.yaml"), "o/bomb.yaml": bombDoc("anchor", anchorYAML(200, 4000))},
			limit: "YAML aliases",
		},
		{
			name:  "recursive alias in a sequence",
			files: map[string]string{"o/kustomization.yaml": kustomization("bomb.yaml"), "o/bomb.yaml": bombDoc("rec", "a: &a [*a]\n")},
			want:  []string{"o/bomb.yaml: document 1: an alias refers to a node that contains it (recursive YAML alias)"},
		},
		{
			name:  "recursive alias in a map",
			files: map[string]string{"o/kustomization.yaml": kustomization("bomb.yaml"), "o/bomb.yaml": bombDoc("rec", "a: &a {b: {c: *a}}\n")},
			want:  []string{"recursive YAML alias"},
		},
		{
			name:  "9,999 nested flow maps",
			files: map[string]string{"o/kustomization.yaml": kustomization("deep.yaml"), "o/deep.yaml": bombDoc("deep", "a: "+strings.Repeat("{a: ", 9999)+"x"+strings.Repeat("}", 9999)+"\n")},
			limit: "MaxYAMLDepth",
			want:  []string{"o/deep.yaml: document 1 is nested", "over the limit of 500"},
		},
		{
			// Past the YAML parser's own limit of 10,000: it refuses the
			// file itself (kustomize reports it), nothing to expand.
			name:  "10,001 nested flow sequences",
			files: map[string]string{"o/kustomization.yaml": kustomization("deep.yaml"), "o/deep.yaml": bombDoc("deep", "a: "+strings.Repeat("[", 10001)+strings.Repeat("]", 10001)+"\n")},
			want:  []string{"exceeded max depth of 10000"},
		},
		{
			name:  "1,000 levels of block maps",
			files: map[string]string{"o/kustomization.yaml": kustomization("deep.yaml"), "o/deep.yaml": bombDoc("deep", blockNesting(1000))},
			limit: "MaxYAMLDepth",
		},
		{
			name:  "2,000 nested compact sequences",
			files: map[string]string{"o/kustomization.yaml": kustomization("deep.yaml"), "o/deep.yaml": bombDoc("deep", "a:\n"+strings.Repeat("- ", 2000)+"x\n")},
			limit: "MaxYAMLDepth",
		},
		{
			name:  "depth made by a chain of 400 aliases",
			files: map[string]string{"o/kustomization.yaml": kustomization("deep.yaml"), "o/deep.yaml": bombDoc("chain", aliasChain(400))},
			limit: "MaxYAMLDepth",
		},
		{
			name:  "9,999 nested flow maps in the kustomization file",
			files: map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\nnameSuffix: " + strings.Repeat("{a: ", 9999) + "x" + strings.Repeat("}", 9999) + "\n", "o/cm.yaml": cmYAML},
			limit: "MaxYAMLDepth",
			want:  []string{"o/kustomization.yaml"},
		},
		{
			// An inline patch is a string in the kustomization: the
			// kustomization's check parses it as it parses files.
			name: "billion laughs in an inline patch",
			files: map[string]string{
				"o/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- patch: |\n" + indentYAML(cmYAML+"data:\n"+indentYAML(laughs, "  "), "    "),
				"o/cm.yaml":            cmYAML,
			},
			limit: "YAML aliases",
			want:  []string{"o/kustomization.yaml (inline)"},
		},
		{
			name: "9,999 nested flow maps in an inline patch",
			files: map[string]string{
				"o/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- patch: |\n" + indentYAML(cmYAML+"data: "+strings.Repeat("{a: ", 9999)+"x"+strings.Repeat("}", 9999), "    "),
				"o/cm.yaml":            cmYAML,
			},
			limit: "MaxYAMLDepth",
			want:  []string{"o/kustomization.yaml (inline)"},
		},
	}
}

// amplificationCases: small inputs whose output is large. With 3,000
// objects and 100 KB values each case asks for about 300 MB of output,
// over every default bound. kustomize needs seconds to merely accumulate
// 3,000 objects, so at 4 s these usually stop at MaxBuildTime; given more
// time they stop at MaxBuildMemory (the patch) or MaxOutputSize
// (replacements, annotations). The last two cases show the output and
// memory bounds hit on their own.
func amplificationCases() []hostileCase {
	big := strings.Repeat("x", 100<<10)
	within := ampOptions.MaxBuildTime + 5*time.Second
	return []hostileCase{
		{
			name: "one 100 KB patch on 3,000 ConfigMaps",
			files: map[string]string{
				"o/kustomization.yaml": "resources: [cms.yaml]\npatches:\n- target: {kind: ConfigMap}\n  patch: |\n" +
					indentYAML(cmYAML+"data:\n  big: "+big, "    "),
				"o/cms.yaml": configMapsYAML(3000, "c"),
			},
			opts: ampOptions, limits: amplification, within: within,
		},
		{
			name: "a 100 KB commonAnnotations value on 3,000 ConfigMaps",
			files: map[string]string{
				"o/kustomization.yaml": "resources: [cms.yaml]\ncommonAnnotations:\n  big: " + big + "\n",
				"o/cms.yaml":           configMapsYAML(3000, "c"),
			},
			opts: ampOptions, limits: amplification, within: within,
		},
		{
			name: "replacements copying a 100 KB value into 3,000 ConfigMaps",
			files: map[string]string{
				"o/kustomization.yaml": "resources: [src.yaml, cms.yaml]\nreplacements:\n- source: {kind: ConfigMap, name: src, fieldPath: data.big}\n" +
					"  targets:\n  - select: {kind: ConfigMap}\n    reject: [{name: src}]\n    fieldPaths: [data.copy]\n    options: {create: true}\n",
				"o/src.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: src\ndata:\n  big: " + big + "\n",
				"o/cms.yaml": configMapsYAML(3000, "c"),
			},
			opts: ampOptions, limits: amplification, within: within,
		},
		{
			name: "a 100 KB patch on 30 ConfigMaps over a 1 MiB output",
			files: map[string]string{
				"o/kustomization.yaml": "resources: [cms.yaml]\npatches:\n- target: {kind: ConfigMap}\n  patch: |\n" +
					indentYAML(cmYAML+"data:\n  big: "+big, "    "),
				"o/cms.yaml": configMapsYAML(30, "c"),
			},
			opts:  Options{MaxOutputSize: 1 << 20},
			limit: "MaxOutputSize",
			want:  []string{"o: build stopped: the rendered output is over 1048576 bytes (MaxOutputSize)"},
		},
		{
			// 15 MiB read once per key: 90 MiB of ConfigMap data, and
			// kustomize's copies of it, in a worker allowed 128 MiB (at
			// 256 MiB it takes seconds to get there, and the CPU bound of
			// a few seconds may come first). The file is not YAML from
			// its first byte, so that the YAML check lets it go at once.
			name: "a 15 MiB file under six generator keys",
			files: map[string]string{
				"o/kustomization.yaml": "configMapGenerator:\n- name: c\n  files: [k0=big.txt, k1=big.txt, k2=big.txt, k3=big.txt, k4=big.txt, k5=big.txt]\n",
			},
			setup: func(t *testing.T, root string) {
				writeFiles(t, root, map[string]string{"o/big.txt": "@" + strings.Repeat("z", 15<<20)})
			},
			opts:   Options{MaxBuildMemory: 128 << 20, MaxBuildTime: 10 * time.Second},
			limit:  "MaxBuildMemory",
			want:   []string{"o: build stopped: the build needed more than 128 MiB of memory (MaxBuildMemory)"},
			within: 15 * time.Second,
		},
	}
}

// objectCountCases: many small objects, which kustomize handles in time
// growing with the square of their number.
func objectCountCases() []hostileCase {
	tenFiles := map[string]string{}
	var names []string
	for i := range 10 {
		n := fmt.Sprintf("cms%d.yaml", i)
		names = append(names, n)
		tenFiles["o/"+n] = configMapsYAML(10_000, fmt.Sprintf("c%d-", i))
	}
	tenFiles["o/kustomization.yaml"] = kustomization(names...)

	tenBases := map[string]string{}
	names = nil
	for i := range 10 {
		names = append(names, fmt.Sprintf("../b%d", i))
		tenBases[fmt.Sprintf("b%d/kustomization.yaml", i)] = kustomization("cms.yaml")
		tenBases[fmt.Sprintf("b%d/cms.yaml", i)] = configMapsYAML(10_000, fmt.Sprintf("c%d-", i))
	}
	tenBases["o/kustomization.yaml"] = kustomization(names...)

	var list strings.Builder
	list.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for i := range 30_000 {
		fmt.Fprintf(&list, "- {apiVersion: v1, kind: ConfigMap, metadata: {name: c%d}}\n", i)
	}
	return []hostileCase{
		{
			name:   "100,000 objects in ten files",
			files:  tenFiles,
			limit:  "MaxObjects",
			want:   []string{"o: build stopped: the resources o/kustomization.yaml lists take the build over 20000 objects (MaxObjects)"},
			within: 3 * time.Second,
		},
		{
			name:   "30,000 objects in one file",
			files:  map[string]string{"o/kustomization.yaml": kustomization("cms.yaml"), "o/cms.yaml": configMapsYAML(30_000, "c")},
			limit:  "MaxObjects",
			within: 3 * time.Second,
		},
		{
			name:   "a List of 30,000 items",
			files:  map[string]string{"o/kustomization.yaml": kustomization("list.yaml"), "o/list.yaml": list.String()},
			limit:  "MaxObjects",
			within: 3 * time.Second,
		},
		{
			// Each base is under the bound when its kustomization is read,
			// and kustomize spends minutes on the first one's 10,000
			// objects before the second is read: only the build time stops
			// it (lowered here to 3 s from the default 2 min).
			name:   "100,000 objects in ten bases",
			files:  tenBases,
			opts:   Options{MaxBuildTime: 3 * time.Second},
			limit:  "MaxBuildTime",
			within: 8 * time.Second,
		},
	}
}

// specialFileCases: FIFOs in every position a build reads a file from, a
// symlink to one, and a socket. Opening a FIFO blocks until a writer comes,
// so each case must return within 5 s.
func specialFileCases() []hostileCase {
	fifo := func(name string, files map[string]string, fifoPath, link string) hostileCase {
		return hostileCase{
			name:  name,
			files: files,
			setup: func(t *testing.T, root string) {
				p := filepath.Join(root, fifoPath)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := syscall.Mkfifo(p, 0o644); err != nil {
					t.Fatal(err)
				}
				if link != "" {
					rel, _ := filepath.Rel(filepath.Dir(filepath.Join(root, link)), p)
					if err := os.Symlink(rel, filepath.Join(root, link)); err != nil {
						t.Fatal(err)
					}
				}
			},
			// kustomize resolves a symlink before it reads: the error
			// names the FIFO.
			want:   []string{fifoPath + ": not a regular file (a FIFO): special files are never read"},
			within: 5 * time.Second,
		}
	}
	withCM := func(k string) map[string]string {
		return map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\n" + k, "o/cm.yaml": cmYAML}
	}
	return []hostileCase{
		fifo("FIFO as a resource", map[string]string{"o/kustomization.yaml": kustomization("fifo.yaml")}, "o/fifo.yaml", ""),
		fifo("FIFO as the kustomization file", map[string]string{"o/cm.yaml": cmYAML}, "o/kustomization.yaml", ""),
		fifo("FIFO as a base's kustomization file", map[string]string{"o/kustomization.yaml": kustomization("../base")}, "base/kustomization.yaml", ""),
		fifo("FIFO as a configMapGenerator file", map[string]string{"o/kustomization.yaml": "configMapGenerator:\n- name: c\n  files: [fifo.txt]\n"}, "o/fifo.txt", ""),
		fifo("FIFO as a secretGenerator env file", map[string]string{"o/kustomization.yaml": "secretGenerator:\n- name: s\n  envs: [fifo.env]\n"}, "o/fifo.env", ""),
		fifo("FIFO as a patch path", withCM("patches:\n- path: fifo.yaml\n"), "o/fifo.yaml", ""),
		fifo("FIFO as a strategic-merge patch", withCM("patchesStrategicMerge: [fifo.yaml]\n"), "o/fifo.yaml", ""),
		fifo("FIFO as a replacements path", withCM("replacements:\n- path: fifo.yaml\n"), "o/fifo.yaml", ""),
		fifo("FIFO as a transformer configuration", withCM("transformers: [fifo.yaml]\n"), "o/fifo.yaml", ""),
		// The FIFO is inside the kustomization's directory, where
		// kustomize's own load restriction lets it be read.
		fifo("symlink to a FIFO as a resource", map[string]string{"o/kustomization.yaml": kustomization("link.yaml")}, "o/data/fifo", "o/link.yaml"),
		fifo("symlink to a FIFO as the kustomization file", map[string]string{"o/cm.yaml": cmYAML}, "o/data/fifo", "o/kustomization.yaml"),
		{
			name:  "socket as a resource",
			files: map[string]string{"o/kustomization.yaml": kustomization("sock.yaml")},
			setup: func(t *testing.T, root string) {
				ln, err := net.Listen("unix", filepath.Join(root, "o/sock.yaml"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { ln.Close() })
			},
			want:   []string{"o/sock.yaml: not a regular file (a socket)"},
			within: 5 * time.Second,
		},
	}
}

// networkCases: a remote reference in every field kustomize fetches from,
// plainly and in spellings that decode to a URL, with remote bases off.
func networkCases() []hostileCase {
	remote := func(name, kust string, extra ...string) hostileCase {
		files := map[string]string{"o/kustomization.yaml": kust, "o/cm.yaml": cmYAML}
		for i := 0; i+1 < len(extra); i += 2 {
			files[extra[i]] = extra[i+1]
		}
		return hostileCase{name: name, files: files, anyOf: refusedRemote}
	}
	builtinPatch := func(apiVersion, path string) string {
		return "apiVersion: " + apiVersion + "\nkind: PatchTransformer\nmetadata:\n  name: p\npath: " + path + "\n"
	}
	builtinGen := func(apiVersion, file string) string {
		return "apiVersion: " + apiVersion + "\nkind: ConfigMapGenerator\nmetadata:\n  name: g\nfiles:\n- " + file + "\n"
	}
	const (
		escURL     = `"http:\u002f\u002f{{ADDR}}/p.yaml"` // YAML escapes for "/"
		escBuiltin = `"built\u0069n"`                     // "builtin", not spelled so
	)
	cases := []hostileCase{
		remote("http resource", "resources:\n- {{URL}}/cm.yaml\n"),
		remote("https resource", "resources:\n- https://{{ADDR}}/cm.yaml\n"),
		remote("git base over http", "resources:\n- {{URL}}/org/repo//base?ref=v1\n"),
		remote("git:: base", "resources:\n- git::{{URL}}/org/repo//base\n"),
		remote("ssh base", "resources:\n- ssh://git@{{ADDR}}/org/repo//base\n"),
		remote("deprecated bases", "bases:\n- {{URL}}/org/repo//base\n"),
		remote("component", "components:\n- {{URL}}/org/repo//component\n"),
		remote("patches path", "resources: [cm.yaml]\npatches:\n- path: {{URL}}/p.yaml\n"),
		remote("patches path with a target", "resources: [cm.yaml]\npatches:\n- path: {{URL}}/p.yaml\n  target: {kind: ConfigMap}\n"),
		remote("patchesStrategicMerge", "resources: [cm.yaml]\npatchesStrategicMerge:\n- {{URL}}/p.yaml\n"),
		remote("patchesJson6902 path", "resources: [cm.yaml]\npatchesJson6902:\n- target: {version: v1, kind: ConfigMap, name: c}\n  path: {{URL}}/p.json\n"),
		remote("configMapGenerator files", "configMapGenerator:\n- name: c\n  files: [{{URL}}/data]\n"),
		remote("configMapGenerator files with a key", "configMapGenerator:\n- name: c\n  files: [key={{URL}}/data]\n"),
		remote("configMapGenerator envs", "configMapGenerator:\n- name: c\n  envs: [{{URL}}/env]\n"),
		remote("configMapGenerator env", "configMapGenerator:\n- name: c\n  env: {{URL}}/env\n"),
		remote("secretGenerator files", "secretGenerator:\n- name: s\n  files: [{{URL}}/data]\n"),
		remote("secretGenerator envs", "secretGenerator:\n- name: s\n  envs: [{{URL}}/env]\n"),
		remote("replacements path", "resources: [cm.yaml]\nreplacements:\n- path: {{URL}}/r.yaml\n"),
		remote("transformers entry", "resources: [cm.yaml]\ntransformers:\n- {{URL}}/t.yaml\n"),
		remote("generators entry", "generators:\n- {{URL}}/g.yaml\n"),
		remote("validators entry", "resources: [cm.yaml]\nvalidators:\n- {{URL}}/v.yaml\n"),
		remote("openapi path", "resources: [cm.yaml]\nopenapi:\n  path: {{URL}}/openapi.json\n"),
		remote("crds", "resources: [cm.yaml]\ncrds:\n- {{URL}}/crd.json\n"),
		remote("configurations", "resources: [cm.yaml]\nconfigurations:\n- {{URL}}/config.yaml\n"),
		remote("builtin transformer configuration file", "resources: [cm.yaml]\ntransformers: [t.yaml]\n", "o/t.yaml", builtinPatch("builtin", "{{URL}}/p.yaml")),
		remote("builtin generator configuration file", "generators: [g.yaml]\n", "o/g.yaml", builtinGen("builtin", "{{URL}}/data")),
		remote("inline builtin transformer", "resources: [cm.yaml]\ntransformers:\n- |\n"+indentYAML(builtinPatch("builtin", "{{URL}}/p.yaml"), "  ")),
		remote("inline builtin generator", "generators:\n- |\n"+indentYAML(builtinGen("builtin", "{{URL}}/data"), "  ")),
		remote("inline builtin validator", "resources: [cm.yaml]\nvalidators:\n- |\n"+indentYAML(builtinPatch("builtin", "{{URL}}/p.yaml"), "  ")),
		remote("remote resource in a base", "resources: [../base]\n", "base/kustomization.yaml", "resources:\n- {{URL}}/cm.yaml\n"),
		remote("remote resource in a component", "resources: [cm.yaml]\ncomponents: [../comp]\n",
			"comp/kustomization.yaml", "apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\nresources:\n- {{URL}}/cm.yaml\n"),
		remote("remote resource in a kustomization named Kustomization", "", "o/Kustomization", "resources:\n- {{URL}}/cm.yaml\n"),
		// Spellings.
		remote("resource URL with escaped slashes", "resources:\n- "+`"http:\u002f\u002f{{ADDR}}/cm.yaml"`+"\n"),
		remote("resource URL with an escaped scheme", "resources:\n- "+`"\x68ttp://{{ADDR}}/cm.yaml"`+"\n"),
		remote("resource URL in capitals", "resources:\n- HTTP://{{ADDR}}/cm.yaml\n"),
		remote("resource URL after spaces", "resources:\n- '  {{URL}}/cm.yaml'\n"),
		remote("resource URL through a YAML alias", "namePrefix: &u {{URL}}/cm.yaml\nresources:\n- *u\n"),
		remote("patch path with escaped slashes", "resources: [cm.yaml]\npatches:\n- path: "+escURL+"\n"),
		remote("escaped builtin in a transformer configuration file", "resources: [cm.yaml]\ntransformers: [t.yaml]\n", "o/t.yaml", builtinPatch(escBuiltin, "{{URL}}/p.yaml")),
		remote("escaped builtin and URL in an inline transformer", "resources: [cm.yaml]\ntransformers:\n- |\n"+indentYAML(builtinPatch(escBuiltin, escURL), "  ")),
		remote("escaped builtin and URL in an inline generator", "generators:\n- |\n"+indentYAML(builtinGen(escBuiltin, escURL), "  ")),
		remote("escaped builtin strategic-merge transformer", "resources: [cm.yaml]\ntransformers: [t.yaml]\n", "o/t.yaml",
			"apiVersion: "+escBuiltin+"\nkind: PatchStrategicMergeTransformer\nmetadata:\n  name: p\npaths:\n- "+escURL+"\n"),
	}
	// helm is off: kustomize refuses the chart before fetching anything.
	cases = append(cases, hostileCase{
		name:  "helmCharts repository",
		files: map[string]string{"o/kustomization.yaml": "helmCharts:\n- name: x\n  repo: {{URL}}/charts\n  version: 1.0.0\n  valuesFile: {{URL}}/values.yaml\n"},
		want:  []string{"must specify --enable-helm"},
	})
	// Each spelling names the listener, so that a fetch would be counted.
	for _, c := range cases {
		if !strings.Contains(fmt.Sprint(c.files), "{{") {
			panic("network case without the listener's address: " + c.name)
		}
	}
	return cases
}

// secretCases: one per kind of kustomize error that quotes its input. Each
// build fails (so the error path is taken) and its error must not repeat
// the secret, in any spelling.
func secretCases() []hostileCase {
	secretCase := func(name string, files map[string]string, want ...string) hostileCase {
		return hostileCase{name: name, files: files, want: want, secret: true}
	}
	literalGen := "apiVersion: builtin\nkind: SecretGenerator\nmetadata:\n  name: s\nliterals:\n- password:{{SECRET}}\n"
	envGen := "apiVersion: builtin\nkind: SecretGenerator\nmetadata:\n  name: s\nenvs:\n- s.env\n"
	secretPatch := "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {password: {{SECRET}}}\n"
	return []hostileCase{
		secretCase("secretGenerator literal without =",
			map[string]string{"o/kustomization.yaml": "secretGenerator:\n- name: s\n  literals:\n  - password:{{SECRET}}\n"},
			"invalid literal source", "expected key=value"),
		secretCase("builtin SecretGenerator file, literal without =",
			map[string]string{"o/kustomization.yaml": "generators: [gen/g.yaml]\n", "o/gen/g.yaml": literalGen},
			"invalid literal source"),
		secretCase("inline builtin SecretGenerator, literal without =",
			map[string]string{"o/kustomization.yaml": "generators:\n- |\n" + indentYAML(literalGen, "  ")},
			"invalid literal source"),
		secretCase("JSON patch without a target",
			map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- patch: '[{\"op\": \"add\", \"path\": \"/data/x\", \"value\": \"{{SECRET}}\"}]'\n", "o/cm.yaml": cmYAML},
			"must specify a target for JSON patch"),
		secretCase("JSON patch of a Secret whose test fails",
			map[string]string{"o/kustomization.yaml": "resources: [s.yaml]\npatches:\n- target: {kind: Secret, name: s}\n  patch: '[{\"op\": \"test\", \"path\": \"/stringData/password\", \"value\": \"{{SECRET}}-not\"}]'\n",
				"o/s.yaml": secretYAML},
			"failed"),
		secretCase("replacement index out of bounds on stringData",
			map[string]string{"o/kustomization.yaml": "resources: [s.yaml, cm.yaml]\n" + fmt.Sprintf(indexOutOfBounds, "stringData.password"), "o/s.yaml": secretYAML, "o/cm.yaml": cmYAML},
			"options.index 9 is out of bounds for value"),
		secretCase("replacement index out of bounds on invalid base64 data",
			map[string]string{"o/kustomization.yaml": "resources: [s.yaml, cm.yaml]\n" + fmt.Sprintf(indexOutOfBounds, "data.password"),
				"o/s.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  password: '{{SECRET}}-!!not*base64'\n", "o/cm.yaml": cmYAML},
			"options.index 9 is out of bounds for value"),
		secretCase("replacement index out of bounds on base64 data",
			map[string]string{"o/kustomization.yaml": "resources: [s.yaml, cm.yaml]\n" + fmt.Sprintf(indexOutOfBounds, "data.password"),
				"o/s.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  password: {{SECRET64}}\n", "o/cm.yaml": cmYAML},
			"options.index 9 is out of bounds for value"),
		secretCase("replacement index out of bounds on a value an alias gives",
			map[string]string{"o/kustomization.yaml": "resources: [s.yaml, cm.yaml]\n" + fmt.Sprintf(indexOutOfBounds, "stringData.password"),
				"o/s.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nx-values: &pw {{SECRET}}\nstringData:\n  password: *pw\n", "o/cm.yaml": cmYAML},
			"options.index 9 is out of bounds for value"),
		secretCase("replacement index out of bounds on a value a merge key gives",
			map[string]string{"o/kustomization.yaml": "resources: [s.yaml, cm.yaml]\n" + fmt.Sprintf(indexOutOfBounds, "stringData.password"),
				"o/s.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\nx-values: &v {password: {{SECRET}}}\nstringData:\n  <<: *v\n", "o/cm.yaml": cmYAML},
			"options.index 9 is out of bounds for value"),
		secretCase("env file line with an invalid UTF-8 byte",
			map[string]string{"o/kustomization.yaml": "secretGenerator:\n- name: s\n  envs: [s.env]\n", "o/s.env": "USER=admin\n  PASSWORD={{SECRET}}\xff  \n"},
			"has invalid utf8 bytes"),
		secretCase("builtin SecretGenerator's env file line with an invalid UTF-8 byte",
			map[string]string{"o/kustomization.yaml": "generators: [g.yaml]\n", "o/g.yaml": envGen, "o/s.env": "PASSWORD=\xff{{SECRET}}\n"},
			"has invalid utf8 bytes"),
		secretCase("nameless Secret with data and stringData",
			map[string]string{"o/kustomization.yaml": kustomization("s.yaml"),
				"o/s.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  labels: {app: x}\ndata:\n  password: {{SECRET64}}\nstringData:\n  token: {{SECRET}}\n"},
			"missing metadata.name"),
		secretCase("nameless Secret in a List",
			map[string]string{"o/kustomization.yaml": kustomization("list.yaml"),
				"o/list.yaml": "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {labels: {app: x}}\n  stringData: {token: {{SECRET}}}\n"},
			"missing metadata.name"),
		secretCase("secretGenerator file under a repeated key",
			map[string]string{"o/kustomization.yaml": "secretGenerator:\n- name: s\n  files: [password=p.txt, password=p.txt]\n", "o/p.txt": "{{SECRET}}\n"},
			"illegally repeats the key"),
		secretCase("secretGenerator file as a replacement source, index out of bounds",
			map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\nsecretGenerator:\n- name: s\n  options: {disableNameSuffixHash: true}\n  files: [password=p.txt]\n" +
				fmt.Sprintf(indexOutOfBounds, "data.password"),
				"o/p.txt": "{{SECRET}}", "o/cm.yaml": cmYAML},
			"options.index 9 is out of bounds for value"),
		secretCase("builtin PatchTransformer with both a patch and a path",
			map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\ntransformers: [t.yaml]\n", "o/cm.yaml": cmYAML, "o/other.yaml": cmYAML,
				"o/t.yaml": "apiVersion: builtin\nkind: PatchTransformer\nmetadata:\n  name: p\npath: other.yaml\npatch: |\n" + indentYAML(secretPatch, "  ")},
			"can't be set at the same time"),
		secretCase("kustomization patch with both a patch and a path",
			map[string]string{"o/kustomization.yaml": "resources: [cm.yaml]\npatches:\n- path: other.yaml\n  patch: |\n" + indentYAML(secretPatch, "    "), "o/cm.yaml": cmYAML, "o/other.yaml": cmYAML},
			"can't be set at the same time"),
		secretCase("patch of Secrets that does not parse",
			map[string]string{"o/kustomization.yaml": "resources: [s.yaml]\npatches:\n- target: {kind: Secret}\n  patch: |\n    stringData: {password: {{SECRET}}\n", "o/s.yaml": secretYAML},
			"unable to parse SM or JSON patch"),
		{
			name:   "secretGenerator file over MaxFileSize",
			files:  map[string]string{"o/kustomization.yaml": "secretGenerator:\n- name: s\n  files: [p.txt]\n", "o/p.txt": "{{SECRET}}\n" + strings.Repeat("p", 2000)},
			opts:   Options{MaxFileSize: 1000},
			limit:  "MaxFileSize",
			want:   []string{"o/p.txt is"},
			secret: true,
		},
	}
}

func TestHostileBuilds(t *testing.T) {
	addr, conns := countingListener(t)
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			secret := "s3cr3t-" + slug(tc.name) + "-" + strings.ToLower(rand.Text()[:12])
			fill := strings.NewReplacer("{{URL}}", "http://"+addr, "{{ADDR}}", addr,
				"{{SECRET}}", secret, "{{SECRET64}}", base64.StdEncoding.EncodeToString([]byte(secret)))
			root := t.TempDir()
			files := map[string]string{}
			for name, content := range tc.files {
				files[name] = fill.Replace(content)
			}
			writeFiles(t, root, files)
			if tc.setup != nil {
				tc.setup(t, root)
			}
			if all := fmt.Sprint(files); tc.secret && !strings.Contains(all, secret) && !strings.Contains(all, base64.StdEncoding.EncodeToString([]byte(secret))) {
				t.Fatal("a secret case without {{SECRET}} in its files")
			}
			within := tc.within
			if within == 0 {
				within = 10 * time.Second
			}
			if raceEnabled && tc.opts.MaxBuildTime == 0 {
				within *= 3
			}
			path := tc.path
			if path == "" {
				path = "o"
			}
			opts := tc.opts
			worker := newTeeWorker(t)
			opts.WorkerExecutable = worker.exe

			// A hang becomes an error (and a failed time bound), not a
			// stuck test.
			ctx, cancel := context.WithTimeout(context.Background(), within+2*time.Second)
			defer cancel()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			_, err := NewBuilder(opts).Build(ctx, root, path)
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			t.Logf("%v in %v: %s", limitOf(err), elapsed.Round(time.Millisecond), shorten(fmt.Sprint(err), 400))

			if err == nil {
				t.Fatal("the build succeeded")
			}
			msg := err.Error()
			var le *LimitError
			isLimit := errors.As(err, &le)
			switch {
			case tc.limit != "":
				if !isLimit || le.Limit != tc.limit {
					t.Errorf("error %q: want a LimitError for %s", shorten(msg, 400), tc.limit)
				}
			case tc.limits != nil:
				if !isLimit || !slices.Contains(tc.limits, le.Limit) {
					t.Errorf("error %q: want a LimitError for one of %v", shorten(msg, 400), tc.limits)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", shorten(msg, 400), w)
				}
			}
			if tc.anyOf != nil && !slices.ContainsFunc(tc.anyOf, func(w string) bool { return strings.Contains(msg, w) }) {
				t.Errorf("error %q contains none of %q", shorten(msg, 400), tc.anyOf)
			}
			if strings.Contains(msg, root) {
				t.Errorf("error %q names the snapshot directory", shorten(msg, 400))
			}
			if n := conns.Load(); n != 0 {
				t.Errorf("the listener accepted %d connections, want none", n)
			}
			if elapsed > within {
				t.Errorf("the build took %v, want at most %v", elapsed, within)
			}
			// The parent holds the worker's answer, never the bomb: its
			// heap grows by far less than what the cases blow up to.
			const maxHeap = 64 << 20
			if grew := int64(after.HeapInuse) - int64(before.HeapInuse); grew > maxHeap {
				t.Errorf("the parent's heap in use grew by %d MiB during the build", grew>>20)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxHeap {
				t.Errorf("the parent allocated %d MiB during the build", alloc>>20)
			}
			stdout, stderr := worker.output(t)
			for where, text := range map[string]string{"the error": msg, "the worker's stdout": stdout, "the worker's stderr": stderr} {
				if form, ok := containsSecret(text, secret); ok {
					t.Errorf("%s holds the secret (%s): %q", where, form, shorten(text, 600))
				}
			}
			// The copies are real: a worker that answered wrote the error
			// (a bound's message) to its stdout, one stopped for memory
			// said why on its stderr.
			switch {
			case isLimit && le.Limit == "MaxBuildMemory":
				if stderr == "" {
					t.Error("nothing captured of the worker's stderr")
				}
			case isLimit && le.Limit == "MaxBuildTime":
				// Killed: no answer.
			case isLimit:
				if !strings.Contains(stdout, le.Msg) {
					t.Errorf("the worker's stdout %q does not hold %q", shorten(stdout, 200), le.Msg)
				}
			case !strings.Contains(stdout, msg):
				t.Errorf("the worker's stdout %q does not hold the error", shorten(stdout, 200))
			}
		})
	}
}

// TestHostileCorpusCanFail checks that the corpus's checks are not vacuous:
// the secret detector finds each spelling, and the listener counts a
// connection that is made.
func TestHostileCorpusCanFail(t *testing.T) {
	secret := "s3cr3t-canfail"
	for _, text := range []string{
		"value " + secret,
		"value " + base64.StdEncoding.EncodeToString([]byte(secret)),
		"value " + hex.EncodeToString([]byte(secret)),
		"line [80 61 " + strings.Trim(fmt.Sprint([]byte(secret)), "[]") + " 255]",
		"value " + wrapEvery(base64.StdEncoding.EncodeToString([]byte(secret)), 7, "\n"),
		"value " + wrapEvery(base64.StdEncoding.EncodeToString([]byte(secret)), 5, `\n`),
	} {
		if _, ok := containsSecret(text, secret); !ok {
			t.Errorf("containsSecret(%q) = false", text)
		}
	}
	if form, ok := containsSecret("[redacted]", secret); ok {
		t.Errorf("containsSecret found %s in a redacted message", form)
	}
	addr, conns := countingListener(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for conns.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the listener counted %d connections, want 1", n)
	}
}

// sandboxProbeArg makes the test binary (see TestMain) a probe of the
// worker's sandbox: os.Args[2] is "sandbox" or "none", os.Args[3] a TCP
// address to dial. It prints a probeReport as JSON.
const sandboxProbeArg = "__sandbox-probe"

// probeReport is what a sandbox probe tried and how it failed ("" when it
// worked), and whether the failure was EACCES.
type probeReport struct {
	Sandbox        string
	Dial, DialUnix string
	Exec           string
	IOURing        string
	EACCES         map[string]bool
}

// sandboxProbe confines this process as a build worker with remote bases
// off (when confine), then opens a TCP connection to addr and a unix
// socket, runs /bin/true and sets up an io_uring instance.
func sandboxProbe(confine bool, addr string) int {
	rep := probeReport{EACCES: map[string]bool{}}
	note := func(name string, err error) string {
		rep.EACCES[name] = errors.Is(err, syscall.EACCES)
		if err == nil {
			return ""
		}
		return err.Error()
	}
	if confine {
		rep.Sandbox = note("sandbox", sandbox(Options{}.withDefaults()))
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err == nil {
		c.Close()
	}
	rep.Dial = note("dial", err)
	u, err := net.Dial("unix", "/nonexistent/socket")
	if err == nil {
		u.Close()
	}
	rep.DialUnix = note("dialUnix", err)
	rep.Exec = note("exec", exec.Command("/bin/true").Run())
	var params [120]byte // struct io_uring_params
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno == 0 {
		unix.Close(int(fd))
		rep.IOURing = note("ioURing", nil)
	} else {
		rep.IOURing = note("ioURing", errno)
	}
	out, _ := json.Marshal(rep)
	os.Stdout.Write(out)
	return 0
}

// TestSandboxRefusesSocketsAndExec runs the test binary as a sandbox probe:
// confined as a build worker, it cannot create a socket (a TCP dial fails
// with EACCES and the listener sees nothing), exec a program or set up
// io_uring. The same probe unconfined connects and runs /bin/true, which
// shows that the probe can fail.
func TestSandboxRefusesSocketsAndExec(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	addr, conns := countingListener(t)
	probe := func(mode string) probeReport {
		t.Helper()
		out, err := exec.Command(exe, sandboxProbeArg, mode, addr).Output()
		if err != nil {
			t.Fatalf("probe %s: %v", mode, err)
		}
		var rep probeReport
		if err := json.Unmarshal(out, &rep); err != nil {
			t.Fatalf("probe %s: %v: %q", mode, err, out)
		}
		t.Logf("probe %s: %+v", mode, rep)
		return rep
	}

	free := probe("none")
	if free.Dial != "" || free.Exec != "" {
		t.Fatalf("unconfined probe: dial %q, exec %q; want both to work", free.Dial, free.Exec)
	}
	deadline := time.Now().Add(5 * time.Second)
	for conns.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("unconfined probe: the listener counted %d connections, want 1", n)
	}

	jail := probe("sandbox")
	if jail.Sandbox != "" {
		t.Fatalf("sandbox: %s", jail.Sandbox)
	}
	for name, msg := range map[string]string{"dial": jail.Dial, "dialUnix": jail.DialUnix, "exec": jail.Exec, "ioURing": jail.IOURing} {
		if !jail.EACCES[name] || !strings.Contains(msg, "permission denied") {
			t.Errorf("confined %s: error %q, want EACCES (permission denied)", name, msg)
		}
	}
	time.Sleep(100 * time.Millisecond) // a connection would have been accepted by now
	if n := conns.Load(); n != 1 {
		t.Errorf("the confined probe reached the listener: %d connections, want still 1", n)
	}
}

// TestBuildArgoCDInstall builds Argo CD's upstream install manifest, 1.46
// MB in one file (over the 1 MiB file limit builds used to have), with the
// default options and compares the objects with the kustomize CLI's
// rendering of the same kustomization (testdata/argocd/README.md says
// where both files came from; expected.yaml was made with
// `kustomize build kustomize/testdata/argocd`, kustomize v5.8.2). kustomize
// prints objects in its own order and Build in apply order, so the two are
// compared as sets keyed by kind, namespace and name.
func TestBuildArgoCDInstall(t *testing.T) {
	if info, err := os.Stat("testdata/argocd/install.yaml"); err != nil {
		t.Fatal(err)
	} else if info.Size() <= 1<<20 {
		t.Fatalf("install.yaml is %d bytes, want the upstream file of more than 1 MiB", info.Size())
	}
	res, err := NewBuilder(Options{}).Build(context.Background(), "testdata", "argocd")
	if err != nil {
		t.Fatal(err)
	}
	golden, err := os.ReadFile("testdata/argocd/expected.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := objectSet(t, "expected.yaml", splitYAML(golden))
	var ours [][]byte
	for _, o := range res.Objects {
		j, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		ours = append(ours, j)
	}
	got := objectSet(t, "Result.Objects", ours)
	if len(want) < 50 {
		t.Fatalf("expected.yaml has %d objects; want Argo CD's install (more than 50)", len(want))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("objects (-kustomize CLI +Build):\n%s", diff)
	}
	// The YAML holds the same objects.
	if diff := cmp.Diff(want, objectSet(t, "Result.YAML", splitYAML(res.YAML))); diff != "" {
		t.Errorf("YAML objects (-kustomize CLI +Build):\n%s", diff)
	}
	for _, o := range res.Objects {
		if ns := o.GetNamespace(); ns != "" && ns != "argocd" {
			t.Errorf("%s/%s is in namespace %q, want argocd", o.GetKind(), o.GetName(), ns)
		}
	}
}

// splitYAML splits a multi-document YAML stream at its "---" lines.
func splitYAML(data []byte) [][]byte {
	var docs [][]byte
	for _, d := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// objectSet parses YAML or JSON documents into objects keyed by
// kind/namespace/name, every value as JSON decodes it.
func objectSet(t *testing.T, what string, docs [][]byte) map[string]map[string]any {
	t.Helper()
	set := map[string]map[string]any{}
	for i, d := range docs {
		j, err := yaml.YAMLToJSON(d)
		if err != nil {
			t.Fatalf("%s: document %d: %v", what, i+1, err)
		}
		var obj map[string]any
		if err := json.Unmarshal(j, &obj); err != nil {
			t.Fatalf("%s: document %d: %v", what, i+1, err)
		}
		meta, _ := obj["metadata"].(map[string]any)
		key := fmt.Sprintf("%v/%v/%v", obj["kind"], meta["namespace"], meta["name"])
		if _, dup := set[key]; dup {
			t.Fatalf("%s: %s twice", what, key)
		}
		set[key] = obj
	}
	return set
}

// countingListener listens on 127.0.0.1 and counts the connections it
// accepts (and closes), whatever they carry.
func countingListener(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted = &atomic.Int64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String(), accepted
}

// teeWorker is a build worker executable that runs this test binary as
// the worker with its stdout and stderr copied to files as well as to the
// parent, so that a test can read everything a worker wrote. The script
// execs the worker, so the parent waits on, limits and kills the worker
// itself, and sees its own exit status.
type teeWorker struct {
	exe, stdout, stderr string
}

func newTeeWorker(t *testing.T) teeWorker {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	w := teeWorker{exe: filepath.Join(dir, "worker"), stdout: filepath.Join(dir, "stdout"), stderr: filepath.Join(dir, "stderr")}
	for _, p := range []string{self, w.stdout, w.stderr} {
		if strings.ContainsRune(p, '\'') {
			t.Fatalf("path %q has a quote", p)
		}
	}
	script := fmt.Sprintf("#!/bin/bash\nexec '%s' %s 2> >(exec /usr/bin/tee -a '%s' >&2) > >(exec /usr/bin/tee -a '%s')\n",
		self, WorkerArg, w.stderr, w.stdout)
	if err := os.WriteFile(w.exe, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return w
}

// output returns what the worker wrote, once its copies are complete.
func (w teeWorker) output(t *testing.T) (stdout, stderr string) {
	t.Helper()
	read := func(p string) string {
		data, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		return string(data)
	}
	return read(w.stdout), read(w.stderr)
}

// containsSecret reports whether text holds secret in one of the
// spellings a message may give it, and which. Base64 is looked for with
// line breaks (and escaped ones) taken out too: kyaml breaks the base64 of
// generated data every 70 characters.
func containsSecret(text, secret string) (form string, ok bool) {
	b := []byte(secret)
	forms := map[string]string{
		"raw":            secret,
		"hex":            hex.EncodeToString(b),
		"Go byte list":   strings.Trim(fmt.Sprint(b), "[]"),
		"JSON byte list": strings.Trim(strings.ReplaceAll(fmt.Sprint(b), " ", ","), "[]"),
	}
	for name, f := range forms {
		if strings.Contains(text, f) {
			return name, true
		}
	}
	flat := strings.NewReplacer("\n", "", "\\n", "", "\r", "", " ", "").Replace(text)
	for name, enc := range map[string]*base64.Encoding{"base64": base64.StdEncoding, "base64 raw": base64.RawStdEncoding, "base64 url": base64.URLEncoding} {
		if strings.Contains(flat, enc.EncodeToString(b)) {
			return name, true
		}
	}
	return "", false
}

// wrapEvery breaks s with sep every n bytes.
func wrapEvery(s string, n int, sep string) string {
	var b strings.Builder
	for i := 0; i < len(s); i += n {
		b.WriteString(s[i:min(i+n, len(s))] + sep)
	}
	return b.String()
}

// limitOf names the bound err hit, for the log.
func limitOf(err error) string {
	if le := (*LimitError)(nil); errors.As(err, &le) {
		return le.Limit
	}
	if err == nil {
		return "success"
	}
	return "error"
}

// slug makes a case name into letters, digits and dashes.
func slug(s string) string {
	s = strings.ToLower(regexp.MustCompile(`[^a-zA-Z0-9]+`).ReplaceAllString(s, "-"))
	return strings.Trim(s, "-")
}

// shorten cuts s to n bytes for a message.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// indentYAML prefixes every line of s with pre.
func indentYAML(s, pre string) string {
	return pre + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+pre) + "\n"
}

// bombDoc is an object of kind Bomb named name whose spec is body.
func bombDoc(name, body string) string {
	return "apiVersion: example.com/v1\nkind: Bomb\nmetadata:\n  name: " + name + "\nspec:\n" + indentYAML(body, "  ")
}

// laughsYAML is the billion laughs: ten strings, then levels anchors each
// a sequence of width aliases of the one before (width^levels * 10 nodes
// expanded).
func laughsYAML(levels, width int) string {
	var b strings.Builder
	b.WriteString("l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= levels; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [", i, i)
		for j := range width {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "*l%d", i-1)
		}
		b.WriteString("]\n")
	}
	return b.String()
}

// anchorYAML is one map of keys entries, then aliases aliases of it.
func anchorYAML(keys, aliases int) string {
	var b strings.Builder
	b.WriteString("big: &big\n")
	for i := range keys {
		fmt.Fprintf(&b, "  key%d: value%d\n", i, i)
	}
	b.WriteString("copies:\n")
	for range aliases {
		b.WriteString("- *big\n")
	}
	return b.String()
}

// blockNesting is levels block maps, one inside the other.
func blockNesting(levels int) string {
	var b strings.Builder
	for i := range levels {
		b.WriteString(strings.Repeat(" ", i) + "a:\n")
	}
	b.WriteString(strings.Repeat(" ", levels) + "x\n")
	return b.String()
}

// aliasChain is n anchors, each a sequence holding an alias of the one
// before: two levels of depth each once expanded, in a flat file.
func aliasChain(n int) string {
	var b strings.Builder
	b.WriteString("l0: &l0 x\n")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [*l%d]\n", i, i, i-1)
	}
	return b.String()
}

// configMapsYAML is n ConfigMaps named prefix0, prefix1, ... in one stream.
func configMapsYAML(n int, prefix string) string {
	var b bytes.Buffer
	for i := range n {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s%d\n", prefix, i)
	}
	return b.String()
}
