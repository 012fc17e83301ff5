package kustomize

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	yaml "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/types"
)

// minSecretLen is the shortest value a Redactor hides: shorter ones would
// turn every occurrence of a common word or digit in a message into
// "[redacted]" and hide nothing worth hiding.
const minSecretLen = 4

// redactedText stands in for a secret value in a message.
const redactedText = "[redacted]"

// Redactor is the one place where secret values are taken out of messages
// before they reach a log record, an Event, /status or a CLI message: it
// knows the values (Secret data and stringData, secretGenerator literals,
// env files and files, patches that target Secrets) and replaces each of
// them, in every spelling a message may give it (as is, quoted, JSON- or
// base64-encoded, as a Go byte list), with "[redacted]". A build collects
// the values of what it reads; FromObjects adds those of built objects.
// Its methods may be called concurrently. The zero value is empty.
type Redactor struct {
	mu      sync.Mutex
	values  map[string]bool
	files   map[string]bool     // resolved paths whose whole content is secret
	configs map[string][]string // resolved generator and transformer config files: the directories of the kustomizations listing them
}

// NewRedactorFromObjects returns a Redactor for the Secret values among objs.
func NewRedactorFromObjects(objs []*unstructured.Unstructured) *Redactor {
	r := &Redactor{}
	for _, obj := range objs {
		if obj.GetKind() != "Secret" {
			continue
		}
		for _, field := range []string{"data", "stringData"} {
			m, _, _ := unstructured.NestedMap(obj.Object, field)
			for _, v := range m {
				if s, ok := v.(string); ok {
					r.addEncoded(s, field == "data")
				}
			}
		}
	}
	return r
}

// Redact returns msg with every known secret value replaced.
func (r *Redactor) Redact(msg string) string {
	if r == nil {
		return msg
	}
	r.mu.Lock()
	forms := make([]string, 0, len(r.values))
	for v := range r.values {
		forms = append(forms, v)
	}
	r.mu.Unlock()
	// Longest first, so that a value containing another is replaced whole.
	slices.SortFunc(forms, func(a, b string) int { return len(b) - len(a) })
	for _, f := range forms {
		msg = strings.ReplaceAll(msg, f, redactedText)
	}
	return msg
}

// add records v and the spellings of it a message may carry, and each of
// its lines and trimmed forms (a message may quote one line of a file).
func (r *Redactor) add(v string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values == nil {
		r.values = map[string]bool{}
	}
	parts := []string{v, strings.TrimSpace(v)}
	for line := range strings.Lines(v) {
		line = strings.TrimSpace(line)
		parts = append(parts, line)
		if _, after, ok := strings.Cut(line, "="); ok {
			parts = append(parts, strings.TrimSpace(after)) // KEY=value of an env file
		}
	}
	for _, p := range parts {
		if len(p) < minSecretLen {
			continue
		}
		q := strconv.Quote(p)
		j, _ := json.Marshal(p)
		bytesList := fmt.Sprint([]byte(p))
		b64 := base64.StdEncoding.EncodeToString([]byte(p))
		for _, f := range append([]string{p, q[1 : len(q)-1], string(j[1 : len(j)-1]),
			b64, base64.RawStdEncoding.EncodeToString([]byte(p)),
			bytesList[1 : len(bytesList)-1]}, wrappedBase64(b64)...) {
			r.values[f] = true
		}
	}
}

// base64Column is where kyaml breaks the base64 of the data it generates
// (a secretGenerator's values): a line feed after every 70 characters.
const base64Column = 70

// wrappedBase64 returns the spellings of b64 broken as kyaml breaks it:
// whole, quoted, and line by line (a message may quote it escaped).
func wrappedBase64(b64 string) []string {
	if len(b64) <= base64Column {
		return nil
	}
	var forms []string
	var wrapped strings.Builder
	for i := 0; i < len(b64); i += base64Column {
		line := b64[i:min(i+base64Column, len(b64))]
		wrapped.WriteString(line + "\n")
		if len(line) >= minSecretLen {
			forms = append(forms, line)
		}
	}
	w := wrapped.String()
	q := strconv.Quote(w)
	return append(forms, w, strings.TrimSuffix(w, "\n"), q[1:len(q)-1])
}

// addEncoded records v, and when it is Secret data (base64), what it
// decodes to.
func (r *Redactor) addEncoded(v string, isBase64 bool) {
	r.add(v)
	if isBase64 {
		if dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(v)); err == nil {
			r.add(string(dec))
		}
	}
}

