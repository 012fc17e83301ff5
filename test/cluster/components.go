package cluster

import (
	"fmt"
	"path/filepath"
	"strconv"
)

// The command lines below are the ones kubeadm and kwokctl use, trimmed to a
// single-member, loopback-only cluster. Every component gets its own identity
// so that RBAC is exercised the way a real cluster exercises it.

func etcdArgs(dir, clientURL string, peerPort int) []string {
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	return []string{
		"--name=local",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=local=" + peerURL,
		"--initial-cluster-state=new",
		// A throw-away test store: durability is not worth an fsync per write.
		"--unsafe-no-fsync",
		"--quota-backend-bytes=4294967296",
		"--log-level=warn",
	}
}

func apiserverArgs(dir string, p *pki, serving identity, etcdURL string, port int) []string {
	return []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "apiserver"),
		"--tls-cert-file=" + serving.CertFile,
		"--tls-private-key-file=" + serving.KeyFile,
		"--client-ca-file=" + p.caFile(),
		"--service-account-key-file=" + p.path("sa.pub"),
		"--service-account-signing-key-file=" + p.path("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--authorization-mode=Node,RBAC",
		"--allow-privileged=true",
		"--profiling=false",
		// The lease reconciler refuses a loopback advertise address; nothing
		// here needs the kubernetes Service's endpoints.
		"--endpoint-reconciler-type=none",
	}
}

func kcmArgs(dir string, p *pki, port int) []string {
	kubeconfig := filepath.Join(dir, "kube-controller-manager.kubeconfig")
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "kube-controller-manager"),
		"--service-account-private-key-file=" + p.path("sa.key"),
		"--root-ca-file=" + p.caFile(),
		"--cluster-signing-cert-file=" + p.caFile(),
		"--cluster-signing-key-file=" + p.path("ca.key"),
		"--use-service-account-credentials=true",
		"--leader-elect=false",
		"--controllers=*",
		"--profiling=false",
	}
}

func schedulerArgs(dir string, port int) []string {
	kubeconfig := filepath.Join(dir, "kube-scheduler.kubeconfig")
	return []string{
		"--kubeconfig=" + kubeconfig,
		"--authentication-kubeconfig=" + kubeconfig,
		"--authorization-kubeconfig=" + kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(dir, "kube-scheduler"),
		"--leader-elect=false",
		"--profiling=false",
	}
}

func kwokArgs(dir, stagesPath string, port int) []string {
	return []string{
		"--kubeconfig=" + filepath.Join(dir, "kwok.kubeconfig"),
		"--config=" + stagesPath,
		"--manage-all-nodes=false",
		"--manage-nodes-with-annotation-selector=" + kwokNodeAnnotation + "=fake",
		"--server-address=127.0.0.1:" + strconv.Itoa(port),
		"--node-lease-duration-seconds=40",
		"--cidr=" + podCIDR,
	}
}
