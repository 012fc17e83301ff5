package manifests

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

// TestDeploy checks deploy/: two replicas under the restricted Pod Security
// Standard, probes on the endpoints, and cluster-scoped rights only for
// StorageClasses, PersistentVolumes and Namespaces, never deleting volumes,
// claims or namespaces.
func TestDeploy(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Build(root, "deploy")
	if err != nil {
		t.Fatal(err)
	}
	var dep appsv1.Deployment
	convert(t, find(t, objs, "Deployment"), &dep)
	pod := dep.Spec.Template.Spec
	c := pod.Containers[0]
	switch {
	case *dep.Spec.Replicas != 2:
		t.Errorf("replicas %d, want 2", *dep.Spec.Replicas)
	case pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot,
		pod.SecurityContext.SeccompProfile == nil || pod.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault,
		c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem,
		c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation,
		c.SecurityContext.Capabilities == nil || !slices.Equal(c.SecurityContext.Capabilities.Drop, []corev1.Capability{"ALL"}):
		t.Errorf("pod security is not restricted: %+v %+v", pod.SecurityContext, c.SecurityContext)
	case c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz":
		t.Errorf("probes %+v %+v", c.LivenessProbe, c.ReadinessProbe)
	case c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero():
		t.Errorf("resources %+v", c.Resources)
	case !slices.Contains(c.Args, "--leader-elect"):
		t.Errorf("args %v lack --leader-elect", c.Args)
	}

	var role rbacv1.ClusterRole
	convert(t, find(t, objs, "ClusterRole"), &role)
	allowed := map[string]bool{"storageclasses": true, "persistentvolumes": true, "namespaces": true}
	for _, rule := range role.Rules {
		for _, r := range rule.Resources {
			if !allowed[r] {
				t.Errorf("cluster-scoped rights on %s", r)
			}
			if (r == "persistentvolumes" || r == "namespaces") && slices.Contains(rule.Verbs, "delete") {
				t.Errorf("gitopsd may delete %s", r)
			}
		}
		if slices.Contains(rule.Verbs, "*") || slices.Contains(rule.Resources, "*") {
			t.Errorf("wildcard rule %+v", rule)
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Role" {
			continue
		}
		var r rbacv1.Role
		convert(t, o, &r)
		for _, rule := range r.Rules {
			if slices.Contains(rule.Resources, "persistentvolumeclaims") && !slices.Equal(rule.Verbs, []string{"get", "list", "watch"}) {
				t.Errorf("Role %s/%s: claims %v, want read only", r.Namespace, r.Name, rule.Verbs)
			}
		}
	}
}