// markFile records that the content of the file at path (resolved) is
// secret: a secretGenerator file or env file, or a patch of Secrets.
func (r *Redactor) markFile(path string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.files == nil {
		r.files = map[string]bool{}
	}
	r.files[path] = true
}

func (r *Redactor) isSecretFile(path string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.files[path]
}

// scanFile records the secret values in one file a build read: all of it
// when a kustomization marked it secret, else the values of the Secrets
// among its documents (docs, as checkYAML parsed them). A document that
// did not parse but names Secret gives each of its lines.
func (r *Redactor) scanFile(real string, data []byte, docs []*yaml.Node) {
	if r.isSecretFile(real) {
		r.add(string(data))
		for _, d := range docs {
			r.addScalars(d)
		}
		return
	}
	for _, d := range docs {
		r.scanSecretDoc(d)
	}
	if len(docs) == 0 && bytes.Contains(data, []byte("Secret")) {
		for line := range strings.Lines(string(data)) {
			_, after, _ := strings.Cut(line, ":")
			r.add(strings.Trim(strings.TrimSpace(after), `"'`))
		}
	}
}

// scanSecretDoc records data and stringData of a Secret document, or of
// the Secrets in a List.
func (r *Redactor) scanSecretDoc(doc *yaml.Node) {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return
	}
	// kyaml expands aliases and merge keys ("<<") before kustomize sees a
	// document, so they can make it a Secret or put a value in its data
	// without either being spelled there. Such a document with a "Secret"
	// in it gives all its values.
	if expands, secret := aliasesAndSecret(n); expands && secret {
		r.addScalars(n)
		return
	}
	kind := mappingValue(n, "kind")
	if kind == nil {
		return
	}
	if items := mappingValue(n, "items"); kind.Value == "List" && items != nil {
		for _, item := range items.Content {
			r.scanSecretDoc(item)
		}
		return
	}
	if kind.Value != "Secret" {
		return
	}
	for _, field := range []string{"data", "stringData"} {
		if m := mappingValue(n, field); m != nil {
			for i := 1; i < len(m.Content); i += 2 {
				r.addEncoded(m.Content[i].Value, field == "data")
			}
		}
	}
}

// aliasesAndSecret reports whether the tree under n has an alias or a
// merge key, and whether it has a scalar "Secret" (key or value).
func aliasesAndSecret(n *yaml.Node) (expands, secret bool) {
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		switch {
		case n.Kind == yaml.AliasNode || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!merge":
			expands = true
		case n.Kind == yaml.ScalarNode && n.Value == "Secret":
			secret = true
		}
		for _, c := range n.Content { // aliases are not followed: every node is in the tree once
			walk(c)
		}
	}
	walk(n)
	return expands, secret
}

// addScalars records every scalar value under n (keys excluded), aliases
// followed as kyaml expands them; each node once, so that the walk is
// linear in the document even for one that is an alias bomb.
func (r *Redactor) addScalars(n *yaml.Node) {
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		switch n.Kind {
		case yaml.ScalarNode:
			r.addEncoded(n.Value, true)
		case yaml.AliasNode:
			walk(n.Alias)
		case yaml.MappingNode:
			for i := 1; i < len(n.Content); i += 2 {
				walk(n.Content[i])
			}
		default:
			for _, c := range n.Content {
				walk(c)
			}
		}
	}
	walk(n)
}

// scanKustomization records the secrets a kustomization spells or points
// at: secretGenerator literals and files, and patches of Secrets (or with
// no target, which kustomize may echo in its error). dir is the
// kustomization's directory, resolve makes its relative paths real.
func (r *Redactor) scanKustomization(k *types.Kustomization, dir string, resolve func(string) (string, error)) {
	mark := func(p string) {
		if _, after, ok := strings.Cut(p, "="); ok {
			p = after // key=path
		}
		if real, err := resolve(joinLocal(dir, strings.TrimSpace(p))); err == nil {
			r.markFile(real)
		}
	}
	for _, g := range k.SecretGenerator {
		for _, lit := range g.LiteralSources {
			r.add(lit)
		}
		for _, f := range g.FileSources {
			mark(f)
		}
		for _, f := range g.EnvSources {
			mark(f)
		}
		if g.EnvSource != "" {
			mark(g.EnvSource)
		}
	}
	for _, p := range slices.Concat(k.Patches, k.PatchesJson6902) {
		explicit := p.Target != nil && strings.Contains(p.Target.Kind, "Secret")
		kindless := p.Target != nil && p.Target.Kind == "" // may select Secrets by name or label
		switch {
		case explicit || kindless:
			r.addPatch(p.Patch, true)
			if p.Path != "" {
				mark(p.Path)
			}
		case p.Target == nil:
			r.addPatch(p.Patch, false)
		}
	}
	for _, p := range k.PatchesStrategicMerge {
		if strings.Contains(string(p), "\n") {
			r.addPatch(string(p), false)
		}
	}
	// Builtin generators and transformers: inline ones now, files when
	// they are read (see scanPluginConfigs), with this directory.
	for _, e := range slices.Concat(k.Generators, k.Transformers, k.Validators) {
		if !strings.Contains(e, "\n") {
			if real, err := resolve(joinLocal(dir, strings.TrimSpace(e))); err == nil {
				r.addConfigDir(real, dir)
			}
			continue
		}
		var docs []*yaml.Node
		for _, d := range splitDocuments([]byte(e)) {
			var n yaml.Node
			if yaml.Unmarshal(d, &n) == nil {
				docs = append(docs, &n)
			}
		}
		r.scanPluginConfigs(docs, []string{dir}, resolve)
	}
}

