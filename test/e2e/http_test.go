package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// baseURL returns the daemon's HTTP address from its `http listening`
// record (it listens on a free port).
func (d *daemon) baseURL(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		d.mu.Lock()
		for _, r := range d.records {
			if r.str("msg") == "http listening" {
				d.mu.Unlock()
				return "http://" + r.str("addr")
			}
		}
		d.mu.Unlock()
		time.Sleep(50 * time.Millisecond) // polling the collected log, with the deadline above
	}
	t.Fatal("no `http listening` record")
	return ""
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// scrape parses /metrics in the Prometheus text format.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	return families
}

// metricValue returns the value of the series of a family whose labels
// include want; ok is false when there is none.
func metricValue(families map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f := families[name]
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		labels := map[string]string{}
		for _, l := range m.GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

// statusDoc is the part of /status the tests read.
type statusDoc struct {
	Syncs []struct {
		Name        string `json:"name"`
		LastApplied string `json:"lastApplied"`
		LastSync    struct {
			Result, Revision string
		} `json:"lastSync"`
		Findings []struct {
			Drift, Object string
		} `json:"findings"`
		Workloads []struct {
			Object          string
			Replicas, Ready int
		} `json:"workloads"`
		Claims []struct {
			Name, Phase, Volume, ReclaimPolicy string
		} `json:"claims"`
	} `json:"syncs"`
}

func getStatus(t *testing.T, base string) statusDoc {
	t.Helper()
	code, body := httpGet(t, base+"/status")
	if code != http.StatusOK {
		t.Fatalf("/status: %d", code)
	}
	var doc statusDoc
	if err := json.Unmarshal(body, &doc); err != nil || len(doc.Syncs) != 1 {
		t.Fatalf("/status %s: %v", body, err)
	}
	return doc
}

// checkEndpoints checks the daemon's endpoints after its first sync of the
// MySQL stack at revision sha: ready, the series present and sane, /status
// and the page showing the stack.
func checkEndpoints(t *testing.T, d *daemon, sha string) {
	t.Helper()
	base := d.baseURL(t)
	if code, _ := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d", code)
	}
	if code, body := httpGet(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the first sync: %d %s", code, body)
	}
	families := scrape(t, base)
	for _, name := range []string{"gitopsd_sync_duration_seconds", "gitopsd_last_successful_sync_timestamp_seconds",
		"gitopsd_applied_objects", "gitopsd_drift_findings", "gitopsd_source_fetch_duration_seconds",
		"go_goroutines", "process_resident_memory_bytes"} {
		if families[name] == nil {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if n, _ := metricValue(families, "gitopsd_sync_duration_seconds", map[string]string{"result": "success"}); n < 1 {
		t.Errorf("sync duration histogram counts %v successful syncs, want at least 1", n)
	}
	if ts, _ := metricValue(families, "gitopsd_last_successful_sync_timestamp_seconds", nil); time.Since(time.Unix(int64(ts), 0)) > 5*time.Minute {
		t.Errorf("last successful sync at %v, want recent", time.Unix(int64(ts), 0))
	}
	if rss, _ := metricValue(families, "process_resident_memory_bytes", nil); rss < 1<<20 || rss > 1<<30 {
		t.Errorf("process_resident_memory_bytes %v", rss)
	}
	doc := getStatus(t, base)
	s := doc.Syncs[0]
	if !strings.HasSuffix(s.LastApplied, sha) || s.LastSync.Result != "success" {
		t.Errorf("/status: last applied %q, last sync %+v; want %s, success", s.LastApplied, s.LastSync, sha)
	}
	if len(s.Workloads) != 1 || s.Workloads[0].Replicas != 2 || len(s.Claims) < 2 {
		t.Errorf("/status workloads %+v claims %+v: want the StatefulSet with 2 replicas and its claims", s.Workloads, s.Claims)
	}
	code, page := httpGet(t, base+"/")
	if code != http.StatusOK || !strings.Contains(string(page), sha) || !strings.Contains(string(page), "data-mysql-0") {
		t.Errorf("status page %d does not show the revision and the claims:\n%s", code, page)
	}
}
