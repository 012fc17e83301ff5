package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/gitopsd/gitopsd/reconciler"
	"github.com/gitopsd/gitopsd/test/cluster"
)

// alertWithin is how soon an alert must follow its cause (issue 4).
const alertWithin = 5 * time.Second

// driftRecord matches a `drift detected` or `drift resolved` record.
func driftRecord(msg, code, object string) func(logRecord) bool {
	return func(r logRecord) bool {
		return r.str("msg") == msg && r.str("drift") == code && r.str("object") == object
	}
}

// never fails the test if a record match accepts arrives within d (records
// already consumed are not looked at).
func (d *daemon) never(t *testing.T, dur time.Duration, what string, match func(logRecord) bool) {
	t.Helper()
	d.mu.Lock()
	from := d.next
	d.mu.Unlock()
	pollFor(t, dur, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, r := range d.records[from:] {
			if match(r) {
				t.Fatalf("unexpected %s: %v", what, r)
			}
		}
	})
}

// gitopsdDrift runs `gitopsd drift -o json` and returns its exit code and
// findings.
func gitopsdDrift(t *testing.T, bin string, args ...string) (int, []logRecord) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"drift", "-o", "json", "--kubeconfig", env.cluster.Kubeconfig(),
		"--cache-dir", t.TempDir()}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	var findings []logRecord
	sc := bufio.NewScanner(&stdout)
	for sc.Scan() {
		var rec logRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("gitopsd drift -o json printed %q: %v", sc.Text(), err)
		}
		findings = append(findings, rec)
	}
	if code == 2 {
		t.Fatalf("gitopsd drift failed: %s", stderr.String())
	}
	return code, findings
}

func recordTime(t *testing.T, rec logRecord) time.Time {
	t.Helper()
	at, err := time.Parse(time.RFC3339Nano, rec.str("time"))
	if err != nil {
		t.Fatalf("record %v: %v", rec, err)
	}
	return at
}

func hasFinding(findings []logRecord, code, object string) bool {
	for _, f := range findings {
		if f.str("drift") == code && f.str("object") == object {
			return true
		}
	}
	return false
}

