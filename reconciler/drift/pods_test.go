package drift

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	node0 = "ip-192-168-32-10.ap-northeast-2.compute.internal"
	node1 = "ip-192-168-64-10.ap-northeast-2.compute.internal"
)

// notReadyFor makes a pod fail its readiness probe since d ago: the
// walkthrough's 1/2.
func notReadyFor(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		for i := range p.Status.Conditions {
			if c := &p.Status.Conditions[i]; c.Type == corev1.PodReady || c.Type == corev1.ContainersReady {
				c.Status, c.Reason, c.LastTransitionTime = corev1.ConditionFalse, "ContainersNotReady", metav1.NewTime(now.Add(-d))
			}
		}
		p.Status.ContainerStatuses[0].Ready = false
	}
}

// unschedulable makes a pod created d ago that the scheduler cannot place:
// its EBS volume's zone has no schedulable node.
func unschedulable(d time.Duration) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.CreationTimestamp = metav1.NewTime(now.Add(-d))
		p.Spec.NodeName = ""
		p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: corev1.PodQOSBurstable, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			LastTransitionTime: p.CreationTimestamp,
			Message:            "0/3 nodes are available: 1 node(s) had volume node affinity conflict, 2 node(s) didn't match pod topology spread constraints.",
		}}}
	}
}

// terminated says a container last ended d ago, and is up again.
func terminated(status *corev1.ContainerStatus, reason string, code int32, d time.Duration) {
	status.RestartCount++
	status.LastTerminationState.Terminated = &corev1.ContainerStateTerminated{ExitCode: code, Reason: reason,
		StartedAt: metav1.NewTime(now.Add(-d - time.Hour)), FinishedAt: metav1.NewTime(now.Add(-d))}
}

