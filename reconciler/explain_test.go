package reconciler

import (
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestExplain(t *testing.T) {
	secrets := schema.GroupResource{Resource: "secrets"}
	pods := schema.GroupResource{Resource: "pods"}
	rbac := apierrors.NewForbidden(secrets, "mysql-root",
		errors.New(`User "system:serviceaccount:gitopsd:gitopsd" cannot get resource "secrets" in API group "" in the namespace "mysql"`))
	podSecurity := apierrors.NewForbidden(pods, "mysql-0",
		errors.New(`violates PodSecurity "restricted:latest": privileged (container "mysql" must not set securityContext.privileged=true)`))
	for _, tc := range []struct {
		name string
		err  error
		want string // in the explained message; "" means unchanged
	}{
		{"RBAC denial names the fix", rbac, "lacks the RBAC rights for this kind"},
		{"Pod Security is not RBAC", podSecurity, ""},
		{"other errors pass through", errors.New("connection refused"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := explain(tc.err)
			if !errors.Is(got, tc.err) {
				t.Errorf("explain(%v) = %v, does not wrap the original", tc.err, got)
			}
			if tc.want == "" && got.Error() != tc.err.Error() {
				t.Errorf("explain(%v) = %q, want it unchanged", tc.err, got)
			}
			if tc.want != "" && (!strings.Contains(got.Error(), tc.want) || !strings.HasPrefix(got.Error(), tc.err.Error())) {
				t.Errorf("explain(%v) = %q, want the original then %q", tc.err, got, tc.want)
			}
		})
	}
}