// TestDrift replays the walkthrough with the daemon running on overlays/dev
// and reads its JSON log: every situation a person had to notice by eye is
// reported within seconds, once, and resolved when it ends.
func TestDrift(t *testing.T) {
	const ns = "drift-e2e"
	srv := newGitServer(t)
	repo := seedRepo(t, srv, ns)
	first := repo.git(repo.dir, "rev-parse", "HEAD")
	// The daemon and `gitopsd drift` run with deploy/'s RBAC, not as admin.
	source := append([]string{"--git-url", srv.URL + "/stack.git", "--git-ref", "main", "--path", "overlays/dev"},
		asServiceAccount(t, ns)...)
	d := startDaemon(t, append(source, "--interval", "2s", "--pod-not-ready-grace", "1s", "--pod-missing-grace", "10s")...)
	bin := buildGitopsd(t)
	ctx := t.Context()
	cs := env.cs

	d.waitFor(t, 90*time.Second, "first sync complete", syncComplete(first))
	waitStatefulSetReady(t, ns, 2)
	t.Run("endpoints", func(t *testing.T) { checkEndpoints(t, d, first) })
	pod := func(name string) string { return "Pod/" + ns + "/" + name }

	t.Run("a steady cluster raises no alert", func(t *testing.T) {
		if code, findings := gitopsdDrift(t, bin, source...); code != 0 || len(findings) != 0 {
			t.Errorf("gitopsd drift on a steady cluster: exit %d, %v", code, findings)
		}
		d.never(t, 2*time.Minute, "drift record on a steady cluster", func(r logRecord) bool {
			return strings.HasPrefix(r.str("msg"), "drift ")
		})
	})

	t.Run("pod-not-ready", func(t *testing.T) {
		if err := cluster.SetFault(ctx, cs, ns, "mysql-1", cluster.NotReadyAnnotation, "mysql"); err != nil {
			t.Fatal(err)
		}
		set := time.Now()
		// grace 1s
		rec := d.waitFor(t, alertWithin+time.Second, "pod-not-ready detected", driftRecord(reconciler.MsgDriftDetected, "pod-not-ready", pod("mysql-1")))
		t.Logf("pod-not-ready reported %s after the switch (grace 1s)", recordTime(t, rec).Sub(set).Round(10*time.Millisecond))
		if rec.str("detail") == "" || rec.str("level") != "WARN" {
			t.Errorf("record %v: want a detail, level WARN", rec)
		}
		// The one-shot only has the Ready condition's time, in whole
		// seconds, and rounds it up so the grace is never cut short: it
		// may report a second after the daemon.
		eventually(t, alertWithin, "gitopsd drift reports mysql-1 not ready", func(context.Context) error {
			code, findings := gitopsdDrift(t, bin, append(source, "--pod-not-ready-grace", "1s")...)
			if code != 1 || !hasFinding(findings, "pod-not-ready", pod("mysql-1")) {
				return fmt.Errorf("exit %d, %v", code, findings)
			}
			return nil
		})
		if err := cluster.ClearFault(ctx, cs, ns, "mysql-1", cluster.NotReadyAnnotation); err != nil {
			t.Fatal(err)
		}
		d.waitFor(t, alertWithin, "pod-not-ready resolved", driftRecord(reconciler.MsgDriftResolved, "pod-not-ready", pod("mysql-1")))
		waitEvent(t, ns, "mysql-1", "DriftDetected")
	})

	t.Run("a pod recreated within its grace period raises nothing", func(t *testing.T) {
		deletePod(t, ns, "mysql-1")
		waitStatefulSetReady(t, ns, 2)
		d.never(t, 12*time.Second, "pod-missing for a recreated pod", driftRecord(reconciler.MsgDriftDetected, "pod-missing", pod("mysql-1")))
	})

	t.Run("pod-missing while its zone has no schedulable node", func(t *testing.T) {
		node := zoneNodeOfClaim(t, ns, "data-mysql-1")
		setUnschedulable(t, node, true)
		t.Cleanup(func() { setUnschedulable(t, node, false) })
		deleted := time.Now()
		deletePod(t, ns, "mysql-1")
		// grace 10s
		rec := d.waitFor(t, 10*time.Second+alertWithin, "pod-missing detected", driftRecord(reconciler.MsgDriftDetected, "pod-missing", pod("mysql-1")))
		if rec["ordinal"] != float64(1) || rec["replicas"] != float64(2) {
			t.Errorf("pod-missing record %v: want ordinal 1, replicas 2", rec)
		}
		after := recordTime(t, rec).Sub(deleted)
		t.Logf("pod-missing reported %s after the delete (grace 10s)", after.Round(10*time.Millisecond))
		if after < 10*time.Second {
			t.Errorf("pod-missing reported %s after the delete, before its 10s grace", after)
		}
		setUnschedulable(t, node, false)
		d.waitFor(t, alertWithin+5*time.Second, "pod-missing resolved", driftRecord(reconciler.MsgDriftResolved, "pod-missing", pod("mysql-1")))
		waitStatefulSetReady(t, ns, 2)
	})

	t.Run("scale-down leaves pvc-orphaned, a retained volume pv-released", func(t *testing.T) {
		editFile(t, repo.path("overlays/dev/kustomization.yaml"), func(s string) string { return strings.Replace(s, "count: 2", "count: 3", 1) })
		d.waitFor(t, 30*time.Second, "sync to 3", syncComplete(repo.commit("scale to 3")))
		waitStatefulSetReady(t, ns, 3)
		editFile(t, repo.path("overlays/dev/kustomization.yaml"), func(s string) string { return strings.Replace(s, "count: 3", "count: 2", 1) })
		down := repo.commit("scale back to 2")
		pvc := "PersistentVolumeClaim/" + ns + "/data-mysql-2"
		rec := d.waitFor(t, 10*time.Second+alertWithin, "pvc-orphaned detected", driftRecord(reconciler.MsgDriftDetected, "pvc-orphaned", pvc))
		if rec["ordinal"] != float64(2) || rec["replicas"] != float64(2) {
			t.Errorf("pvc-orphaned record %v: want ordinal 2, replicas 2", rec)
		}
		if code, findings := gitopsdDrift(t, bin, source...); code != 1 || !hasFinding(findings, "pvc-orphaned", pvc) {
			t.Errorf("gitopsd drift with an orphaned claim: exit %d, %v", code, findings)
		}
		base := d.baseURL(t)
		if n, _ := metricValue(scrape(t, base), "gitopsd_drift_findings", map[string]string{"drift": "pvc-orphaned"}); n != 1 {
			t.Errorf("gitopsd_drift_findings{drift=pvc-orphaned} = %v, want 1", n)
		}
		if f := getStatus(t, base).Syncs[0].Findings; len(f) != 1 || f[0].Drift != "pvc-orphaned" || f[0].Object != pvc {
			t.Errorf("/status findings %+v, want the orphaned claim", f)
		}
		checkStatusPage(t, base, ns, down, pvc)

		pv1 := "PersistentVolume/" + volumeOf(t, ns, "data-mysql-1")
		patchReclaim(t, volumeOf(t, ns, "data-mysql-1"), corev1.PersistentVolumeReclaimRetain)
		rec = d.waitFor(t, alertWithin, "pv-reclaim-policy detected", driftRecord(reconciler.MsgDriftDetected, "pv-reclaim-policy", pv1))
		if rec.str("want") != "Delete" || rec.str("got") != "Retain" {
			t.Errorf("pv-reclaim-policy record %v: want Delete, got Retain", rec)
		}
		patchReclaim(t, volumeOf(t, ns, "data-mysql-1"), corev1.PersistentVolumeReclaimDelete)
		d.waitFor(t, alertWithin, "pv-reclaim-policy resolved", driftRecord(reconciler.MsgDriftResolved, "pv-reclaim-policy", pv1))

		volume := volumeOf(t, ns, "data-mysql-2")
		patchReclaim(t, volume, corev1.PersistentVolumeReclaimRetain)
		d.waitFor(t, alertWithin, "pv-reclaim-policy of the orphan", driftRecord(reconciler.MsgDriftDetected, "pv-reclaim-policy", "PersistentVolume/"+volume))
		if err := cs.CoreV1().PersistentVolumeClaims(ns).Delete(ctx, "data-mysql-2", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		d.waitFor(t, alertWithin, "pvc-orphaned resolved", driftRecord(reconciler.MsgDriftResolved, "pvc-orphaned", pvc))
		d.waitFor(t, alertWithin, "pv-released detected", driftRecord(reconciler.MsgDriftDetected, "pv-released", "PersistentVolume/"+volume))
		if err := cs.CoreV1().PersistentVolumes().Delete(ctx, volume, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		d.waitFor(t, alertWithin, "pv-released resolved", driftRecord(reconciler.MsgDriftResolved, "pv-released", "PersistentVolume/"+volume))
	})

	t.Run("object-missing is restored", func(t *testing.T) {
		if err := cs.CoreV1().ConfigMaps(ns).Delete(ctx, "mysql-config", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		cm := "ConfigMap/" + ns + "/mysql-config"
		d.waitFor(t, alertWithin, "object-missing detected", driftRecord(reconciler.MsgDriftDetected, "object-missing", cm))
		d.waitFor(t, alertWithin, "object-missing resolved", driftRecord(reconciler.MsgDriftResolved, "object-missing", cm))
		if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "mysql-config", metav1.GetOptions{}); err != nil {
			t.Errorf("mysql-config after self-heal: %v", err)
		}
	})

	t.Run("object-drift on an out-of-band scale is healed", func(t *testing.T) {
		scale(t, ns, 3)
		sts := "StatefulSet/" + ns + "/mysql"
		rec := d.waitFor(t, alertWithin, "object-drift detected", driftRecord(reconciler.MsgDriftDetected, "object-drift", sts))
		checkReplicasDrift(t, rec)
		d.waitFor(t, alertWithin, "object-drift resolved", driftRecord(reconciler.MsgDriftResolved, "object-drift", sts))
		if got := replicasOf(t, ns); got != 2 {
			t.Errorf("replicas %d after self-heal, want git's 2", got)
		}
	})

	t.Run("a kind outside deploy/'s RBAC fails, naming the object", func(t *testing.T) {
		const password = "e2e-never-logged-7f3a9c"
		writeFile(t, repo.path("overlays/dev/extra.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: new-and-valid\n  namespace: "+ns+
			"\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: mysql-root\n  namespace: "+ns+"\nstringData:\n  password: "+password+"\n")
		appendResource(t, repo.path("overlays/dev"), "extra.yaml")
		sha := repo.commit("a Secret, which deploy/ does not let gitopsd manage")
		rec := d.waitFor(t, 30*time.Second, "sync failed at validate", syncFailed(reconciler.StageValidate, sha))
		secret := "Secret/" + ns + "/mysql-root"
		if msg := rec.str("error"); !strings.Contains(msg, secret) || !strings.Contains(msg, "forbidden") || !strings.Contains(msg, "RBAC") {
			t.Errorf("error %q: want it to name %s, say forbidden and point at RBAC", msg, secret)
		}
		if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "new-and-valid", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("ConfigMap new-and-valid of the refused commit exists (err %v)", err)
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, r := range d.records {
			if line, _ := json.Marshal(r); strings.Contains(string(line), password) {
				t.Errorf("a log record shows the Secret's value: %s", line)
			}
		}
	})
}

// TestDriftSelfHealOff: with --self-heal=false an out-of-band change is
// reported and left alone, across resyncs, until someone undoes it.
func TestDriftSelfHealOff(t *testing.T) {
	const ns = "drift-noheal-e2e"
	srv := newGitServer(t)
	repo := seedRepo(t, srv, ns)
	source := append([]string{"--git-url", srv.URL + "/stack.git", "--git-ref", "main", "--path", "overlays/dev"},
		asServiceAccount(t, ns)...)
	d := startDaemon(t, append(source, "--interval", "2s", "--self-heal=false")...)
	d.waitFor(t, 90*time.Second, "first sync complete", syncComplete(repo.git(repo.dir, "rev-parse", "HEAD")))
	waitStatefulSetReady(t, ns, 2)

	scale(t, ns, 3)
	sts := "StatefulSet/" + ns + "/mysql"
	rec := d.waitFor(t, alertWithin, "object-drift detected", driftRecord(reconciler.MsgDriftDetected, "object-drift", sts))
	checkReplicasDrift(t, rec)
	// Three intervals: the resyncs leave it alone and the alert stays open.
	d.never(t, 6*time.Second, "object-drift resolved or healed", func(r logRecord) bool {
		return (r.str("msg") == reconciler.MsgDriftResolved || r.str("msg") == reconciler.MsgSelfHeal) && r.str("object") == sts
	})
	if got := replicasOf(t, ns); got != 3 {
		t.Errorf("replicas %d with self-heal off, want the hand-set 3", got)
	}
	if code, findings := gitopsdDrift(t, buildGitopsd(t), source...); code != 1 || !hasFinding(findings, "object-drift", sts) {
		t.Errorf("gitopsd drift with a hand-scaled StatefulSet: exit %d, %v", code, findings)
	}
	scale(t, ns, 2)
	d.waitFor(t, alertWithin, "object-drift resolved", driftRecord(reconciler.MsgDriftResolved, "object-drift", sts))
}

func checkReplicasDrift(t *testing.T, rec logRecord) {
	t.Helper()
	if rec.str("field") != "spec.replicas" || rec.str("want") != "2" || rec.str("got") != "3" ||
		rec.str("manager") == "" || rec.str("manager") == reconciler.FieldManager {
		t.Errorf("object-drift record %v: want field spec.replicas, want 2, got 3 and the manager that scaled", rec)
	}
}

func replicasOf(t *testing.T, ns string) int32 {
	t.Helper()
	sts, err := env.cs.AppsV1().StatefulSets(ns).Get(t.Context(), "mysql", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return *sts.Spec.Replicas
}

func deletePod(t *testing.T, ns, name string) {
	t.Helper()
	old, err := env.cs.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.cs.CoreV1().Pods(ns).Delete(t.Context(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "pod "+name+" replaced", func(ctx context.Context) error {
		p, err := env.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return err
		}
		if err == nil && p.UID == old.UID {
			return errors.New("still the old pod")
		}
		return err
	})
}

func volumeOf(t *testing.T, ns, claim string) string {
	t.Helper()
	pvc, err := env.cs.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), claim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pvc.Spec.VolumeName == "" {
		t.Fatalf("claim %s is not bound", claim)
	}
	return pvc.Spec.VolumeName
}

// zoneNodeOfClaim returns the node in the zone of a claim's volume: the
// only node its pod can run on.
func zoneNodeOfClaim(t *testing.T, ns, claim string) string {
	t.Helper()
	pv, err := env.cs.CoreV1().PersistentVolumes().Get(t.Context(), volumeOf(t, ns, claim), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zone := pvZone(pv)
	nodes, err := env.cs.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{LabelSelector: corev1.LabelTopologyZone + "=" + zone})
	if err != nil || len(nodes.Items) != 1 {
		t.Fatalf("nodes in zone %q: %v (err %v)", zone, nodes, err)
	}
	return nodes.Items[0].Name
}

func setUnschedulable(t *testing.T, node string, on bool) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"unschedulable":%t}}`, on)
	if _, err := env.cs.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitEvent waits for a Kubernetes Event with reason on a pod.
func waitEvent(t *testing.T, ns, pod, reason string) {
	t.Helper()
	eventually(t, 10*time.Second, reason+" Event on "+pod, func(ctx context.Context) error {
		list, err := env.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + pod + ",reason=" + reason})
		if err != nil {
			return err
		}
		if len(list.Items) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
}

// checkStatusPage loads the status page in headless Chromium while claim
// data-mysql-2 is orphaned (the StatefulSet back at 2 replicas, revision
// sha): it shows the revision, the StatefulSet's pods ready, every claim
// with its volume, capacity and reclaim policy, and the one open alert, in
// red.
func checkStatusPage(t *testing.T, base, ns, sha, orphan string) {
	t.Helper()
	volumes := map[string]string{}
	for _, claim := range []string{"data-mysql-0", "data-mysql-1", "data-mysql-2"} {
		volumes[ns+"/"+claim] = volumeOf(t, ns, claim)
	}
	browser := inBrowser(t)
	checkPageInBrowser(t, browser, base+"/", 30*time.Second, func(p renderedPage) error {
		var errs []string
		if p.Title != "gitopsd" || !strings.Contains(p.Revision, sha) || !strings.HasPrefix(p.LastSync, "Last sync: success") {
			errs = append(errs, fmt.Sprintf("title %q, revision %q, last sync %q: want revision %s and a success", p.Title, p.Revision, p.LastSync, sha))
		}
		sts := row(p.Workloads, "StatefulSet/"+ns+"/mysql")
		if len(sts) != 4 || sts[1] != "2" || sts[2] != "2" ||
			!strings.Contains(sts[3], "mysql-0 2/2 Running") || !strings.Contains(sts[3], "mysql-1 2/2 Running") {
			errs = append(errs, fmt.Sprintf("workload row %q: want 2 replicas, 2 ready, mysql-0 and mysql-1 2/2 Running", sts))
		}
		for claim, volume := range volumes {
			r := row(p.Claims, claim)
			if len(r) != 6 || r[1] != "Bound" || r[2] != volume || r[3] == "" || r[4] != "mysql-gp2" || r[5] != "Delete" {
				errs = append(errs, fmt.Sprintf("claim row %q: want Bound to %s, a capacity, mysql-gp2, Delete", r, volume))
			}
		}
		if len(p.Alerts) != 1 || len(p.Alerts[0]) != 3 || p.Alerts[0][0] != "pvc-orphaned" || p.Alerts[0][1] != orphan || p.Alerts[0][2] == "" {
			errs = append(errs, fmt.Sprintf("alerts %q: want the one pvc-orphaned alert for %s", p.Alerts, orphan))
		} else if p.AlertColor != "rgb(179, 38, 30)" {
			errs = append(errs, fmt.Sprintf("the alert is painted %s, want red rgb(179, 38, 30)", p.AlertColor))
		}
		if len(errs) > 0 {
			return errors.New(strings.Join(errs, "; "))
		}
		return nil
	})
}