// addConfigDir records that the kustomization in dir lists the generator
// or transformer configuration file at path (resolved).
func (r *Redactor) addConfigDir(path, dir string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.configs == nil {
		r.configs = map[string][]string{}
	}
	if !slices.Contains(r.configs[path], dir) {
		r.configs[path] = append(r.configs[path], dir)
	}
}

// configDirs returns the directories the relative paths of the
// configurations in the file at path (resolved) may be taken from: the
// kustomizations that listed it, and its own.
func (r *Redactor) configDirs(path string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(slices.Clone(r.configs[path]), filepath.Dir(path))
}

// scanPluginConfigs records the secrets of the builtin generator and
// transformer configurations among docs as scanKustomization does those
// of a kustomization's own entries: a SecretGenerator's literals and
// files, the patches of a patch transformer. Their relative paths are
// taken from each of dirs.
func (r *Redactor) scanPluginConfigs(docs []*yaml.Node, dirs []string, resolve func(string) (string, error)) {
	for _, d := range docs {
		if k := builtinEntry(d); k != nil {
			for _, dir := range dirs {
				r.scanKustomization(k, dir, resolve)
			}
		}
	}
}

// builtinEntry returns the kustomization entry that a builtin
// SecretGenerator or patch transformer configuration stands for, or nil.
// The document is decoded, aliases and merge keys resolved, as kustomize
// decodes it.
func builtinEntry(doc *yaml.Node) *types.Kustomization {
	var meta struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
	}
	if doc.Decode(&meta) != nil || meta.APIVersion != "builtin" {
		return nil
	}
	var k types.Kustomization
	var err error
	switch meta.Kind {
	case "SecretGenerator":
		var g types.SecretArgs
		err = doc.Decode(&g)
		k.SecretGenerator = []types.SecretArgs{g}
	case "PatchTransformer":
		var p types.Patch
		err = doc.Decode(&p)
		k.Patches = []types.Patch{p}
	case "PatchJson6902Transformer":
		var p struct {
			Target *types.Selector `yaml:"target"`
			Path   string          `yaml:"path"`
			JsonOp string          `yaml:"jsonOp"`
		}
		err = doc.Decode(&p)
		k.PatchesJson6902 = []types.Patch{{Target: p.Target, Path: p.Path, Patch: p.JsonOp}}
	case "PatchStrategicMergeTransformer":
		var p struct {
			Paths   []types.PatchStrategicMerge `yaml:"paths"`
			Patches string                      `yaml:"patches"`
		}
		err = doc.Decode(&p)
		k.PatchesStrategicMerge = append(p.Paths, types.PatchStrategicMerge(p.Patches))
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	return &k
}

// addPatch records an inline patch's secrets: every scalar of a JSON patch
// or of a patch of Secrets (all), the Secret values of a strategic-merge
// patch otherwise.
func (r *Redactor) addPatch(patch string, all bool) {
	if patch == "" {
		return
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(patch), &n); err != nil {
		r.add(patch)
		return
	}
	doc := &n
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if all || doc.Kind == yaml.SequenceNode { // JSON 6902: its values are the change
		r.addScalars(doc)
		return
	}
	r.scanSecretDoc(&n)
}

// joinLocal joins a relative path to dir; an absolute one stays.
func joinLocal(dir, p string) string {
	if strings.HasPrefix(p, "/") {
		return p
	}
	return dir + "/" + p
}
