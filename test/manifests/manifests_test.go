package manifests

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// overlays lists each overlay with what differs between them.
var overlays = map[string]struct {
	replicas int32
	refs     []string // Kind/name in apply order
}{
	"dev": {
		replicas: 2,
		refs: []string{
			"Namespace/mysql",
			"StorageClass/mysql-gp2",
			"ConfigMap/mysql-config",
			"Service/mysql",
			"Service/mysql-read",
			"StatefulSet/mysql",
		},
	},
	"prod": {
		replicas: 3,
		refs: []string{
			"Namespace/mysql",
			"StorageClass/mysql-gp2",
			"ConfigMap/mysql-config",
			"Service/mysql",
			"Service/mysql-read",
			"StatefulSet/mysql",
			"PodDisruptionBudget/mysql",
		},
	},
}

// buildOverlay builds overlays/<name> from the repository root.
func buildOverlay(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Build(root, filepath.Join("overlays", name))
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// find returns the only object of kind in objs.
func find(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("got %d objects of kind %s, want 1", len(found), kind)
	}
	return found[0]
}

// convert decodes obj into the typed object out.
func convert(t *testing.T, obj *unstructured.Unstructured, out any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, out, true); err != nil {
		t.Fatalf("%s/%s: %v", obj.GetKind(), obj.GetName(), err)
	}
}

// statefulSet returns the overlay's StatefulSet, typed.
func statefulSet(t *testing.T, objs []*unstructured.Unstructured) *appsv1.StatefulSet {
	t.Helper()
	sts := &appsv1.StatefulSet{}
	convert(t, find(t, objs, "StatefulSet"), sts)
	return sts
}

// fmtReplicas formats a replica count that may be unset.
func fmtReplicas(r *int32) string {
	if r == nil {
		return "unset"
	}
	return fmt.Sprint(*r)
}

// refs returns Kind/name of each object, in order.
func refs(objs []*unstructured.Unstructured) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetKind() + "/" + o.GetName()
	}
	return out
}

func TestBuildOverlays(t *testing.T) {
	for name, tc := range overlays {
		t.Run(name, func(t *testing.T) {
			objs := buildOverlay(t, name)
			if diff := cmp.Diff(tc.refs, refs(objs)); diff != "" {
				t.Errorf("objects in apply order (-want +got):\n%s", diff)
			}
			if got := statefulSet(t, objs).Spec.Replicas; got == nil || *got != tc.replicas {
				t.Errorf("StatefulSet replicas = %s, want %d", fmtReplicas(got), tc.replicas)
			}
		})
	}
}

func TestObjectsDecodeStrictly(t *testing.T) {
	// A misspelt or misplaced field in the YAML fails here, not on apply.
	typed := map[string]func() any{
		"Namespace":           func() any { return &corev1.Namespace{} },
		"StorageClass":        func() any { return &storagev1.StorageClass{} },
		"ConfigMap":           func() any { return &corev1.ConfigMap{} },
		"Service":             func() any { return &corev1.Service{} },
		"StatefulSet":         func() any { return &appsv1.StatefulSet{} },
		"PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
	}
	for name := range overlays {
		t.Run(name, func(t *testing.T) {
			for _, o := range buildOverlay(t, name) {
				newObj, ok := typed[o.GetKind()]
				if !ok {
					t.Errorf("%s/%s: no typed check for this kind", o.GetKind(), o.GetName())
					continue
				}
				convert(t, o, newObj())
			}
		})
	}
}

func TestConfigMap(t *testing.T) {
	want := map[string]string{
		"master.cnf": "[mysqld]\nlog-bin\n",
		"slave.cnf":  "[mysqld]\nsuper-read-only\n",
	}
	cm := &corev1.ConfigMap{}
	convert(t, find(t, buildOverlay(t, "dev"), "ConfigMap"), cm)
	if diff := cmp.Diff(want, cm.Data); diff != "" {
		t.Errorf("ConfigMap %s data (-want +got):\n%s", cm.Name, diff)
	}
}

func TestNamespaces(t *testing.T) {
	clusterScoped := map[string]bool{"Namespace": true, "StorageClass": true}
	for name := range overlays {
		t.Run(name, func(t *testing.T) {
			for _, o := range buildOverlay(t, name) {
				want := "mysql"
				if clusterScoped[o.GetKind()] {
					want = ""
				}
				if got := o.GetNamespace(); got != want {
					t.Errorf("%s/%s: namespace %q, want %q", o.GetKind(), o.GetName(), got, want)
				}
			}
		})
	}
}

