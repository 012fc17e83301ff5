package reconciler

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gitopsd/gitopsd/reconciler/drift"
)

// Metrics are the Prometheus series gitopsd exports, labelled by sync (the
// --name of a source and path, several with a config file).
type Metrics struct {
	syncDuration  *prometheus.HistogramVec
	lastSuccess   *prometheus.GaugeVec
	failures      *prometheus.CounterVec
	objects       *prometheus.GaugeVec
	findings      *prometheus.GaugeVec
	fetchDuration *prometheus.HistogramVec
}

// NewMetrics registers the series with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		syncDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gitopsd_sync_duration_seconds", Help: "Duration of syncs (fetch to health), by result.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}, []string{"sync", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gitopsd_last_successful_sync_timestamp_seconds", Help: "Unix time of the last successful sync.",
		}, []string{"sync"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gitopsd_sync_failures_total", Help: "Failed syncs, by the stage that failed.",
		}, []string{"sync", "stage"}),
		objects: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gitopsd_applied_objects", Help: "Objects in the last successful sync, by what it did to them.",
		}, []string{"sync", "action"}),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gitopsd_drift_findings", Help: "Open drift findings, by code.",
		}, []string{"sync", "drift"}),
		fetchDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "gitopsd_source_fetch_duration_seconds", Help: "Duration of source fetches (git fetch, directory hash).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, []string{"sync"}),
	}
	reg.MustRegister(m.syncDuration, m.lastSuccess, m.failures, m.objects, m.findings, m.fetchDuration)
	return m
}

// ObserveSync records one sync's outcome.
func (m *Metrics) ObserveSync(sync string, res SyncResult, err error, now time.Time) {
	if m == nil || res.Skipped {
		return
	}
	if res.FetchDuration > 0 {
		m.fetchDuration.WithLabelValues(sync).Observe(res.FetchDuration.Seconds())
	}
	if err != nil {
		se := &SyncError{Stage: StageApply}
		errors.As(err, &se)
		m.failures.WithLabelValues(sync, string(se.Stage)).Inc()
		m.syncDuration.WithLabelValues(sync, "failure").Observe(res.Duration.Seconds())
		return
	}
	m.syncDuration.WithLabelValues(sync, "success").Observe(res.Duration.Seconds())
	m.lastSuccess.WithLabelValues(sync).Set(float64(now.Unix()))
	for _, a := range []Action{Created, Configured, Unchanged, Pruned} {
		m.objects.WithLabelValues(sync, string(a)).Set(float64(res.Count(a)))
	}
}

// SetFindings records the open drift findings.
func (m *Metrics) SetFindings(sync string, open []drift.Finding) {
	if m == nil {
		return
	}
	counts := map[drift.Code]int{}
	for _, f := range open {
		counts[f.Code]++
	}
	for _, code := range drift.Codes {
		m.findings.WithLabelValues(sync, string(code)).Set(float64(counts[code]))
	}
}
