package drift

import (
	"cmp"
	"slices"
	"time"
)

// EventKind is what the Book says about a finding.
type EventKind string

const (
	Detected EventKind = "detected"
	Resolved EventKind = "resolved"
	Reminder EventKind = "reminder"
)

// Event is one thing to report.
type Event struct {
	Kind    EventKind
	Finding Finding
	// Since is the onset of the finding.
	Since time.Time
}

// Book keeps track of findings across observations. It is not safe for
// concurrent use: its caller serializes.
type Book struct {
	remind  time.Duration
	entries map[string]*entry
}

type entry struct {
	finding  Finding
	onset    time.Time
	detected bool
	reminded time.Time // when last reported (detection or reminder)
}

// NewBook returns a Book that reminds every remind while a finding lasts
// (never when remind <= 0).
func NewBook(remind time.Duration) *Book {
	return &Book{remind: remind, entries: map[string]*entry{}}
}

// Observe takes the complete set of findings seen at now and returns what
// to report: a finding is detected once it has lasted its Grace (counted
// from the earlier of its Since and when the book first saw it), reminded
// every remind period while it lasts, and resolved once when it is gone. A
// finding gone before its grace ended is never reported.
func (b *Book) Observe(now time.Time, findings []Finding) []Event {
	var events []Event
	seen := map[string]bool{}
	for _, f := range findings {
		key := f.Key()
		if seen[key] {
			continue
		}
		seen[key] = true
		e := b.entries[key]
		if e == nil {
			e = &entry{onset: now}
			b.entries[key] = e
		}
		if !f.Since.IsZero() && f.Since.Before(e.onset) {
			e.onset = f.Since
		}
		e.finding = f // details and values are kept current
		switch {
		case !e.detected && !now.Before(e.onset.Add(f.Grace)):
			e.detected, e.reminded = true, now
			events = append(events, Event{Kind: Detected, Finding: f, Since: e.onset})
		case e.detected && b.remind > 0 && !now.Before(e.reminded.Add(b.remind)):
			e.reminded = now
			events = append(events, Event{Kind: Reminder, Finding: f, Since: e.onset})
		}
	}
	for key, e := range b.entries {
		if seen[key] {
			continue
		}
		if e.detected {
			events = append(events, Event{Kind: Resolved, Finding: e.finding, Since: e.onset})
		}
		delete(b.entries, key)
	}
	order := map[EventKind]int{Resolved: 0, Detected: 1, Reminder: 2}
	slices.SortFunc(events, func(a, b Event) int {
		return cmp.Or(cmp.Compare(order[a.Kind], order[b.Kind]), cmp.Compare(a.Finding.Key(), b.Finding.Key()))
	})
	return events
}

// Open returns the detected, unresolved findings, sorted by Key.
func (b *Book) Open() []Finding {
	var out []Finding
	for _, e := range b.entries {
		if e.detected {
			out = append(out, e.finding)
		}
	}
	slices.SortFunc(out, func(a, b Finding) int { return cmp.Compare(a.Key(), b.Key()) })
	return out
}

// NextDue returns the earliest time a pending finding's grace ends or a
// reminder is due; ok is false when nothing is due.
func (b *Book) NextDue() (due time.Time, ok bool) {
	for _, e := range b.entries {
		var t time.Time
		switch {
		case !e.detected:
			t = e.onset.Add(e.finding.Grace)
		case b.remind > 0:
			t = e.reminded.Add(b.remind)
		default:
			continue
		}
		if !ok || t.Before(due) {
			due, ok = t, true
		}
	}
	return due, ok
}