func TestStorageClassMatchesWalkthrough(t *testing.T) {
	// The user's exact spec from the walkthrough, plus allowVolumeExpansion.
	want := map[string]any{
		"apiVersion":  "storage.k8s.io/v1",
		"kind":        "StorageClass",
		"metadata":    map[string]any{"name": "mysql-gp2"},
		"provisioner": "ebs.csi.aws.com",
		"parameters": map[string]any{
			"type":      "gp2",
			"encrypted": "true",
		},
		"volumeBindingMode":    "WaitForFirstConsumer",
		"reclaimPolicy":        "Delete",
		"mountOptions":         []any{"debug"},
		"allowVolumeExpansion": true,
	}
	for name := range overlays {
		t.Run(name, func(t *testing.T) {
			sc := find(t, buildOverlay(t, name), "StorageClass").DeepCopy()
			unstructured.RemoveNestedField(sc.Object, "metadata", "labels")
			if diff := cmp.Diff(want, sc.Object); diff != "" {
				t.Errorf("StorageClass (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRecommendedLabels(t *testing.T) {
	want := map[string]string{
		"app.kubernetes.io/name":       "mysql",
		"app.kubernetes.io/part-of":    "mysql-stack",
		"app.kubernetes.io/managed-by": "gitopsd",
	}
	for name := range overlays {
		t.Run(name, func(t *testing.T) {
			objs := buildOverlay(t, name)
			for _, o := range objs {
				got := map[string]string{}
				for k := range want {
					if v, ok := o.GetLabels()[k]; ok {
						got[k] = v
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("%s/%s labels (-want +got):\n%s", o.GetKind(), o.GetName(), diff)
				}
			}
			// The pods carry them too, beside app=mysql.
			pod := statefulSet(t, objs).Spec.Template.Labels
			for k, v := range want {
				if pod[k] != v {
					t.Errorf("pod template label %s = %q, want %q", k, pod[k], v)
				}
			}
			if pod["app"] != "mysql" {
				t.Errorf("pod template label app = %q, want mysql", pod["app"])
			}
		})
	}
}

// imageTag returns the tag of image reference ref, or "" if it has none.
// A digest (@sha256:...) is dropped first; a registry port is not a tag.
func imageTag(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	last := ref[strings.LastIndex(ref, "/")+1:]
	_, tag, _ := strings.Cut(last, ":")
	return tag
}

func TestImageTag(t *testing.T) {
	tests := map[string]string{
		"mysql":                                "",
		"mysql:5.7.44":                         "5.7.44",
		"mysql:latest":                         "latest",
		"gcr.io/google-samples/xtrabackup:1.0": "1.0",
		"localhost:5000/mysql":                 "",
		"localhost:5000/mysql:8@sha256:abcd":   "8",
	}
	for ref, want := range tests {
		if got := imageTag(ref); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestImagesPinned(t *testing.T) {
	for name := range overlays {
		t.Run(name, func(t *testing.T) {
			spec := statefulSet(t, buildOverlay(t, name)).Spec.Template.Spec
			containers := slices.Concat(spec.InitContainers, spec.Containers)
			if len(containers) != 4 {
				t.Errorf("got %d containers and init containers, want 4", len(containers))
			}
			for _, c := range containers {
				if tag := imageTag(c.Image); tag == "" || tag == "latest" {
					t.Errorf("container %s: image %q: want an explicit tag other than latest", c.Name, c.Image)
				}
			}
		})
	}
}

func TestApplyOrder(t *testing.T) {
	for name := range overlays {
		t.Run(name, func(t *testing.T) {
			objs := buildOverlay(t, name)
			if got := objs[0].GetKind(); got != "Namespace" {
				t.Errorf("first object is a %s, want the Namespace", got)
			}
			index := map[string]int{}
			for i, o := range objs {
				index[o.GetKind()+"/"+o.GetName()] = i
			}
			for _, before := range []string{"ConfigMap/mysql-config", "Service/mysql", "Service/mysql-read"} {
				if index[before] > index["StatefulSet/mysql"] {
					t.Errorf("%s comes after StatefulSet/mysql", before)
				}
			}
		})
	}
}

func TestStatefulSet(t *testing.T) {
	for name := range overlays {
		t.Run(name, func(t *testing.T) {
			sts := statefulSet(t, buildOverlay(t, name))
			if diff := cmp.Diff(map[string]string{"app": "mysql"}, sts.Spec.Selector.MatchLabels); diff != "" {
				t.Errorf("selector matchLabels (-want +got):\n%s", diff)
			}
			if len(sts.Spec.Selector.MatchExpressions) != 0 {
				t.Errorf("selector matchExpressions = %v, want none", sts.Spec.Selector.MatchExpressions)
			}
			if sts.Spec.ServiceName != "mysql" {
				t.Errorf("serviceName = %q, want mysql", sts.Spec.ServiceName)
			}
			if len(sts.Spec.VolumeClaimTemplates) != 1 {
				t.Fatalf("got %d volumeClaimTemplates, want 1", len(sts.Spec.VolumeClaimTemplates))
			}
			type claim struct {
				Name    string
				Modes   []corev1.PersistentVolumeAccessMode
				Class   string
				Storage string
			}
			vct := sts.Spec.VolumeClaimTemplates[0]
			got := claim{Name: vct.Name, Modes: vct.Spec.AccessModes}
			if vct.Spec.StorageClassName != nil {
				got.Class = *vct.Spec.StorageClassName
			}
			if q, ok := vct.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
				got.Storage = q.String()
			}
			want := claim{
				Name:    "data",
				Modes:   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Class:   "mysql-gp2",
				Storage: "10Gi",
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("volumeClaimTemplates[0] (-want +got):\n%s", diff)
			}
			// volumeClaimTemplates are immutable: labels added here by a
			// kustomize upgrade (older kustomize did) would make every later
			// apply of the StatefulSet fail.
			if len(vct.Labels) != 0 {
				t.Errorf("volumeClaimTemplates[0] labels = %v, want none", vct.Labels)
			}
		})
	}
}

func TestMySQLResources(t *testing.T) {
	tests := map[string]corev1.ResourceRequirements{
		"dev": {
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("500m"),
				corev1.ResourceMemory: resource.MustParse("1Gi"),
			},
		},
		"prod": {
			Requests: corev1.ResourceList{
				corev1.ResourceCPU:    resource.MustParse("1"),
				corev1.ResourceMemory: resource.MustParse("2Gi"),
			},
			Limits: corev1.ResourceList{
				corev1.ResourceMemory: resource.MustParse("2Gi"),
			},
		},
	}
	for name, want := range tests {
		t.Run(name, func(t *testing.T) {
			var got *corev1.ResourceRequirements
			for _, c := range statefulSet(t, buildOverlay(t, name)).Spec.Template.Spec.Containers {
				if c.Name == "mysql" {
					got = &c.Resources
				}
			}
			if got == nil {
				t.Fatal("no container named mysql")
			}
			if diff := cmp.Diff(want, *got); diff != "" {
				t.Errorf("mysql container resources (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProdDisruptionBudget(t *testing.T) {
	pdb := &policyv1.PodDisruptionBudget{}
	convert(t, find(t, buildOverlay(t, "prod"), "PodDisruptionBudget"), pdb)
	one := intstr.FromInt32(1)
	if diff := cmp.Diff(&one, pdb.Spec.MaxUnavailable); diff != "" {
		t.Errorf("PDB maxUnavailable (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]string{"app": "mysql"}, pdb.Spec.Selector.MatchLabels); diff != "" {
		t.Errorf("PDB selector (-want +got):\n%s", diff)
	}
}

func TestProdSpread(t *testing.T) {
	spec := statefulSet(t, buildOverlay(t, "prod")).Spec.Template.Spec
	appMySQL := map[string]string{"app": "mysql"}
	type spread struct {
		Key    string
		Skew   int32
		When   corev1.UnsatisfiableConstraintAction
		Labels map[string]string
	}
	var gotSpread []spread
	for _, c := range spec.TopologySpreadConstraints {
		s := spread{Key: c.TopologyKey, Skew: c.MaxSkew, When: c.WhenUnsatisfiable}
		if c.LabelSelector != nil {
			s.Labels = c.LabelSelector.MatchLabels
		}
		gotSpread = append(gotSpread, s)
	}
	wantSpread := []spread{{Key: "topology.kubernetes.io/zone", Skew: 1, When: corev1.DoNotSchedule, Labels: appMySQL}}
	if diff := cmp.Diff(wantSpread, gotSpread); diff != "" {
		t.Errorf("topologySpreadConstraints (-want +got):\n%s", diff)
	}

	if spec.Affinity == nil || spec.Affinity.PodAntiAffinity == nil {
		t.Fatal("no podAntiAffinity")
	}
	var hosts []string
	for _, term := range spec.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
		sel := term.PodAffinityTerm.LabelSelector
		if sel != nil && cmp.Equal(appMySQL, sel.MatchLabels) {
			hosts = append(hosts, term.PodAffinityTerm.TopologyKey)
		}
	}
	if diff := cmp.Diff([]string{"kubernetes.io/hostname"}, hosts); diff != "" {
		t.Errorf("preferred podAntiAffinity topology keys for app=mysql (-want +got):\n%s", diff)
	}
}

func TestDevHasNoProdExtras(t *testing.T) {
	spec := statefulSet(t, buildOverlay(t, "dev")).Spec.Template.Spec
	if len(spec.TopologySpreadConstraints) != 0 || spec.Affinity != nil {
		t.Errorf("dev pods have scheduling constraints: spread %v, affinity %v", spec.TopologySpreadConstraints, spec.Affinity)
	}
}

func TestDeclaresModule(t *testing.T) {
	tests := map[string]struct {
		gomod string // "" means no go.mod at all
		want  bool
	}{
		"root module":   {gomod: "module github.com/gitopsd/gitopsd\n\ngo 1.26.0\n", want: true},
		"quoted":        {gomod: "// comment\nmodule \"github.com/gitopsd/gitopsd\"\n", want: true},
		"nested module": {gomod: "module github.com/gitopsd/gitopsd/test/tools\n", want: false},
		"other module":  {gomod: "module example.com/other\n", want: false},
		"no go.mod":     {want: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "go.mod")
			if tc.gomod != "" {
				if err := os.WriteFile(path, []byte(tc.gomod), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := declaresModule(path, modulePath)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("declaresModule = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wd, filepath.Join(root, "test", "manifests")); diff != "" {
		t.Errorf("working directory relative to RepoRoot (-want +got):\n%s", diff)
	}
}
