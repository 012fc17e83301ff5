package e2e

import (
	"os"
	"path/filepath"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gitopsd/gitopsd/test/manifests"
)

// deployManagedNamespace is the namespace deploy/ grants gitopsd rights in.
const deployManagedNamespace = "mysql"

// asServiceAccount applies deploy/'s ServiceAccount and RBAC, with its
// managed namespace renamed to ns, and returns the flags that make gitopsd
// authenticate as that ServiceAccount, with a token from the TokenRequest
// API: what the Deployment's pods get, not the admin of the other tests.
func asServiceAccount(t *testing.T, ns string) []string {
	t.Helper()
	ctx := t.Context()
	root, err := manifests.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := manifests.Build(root, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	var rbac []*unstructured.Unstructured
	for _, obj := range objs {
		switch obj.GetKind() {
		case "Namespace", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding":
		default:
			continue
		}
		if obj.GetKind() == "Namespace" && obj.GetName() == deployManagedNamespace {
			obj.SetName(ns)
		}
		if obj.GetNamespace() == deployManagedNamespace {
			obj.SetNamespace(ns)
		}
		rbac = append(rbac, obj)
	}
	if len(rbac) < 8 {
		t.Fatalf("deploy/ holds %d RBAC objects, want its ServiceAccount, Roles, bindings and Namespaces", len(rbac))
	}
	if err := applyAll(ctx, t, rbac, "e2e-deploy", false); err != nil {
		t.Fatal(err)
	}

	const saNamespace, saName = "gitopsd", "gitopsd"
	ttl := int64(3600)
	tok, err := env.cs.CoreV1().ServiceAccounts(saNamespace).CreateToken(ctx, saName,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount %s/%s: %v", saNamespace, saName, err)
	}
	ca := env.config.CAData
	if len(ca) == 0 {
		if ca, err = os.ReadFile(env.config.CAFile); err != nil {
			t.Fatal(err)
		}
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["local"] = &clientcmdapi.Cluster{Server: env.config.Host, CertificateAuthorityData: ca}
	cfg.AuthInfos[saName] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts[saName] = &clientcmdapi.Context{Cluster: "local", AuthInfo: saName}
	cfg.CurrentContext = saName
	path := filepath.Join(t.TempDir(), "serviceaccount.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}

	// It is not an admin: it cannot even read the Secrets of the namespace
	// it manages.
	restCfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("ServiceAccount %s/%s listing Secrets in %s: %v, want forbidden", saNamespace, saName, ns, err)
	}
	return []string{"--kubeconfig", path}
}
