package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"

	"github.com/gitopsd/gitopsd/kustomize"
)

func writeConfig(t *testing.T, content string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "gitopsd.yaml")
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func TestLoadConfig(t *testing.T) {
	flags := &options{interval: time.Minute, path: ".", prune: true, selfHeal: true, wait: true, gitRef: "main", gitTimeout: time.Minute}
	file := writeConfig(t, `syncs:
- name: dev
  gitURL: https://example.com/stack.git
  path: overlays/dev
  interval: 5s
  gitTimeout: 10s
- name: prod
  gitURL: https://example.com/stack.git
  gitRef: v1.2.0
  path: overlays/prod
  prune: false
  selfHeal: false
`)
	syncs, err := loadConfig(file, flags)
	if err != nil {
		t.Fatal(err)
	}
	if len(syncs) != 2 {
		t.Fatalf("%d syncs, want 2", len(syncs))
	}
	dev, prod := syncs[0], syncs[1]
	if dev.name != "dev" || dev.path != "overlays/dev" || dev.interval != 5*time.Second || dev.gitTimeout != 10*time.Second || dev.gitRef != "main" || !dev.prune {
		t.Errorf("dev %+v: want its own path, interval and git timeout, the flags' ref and prune", dev)
	}
	if prod.gitRef != "v1.2.0" || prod.prune || prod.selfHeal || prod.interval != time.Minute || prod.gitTimeout != time.Minute {
		t.Errorf("prod %+v: want ref v1.2.0, prune and self-heal off, the flags' interval and git timeout", prod)
	}
	if flags.name != "" || flags.path != "." {
		t.Error("loadConfig changed the flags")
	}
}

func TestLoadConfigErrors(t *testing.T) {
	tests := map[string]struct{ content, want string }{
		"not YAML":         {"syncs: [", "gitopsd.yaml"},
		"unknown field":    {"syncs:\n- name: a\n  gitURL: https://x/y.git\n  replicas: 3\n", `unknown field "replicas"`},
		"no syncs":         {"syncs: []\n", "no syncs"},
		"bad name":         {"syncs:\n- name: Not_DNS\n  gitURL: https://x/y.git\n", "syncs[0] (Not_DNS): name"},
		"name twice":       {"syncs:\n- {name: a, gitURL: https://x/y.git}\n- {name: a, gitURL: https://x/z.git}\n", "syncs[1] (a): name used twice"},
		"no source":        {"syncs:\n- name: a\n", "syncs[0] (a): set exactly one of gitURL and dir"},
		"bad build size":   {"syncs:\n- name: a\n  gitURL: https://x/y.git\n  build: {memory: lots}\n", "syncs[0] (a): build.memory"},
		"bad build time":   {"syncs:\n- name: a\n  gitURL: https://x/y.git\n  build: {timeout: -1s}\n", "syncs[0] (a): build.timeout"},
		"two sources":      {"syncs:\n- {name: a, gitURL: https://x/y.git, dir: /tmp}\n", "exactly one"},
		"bad interval":     {"syncs:\n- {name: a, gitURL: https://x/y.git, interval: soon}\n", `interval: "soon"`},
		"absolute path":    {"syncs:\n- {name: a, gitURL: https://x/y.git, path: /etc}\n", "must be relative"},
		"negative timeout": {"syncs:\n- {name: a, gitURL: https://x/y.git, healthTimeout: -1s}\n", "healthTimeout"},
		"bad git timeout":  {"syncs:\n- {name: a, gitURL: https://x/y.git, gitTimeout: forever}\n", `gitTimeout: "forever"`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			file := writeConfig(t, tc.content)
			_, err := loadConfig(file, &options{path: "."})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), file) {
				t.Errorf("error %v, want one naming %s and saying %q", err, file, tc.want)
			}
		})
	}
}

// TestLoadConfigBuildLimits checks that a sync's build limits override the
// flags' and are what its builds get.
func TestLoadConfigBuildLimits(t *testing.T) {
	flags := &options{path: "."}
	buildFlags(pflag.NewFlagSet("test", pflag.ContinueOnError), &flags.build)
	file := writeConfig(t, `syncs:
- name: big
  gitURL: https://example.com/stack.git
  build: {maxFileSize: 32Mi, maxTotalRead: "1073741824", maxOutputSize: 100Mi, maxObjects: 50000, memory: 1Gi, timeout: 5m}
- name: plain
  gitURL: https://example.com/stack.git
`)
	syncs, err := loadConfig(file, flags)
	if err != nil {
		t.Fatal(err)
	}
	want := kustomize.Options{MaxFileSize: 32 << 20, MaxTotalRead: 1 << 30, MaxOutputSize: 100 << 20, MaxObjects: 50000, MaxBuildMemory: 1 << 30, MaxBuildTime: 5 * time.Minute}
	if diff := cmp.Diff(want, builderOptions(syncs[0])); diff != "" {
		t.Errorf("big (-want +got):\n%s", diff)
	}
	defaults := kustomize.Options{MaxFileSize: kustomize.DefaultMaxFileSize, MaxTotalRead: kustomize.DefaultMaxTotalRead, MaxOutputSize: kustomize.DefaultMaxOutputSize,
		MaxObjects: kustomize.DefaultMaxObjects, MaxBuildMemory: kustomize.DefaultMaxBuildMemory, MaxBuildTime: kustomize.DefaultMaxBuildTime}
	if diff := cmp.Diff(defaults, builderOptions(syncs[1])); diff != "" {
		t.Errorf("plain: want the flags' defaults (-want +got):\n%s", diff)
	}
}
