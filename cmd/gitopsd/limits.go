package main

import (
	"fmt"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/gitopsd/gitopsd/kustomize"
)

// buildLimits are the bounds of one build (kustomize.Options); zero means
// the package default, which the flags show.
type buildLimits struct {
	maxFileSize, maxTotalRead, maxOutputSize, memory byteSize
	maxObjects                                       int
	timeout                                          time.Duration
	// spare keeps a started worker for the next build: set for the daemon's
	// syncs, not for one-shot commands (see kustomize.Options.SpareWorker).
	spare bool
}

func buildFlags(fs *pflag.FlagSet, b *buildLimits) {
	b.maxFileSize = kustomize.DefaultMaxFileSize
	b.maxTotalRead = kustomize.DefaultMaxTotalRead
	b.maxOutputSize = kustomize.DefaultMaxOutputSize
	b.memory = kustomize.DefaultMaxBuildMemory
	fs.Var(&b.maxFileSize, "build-max-file-size", "largest file a build reads (bytes, or a quantity like 16Mi)")
	fs.Var(&b.maxTotalRead, "build-max-total-read", "bytes a build reads in all, a file read twice counting twice")
	fs.Var(&b.maxOutputSize, "build-max-output-size", "largest rendered output of a build")
	fs.Var(&b.memory, "build-memory", "memory of the worker process a build runs in")
	fs.IntVar(&b.maxObjects, "build-max-objects", kustomize.DefaultMaxObjects, "most objects a build may render")
	fs.DurationVar(&b.timeout, "build-timeout", kustomize.DefaultMaxBuildTime, "wall-clock (and CPU) time a build may take")
}

// builderOptions are the kustomize options of o's builds.
func builderOptions(o *options) kustomize.Options {
	return kustomize.Options{
		AllowRemoteBases: o.allowRemoteBases,
		MaxFileSize:      int64(o.build.maxFileSize),
		MaxTotalRead:     int64(o.build.maxTotalRead),
		MaxOutputSize:    int64(o.build.maxOutputSize),
		MaxObjects:       o.build.maxObjects,
		MaxBuildMemory:   int64(o.build.memory),
		MaxBuildTime:     o.build.timeout,
		SpareWorker:      o.build.spare,
	}
}

// byteSize is a flag of bytes, given as a number or a Kubernetes quantity
// ("16Mi", "1G").
type byteSize int64

func (b *byteSize) String() string {
	return resource.NewQuantity(int64(*b), resource.BinarySI).String()
}

func (b *byteSize) Set(s string) error {
	q, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("%q is not a size (like 16Mi or 1048576): %w", s, err)
	}
	if q.Sign() <= 0 {
		return fmt.Errorf("%q: a size must be positive", s)
	}
	*b = byteSize(q.Value())
	return nil
}

func (b *byteSize) Type() string { return "size" }
