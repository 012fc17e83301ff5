package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/gitopsd/gitopsd/reconciler"
)

// TestWebhook: with a 10-minute poll, a signed GitHub push webhook gets
// its commit applied within 2 s; a badly signed one is refused with 401 and
// changes nothing.
func TestWebhook(t *testing.T) {
	const ns = "webhook-e2e"
	srv := newGitServer(t)
	repo := seedRepo(t, srv, ns)
	secret := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secret, []byte("e2e-webhook-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemon(t, "--git-url", srv.URL+"/stack.git", "--git-ref", "main", "--path", "overlays/dev",
		"--interval", "10m", "--webhook-secret-file", secret)
	d.waitFor(t, 90*time.Second, "first sync", syncComplete(repo.git(repo.dir, "rev-parse", "HEAD")))
	base := d.baseURL(t)
	payload := fmt.Sprintf(`{"ref":"refs/heads/main","repository":{"clone_url":%q}}`, srv.URL+"/stack.git")
	push := func(signature string) int {
		req, err := http.NewRequest(http.MethodPost, base+"/hooks/github", strings.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-Hub-Signature-256", signature)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	mac := hmac.New(sha256.New, []byte("e2e-webhook-secret"))
	mac.Write([]byte(payload))
	good := "sha256=" + hex.EncodeToString(mac.Sum(nil))

	editFile(t, repo.path("overlays/dev/kustomization.yaml"), func(s string) string { return strings.Replace(s, "count: 2", "count: 3", 1) })
	sha := repo.commit("scale to 3")
	if code := push("sha256=" + strings.Repeat("0", 64)); code != http.StatusUnauthorized {
		t.Errorf("badly signed push: %d, want 401", code)
	}
	d.never(t, 3*time.Second, "a sync after a badly signed push", func(r logRecord) bool { return strings.HasPrefix(r.str("msg"), "sync ") })

	sent := time.Now()
	if code := push(good); code != http.StatusAccepted {
		t.Fatalf("signed push: %d, want 202", code)
	}
	// Applied: the StatefulSet has the commit's replicas (the sync then
	// waits for mysql-2 to be healthy).
	eventually(t, 2*time.Second, "replicas 3 applied", func(ctx context.Context) error {
		sts, err := env.cs.AppsV1().StatefulSets(ns).Get(ctx, "mysql", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if *sts.Spec.Replicas != 3 || !strings.HasSuffix(sts.Annotations[reconciler.RevisionAnnotation], sha) {
			return fmt.Errorf("replicas %d at %s", *sts.Spec.Replicas, sts.Annotations[reconciler.RevisionAnnotation])
		}
		return nil
	})
	t.Logf("applied %s after the webhook", time.Since(sent).Round(10*time.Millisecond))
	rec := d.waitFor(t, 30*time.Second, "sync complete for the pushed commit", syncComplete(sha))
	// The sync's result is an Event on its ApplySet parent.
	inventory := rec.str("sync")
	eventually(t, 10*time.Second, "SyncComplete Event on "+inventory, func(ctx context.Context) error {
		list, err := env.cs.CoreV1().Events("gitopsd").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + inventory + ",reason=SyncComplete"})
		if err != nil {
			return err
		}
		for _, e := range list.Items {
			if strings.Contains(e.Message, sha) {
				return nil
			}
		}
		return fmt.Errorf("no SyncComplete Event for %s among %d", sha, len(list.Items))
	})
}
