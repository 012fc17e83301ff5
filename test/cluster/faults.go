package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
)

// Fault switches: pod annotations that kwok's stages (stages/pods.yaml) turn
// into container states, in place of breaking a real container by hand. Set
// one at a time on a pod.
const (
	// NotReadyAnnotation lists containers (comma separated, or "*") whose
	// readiness probe fails while the annotation is present: the pod shows
	// 1/2 and leaves its Services' endpoints. Removing it makes them ready.
	NotReadyAnnotation = "sim.gitopsd.io/not-ready"
	// RestartAnnotation lists containers that restart once: restartCount goes
	// up by one and lastState records exit code 137. kwok removes the
	// annotation when done.
	RestartAnnotation = "sim.gitopsd.io/restart"
	// CrashLoopAnnotation lists containers held in CrashLoopBackOff until the
	// annotation is removed.
	CrashLoopAnnotation = "sim.gitopsd.io/crash-loop"
)

// SetFault sets a fault annotation on a pod for the given containers.
func SetFault(ctx context.Context, cs kubernetes.Interface, namespace, pod, annotation string, containers ...string) error {
	return patchAnnotation(ctx, cs, namespace, pod, annotation, strings.Join(containers, ","))
}

// ClearFault removes a fault annotation from a pod.
func ClearFault(ctx context.Context, cs kubernetes.Interface, namespace, pod, annotation string) error {
	return patchAnnotation(ctx, cs, namespace, pod, annotation, nil)
}

func patchAnnotation(ctx context.Context, cs kubernetes.Interface, namespace, pod, key string, value any) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]any{key: value}}})
	if err != nil {
		return err
	}
	_, err = cs.CoreV1().Pods(namespace).Patch(ctx, pod, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("Pod/%s/%s: annotate %s: %w", namespace, pod, key, err)
	}
	return nil
}
