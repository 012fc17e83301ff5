package main

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFence(t *testing.T) {
	var served atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer srv.Close()
	f := &fence{elect: true}
	client := &http.Client{Transport: f.wrapTransport(http.DefaultTransport)}
	do := func(method, path string) error {
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	const cm = "/api/v1/namespaces/a/configmaps/b"
	const lease = "/apis/coordination.k8s.io/v1/namespaces/gitopsd/leases/gitopsd"

	// Before any renewal: reads and the Lease's own requests only.
	for _, tc := range []struct {
		method, path string
		allowed      bool
	}{
		{http.MethodGet, cm, true},
		{http.MethodPatch, cm, false},
		{http.MethodPost, "/api/v1/namespaces/a/events", false},
		{http.MethodDelete, cm, false},
		{http.MethodPut, lease, true},
		{http.MethodPost, "/apis/coordination.k8s.io/v1/namespaces/gitopsd/leases", true},
	} {
		before := served.Load()
		err := do(tc.method, tc.path)
		if tc.allowed != (err == nil) || tc.allowed != (served.Load() > before) {
			t.Errorf("%s %s before a renewal: error %v, sent %v; want allowed %v", tc.method, tc.path, err, served.Load() > before, tc.allowed)
		}
		if !tc.allowed && !errors.Is(err, errNotLeader) {
			t.Errorf("%s %s: error %v, want errNotLeader", tc.method, tc.path, err)
		}
	}

	now := time.Now()
	f.renewed.Store(&now)
	if err := do(http.MethodPatch, cm); err != nil {
		t.Errorf("a write just after a renewal: %v", err)
	}
	// A renewal older than the lease less its margin closes the fence.
	old := time.Now().Add(-(leaseDuration - leaseMargin))
	f.renewed.Store(&old)
	if ok, _ := f.valid(); ok {
		t.Error("valid with a renewal a lease ago")
	}
	if err := do(http.MethodPatch, cm); !errors.Is(err, errNotLeader) {
		t.Errorf("a write a lease after the last renewal: %v, want errNotLeader", err)
	}

	// Without election the fence is open.
	open := &fence{}
	if ok, _ := open.valid(); !ok {
		t.Error("the fence of a daemon without election is closed")
	}
}
