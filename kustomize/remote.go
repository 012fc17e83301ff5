package kustomize

import (
	"bytes"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/kio"
)

// kustomize fetches remote content in two ways, neither of which goes
// through the file system it is given: a resource, patch or generator file
// with an http(s) URL is downloaded, and a base that parses as a git URL is
// cloned by running git. So remote references are found by reading the
// files that name them, as the confined file system hands them to kustomize:
// every kustomization file, and every builtin plugin configuration (the
// generators and transformers a kustomization lists may load files too).

// reference is one entry of a kustomization that names a file, a directory
// or a base.
type reference struct {
	field string // where it was found, like "resources" or "patches[1].path"
	value string
}

// checkKustomization parses the kustomization file name with kustomize's own
// parser and refuses remote references in it. A parse error is returned
// naming the file, because kustomize's message does not. The parsed
// kustomization is returned when it parsed, with or without an error.
//
// These checks give an early error that names the field; they are not
// what keeps a build off the network (spellings that decode differently
// get past any reading of the text): the worker's sandbox is.
func checkKustomization(name string, data []byte, allowRemote bool) (*types.Kustomization, error) {
	var k types.Kustomization
	if err := k.Unmarshal(data); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for _, ref := range references(&k) {
		if err := checkReference(ref, allowRemote); err != nil {
			return &k, fmt.Errorf("%s: %w", name, err)
		}
	}
	// Generators, transformers and validators may be inline configurations.
	for _, inline := range inlineConfigs(&k) {
		if err := checkPluginConfigs(name, []byte(inline), allowRemote); err != nil {
			return &k, err
		}
	}
	return &k, nil
}

// references lists the entries of k that kustomize loads as a file, a
// directory or a base. k is as parsed (not through FixKustomization), so
// that errors name the fields as the file spells them.
func references(k *types.Kustomization) []reference {
	var refs []reference
	add := func(field string, values ...string) {
		for _, v := range values {
			if v != "" && !strings.Contains(v, "\n") {
				refs = append(refs, reference{field, v})
			}
		}
	}
	add("resources", k.Resources...)
	add("bases", k.Bases...)
	add("components", k.Components...)
	add("crds", k.Crds...)
	add("configurations", k.Configurations...)
	add("generators", k.Generators...)
	add("transformers", k.Transformers...)
	add("validators", k.Validators...)
	add("openapi.path", k.OpenAPI["path"])
	for _, p := range k.PatchesStrategicMerge {
		add("patchesStrategicMerge", string(p))
	}
	for i, p := range k.Patches {
		add(fmt.Sprintf("patches[%d].path", i), p.Path)
	}
	for i, p := range k.PatchesJson6902 {
		add(fmt.Sprintf("patchesJson6902[%d].path", i), p.Path)
	}
	for i, r := range k.Replacements {
		add(fmt.Sprintf("replacements[%d].path", i), r.Path)
	}
	for i, g := range k.ConfigMapGenerator {
		add(fmt.Sprintf("configMapGenerator[%d].files", i), g.FileSources...)
		add(fmt.Sprintf("configMapGenerator[%d].envs", i), g.EnvSources...)
		add(fmt.Sprintf("configMapGenerator[%d].env", i), g.EnvSource)
	}
	for i, g := range k.SecretGenerator {
		add(fmt.Sprintf("secretGenerator[%d].files", i), g.FileSources...)
		add(fmt.Sprintf("secretGenerator[%d].envs", i), g.EnvSources...)
		add(fmt.Sprintf("secretGenerator[%d].env", i), g.EnvSource)
	}
	return refs
}

// inlineConfigs returns the generator, transformer and validator entries of
// k that are YAML documents rather than paths.
func inlineConfigs(k *types.Kustomization) []string {
	var inline []string
	for _, list := range [][]string{k.Generators, k.Transformers, k.Validators} {
		for _, v := range list {
			if strings.Contains(v, "\n") {
				inline = append(inline, v)
			}
		}
	}
	return inline
}

