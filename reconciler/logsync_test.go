package reconciler

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestLogSyncStages(t *testing.T) {
	res := SyncResult{Revision: "main@sha1:abc", Duration: 3 * time.Second, FetchDuration: 20 * time.Millisecond,
		Stages:  []StageTime{{StageBuild, 1200 * time.Millisecond}, {StageValidate, 1500 * time.Millisecond}, {StageApply, 300 * time.Millisecond}},
		Changes: []Change{{Action: Created}, {Action: Unchanged}}}
	var buf bytes.Buffer
	LogSync(context.Background(), slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), slog.LevelInfo, "overlays/dev", res, nil)
	var records []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var r map[string]any
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		records = append(records, r)
	}
	if len(records) != 2 || records[0]["msg"] != "sync stages" || records[1]["msg"] != "sync complete" {
		t.Fatalf("records %v: want sync stages, then sync complete", records)
	}
	for key, want := range map[string]string{"fetch": "20ms", "build": "1.2s", "validate": "1.5s", "apply": "300ms"} {
		if records[0][key] != want {
			t.Errorf("sync stages %s = %v, want %s", key, records[0][key], want)
		}
	}
	if records[1]["created"] != float64(1) || records[1]["unchanged"] != float64(1) || records[1]["duration"] != "3s" {
		t.Errorf("sync complete %v", records[1])
	}

	// At info level only the contract's record.
	buf.Reset()
	LogSync(context.Background(), slog.New(slog.NewJSONHandler(&buf, nil)), slog.LevelInfo, "overlays/dev", res, nil)
	if strings.Contains(buf.String(), "sync stages") {
		t.Errorf("sync stages logged at info level: %s", buf.String())
	}
}
