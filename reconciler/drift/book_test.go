package drift

import (
	"log/slog"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func finding(code Code, name string, grace time.Duration) Finding {
	return Finding{Code: code, Object: Ref{Kind: "Pod", Namespace: ns, Name: name}, Detail: name, Grace: grace}
}

// kinds renders events as "kind code object".
func kinds(events []Event) []string {
	var out []string
	for _, e := range events {
		out = append(out, string(e.Kind)+" "+string(e.Finding.Code)+" "+e.Finding.Object.Name)
	}
	return out
}

func TestBook(t *testing.T) {
	at := func(s int) time.Time { return now.Add(time.Duration(s) * time.Second) }
	notReady := finding(PodNotReady, "mysql-1", 5*time.Second)
	missing := finding(PodMissing, "mysql-2", 0)
	steps := []struct {
		at       int
		findings []Finding
		want     []string
		open     int
	}{
		{0, []Finding{notReady, missing}, []string{"detected pod-missing mysql-2"}, 1},
		{1, []Finding{notReady, missing}, nil, 1}, // no duplicates
		{5, []Finding{notReady, missing}, []string{"detected pod-not-ready mysql-1"}, 2},
		{6, []Finding{notReady}, []string{"resolved pod-missing mysql-2"}, 1},
		{7, []Finding{notReady}, nil, 1},
		{65, []Finding{notReady}, []string{"reminder pod-not-ready mysql-1"}, 1},
		{66, []Finding{notReady}, nil, 1},
		{125, []Finding{notReady}, []string{"reminder pod-not-ready mysql-1"}, 1},
		{126, nil, []string{"resolved pod-not-ready mysql-1"}, 0},
		{127, nil, nil, 0},
	}
	b := NewBook(time.Minute)
	for _, st := range steps {
		if diff := cmp.Diff(st.want, kinds(b.Observe(at(st.at), st.findings))); diff != "" {
			t.Errorf("at %ds: events (-want +got):\n%s", st.at, diff)
		}
		if open := len(b.Open()); open != st.open {
			t.Errorf("at %ds: %d open, want %d", st.at, open, st.open)
		}
	}
}

func TestBookFlapWithinGraceIsSilent(t *testing.T) {
	b := NewBook(0)
	f := finding(PodMissing, "mysql-1", 10*time.Second)
	for i, findings := range [][]Finding{{f}, {f}, nil, {f}, nil} {
		if got := b.Observe(now.Add(time.Duration(i*3)*time.Second), findings); len(got) != 0 {
			t.Errorf("observation %d: %v, want nothing inside the grace period", i, kinds(got))
		}
	}
	// The onset restarts after a gap: 9s later it is still inside grace.
	b.Observe(now.Add(20*time.Second), []Finding{f})
	if got := b.Observe(now.Add(29*time.Second), []Finding{f}); len(got) != 0 {
		t.Errorf("grace restarted after the gap, got %v", kinds(got))
	}
	if got := kinds(b.Observe(now.Add(30*time.Second), []Finding{f})); len(got) != 1 {
		t.Errorf("after 10s continuously: %v, want detected", got)
	}
}

func TestBookSinceShortensGrace(t *testing.T) {
	b := NewBook(0)
	f := finding(PodNotReady, "mysql-1", 30*time.Second)
	f.Since = now.Add(-time.Minute) // not ready for a minute already
	if diff := cmp.Diff([]string{"detected pod-not-ready mysql-1"}, kinds(b.Observe(now, []Finding{f}))); diff != "" {
		t.Errorf("a finding older than its grace (-want +got):\n%s", diff)
	}
	ev := b.Observe(now.Add(time.Second), nil)
	if len(ev) != 1 || !ev[0].Since.Equal(now.Add(-time.Minute)) {
		t.Errorf("resolved %+v: want since the condition's onset", ev)
	}
}

func TestBookUpdatesInPlace(t *testing.T) {
	b := NewBook(time.Minute)
	f := Finding{Code: ObjectDrift, Object: Ref{Group: "apps", Kind: "StatefulSet", Namespace: ns, Name: "mysql"},
		Attrs: []slog.Attr{slog.String("field", "spec.replicas"), slog.String("got", "3")}}
	b.Observe(now, []Finding{f})
	g := f
	g.Attrs = []slog.Attr{slog.String("field", "spec.replicas"), slog.String("got", "4")}
	if got := b.Observe(now.Add(time.Second), []Finding{g}); len(got) != 0 {
		t.Errorf("a changed value made %v, want no new event", kinds(got))
	}
	if open := b.Open(); len(open) != 1 || attrs(open[0])["got"] != "4" {
		t.Errorf("open %+v: want the current value", open)
	}
	// Another field of the same object is another finding.
	h := f
	h.Attrs = []slog.Attr{slog.String("field", "spec.template.spec.containers[name=mysql].image")}
	if got := kinds(b.Observe(now.Add(2*time.Second), []Finding{g, h})); len(got) != 1 {
		t.Errorf("second field: %v, want one detected", got)
	}
	// The reminder carries the current value.
	if ev := b.Observe(now.Add(time.Minute), []Finding{g, h}); len(ev) != 1 || ev[0].Kind != Reminder || attrs(ev[0].Finding)["got"] != "4" {
		t.Errorf("reminder %+v: want the current value", ev)
	}
}

func TestBookNextDue(t *testing.T) {
	b := NewBook(time.Hour)
	if _, ok := b.NextDue(); ok {
		t.Error("empty book has something due")
	}
	b.Observe(now, []Finding{finding(PodMissing, "mysql-1", 10*time.Second), finding(PVCLost, "data", 0)})
	due, ok := b.NextDue()
	if !ok || !due.Equal(now.Add(10*time.Second)) {
		t.Errorf("due %v %v, want the end of the 10s grace", due, ok)
	}
	b.Observe(now.Add(10*time.Second), []Finding{finding(PodMissing, "mysql-1", 10*time.Second), finding(PVCLost, "data", 0)})
	if due, _ := b.NextDue(); !due.Equal(now.Add(time.Hour)) {
		t.Errorf("due %v, want the first reminder an hour after detection", due)
	}

	quiet := NewBook(0)
	quiet.Observe(now, []Finding{finding(PVCLost, "data", 0)})
	if due, ok := quiet.NextDue(); ok {
		t.Errorf("due %v without reminders and nothing pending", due)
	}
}

func TestBookOrdersEvents(t *testing.T) {
	b := NewBook(time.Minute)
	old, gone := finding(PodNotReady, "mysql-0", 0), finding(PVCLost, "data-mysql-1", 0)
	b.Observe(now, []Finding{old, gone})
	got := b.Observe(now.Add(time.Minute), []Finding{
		finding(PodMissing, "mysql-2", 0), old, finding(PodMissing, "mysql-1", 0), old, // a duplicate counts once
	})
	want := []string{
		"resolved pvc-lost data-mysql-1",
		"detected pod-missing mysql-1",
		"detected pod-missing mysql-2",
		"reminder pod-not-ready mysql-0",
	}
	if diff := cmp.Diff(want, kinds(got)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, ev := range got {
		if ev.Kind != Detected && !ev.Since.Equal(now) {
			t.Errorf("%s %s: since %v, want the onset %v", ev.Kind, ev.Finding.Key(), ev.Since, now)
		}
	}
}
