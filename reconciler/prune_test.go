package reconciler

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlanPrune(t *testing.T) {
	ns := ObjRef{Kind: "Namespace", Name: "mysql"}
	sc := ObjRef{Group: "storage.k8s.io", Kind: "StorageClass", Name: "mysql-gp2"}
	cm := ObjRef{Kind: "ConfigMap", Namespace: "mysql", Name: "mysql-config"}
	svc := ObjRef{Kind: "Service", Namespace: "mysql", Name: "mysql"}
	read := ObjRef{Kind: "Service", Namespace: "mysql", Name: "mysql-read"}
	sts := ObjRef{Group: "apps", Kind: "StatefulSet", Namespace: "mysql", Name: "mysql"}
	pvc := ObjRef{Kind: "PersistentVolumeClaim", Namespace: "mysql", Name: "data-mysql-0"}
	pv := ObjRef{Kind: "PersistentVolume", Name: "pvc-1"}
	stack := []ObjRef{ns, sc, cm, svc, read, sts}

	tests := map[string]struct {
		previous, current []ObjRef
		maxShare          float64
		want              PrunePlan
		wantErr           string
	}{
		"nothing left git": {
			previous: stack, current: stack, maxShare: 0.5,
		},
		"a service left git": {
			previous: stack, current: []ObjRef{ns, sc, cm, svc, sts}, maxShare: 0.5,
			want: PrunePlan{Delete: []ObjRef{read}},
		},
		"namespace, claim and volume are kept": {
			previous: append(stack, pvc, pv), current: []ObjRef{sc, cm, svc, read, sts}, maxShare: 0.5,
			want: PrunePlan{Keep: []Kept{
				{Ref: ns, Reason: "never pruned: deleting a namespace deletes everything in it"},
				{Ref: pv, Reason: "never pruned: a volume holds data"},
				{Ref: pvc, Reason: "never pruned: a claim holds data"},
			}},
		},
		"a kind named like a protected one in another group is pruned": {
			previous: []ObjRef{cm, {Group: "example.com", Kind: "Namespace", Name: "x"}}, current: []ObjRef{cm}, maxShare: 0.5,
			want: PrunePlan{Delete: []ObjRef{{Group: "example.com", Kind: "Namespace", Name: "x"}}},
		},
		"empty build prunes nothing": {
			previous: stack, current: nil, maxShare: 1,
			wantErr: "the build is empty: refusing to prune 6 inventory objects",
		},
		"more than the share is refused": {
			previous: stack, current: []ObjRef{ns, sc}, maxShare: 0.5,
			wantErr: "prune would delete 4 of 6 inventory objects, more than the allowed share 50%",
		},
		"exactly the share is allowed": {
			previous: stack, current: []ObjRef{ns, sc, cm}, maxShare: 0.5,
			want: PrunePlan{Delete: []ObjRef{svc, read, sts}},
		},
		"one object may always go": {
			previous: []ObjRef{cm, svc}, current: []ObjRef{cm}, maxShare: 0.1,
			want: PrunePlan{Delete: []ObjRef{svc}},
		},
		"share 1 allows everything but an empty build": {
			previous: stack, current: []ObjRef{ns}, maxShare: 1,
			want: PrunePlan{Delete: []ObjRef{cm, svc, read, sts, sc}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := PlanPrune(tc.previous, tc.current, tc.maxShare)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
				}
				if diff := cmp.Diff(PrunePlan{}, got); diff != "" {
					t.Errorf("a refused prune returned a plan (-want +got):\n%s", diff)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("plan (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPlanPruneEmptyBuildIsTyped(t *testing.T) {
	_, err := PlanPrune([]ObjRef{{Kind: "ConfigMap", Name: "a"}}, nil, 1)
	if !errors.Is(err, ErrEmptyBuild) {
		t.Fatalf("error %v is not ErrEmptyBuild", err)
	}
}
