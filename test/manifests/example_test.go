package manifests_test

import (
	"fmt"
	"path/filepath"

	"github.com/gitopsd/gitopsd/test/manifests"
)

func ExampleBuild() {
	root, err := manifests.RepoRoot()
	if err != nil {
		fmt.Println(err)
		return
	}
	objs, err := manifests.Build(root, filepath.Join("overlays", "dev"))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, obj := range objs {
		fmt.Println(obj.GetKind(), obj.GetNamespace(), obj.GetName())
	}
	// Output:
	// Namespace  mysql
	// StorageClass  mysql-gp2
	// ConfigMap mysql mysql-config
	// Service mysql mysql
	// Service mysql mysql-read
	// StatefulSet mysql mysql
}
