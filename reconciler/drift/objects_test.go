package drift

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func TestCheckObjectDrift(t *testing.T) {
	configMap := Ref{Kind: "ConfigMap", Namespace: ns, Name: "mysql-config"}
	scale := func(t *testing.T, s Snapshot, manager string) {
		setField(t, s.Live[statefulSetRef].Object, int64(3), "spec", "replicas")
		updateBy(t, s.Live[statefulSetRef], manager, "scale", `{"f:spec":{"f:replicas":{}}}`)
	}
	setImage := func(t *testing.T, s Snapshot) {
		container(t, s.Live[statefulSetRef], "mysql")["image"] = "mysql:8.0"
		updateBy(t, s.Live[statefulSetRef], "kubectl-set", "",
			`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"mysql\"}":{"f:image":{}}}}}}}`)
	}
	tests := map[string]struct {
		edit func(t *testing.T, s Snapshot)
		opts Options
		want []string
	}{
		"as applied: server defaults and status are not drift": {},
		"kubectl scale": {
			edit: func(t *testing.T, s Snapshot) { scale(t, s, "kubectl") },
			want: []string{"object-drift StatefulSet/mysql/mysql field=spec.replicas want=2 got=3 manager=kubectl"},
		},
		"an autoscaler's replicas are not drift": {
			edit: func(t *testing.T, s Snapshot) { scale(t, s, "kube-controller-manager") },
		},
		"no ignored managers: the autoscaler's replicas are drift": {
			edit: func(t *testing.T, s Snapshot) { scale(t, s, "kube-controller-manager") },
			opts: Options{IgnoreManagers: []string{}},
			want: []string{"object-drift StatefulSet/mysql/mysql field=spec.replicas want=2 got=3 manager=kube-controller-manager"},
		},
		"field ignored for the kind": {
			edit: func(t *testing.T, s Snapshot) { scale(t, s, "kubectl") },
			opts: Options{IgnoreFields: []string{"StatefulSet:spec.replicas"}},
		},
		"field ignored for another kind is still compared": {
			edit: func(t *testing.T, s Snapshot) { scale(t, s, "kubectl") },
			opts: Options{IgnoreFields: []string{"Deployment:spec.replicas"}},
			want: []string{"object-drift StatefulSet/mysql/mysql field=spec.replicas want=2 got=3 manager=kubectl"},
		},
		"kubectl set image, containers matched by name whatever their order": {
			edit: func(t *testing.T, s Snapshot) {
				setImage(t, s)
				cs, _, _ := unstructured.NestedSlice(s.Live[statefulSetRef].Object, "spec", "template", "spec", "containers")
				cs[0], cs[1] = cs[1], cs[0]
				setField(t, s.Live[statefulSetRef].Object, cs, "spec", "template", "spec", "containers")
			},
			want: []string{"object-drift StatefulSet/mysql/mysql field=spec.template.spec.containers[name=mysql].image want=mysql:5.7.44 got=mysql:8.0 manager=kubectl-set"},
		},
		"drift-ignore annotation from git covers the paths below it": {
			edit: func(t *testing.T, s Snapshot) {
				setImage(t, s)
				for _, obj := range []*unstructured.Unstructured{desiredObj(t, s, statefulSetRef), s.Live[statefulSetRef]} {
					setField(t, obj.Object, "spec.template, spec.replicas", "metadata", "annotations", IgnoreAnnotation)
				}
			},
		},
		"drift-ignore annotation on the live object": {
			edit: func(t *testing.T, s Snapshot) {
				setImage(t, s)
				setField(t, s.Live[statefulSetRef].Object, "spec.template.spec.containers", "metadata", "annotations", IgnoreAnnotation)
			},
		},
		"empty values in git that the server drops are not drift": {
			// storageClassName: "" on a PV, hostNetwork: false,
			// terminationGracePeriodSeconds-like zero values: omitempty
			// fields the server does not store.
			edit: func(t *testing.T, s Snapshot) {
				sts := desiredObj(t, s, statefulSetRef)
				setField(t, sts.Object, "", "spec", "template", "spec", "serviceAccountName")
				setField(t, sts.Object, false, "spec", "template", "spec", "hostNetwork")
				setField(t, sts.Object, int64(0), "spec", "template", "spec", "priority")
			},
		},
		"an empty value in git with another value live is drift": {
			edit: func(t *testing.T, s Snapshot) {
				setField(t, desiredObj(t, s, statefulSetRef).Object, "", "spec", "template", "spec", "schedulerName")
			},
			want: []string{"object-drift StatefulSet/mysql/mysql field=spec.template.spec.schedulerName want= got=default-scheduler manager="},
		},
		"quantities and numbers compare by value": {
			edit: func(t *testing.T, s Snapshot) {
				sts := desiredObj(t, s, statefulSetRef)
				setField(t, sts.Object, 2.0, "spec", "replicas") // float64, as plain JSON decodes it
				requests := container(t, sts, "mysql")["resources"].(map[string]any)["requests"].(map[string]any)
				requests["cpu"], requests["memory"] = "0.5", "1024Mi" // the server keeps 500m and 1Gi
			},
		},
		"a request that really differs": {
			edit: func(t *testing.T, s Snapshot) {
				container(t, s.Live[statefulSetRef], "xtrabackup")["resources"] = map[string]any{"requests": map[string]any{"cpu": "1", "memory": "100Mi"}}
				updateBy(t, s.Live[statefulSetRef], "kubectl-edit", "",
					`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"xtrabackup\"}":{"f:resources":{"f:requests":{"f:cpu":{}}}}}}}}}`)
			},
			want: []string{"object-drift StatefulSet/mysql/mysql field=spec.template.spec.containers[name=xtrabackup].resources.requests.cpu want=100m got=1 manager=kubectl-edit"},
		},
		"an env var git adds is missing": {
			edit: func(t *testing.T, s Snapshot) {
				c := container(t, desiredObj(t, s, statefulSetRef), "mysql")
				c["env"] = append(c["env"].([]any), map[string]any{"name": "MYSQL_LOG_CONSOLE", "value": "1"})
			},
			want: []string{`object-drift StatefulSet/mysql/mysql field=spec.template.spec.containers[name=mysql].env[name=MYSQL_LOG_CONSOLE] want={"name":"MYSQL_LOG_CONSOLE","value":"1"} got=<absent> manager=`},
		},
		"a volume removed from the cluster": {
			edit: func(t *testing.T, s Snapshot) {
				vs, _, _ := unstructured.NestedSlice(s.Live[statefulSetRef].Object, "spec", "template", "spec", "volumes")
				setField(t, s.Live[statefulSetRef].Object, vs[:1], "spec", "template", "spec", "volumes")
				removed(t, s.Live[statefulSetRef], `{"f:spec":{"f:template":{"f:spec":{"f:volumes":{"k:{\"name\":\"config-map\"}":{}}}}}}`)
			},
			want: []string{`object-drift StatefulSet/mysql/mysql field=spec.template.spec.volumes[name=config-map] want={"configMap":{"name":"mysql-config"},"name":"config-map"} got=<absent> manager=`},
		},
		"an immutable template git changed: the atomic list's owner": {
			edit: func(t *testing.T, s Snapshot) {
				vcts, _, _ := unstructured.NestedSlice(desiredObj(t, s, statefulSetRef).Object, "spec", "volumeClaimTemplates")
				setField(t, vcts[0].(map[string]any), "20Gi", "spec", "resources", "requests", "storage")
				setField(t, desiredObj(t, s, statefulSetRef).Object, vcts, "spec", "volumeClaimTemplates")
			},
			want: []string{"object-drift StatefulSet/mysql/mysql field=spec.volumeClaimTemplates[metadata.name=data].spec.resources.requests.storage want=20Gi got=10Gi manager=gitopsd"},
		},
		"a ConfigMap key with a dot, edited by hand": {
			edit: func(t *testing.T, s Snapshot) {
				setField(t, s.Live[configMap].Object, "[mysqld]\nlog-bin\nbinlog-format=ROW\n", "data", "master.cnf")
				updateBy(t, s.Live[configMap], "kubectl-edit", "", `{"f:data":{"f:master.cnf":{}}}`)
			},
			want: []string{"object-drift ConfigMap/mysql/mysql-config field=data.master.cnf want=[mysqld]\nlog-bin\n got=[mysqld]\nlog-bin\nbinlog-format=ROW\n manager=kubectl-edit"},
		},
		"a label removed": {
			edit: func(t *testing.T, s Snapshot) {
				unstructured.RemoveNestedField(s.Live[configMap].Object, "metadata", "labels", "app.kubernetes.io/part-of")
				removed(t, s.Live[configMap], `{"f:metadata":{"f:labels":{"f:app.kubernetes.io/part-of":{}}}}`)
			},
			want: []string{"object-drift ConfigMap/mysql/mysql-config field=metadata.labels.app.kubernetes.io/part-of want=mysql-stack got=<absent> manager="},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := mysql(t)
			if tc.edit != nil {
				tc.edit(t, s)
			}
			if diff := cmp.Diff(tc.want, renderAll(CheckObjectDrift(s, tc.opts))); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckObjectDriftDetail(t *testing.T) {
	s := mysql(t)
	setField(t, s.Live[statefulSetRef].Object, int64(3), "spec", "replicas")
	updateBy(t, s.Live[statefulSetRef], "kubectl", "scale", `{"f:spec":{"f:replicas":{}}}`)
	got := CheckObjectDrift(s, Options{})
	want := "StatefulSet/mysql/mysql spec.replicas is 3 in the cluster, git says 2 (changed by kubectl)"
	if len(got) != 1 || got[0].Detail != want || got[0].Grace != 0 || got[0].Key() != "object-drift apps/StatefulSet/mysql/mysql spec.replicas" {
		t.Errorf("got %+v, want detail %q, no grace, the field in the key", got, want)
	}
}

func TestCheckObjectDriftRedactsSecrets(t *testing.T) {
	const value, liveValue = "s3cr3t-passw0rd", "b3RoZXItdmFsdWU=" // base64 of "other-value"
	desired := parse(t, `apiVersion: v1
kind: Secret
metadata: {name: mysql-root, namespace: mysql}
stringData:
  password: `+value+`
  replication: `+value+`
data:
  user: cm9vdA==
`)[0]
	live := parse(t, `apiVersion: v1
kind: Secret
type: Opaque
metadata:
  name: mysql-root
  namespace: mysql
  managedFields:
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1: {"f:data": {"f:user": {}}, "f:type": {}}
    manager: gitopsd
    operation: Apply
  - apiVersion: v1
    fieldsType: FieldsV1
    fieldsV1: {"f:data": {"f:password": {}}}
    manager: kubectl-edit
    operation: Update
data:
  password: `+liveValue+`
  user: cm9vdA==
`)[0]
	s := Snapshot{Now: now, Desired: []*unstructured.Unstructured{desired}, Live: map[Ref]*unstructured.Unstructured{RefOf(live): live}}
	got := CheckObjectDrift(s, Options{})
	want := []string{
		"object-drift Secret/mysql/mysql-root field=data.password want=(redacted) got=(redacted) manager=kubectl-edit",
		"object-drift Secret/mysql/mysql-root field=data.replication want=(redacted) got=(redacted) manager=",
	}
	if diff := cmp.Diff(want, renderAll(got)); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	for _, f := range got {
		all := f.Detail + " " + f.Key() + " " + render(f)
		for _, secret := range []string{value, "czNjcjN0LXBhc3N3MHJk", liveValue, "other-value"} {
			if strings.Contains(all, secret) {
				t.Errorf("finding shows a secret value %q: %s", secret, all)
			}
		}
		if !strings.Contains(f.Detail, attrs(f)["field"]) {
			t.Errorf("detail %q does not name the key", f.Detail)
		}
	}

	// stringData is compared as the server stores it, in data.
	live.Object["data"].(map[string]any)["password"] = "czNjcjN0LXBhc3N3MHJk"
	live.Object["data"].(map[string]any)["replication"] = "czNjcjN0LXBhc3N3MHJk"
	if got := CheckObjectDrift(s, Options{}); len(got) != 0 {
		t.Errorf("equal Secret reported: %q", renderAll(got))
	}
}

func TestCheckObjectMissing(t *testing.T) {
	s := mysql(t)
	delete(s.Live, Ref{Kind: "Service", Namespace: ns, Name: "mysql-read"})
	want := []string{"object-missing Service/mysql/mysql-read"}
	if diff := cmp.Diff(want, renderAll(CheckObjectMissing(s, Options{}))); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
}

func TestListKey(t *testing.T) {
	tests := map[string]struct {
		items string
		want  string
	}{
		"containers":                      {`[{name: mysql, image: a}, {name: xtrabackup}]`, "name"},
		"volumeClaimTemplates":            {`[{metadata: {name: data}, spec: {}}]`, "metadata.name"},
		"unnamed container ports":         {`[{containerPort: 3306}, {containerPort: 3307}]`, "containerPort"},
		"unnamed service ports":           {`[{port: 3306, targetPort: 3306}]`, "port"},
		"one volume mounted twice":        {`[{name: data, mountPath: /var/lib/mysql, subPath: mysql}, {name: data, mountPath: /backup, subPath: backup}]`, "mountPath"},
		"some named, some not":            {`[{name: mysql, containerPort: 3306}, {containerPort: 9104}]`, "containerPort"},
		"scalars":                         {`[bash, -c]`, ""},
		"maps without a key: tolerations": {`[{key: a, operator: Exists}]`, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var items []any
			if err := yaml.Unmarshal([]byte(tc.items), &items); err != nil {
				t.Fatal(err)
			}
			if got := listKey(items); got != tc.want {
				t.Errorf("listKey = %q, want %q", got, tc.want)
			}
		})
	}
}
