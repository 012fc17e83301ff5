package reconciler

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// PruneDisabledAnnotation on a live object keeps gitopsd from ever deleting
// it, even after it left git.
const PruneDisabledAnnotation = "gitopsd.io/prune"

// ErrEmptyBuild is returned when a build produced no objects: that is far more
// often a broken overlay than a wish to delete everything, so nothing is pruned.
var ErrEmptyBuild = errors.New("the build is empty")

// neverPruned are the kinds whose deletion loses data or everything inside
// them; DESIGN.md's safety rules keep them whatever git says.
var neverPruned = map[string]string{
	"PersistentVolume":      "a volume holds data",
	"PersistentVolumeClaim": "a claim holds data",
	"Namespace":             "deleting a namespace deletes everything in it",
}

// PrunePlan is what a prune would do.
type PrunePlan struct {
	// Delete are inventory objects that left git and may be deleted.
	Delete []ObjRef
	// Keep are objects that left git but are protected, with the reason.
	Keep []Kept
}

// Kept is an object left in place by a prune, and why.
type Kept struct {
	Ref    ObjRef
	Reason string
}

// PlanPrune decides which objects of the previous inventory to delete now
// that the build holds current. It refuses (an error, nothing deleted) on an
// empty build and when more than maxShare of the inventory would go at once
// (a single object may always go). It is pure: the live-object checks (the
// prune annotation, ownership) happen when the plan is carried out.
func PlanPrune(previous, current []ObjRef, maxShare float64) (PrunePlan, error) {
	var plan PrunePlan
	if len(current) == 0 {
		return plan, fmt.Errorf("%w: refusing to prune %d inventory objects", ErrEmptyBuild, len(previous))
	}
	inBuild := make(map[ObjRef]bool, len(current))
	for _, r := range current {
		inBuild[r] = true
	}
	for _, r := range previous {
		if inBuild[r] {
			continue
		}
		if why, ok := neverPruned[r.Kind]; ok && r.Group == "" {
			plan.Keep = append(plan.Keep, Kept{Ref: r, Reason: "never pruned: " + why})
			continue
		}
		plan.Delete = append(plan.Delete, r)
	}
	slices.SortFunc(plan.Delete, compareRefs)
	slices.SortFunc(plan.Keep, func(a, b Kept) int { return compareRefs(a.Ref, b.Ref) })
	limit := max(1, int(math.Floor(maxShare*float64(len(previous)))))
	if len(plan.Delete) > limit {
		return PrunePlan{}, fmt.Errorf("prune would delete %d of %d inventory objects, more than the allowed share %.0f%%: refusing (raise --prune-max-share to allow it)",
			len(plan.Delete), len(previous), maxShare*100)
	}
	return plan, nil
}