func TestPodChecks(t *testing.T) {
	tests := map[string]struct {
		edit  func(t *testing.T, s *Snapshot)
		check func(Snapshot, Options) []Finding
		opts  Options
		want  []string
	}{
		"1/2 ready for 45s": {
			edit:  func(t *testing.T, s *Snapshot) { notReadyFor(45 * time.Second)(findPod(t, *s, "mysql-1")) },
			check: CheckPodNotReady,
			// API timestamps keep whole seconds: the onset is the end of that second.
			want: []string{"pod-not-ready Pod/mysql/mysql-1 workload=StatefulSet/mysql/mysql node=" + node1 + " grace=30s age=44s"},
		},
		"not ready, own grace": {
			edit:  func(t *testing.T, s *Snapshot) { notReadyFor(time.Second)(findPod(t, *s, "mysql-0")) },
			check: CheckPodNotReady,
			opts:  Options{PodNotReadyGrace: 2 * time.Minute},
			want:  []string{"pod-not-ready Pod/mysql/mysql-0 workload=StatefulSet/mysql/mysql node=" + node0 + " grace=2m0s age=0s"},
		},
		"a pod no managed workload selects is not ours": {
			edit: func(t *testing.T, s *Snapshot) {
				p := findPod(t, *s, "mysql-1")
				notReadyFor(time.Hour)(p)
				p.Labels = map[string]string{"app": "mysql-debug"}
			},
			check: CheckPodNotReady,
		},
		"pod absent": {
			edit:  func(t *testing.T, s *Snapshot) { withoutPod(s, "mysql-1") },
			check: CheckPodMissing,
			want:  []string{"pod-missing Pod/mysql/mysql-1 workload=StatefulSet/mysql/mysql ordinal=1 replicas=2 reason=absent grace=1m0s"},
		},
		"pod being deleted counts as absent": {
			edit: func(t *testing.T, s *Snapshot) {
				findPod(t, *s, "mysql-1").DeletionTimestamp = &metav1.Time{Time: now.Add(-5 * time.Second)}
			},
			check: CheckPodMissing,
			want:  []string{"pod-missing Pod/mysql/mysql-1 workload=StatefulSet/mysql/mysql ordinal=1 replicas=2 reason=absent grace=1m0s"},
		},
		"pod stuck Pending": {
			edit:  func(t *testing.T, s *Snapshot) { unschedulable(3 * time.Minute)(findPod(t, *s, "mysql-1")) },
			check: CheckPodMissing,
			opts:  Options{PodMissingGrace: 2 * time.Minute},
			want:  []string{"pod-missing Pod/mysql/mysql-1 workload=StatefulSet/mysql/mysql ordinal=1 replicas=2 reason=Pending grace=2m0s age=2m59s"},
		},
		"pod Failed": {
			edit:  func(t *testing.T, s *Snapshot) { findPod(t, *s, "mysql-0").Status.Phase = corev1.PodFailed },
			check: CheckPodMissing,
			want:  []string{"pod-missing Pod/mysql/mysql-0 workload=StatefulSet/mysql/mysql ordinal=0 replicas=2 reason=Failed grace=1m0s age=4m30s"},
		},
		"scaled up by git: the new ordinal is missing": {
			edit: func(t *testing.T, s *Snapshot) {
				setField(t, s.Live[statefulSetRef].Object, int64(3), "spec", "replicas")
			},
			check: CheckPodMissing,
			want:  []string{"pod-missing Pod/mysql/mysql-2 workload=StatefulSet/mysql/mysql ordinal=2 replicas=3 reason=absent grace=1m0s"},
		},
		"ordinals start at 1: mysql-2 is expected, mysql-0 is not": {
			edit: func(t *testing.T, s *Snapshot) {
				setField(t, s.Live[statefulSetRef].Object, map[string]any{"start": int64(1)}, "spec", "ordinals")
			},
			check: CheckPodMissing,
			want:  []string{"pod-missing Pod/mysql/mysql-2 workload=StatefulSet/mysql/mysql ordinal=2 replicas=2 reason=absent grace=1m0s"},
		},
		"crash loop": {
			edit: func(t *testing.T, s *Snapshot) {
				cs := &findPod(t, *s, "mysql-1").Status.ContainerStatuses[0]
				terminated(cs, "Error", 1, 20*time.Second)
				cs.RestartCount = 5
				cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
					Message: "back-off 2m40s restarting failed container=mysql pod=mysql-1_mysql"}}
			},
			check: CheckPodRestarting,
			want:  []string{"pod-restarting Pod/mysql/mysql-1 container=mysql restarts=5 reason=CrashLoopBackOff workload=StatefulSet/mysql/mysql"},
		},
		"an init container crash-looping": {
			edit: func(t *testing.T, s *Snapshot) {
				p := findPod(t, *s, "mysql-1")
				p.Status.Phase = corev1.PodPending
				p.Status.InitContainerStatuses[1].State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}
				p.Status.InitContainerStatuses[1].RestartCount = 3
			},
			check: CheckPodRestarting,
			want:  []string{"pod-restarting Pod/mysql/mysql-1 container=clone-mysql restarts=3 reason=CrashLoopBackOff workload=StatefulSet/mysql/mysql"},
		},
		"a restart 2m ago, up again": {
			edit: func(t *testing.T, s *Snapshot) {
				terminated(&findPod(t, *s, "mysql-0").Status.ContainerStatuses[1], "OOMKilled", 137, 2*time.Minute)
			},
			check: CheckPodRestarting,
			want:  []string{"pod-restarting Pod/mysql/mysql-0 container=xtrabackup restarts=1 reason=OOMKilled workload=StatefulSet/mysql/mysql"},
		},
		"a restart outside the window": {
			edit: func(t *testing.T, s *Snapshot) {
				terminated(&findPod(t, *s, "mysql-0").Status.ContainerStatuses[1], "", 2, 11*time.Minute)
			},
			check: CheckPodRestarting,
		},
		"a restart inside a longer window": {
			edit: func(t *testing.T, s *Snapshot) {
				terminated(&findPod(t, *s, "mysql-0").Status.ContainerStatuses[1], "", 2, 11*time.Minute)
			},
			check: CheckPodRestarting,
			opts:  Options{RestartWindow: time.Hour},
			want:  []string{"pod-restarting Pod/mysql/mysql-0 container=xtrabackup restarts=1 reason=exit code 2 workload=StatefulSet/mysql/mysql"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := mysql(t)
			tc.edit(t, &s)
			if diff := cmp.Diff(tc.want, renderAll(tc.check(s, tc.opts))); diff != "" {
				t.Errorf("findings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestPodMissingDetailQuotesTheScheduler(t *testing.T) {
	s := mysql(t)
	unschedulable(time.Minute)(findPod(t, s, "mysql-1"))
	got := CheckPodMissing(s, Options{})
	if len(got) != 1 || !strings.Contains(got[0].Detail, "volume node affinity conflict") {
		t.Errorf("got %+v, want the scheduler's message in the detail", got)
	}
}
