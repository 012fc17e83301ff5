package cluster

import (
	"os"
	"testing"
	"time"
)

// cpuTime of this very process grows while it spins.
func TestCPUTime(t *testing.T) {
	before, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Spin until the kernel has accounted at least two ticks more.
	deadline := time.Now().Add(10 * time.Second)
	after := before
	for n := 0; after < before+20*time.Millisecond; n++ {
		if time.Now().After(deadline) {
			t.Fatalf("CPU time still %s after 10 s of spinning (from %s)", after, before)
		}
		if n%1_000_000 == 0 {
			if after, err = cpuTime(os.Getpid()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if _, err := cpuTime(-1); err == nil {
		t.Error("cpuTime(-1): no error")
	}
}
