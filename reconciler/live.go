package reconciler

import (
	"context"
	"crypto/sha256"
	"maps"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// listPageSize bounds one LIST response, so a large inventory is read in
// pages rather than held twice (JSON and decoded) at once.
const listPageSize = 500

// liveSet is the live state of a set's members, read with one LIST per
// resource and namespace instead of one GET per object: a resync of 1,000
// unchanged objects costs a handful of requests. Only each object's
// liveHash is kept, not the object, so a large set is not held in memory.
type liveSet struct {
	hashes map[ObjRef][sha256.Size]byte
	// listedRef holds the members whose group's LIST succeeded: one of
	// them missing from hashes is not (or no longer) a labelled object.
	listedRef map[ObjRef]bool
}

type listKey struct {
	resource  schema.GroupVersionResource
	namespace string
}

// lookup returns the live hash of a member found by the LIST; listed is
// false when its group was not listed and the caller must read it itself.
func (l *liveSet) lookup(ref ObjRef) (hash [sha256.Size]byte, found, listed bool) {
	if l == nil {
		return hash, false, false
	}
	hash, found = l.hashes[ref]
	return hash, found, l.listedRef[ref]
}

// listLive lists, per resource and namespace, the objects carrying the
// set's ApplySet part-of label, or takes them from the LiveCache when it
// holds them. Objects without one label value shared by
// the whole set (a set not stamped by a Syncer) are not listed. A failed
// LIST (say RBAC allows get but not list) only means those objects are read
// one by one.
func (a *Applier) listLive(ctx context.Context, objs []*unstructured.Unstructured) *liveSet {
	id := sharedLabel(objs, applySetPartOfLabel)
	if id == "" {
		return nil
	}
	selector := labels.SelectorFromSet(labels.Set{applySetPartOfLabel: id}).String()
	groups := map[listKey][]ObjRef{}
	for _, obj := range objs {
		gvk := obj.GroupVersionKind()
		mapping, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			continue // a kind defined by a CRD of this set: read later
		}
		key := listKey{resource: mapping.Resource}
		if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
			key.namespace = obj.GetNamespace()
		}
		groups[key] = append(groups[key], RefOf(obj))
	}
	type result struct {
		key    listKey
		hashes map[ObjRef][sha256.Size]byte
		ok     bool
	}
	results := make([]result, 0, len(groups))
	for key := range groups {
		results = append(results, result{key: key, hashes: map[ObjRef][sha256.Size]byte{}})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.opts.Concurrency)
	for i := range results {
		r := &results[i]
		if a.opts.Live != nil {
			if hashes, ok := a.opts.Live.LiveHashes(r.key.resource, r.key.namespace, id); ok {
				r.hashes, r.ok = hashes, true
				continue
			}
		}
		g.Go(func() error {
			res := a.dyn.Resource(r.key.resource).Namespace(r.key.namespace)
			opts := metav1.ListOptions{LabelSelector: selector, Limit: listPageSize}
			for {
				list, err := res.List(gctx, opts)
				if err != nil {
					return nil // r.ok stays false
				}
				for i := range list.Items {
					r.hashes[RefOf(&list.Items[i])] = liveHash(&list.Items[i])
				}
				if opts.Continue = list.GetContinue(); opts.Continue == "" {
					r.ok = true
					return nil
				}
			}
		})
	}
	_ = g.Wait()
	live := &liveSet{hashes: map[ObjRef][sha256.Size]byte{}, listedRef: map[ObjRef]bool{}}
	for _, r := range results {
		if !r.ok {
			continue
		}
		maps.Copy(live.hashes, r.hashes)
		for _, ref := range groups[r.key] {
			live.listedRef[ref] = true
		}
	}
	return live
}

// sharedLabel returns the value of a label every object carries, or "".
func sharedLabel(objs []*unstructured.Unstructured, key string) string {
	var value string
	for i, obj := range objs {
		v := obj.GetLabels()[key]
		if v == "" || (i > 0 && v != value) {
			return ""
		}
		value = v
	}
	return value
}
