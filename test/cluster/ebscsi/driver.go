package ebscsi

import (
	"context"
	"fmt"
	"slices"

	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// csiDriver is the CSIDriver object the driver's Helm chart installs: it
// sets only attachRequired and podInfoOnMount and leaves the rest to the API
// server's defaults, which are spelled out here so that a drifted object is
// recognised.
func csiDriver(name string) *storagev1.CSIDriver {
	return &storagev1.CSIDriver{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{"app.kubernetes.io/name": "aws-ebs-csi-driver"},
		},
		Spec: storagev1.CSIDriverSpec{
			AttachRequired:       new(true),
			PodInfoOnMount:       new(false),
			VolumeLifecycleModes: []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent},
			FSGroupPolicy:        new(storagev1.ReadWriteOnceWithFSTypeFSGroupPolicy),
			StorageCapacity:      new(false),
			RequiresRepublish:    new(false),
		},
	}
}

// csiDriverMatches reports whether live has every field that want sets.
func csiDriverMatches(want, live *storagev1.CSIDriver) bool {
	w, l := want.Spec, live.Spec
	return equalPtr(w.AttachRequired, l.AttachRequired) &&
		equalPtr(w.PodInfoOnMount, l.PodInfoOnMount) &&
		slices.Equal(w.VolumeLifecycleModes, l.VolumeLifecycleModes) &&
		equalPtr(w.FSGroupPolicy, l.FSGroupPolicy) &&
		equalPtr(w.StorageCapacity, l.StorageCapacity) &&
		equalPtr(w.RequiresRepublish, l.RequiresRepublish)
}

// registerDriver creates the CSIDriver object or brings an existing one back
// to the driver's spec. Most of the spec is immutable, so a drifted object
// is replaced.
func registerDriver(ctx context.Context, client kubernetes.Interface, name string) error {
	want := csiDriver(name)
	api := client.StorageV1().CSIDrivers()
	ref := "CSIDriver/" + name
	live, err := api.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, want, metav1.CreateOptions{})
		return wrap(ref, "create", err)
	case err != nil:
		return wrap(ref, "get", err)
	case csiDriverMatches(want, live):
		return nil
	}
	updated := live.DeepCopy()
	updated.Spec = want.Spec
	if _, err = api.Update(ctx, updated, metav1.UpdateOptions{}); err == nil {
		return nil
	} else if !apierrors.IsInvalid(err) {
		return wrap(ref, "update", err)
	}
	if err := api.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return wrap(ref, "replace", err)
	}
	_, err = api.Create(ctx, want, metav1.CreateOptions{})
	return wrap(ref, "replace", err)
}

// wrap names the object and the verb that failed, or returns nil.
func wrap(ref, verb string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %s: %w", ref, verb, err)
}

// equalPtr reports whether a and b are both nil or point to equal values.
func equalPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
