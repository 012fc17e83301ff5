package reconciler

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// FieldDiff is one field an apply would change.
type FieldDiff struct {
	// Path is the field, as in `spec.replicas` or `spec.ports[0].port`.
	Path string
	// Live and Desired are the values, "" when absent; Secret data is
	// shown as "(redacted)".
	Live, Desired string
}

// ignoredFields change on every write, belong to controllers (status), or
// record where an apply came from (the revision annotation, which would
// otherwise make every object change on every commit): none says the object
// differs from git.
var ignoredFields = []string{"metadata.managedFields", "metadata.resourceVersion", "metadata.generation",
	"status", "metadata.annotations." + RevisionAnnotation}

// DiffObjects lists the fields whose values differ between the live object
// and what the apply would make of it (the dry-run result). Values of a
// Secret's data and stringData never appear.
func DiffObjects(live, desired map[string]any) []FieldDiff {
	secret := desired["kind"] == "Secret" && desired["apiVersion"] == "v1"
	var out []FieldDiff
	diffValue("", live, desired, secret, &out)
	slices.SortFunc(out, func(a, b FieldDiff) int { return strings.Compare(a.Path, b.Path) })
	return out
}

func diffValue(path string, live, desired any, secret bool, out *[]FieldDiff) {
	if slices.Contains(ignoredFields, path) || reflect.DeepEqual(live, desired) {
		return
	}
	lm, lok := live.(map[string]any)
	dm, dok := desired.(map[string]any)
	if lok && dok {
		keys := map[string]bool{}
		for k := range lm {
			keys[k] = true
		}
		for k := range dm {
			keys[k] = true
		}
		for k := range keys {
			diffValue(join(path, k), lm[k], dm[k], secret, out)
		}
		return
	}
	ll, lok := live.([]any)
	dl, dok := desired.([]any)
	if lok && dok && len(ll) == len(dl) {
		for i := range ll {
			diffValue(fmt.Sprintf("%s[%d]", path, i), ll[i], dl[i], secret, out)
		}
		return
	}
	d := FieldDiff{Path: path, Live: show(live), Desired: show(desired)}
	if secret && (path == "data" || path == "stringData" || strings.HasPrefix(path, "data.") || strings.HasPrefix(path, "stringData.")) {
		d.Live, d.Desired = redact(live), redact(desired)
	}
	*out = append(*out, d)
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func show(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func redact(v any) string {
	if v == nil {
		return ""
	}
	return "(redacted)"
}
