// Package cluster runs a real, local Kubernetes control plane for the
// end-to-end tests, the demo and `make cluster`: etcd, kube-apiserver (RBAC
// on), kube-controller-manager and kube-scheduler built from source at a
// pinned release (test/tools), kwok playing the kubelet of three EKS-like
// nodes in three zones, and a simulated Amazon EBS CSI driver (package
// ebscsi) that provisions, expands and reclaims volumes as the real one does.
//
// Nothing is faked above the kubelet: server-side apply, field ownership,
// StatefulSet ordinals, PVC binding and PV reclaim are the real controllers'
// behaviour. Pods do not run containers; kwok moves them through their
// lifecycle (stages/), and the fault switches in faults.go stand in for a
// failing readiness probe or a restarting container.
//
// A test package starts one cluster in TestMain and gives each test its own
// namespace:
//
//	c, err := cluster.Start(ctx, cluster.Options{})
//	...
//	defer c.Stop()
//	cfg := c.RESTConfig()
//
// Children die with the test binary (parent-death signal, process groups);
// a state directory given in Options.Dir keeps the component logs.
package cluster
