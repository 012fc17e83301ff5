package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/fsnotify/fsnotify"
	"sigs.k8s.io/yaml"
)

// fileConfig is the --config file: one or more syncs. Every field of a sync
// defaults to the flag of the same meaning.
//
//	syncs:
//	- name: mysql-prod
//	  gitURL: https://github.com/acme/mysql-stack
//	  gitRef: main
//	  path: overlays/prod
//	  interval: 1m
type fileConfig struct {
	Syncs []syncConfig `json:"syncs"`
}

type syncConfig struct {
	Name          string `json:"name"`
	GitURL        string `json:"gitURL,omitempty"`
	GitRef        string `json:"gitRef,omitempty"`
	GitSecretDir  string `json:"gitSecretDir,omitempty"`
	GitTimeout    string `json:"gitTimeout,omitempty"`
	Dir           string `json:"dir,omitempty"`
	Path          string `json:"path,omitempty"`
	Interval      string `json:"interval,omitempty"`
	Prune         *bool  `json:"prune,omitempty"`
	SelfHeal      *bool  `json:"selfHeal,omitempty"`
	Wait          *bool  `json:"wait,omitempty"`
	HealthTimeout string `json:"healthTimeout,omitempty"`
	// Build overrides the --build-* limits for this sync.
	Build *buildConfig `json:"build,omitempty"`
}

// buildConfig is a sync's build limits: sizes as bytes or quantities
// ("16Mi"), the timeout as a duration; empty fields keep the flags' values.
type buildConfig struct {
	MaxFileSize   string `json:"maxFileSize,omitempty"`
	MaxTotalRead  string `json:"maxTotalRead,omitempty"`
	MaxOutputSize string `json:"maxOutputSize,omitempty"`
	MaxObjects    int    `json:"maxObjects,omitempty"`
	Memory        string `json:"memory,omitempty"`
	Timeout       string `json:"timeout,omitempty"`
}

// apply sets b's fields that c gives. Errors name the field.
func (c *buildConfig) apply(b *buildLimits) error {
	if c == nil {
		return nil
	}
	for _, f := range []struct {
		dst       *byteSize
		src, name string
	}{{&b.maxFileSize, c.MaxFileSize, "maxFileSize"}, {&b.maxTotalRead, c.MaxTotalRead, "maxTotalRead"},
		{&b.maxOutputSize, c.MaxOutputSize, "maxOutputSize"}, {&b.memory, c.Memory, "memory"}} {
		if f.src == "" {
			continue
		}
		if err := f.dst.Set(f.src); err != nil {
			return fmt.Errorf("build.%s: %w", f.name, err)
		}
	}
	if c.MaxObjects < 0 {
		return fmt.Errorf("build.maxObjects: %d is negative", c.MaxObjects)
	} else if c.MaxObjects > 0 {
		b.maxObjects = c.MaxObjects
	}
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return fmt.Errorf("build.timeout: %q is not a positive duration", c.Timeout)
		}
		b.timeout = d
	}
	return nil
}

var syncName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?$`)

// loadConfig reads the config file and returns one options per sync, each
// the flags overridden by the file. Any error names the file and the sync;
// nothing of an invalid file is used.
func loadConfig(file string, flags *options) ([]*options, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var cfg fileConfig
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(cfg.Syncs) == 0 {
		return nil, fmt.Errorf("%s: no syncs", file)
	}
	seen := map[string]bool{}
	var out []*options
	for i, sc := range cfg.Syncs {
		where := fmt.Sprintf("%s: syncs[%d] (%s)", file, i, sc.Name)
		if !syncName.MatchString(sc.Name) {
			return nil, fmt.Errorf("%s: name must be a DNS label of up to 52 characters", where)
		}
		if seen[sc.Name] {
			return nil, fmt.Errorf("%s: name used twice", where)
		}
		seen[sc.Name] = true
		o := *flags
		o.configFile = ""
		o.name = sc.Name
		for _, s := range []struct {
			dst *string
			src string
		}{{&o.gitURL, sc.GitURL}, {&o.gitRef, sc.GitRef}, {&o.gitSecretDir, sc.GitSecretDir}, {&o.dir, sc.Dir}, {&o.path, sc.Path}} {
			if s.src != "" {
				*s.dst = s.src
			}
		}
		if sc.GitURL != "" && sc.Dir == "" {
			o.dir = ""
		}
		if sc.Dir != "" && sc.GitURL == "" {
			o.gitURL = ""
		}
		for _, d := range []struct {
			dst  *time.Duration
			src  string
			name string
		}{{&o.interval, sc.Interval, "interval"}, {&o.healthTimeout, sc.HealthTimeout, "healthTimeout"}, {&o.gitTimeout, sc.GitTimeout, "gitTimeout"}} {
			if d.src == "" {
				continue
			}
			if *d.dst, err = time.ParseDuration(d.src); err != nil || *d.dst <= 0 {
				return nil, fmt.Errorf("%s: %s: %q is not a positive duration", where, d.name, d.src)
			}
		}
		for _, b := range []struct {
			dst *bool
			src *bool
		}{{&o.prune, sc.Prune}, {&o.selfHeal, sc.SelfHeal}, {&o.wait, sc.Wait}} {
			if b.src != nil {
				*b.dst = *b.src
			}
		}
		if err := sc.Build.apply(&o.build); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if (o.gitURL == "") == (o.dir == "") {
			return nil, fmt.Errorf("%s: set exactly one of gitURL and dir", where)
		}
		if filepath.IsAbs(o.path) {
			return nil, fmt.Errorf("%s: path %q must be relative to the source", where, o.path)
		}
		if _, err := newSource(&o, nil); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, &o)
	}
	return out, nil
}

// watchConfig calls apply with every valid new version of the config file;
// an invalid edit is logged and the running config kept. The directory is
// watched, not the file: editors and Kubernetes ConfigMap volumes replace
// files (a symlink swap) rather than write them in place.
func watchConfig(ctx context.Context, file string, flags *options, logger *slog.Logger, apply func([]*options)) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(file)); err != nil {
		return fmt.Errorf("watch %s: %w", file, err)
	}
	var last []byte
	if data, err := os.ReadFile(file); err == nil {
		last = data
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-w.Errors:
			logger.Error("config watch", "file", file, "error", err.Error())
		case <-w.Events:
			debounce.Reset(200 * time.Millisecond)
		case <-debounce.C:
			data, err := os.ReadFile(file)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				logger.Error("config rejected", "file", file, "error", err.Error())
				continue
			}
			if string(data) == string(last) {
				continue
			}
			syncs, err := loadConfig(file, flags)
			if err != nil {
				logger.Error("config rejected", "file", file, "error", err.Error(), "kept", "the running config")
				continue
			}
			last = data
			logger.Info("config reloaded", "file", file, "syncs", len(syncs))
			apply(syncs)
		}
	}
}