// pluginPathKeys are the keys of builtin plugin configurations whose values
// kustomize loads: PatchTransformer's path, PatchStrategicMergeTransformer's
// paths, ReplacementTransformer's replacements[].path, the generators'
// files, envs and env.
var pluginPathKeys = map[string]bool{"path": true, "paths": true, "files": true, "envs": true, "env": true}

// checkPluginConfigs refuses remote references in the builtin plugin
// configurations (apiVersion: builtin) among the YAML documents in data.
// Anything that does not parse is left to kustomize to report.
func checkPluginConfigs(name string, data []byte, allowRemote bool) error {
	if !bytes.Contains(data, []byte("builtin")) {
		return nil
	}
	nodes, err := kio.FromBytes(data)
	if err != nil {
		return nil
	}
	for _, n := range nodes {
		if n.GetApiVersion() != "builtin" {
			continue
		}
		m, err := n.Map()
		if err != nil {
			continue
		}
		field := n.GetKind() + "/" + n.GetName()
		for _, ref := range pluginReferences(field, m) {
			if err := checkReference(ref, allowRemote); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// pluginReferences collects the string values under pluginPathKeys anywhere
// in v, a decoded YAML value.
func pluginReferences(field string, v any) []reference {
	var refs []reference
	var walk func(field string, v any, collect bool)
	walk = func(field string, v any, collect bool) {
		switch v := v.(type) {
		case map[string]any:
			// Sorted, so that the same file always gives the same error.
			for _, k := range slices.Sorted(maps.Keys(v)) {
				walk(field+"."+k, v[k], pluginPathKeys[k])
			}
		case []any:
			for i, e := range v {
				walk(fmt.Sprintf("%s[%d]", field, i), e, collect)
			}
		case string:
			if collect {
				refs = append(refs, reference{field, v})
			}
		}
	}
	walk(field, v, false)
	return refs
}

// checkReference refuses ref when it is remote and remote content is off,
// and always when it is a file:// git URL, which would clone a repository
// from anywhere on this machine.
func checkReference(ref reference, allowRemote bool) error {
	for _, v := range candidates(ref.value) {
		if strings.HasPrefix(strings.TrimPrefix(strings.ToLower(v), "git::"), "file://") {
			return fmt.Errorf("%s: %q: file:// URLs are not allowed (they reach outside the repository)", ref.field, redact(ref.value))
		}
		if !allowRemote && isRemote(v) {
			return fmt.Errorf("%s: %q: remote bases and resources are refused (AllowRemoteBases is off)", ref.field, redact(ref.value))
		}
	}
	return nil
}

// redact hides the password of a URL with credentials in it
// (https://user:token@host/...): error messages end up in logs.
func redact(value string) string {
	for _, prefix := range []string{"", "git::"} {
		rest, ok := strings.CutPrefix(value, prefix)
		if !ok {
			continue
		}
		if u, err := url.Parse(rest); err == nil && u.User != nil {
			if _, has := u.User.Password(); has {
				return prefix + u.Redacted()
			}
		}
	}
	return value
}

// candidates returns the strings in value that kustomize may load: the
// value, and for a generator's "key=path" the path.
func candidates(value string) []string {
	v := strings.TrimSpace(value)
	if _, after, ok := strings.Cut(v, "="); ok {
		return []string{v, strings.TrimSpace(after)}
	}
	return []string{v}
}

// scpUser matches the user@ that starts an scp-like git URL
// (git@github.com:org/repo); kustomize's own pattern.
var scpUser = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9-]*@`)

// isRemote reports whether kustomize could take s for a remote file or a
// git repository. It errs on the side of remote: it matches everything
// kustomize's git URL parser and its http file check accept, and a little
// more (any "scheme://").
func isRemote(s string) bool {
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "git::"),
		strings.Contains(s, "://"),
		scpUser.MatchString(s),
		strings.HasPrefix(lower, "github.com/"),
		strings.HasPrefix(lower, "github.com:"):
		return true
	}
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https")
}
