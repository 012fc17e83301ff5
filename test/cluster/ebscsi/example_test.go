package ebscsi_test

import (
	"context"
	"log/slog"
	"os"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/gitopsd/gitopsd/test/cluster/ebscsi"
)

// The simulated driver runs beside the tests, against the local control
// plane's API server, until the tests are done.
func ExampleRun() {
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ebscsi.Run(ctx, cfg, ebscsi.Options{Logger: slog.Default()})
	}()

	// ... create the mysql-gp2 StorageClass and the StatefulSet, and test ...

	stop()
	if err := <-done; err != nil {
		panic(err)
	}
}
