package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	flags := &options{interval: time.Minute, path: ".", prune: true, selfHeal: true, wait: true, gitRef: "main"}
	file := writeConfig(t, `syncs:
- name: dev
  gitURL: https://example.com/stack.git
  path: overlays/dev
  interval: 5s
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
	if dev.name != "dev" || dev.path != "overlays/dev" || dev.interval != 5*time.Second || dev.gitRef != "main" || !dev.prune {
		t.Errorf("dev %+v: want its own path and interval, the flags' ref and prune", dev)
	}
	if prod.gitRef != "v1.2.0" || prod.prune || prod.selfHeal || prod.interval != time.Minute {
		t.Errorf("prod %+v: want ref v1.2.0, prune and self-heal off, the flags' interval", prod)
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
		"two sources":      {"syncs:\n- {name: a, gitURL: https://x/y.git, dir: /tmp}\n", "exactly one"},
		"bad interval":     {"syncs:\n- {name: a, gitURL: https://x/y.git, interval: soon}\n", `interval: "soon"`},
		"absolute path":    {"syncs:\n- {name: a, gitURL: https://x/y.git, path: /etc}\n", "must be relative"},
		"negative timeout": {"syncs:\n- {name: a, gitURL: https://x/y.git, healthTimeout: -1s}\n", "healthTimeout"},
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
