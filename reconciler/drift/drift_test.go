package drift

import (
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestCheckObjectDrift(t *testing.T) {
	desired := statefulSet(t, 2, "")
	tests := map[string]struct {
		edit     func(m map[string]any)
		managers []string
		opts     Options
		want     map[string]map[string]string // field -> attrs
	}{
		"defaults and normalized quantities are not drift": {
			edit: func(m map[string]any) {
				set(m, "OrderedReady", "spec", "podManagementPolicy")
				c := container(m, "mysql")
				c["terminationMessagePath"] = "/dev/termination-log"
				c["ports"] = []any{map[string]any{"name": "mysql", "containerPort": int64(3306), "protocol": "TCP"}}
				c["resources"] = map[string]any{"requests": map[string]any{"cpu": "0.5", "memory": "1073741824"}}
				vct(m)["status"] = map[string]any{"phase": "Pending"}
				set(m, map[string]any{"replicas": int64(2)}, "status")
			},
		},
		"kubectl scale": {
			edit:     func(m map[string]any) { set(m, int64(3), "spec", "replicas") },
			managers: []string{`kubectl={"f:spec":{"f:replicas":{}}}`},
			want:     map[string]map[string]string{"spec.replicas": {"want": "2", "got": "3", "manager": "kubectl"}},
		},
		"an autoscaler's replicas": {
			edit:     func(m map[string]any) { set(m, int64(5), "spec", "replicas") },
			managers: []string{`kube-controller-manager={"f:spec":{"f:replicas":{}}}`},
		},
		"ignored by flag for the kind": {
			edit: func(m map[string]any) { set(m, int64(3), "spec", "replicas") },
			opts: Options{IgnoreFields: []string{"StatefulSet:spec.replicas"}},
		},
		"ignored field of another kind still compared": {
			edit: func(m map[string]any) { set(m, int64(3), "spec", "replicas") },
			opts: Options{IgnoreFields: []string{"Deployment:spec.replicas"}},
			want: map[string]map[string]string{"spec.replicas": {"want": "2", "got": "3"}},
		},
		"ignored by annotation on the live object, prefix": {
			edit: func(m map[string]any) {
				set(m, map[string]any{IgnoreAnnotation: "spec.template", "gitopsd.io/revision": "main@sha1:abc"}, "metadata", "annotations")
				container(m, "mysql")["image"] = "mysql:8.0"
			},
		},
		"image changed by hand, in a container matched by name": {
			edit: func(m map[string]any) {
				cs := m["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)
				cs[0], cs[1] = cs[1], cs[0] // order does not matter
				container(m, "mysql")["image"] = "mysql:8.0"
			},
			managers: []string{`kubectl-edit={"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"mysql\"}":{"f:image":{}}}}}}}`},
			want:     map[string]map[string]string{"spec.template.spec.containers[name=mysql].image": {"want": "mysql:5.7.44", "got": "mysql:8.0", "manager": "kubectl-edit"}},
		},
		"an env var removed": {
			edit: func(m map[string]any) { delete(container(m, "mysql"), "env") },
			want: map[string]map[string]string{"spec.template.spec.containers[name=mysql].env": {"got": absent}},
		},
		"a container removed": {
			edit: func(m map[string]any) {
				spec := m["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
				spec["containers"] = spec["containers"].([]any)[:1]
			},
			want: map[string]map[string]string{"spec.template.spec.containers[name=xtrabackup]": {"got": absent}},
		},
		"claim template size": {
			edit: func(m map[string]any) {
				set(vct(m), "20Gi", "spec", "resources", "requests", "storage")
			},
			want: map[string]map[string]string{"spec.volumeClaimTemplates[metadata.name=data].spec.resources.requests.storage": {"want": "10Gi", "got": "20Gi"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			live := liveOf(t, desired, tc.edit, tc.managers...)
			got := CheckObjectDrift(snapshotOf([]*unstructured.Unstructured{desired}, live), tc.opts)
			if len(got) != len(tc.want) {
				t.Fatalf("findings %v, want %d", details(got), len(tc.want))
			}
			for _, f := range got {
				want, ok := tc.want[attrs(f)["field"]]
				if !ok {
					t.Fatalf("unexpected finding %s", f.Detail)
				}
				for k, v := range want {
					if attrs(f)[k] != v {
						t.Errorf("%s: %s = %q, want %q", f.Detail, k, attrs(f)[k], v)
					}
				}
				if f.Code != ObjectDrift || f.Object.String() != "StatefulSet/mysql/mysql" || f.Detail == "" || f.Grace != 0 {
					t.Errorf("finding %+v", f)
				}
			}
		})
	}
}

// vct returns the first volumeClaimTemplate of a StatefulSet.
func vct(m map[string]any) map[string]any {
	return m["spec"].(map[string]any)["volumeClaimTemplates"].([]any)[0].(map[string]any)
}

func details(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Detail)
	}
	return out
}

func TestCheckObjectDriftRedactsSecrets(t *testing.T) {
	const value = "s3cr3t-password"
	desired := obj(t, `apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: mysql}
stringData:
  password: `+value+`
data:
  user: cm9vdA==
`)
	live := obj(t, `apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: mysql}
data:
  password: b3RoZXItdmFsdWU=
  user: cm9vdA==
`)
	got := CheckObjectDrift(snapshotOf([]*unstructured.Unstructured{desired}, live), Options{})
	if len(got) != 1 || attrs(got[0])["field"] != "data.password" {
		t.Fatalf("findings %v, want one on data.password", details(got))
	}
	for _, f := range got {
		all := f.Detail + " " + f.Key()
		for _, a := range f.Attrs {
			all += " " + a.Value.String()
		}
		for _, secret := range []string{value, "b3RoZXItdmFsdWU=", "other-value"} {
			if strings.Contains(all, secret) {
				t.Errorf("finding shows a secret value: %s", all)
			}
		}
		if attrs(f)["want"] != redacted || attrs(f)["got"] != redacted {
			t.Errorf("want/got not redacted: %v", attrs(f))
		}
	}
	// Equal values folded from stringData are not drift.
	live.Object["data"].(map[string]any)["password"] = "czNjcjN0LXBhc3N3b3Jk"
	if got := CheckObjectDrift(snapshotOf([]*unstructured.Unstructured{desired}, live), Options{}); len(got) != 0 {
		t.Errorf("equal secret reported: %v", details(got))
	}
}

func TestCheckObjectMissing(t *testing.T) {
	sts, cm := statefulSet(t, 2, ""), obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: mysql-config, namespace: mysql}\ndata: {a: b}\n")
	got := summary(CheckObjectMissing(snapshotOf([]*unstructured.Unstructured{sts, cm}, liveOf(t, sts, nil)), Options{}))
	if want := []string{"object-missing ConfigMap/mysql/mysql-config"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestPodChecks(t *testing.T) {
	sts := statefulSet(t, 2, "")
	start1 := statefulSet(t, 2, "  ordinals: {start: 1}\n")
	tests := map[string]struct {
		sts   *unstructured.Unstructured
		pods  []*corev1.Pod
		check func(Snapshot, Options) []Finding
		want  []string
	}{
		"all ready":           {sts, []*corev1.Pod{pod("mysql-0"), pod("mysql-1")}, Check, nil},
		"1/2 ready":           {sts, []*corev1.Pod{pod("mysql-0"), pod("mysql-1", notReadySince(time.Minute))}, CheckPodNotReady, []string{"pod-not-ready Pod/mysql/mysql-1"}},
		"pod absent":          {sts, []*corev1.Pod{pod("mysql-0")}, CheckPodMissing, []string{"pod-missing Pod/mysql/mysql-1"}},
		"pod pending":         {sts, []*corev1.Pod{pod("mysql-0"), pod("mysql-1", pending(time.Minute))}, CheckPodMissing, []string{"pod-missing Pod/mysql/mysql-1"}},
		"ordinals start at 1": {start1, []*corev1.Pod{pod("mysql-1"), pod("mysql-2")}, CheckPodMissing, nil},
		"ordinals start at 1, mysql-0 is not expected": {start1, []*corev1.Pod{pod("mysql-0"), pod("mysql-1")}, CheckPodMissing, []string{"pod-missing Pod/mysql/mysql-2"}},
		"pod being deleted counts as absent": {sts, []*corev1.Pod{pod("mysql-0"), pod("mysql-1", func(p *corev1.Pod) {
			p.DeletionTimestamp = &metav1.Time{Time: now}
		})}, CheckPodMissing, []string{"pod-missing Pod/mysql/mysql-1"}},
		"crash loop": {sts, []*corev1.Pod{pod("mysql-0", func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}
			p.Status.ContainerStatuses[0].RestartCount = 4
		}), pod("mysql-1")}, CheckPodRestarting, []string{"pod-restarting Pod/mysql/mysql-0"}},
		"restart long ago": {sts, []*corev1.Pod{pod("mysql-0", func(p *corev1.Pod) {
			p.Status.ContainerStatuses[0].LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: 137, FinishedAt: metav1.NewTime(now.Add(-time.Hour))}
		}), pod("mysql-1")}, CheckPodRestarting, nil},
		"pods of other apps are not ours": {sts, []*corev1.Pod{pod("mysql-0"), pod("mysql-1"), pod("other-0", notReadySince(time.Hour), func(p *corev1.Pod) {
			p.Labels = map[string]string{"app": "other"}
		})}, CheckPodNotReady, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := snapshotOf([]*unstructured.Unstructured{tc.sts}, liveOf(t, tc.sts, nil))
			s.Pods = tc.pods
			if got := summary(tc.check(s, Options{})); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("grace and onset", func(t *testing.T) {
		s := snapshotOf([]*unstructured.Unstructured{sts}, liveOf(t, sts, nil))
		s.Pods = []*corev1.Pod{pod("mysql-0"), pod("mysql-1", notReadySince(20*time.Second))}
		f := CheckPodNotReady(s, Options{PodNotReadyGrace: 45 * time.Second})
		// API timestamps keep whole seconds: the onset is the end of that second.
		if len(f) != 1 || f[0].Grace != 45*time.Second || !f[0].Since.Equal(now.Add(-19*time.Second)) {
			t.Errorf("finding %+v: want grace 45s and since 19s ago", f)
		}
		s.Pods = []*corev1.Pod{pod("mysql-0")}
		f = CheckPodMissing(s, Options{})
		if len(f) != 1 || f[0].Grace != time.Minute || attrs(f[0])["ordinal"] != "1" || attrs(f[0])["replicas"] != "2" || attrs(f[0])["reason"] != "absent" {
			t.Errorf("pod-missing %+v: want default grace 1m, ordinal 1, replicas 2, reason absent", f)
		}
	})
}

func TestStorageChecks(t *testing.T) {
	sts := statefulSet(t, 2, "")
	deleteOnScale := statefulSet(t, 2, "  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete, whenDeleted: Retain}\n")
	bound := func(name, pv string) *corev1.PersistentVolumeClaim { return claim(name, pv, corev1.ClaimBound, "10Gi") }
	tests := map[string]struct {
		sts   *unstructured.Unstructured
		pods  []*corev1.Pod
		pvcs  []*corev1.PersistentVolumeClaim
		pvs   []*corev1.PersistentVolume
		check func(Snapshot, Options) []Finding
		opts  Options
		want  []string
	}{
		"steady": {sts, []*corev1.Pod{pod("mysql-0"), pod("mysql-1")},
			[]*corev1.PersistentVolumeClaim{bound("data-mysql-0", "pv-0"), bound("data-mysql-1", "pv-1")},
			[]*corev1.PersistentVolume{volume("pv-0", "data-mysql-0", corev1.VolumeBound, "Delete"), volume("pv-1", "data-mysql-1", corev1.VolumeBound, "Delete")},
			Check, Options{}, nil},
		"left behind by a scale-down": {sts, []*corev1.Pod{pod("mysql-0"), pod("mysql-1")},
			[]*corev1.PersistentVolumeClaim{bound("data-mysql-0", "pv-0"), bound("data-mysql-1", "pv-1"), bound("data-mysql-2", "pv-2")}, nil,
			CheckPVCOrphaned, Options{}, []string{"pvc-orphaned PersistentVolumeClaim/mysql/data-mysql-2"}},
		"scale-down still running": {sts, []*corev1.Pod{pod("mysql-0"), pod("mysql-1"), pod("mysql-2")},
			[]*corev1.PersistentVolumeClaim{bound("data-mysql-2", "pv-2")}, nil, CheckPVCOrphaned, Options{}, nil},
		"whenScaled Delete: the controller deletes it": {deleteOnScale, nil,
			[]*corev1.PersistentVolumeClaim{bound("data-mysql-2", "pv-2")}, nil, CheckPVCOrphaned, Options{}, nil},
		"claims of other names are not templates": {sts, nil,
			[]*corev1.PersistentVolumeClaim{bound("data-mysql-x", ""), bound("data-mysql-02", ""), bound("logs-mysql-5", "")}, nil, CheckPVCOrphaned, Options{}, nil},
		"WaitForFirstConsumer with no consumer yet": {sts, nil,
			[]*corev1.PersistentVolumeClaim{claim("data-mysql-0", "", corev1.ClaimPending, "10Gi")}, nil, CheckPVCPending, Options{}, nil},
		"WaitForFirstConsumer with a scheduled consumer": {sts, []*corev1.Pod{pod("mysql-0")},
			[]*corev1.PersistentVolumeClaim{claim("data-mysql-0", "", corev1.ClaimPending, "10Gi")}, nil, CheckPVCPending, Options{},
			[]string{"pvc-pending PersistentVolumeClaim/mysql/data-mysql-0"}},
		"lost": {sts, nil, []*corev1.PersistentVolumeClaim{claim("data-mysql-0", "pv-0", corev1.ClaimLost, "10Gi")}, nil,
			CheckPVCLost, Options{}, []string{"pvc-lost PersistentVolumeClaim/mysql/data-mysql-0"}},
		"size differs from the template": {sts, nil, []*corev1.PersistentVolumeClaim{claim("data-mysql-0", "pv-0", corev1.ClaimBound, "20Gi"), bound("data-mysql-1", "pv-1")}, nil,
			CheckPVCSize, Options{}, []string{"pvc-size PersistentVolumeClaim/mysql/data-mysql-0"}},
		"reclaim policy changed to Retain": {sts, nil, nil,
			[]*corev1.PersistentVolume{volume("pv-1", "data-mysql-1", corev1.VolumeBound, "Retain")},
			CheckPVReclaimPolicy, Options{}, []string{"pv-reclaim-policy PersistentVolume/pv-1"}},
		"reclaim policy expected by option": {sts, nil, nil,
			[]*corev1.PersistentVolume{volume("pv-1", "data-mysql-1", corev1.VolumeBound, "Retain")},
			CheckPVReclaimPolicy, Options{ReclaimPolicy: "Retain"}, nil},
		"volumes of other namespaces are not ours": {sts, []*corev1.Pod{pod("mysql-0"), pod("mysql-1")}, nil,
			[]*corev1.PersistentVolume{func() *corev1.PersistentVolume {
				pv := volume("pv-9", "data", corev1.VolumeReleased, "Retain")
				pv.Spec.ClaimRef.Namespace = "other"
				return pv
			}()},
			Check, Options{}, nil},
		"released, retained": {sts, nil, nil,
			[]*corev1.PersistentVolume{volume("pv-2", "data-mysql-2", corev1.VolumeReleased, "Retain")},
			CheckPVReleased, Options{}, []string{"pv-released PersistentVolume/pv-2"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := snapshotOf([]*unstructured.Unstructured{tc.sts}, liveOf(t, tc.sts, nil))
			s.Pods, s.PVCs, s.PVs = tc.pods, tc.pvcs, tc.pvs
			s.StorageClasses = []*storagev1.StorageClass{gp2()}
			if got := summary(tc.check(s, tc.opts)); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}

	t.Run("keys", func(t *testing.T) {
		s := snapshotOf([]*unstructured.Unstructured{sts}, liveOf(t, sts, nil))
		s.PVCs = []*corev1.PersistentVolumeClaim{bound("data-mysql-2", "pv-2")}
		s.PVs = []*corev1.PersistentVolume{volume("pv-2", "data-mysql-2", corev1.VolumeBound, "Retain"), volume("pv-3", "data-mysql-3", corev1.VolumeReleased, "Retain")}
		s.StorageClasses = []*storagev1.StorageClass{gp2()}
		f := CheckPVCOrphaned(s, Options{})
		if a := attrs(f[0]); a["ordinal"] != "2" || a["replicas"] != "2" || a["volume"] != "pv-2" || a["statefulSet"] != "StatefulSet/mysql/mysql" {
			t.Errorf("pvc-orphaned attrs %v", a)
		}
		f = CheckPVReclaimPolicy(s, Options{})
		if a := attrs(f[0]); a["want"] != "Delete" || a["got"] != "Retain" || a["claim"] != "mysql/data-mysql-2" {
			t.Errorf("pv-reclaim-policy attrs %v", a)
		}
		f = CheckPVReleased(s, Options{})
		if a := attrs(f[0]); a["reclaimPolicy"] != "Retain" || a["capacity"] != "10Gi" || !strings.Contains(f[0].Detail, "costs money") {
			t.Errorf("pv-released %v %q", a, f[0].Detail)
		}
	})
}

func TestWorkloadKinds(t *testing.T) {
	dep := obj(t, "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: mysql}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: mysql}}\n")
	s := snapshotOf([]*unstructured.Unstructured{dep}, dep)
	s.Pods = []*corev1.Pod{pod("web-a"), pod("web-b", pending(time.Minute))}
	got := CheckPodMissing(s, Options{})
	if len(got) != 1 || got[0].Object.String() != "Deployment/mysql/web" || attrs(got[0])["running"] != "1" {
		t.Errorf("deployment with 1 of 3 running: %+v", got)
	}
}

func TestManagedNamespaces(t *testing.T) {
	got := ManagedNamespaces([]*unstructured.Unstructured{
		obj(t, "apiVersion: v1\nkind: Namespace\nmetadata: {name: mysql}\n"),
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: mysql}\n"),
		obj(t, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: other}\n"),
		obj(t, "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata: {name: gp2}\n"),
	})
	if want := []string{"mysql", "other"}; !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
