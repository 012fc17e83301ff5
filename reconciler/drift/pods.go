package drift

import (
	"cmp"
	"log/slog"
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// CheckPodNotReady: a workload's pod Running but not Ready.
func CheckPodNotReady(s Snapshot, o Options) []Finding {
	o = o.withDefaults()
	var out []Finding
	for _, w := range workloads(s) {
		for _, pod := range w.pods {
			if pod.DeletionTimestamp != nil || pod.Status.Phase != corev1.PodRunning {
				continue
			}
			cond := podCondition(pod, corev1.PodReady)
			if cond == nil || cond.Status == corev1.ConditionTrue {
				continue
			}
			out = append(out, Finding{Code: PodNotReady, Object: podRef(pod), Grace: o.PodNotReadyGrace,
				Since:  onset(cond.LastTransitionTime),
				Detail: detailf("pod %s of %s is Running but not Ready (%d/%d containers ready)", pod.Name, w.ref, readyContainers(pod), len(pod.Spec.Containers)),
				Attrs:  []slog.Attr{slog.String("workload", w.ref.String()), slog.String("node", pod.Spec.NodeName)}})
		}
	}
	return out
}

// CheckPodMissing: a StatefulSet ordinal without a running pod, or another
// workload with fewer running pods than it wants.
func CheckPodMissing(s Snapshot, o Options) []Finding {
	o = o.withDefaults()
	var out []Finding
	for _, w := range workloads(s) {
		if w.sts != nil {
			out = append(out, missingOrdinals(w, o)...)
		} else {
			out = append(out, missingReplicas(w, o)...)
		}
	}
	return out
}

// missingOrdinals: one finding per pod <sts>-<ordinal> of the StatefulSet's
// ordinal range that is absent, being deleted, or not Running.
func missingOrdinals(w workload, o Options) []Finding {
	byName := map[string]*corev1.Pod{}
	for _, pod := range w.pods {
		byName[pod.Name] = pod
	}
	var out []Finding
	start, end := ordinals(w.sts)
	for ordinal := start; ordinal < end; ordinal++ {
		name := w.sts.Name + "-" + strconv.Itoa(ordinal)
		pod := byName[name]
		reason := "absent"
		f := Finding{Code: PodMissing, Object: Ref{Kind: "Pod", Namespace: w.ref.Namespace, Name: name}, Grace: o.PodMissingGrace}
		switch {
		case pod == nil || pod.DeletionTimestamp != nil:
		case pod.Status.Phase == corev1.PodRunning:
			continue
		default:
			reason = cmp.Or(string(pod.Status.Phase), string(corev1.PodPending))
			f.Since = onset(pod.CreationTimestamp)
		}
		f.Detail = detailf("%s has no running pod %s (%s)", w.ref, name, reason)
		// The scheduler says why a pod is Pending ("0/3 nodes are
		// available: 3 node(s) had volume node affinity conflict").
		if cond := podCondition(pod, corev1.PodScheduled); reason == string(corev1.PodPending) && cond != nil && cond.Status == corev1.ConditionFalse && cond.Message != "" {
			f.Detail = detailf("%s has no running pod %s: Pending, %s", w.ref, name, cond.Message)
		}
		f.Attrs = []slog.Attr{slog.String("workload", w.ref.String()), slog.Int("ordinal", ordinal),
			slog.Int("replicas", int(w.replicas)), slog.String("reason", reason)}
		out = append(out, f)
	}
	return out
}

// missingReplicas: a workload without pod names (Deployment, ReplicaSet,
// DaemonSet) is one finding when fewer of its pods run than it wants; the
// reason is the phase of a pod that is not running, or absent.
func missingReplicas(w workload, o Options) []Finding {
	running, reason := 0, "absent"
	for _, pod := range w.pods {
		switch {
		case pod.DeletionTimestamp != nil:
		case pod.Status.Phase == corev1.PodRunning:
			running++
		case reason == "absent":
			reason = cmp.Or(string(pod.Status.Phase), string(corev1.PodPending))
		}
	}
	if running >= int(w.replicas) {
		return nil
	}
	return []Finding{{Code: PodMissing, Object: w.ref, Grace: o.PodMissingGrace,
		Detail: detailf("%s runs %d of %d pods (%s)", w.ref, running, w.replicas, reason),
		Attrs: []slog.Attr{slog.String("workload", w.ref.String()), slog.Int("replicas", int(w.replicas)),
			slog.Int("running", running), slog.String("reason", reason)}}}
}

// CheckPodRestarting: a container of a workload's pod in CrashLoopBackOff,
// or restarted within RestartWindow.
func CheckPodRestarting(s Snapshot, o Options) []Finding {
	o = o.withDefaults()
	var out []Finding
	for _, w := range workloads(s) {
		for _, pod := range w.pods {
			statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
			for _, cs := range statuses {
				reason := ""
				if cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
					reason = "CrashLoopBackOff"
				} else if t := cs.LastTerminationState.Terminated; t != nil && !t.FinishedAt.IsZero() && s.Now.Sub(t.FinishedAt.Time) < o.RestartWindow {
					reason = t.Reason
					if reason == "" {
						reason = "exit code " + strconv.Itoa(int(t.ExitCode))
					}
				}
				if reason == "" {
					continue
				}
				out = append(out, Finding{Code: PodRestarting, Object: podRef(pod),
					Detail: detailf("container %s of pod %s restarted (%d restarts, %s)", cs.Name, pod.Name, cs.RestartCount, reason),
					Attrs: []slog.Attr{slog.String("container", cs.Name), slog.Int("restarts", int(cs.RestartCount)),
						slog.String("reason", reason), slog.String("workload", w.ref.String())}})
			}
		}
	}
	return out
}

func podCondition(pod *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	if pod == nil {
		return nil
	}
	for i := range pod.Status.Conditions {
		if pod.Status.Conditions[i].Type == t {
			return &pod.Status.Conditions[i]
		}
	}
	return nil
}

func readyContainers(pod *corev1.Pod) int {
	n := 0
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Ready {
			n++
		}
	}
	return n
}
