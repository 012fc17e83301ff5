package reconciler

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/gitopsd/gitopsd/kustomize"
)

// TestSyncerRedactsErrors checks that a sync error quoting a Secret value
// of the build (as an API server's validation message may) is reported
// without it, whatever the stage, and still unwraps to its cause.
func TestSyncerRedactsErrors(t *testing.T) {
	secret := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata":   map[string]any{"name": "db", "namespace": "mysql"},
		"data":       map[string]any{"password": "aHVudGVyMi1zM2NyM3Q="}, // hunter2-s3cr3t
		"stringData": map[string]any{"token": "tok-9f8e7d6c"},
	}}
	s := &Syncer{}
	s.built.redactor = kustomize.NewRedactorFromObjects([]*unstructured.Unstructured{secret})
	cause := errors.New("cause")
	for _, err := range []error{
		&SyncError{Stage: StageValidate, Err: fmt.Errorf(`Secret/mysql/db: data[password]: Invalid value: "hunter2-s3cr3t" (%w)`, cause)},
		&SyncError{Stage: StageApply, Err: fmt.Errorf("token tok-9f8e7d6c and aHVudGVyMi1zM2NyM3Q=: %w", cause)},
		fmt.Errorf("plain hunter2-s3cr3t: %w", cause),
	} {
		got := s.redact(err)
		msg := got.Error()
		if se := (*SyncError)(nil); errors.As(got, &se) {
			msg = se.Err.Error()
		}
		for _, v := range []string{"hunter2-s3cr3t", "aHVudGVyMi1zM2NyM3Q=", "tok-9f8e7d6c"} {
			if strings.Contains(msg, v) {
				t.Errorf("%q still holds %q", msg, v)
			}
		}
		if !strings.Contains(msg, "[redacted]") {
			t.Errorf("%q: no [redacted] in place of the value", msg)
		}
		if !errors.Is(got, cause) {
			t.Errorf("%v no longer unwraps to its cause", got)
		}
	}
}
