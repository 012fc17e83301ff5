// Package e2e holds the end-to-end tests: they run against the real local
// control plane of package test/cluster, started once per package here.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gitopsd/gitopsd/test/cluster"
)

// env is the cluster every test of the package shares.
var env struct {
	cluster *cluster.Cluster
	config  *rest.Config
	cs      kubernetes.Interface
	dyn     dynamic.Interface
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	bins, err := cluster.EnsureBinaries(ctx, cluster.BuildOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build control plane:", err)
		return 1
	}
	if bins.Built {
		fmt.Printf("e2e: cold build of the control plane took %s\n", bins.Duration.Round(time.Second))
	}
	c, err := cluster.Start(ctx, cluster.Options{Binaries: &bins, Dir: os.Getenv("E2E_CLUSTER_DIR")})
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: start cluster:", err)
		return 1
	}
	defer c.Stop()
	fmt.Printf("e2e: warm start of the local cluster took %s\n", c.StartDuration.Round(100*time.Millisecond))

	env.cluster = c
	env.config = c.RESTConfig()
	env.config.QPS, env.config.Burst = 100, 200
	if env.cs, err = kubernetes.NewForConfig(env.config); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	if env.dyn, err = dynamic.NewForConfig(env.config); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	return m.Run()
}
