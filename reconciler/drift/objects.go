package drift

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// IgnoreAnnotation lists, comma separated, field paths of an object that
// are never drift (set in git or on the live object).
const IgnoreAnnotation = "gitopsd.io/drift-ignore"

// redacted stands in for every Secret value.
const redacted = "(redacted)"

// absent stands for a field git sets that the live object lacks.
const absent = "<absent>"

// ignoredMetadata are fields the server owns or gitopsd stamps per revision.
var ignoredMetadata = map[string]bool{
	"managedFields": true, "resourceVersion": true, "generation": true, "uid": true,
	"creationTimestamp": true, "selfLink": true,
}

var ignoredAnnotations = map[string]bool{
	"gitopsd.io/revision": true, "kubectl.kubernetes.io/last-applied-configuration": true,
}

// CheckObjectMissing: an object git declares that does not exist.
func CheckObjectMissing(s Snapshot, _ Options) []Finding {
	var out []Finding
	for _, obj := range s.Desired {
		ref := RefOf(obj)
		if s.Live[ref] == nil {
			out = append(out, Finding{Code: ObjectMissing, Object: ref,
				Detail: detailf("%s is declared in git but missing from the cluster", ref)})
		}
	}
	return out
}

// CheckObjectDrift: a field git sets whose live value differs, one finding
// per field, naming the manager that owns the live value.
func CheckObjectDrift(s Snapshot, o Options) []Finding {
	o = o.withDefaults()
	var out []Finding
	for _, obj := range s.Desired {
		ref := RefOf(obj)
		live := s.Live[ref]
		if live == nil {
			continue
		}
		c := comparer{ref: ref, secret: ref.Group == "" && ref.Kind == "Secret",
			ignore: ignoredPaths(ref.Kind, o.IgnoreFields, obj, live), live: live}
		c.walk("", nil, desiredForCompare(obj, c.secret), live.Object)
		for _, d := range c.diffs {
			if slices.Contains(o.IgnoreManagers, d.manager) {
				continue
			}
			out = append(out, c.finding(d))
		}
	}
	return out
}

// desiredForCompare is the desired object with a Secret's stringData
// folded into data, as the server stores it.
func desiredForCompare(obj *unstructured.Unstructured, secret bool) map[string]any {
	if !secret {
		return obj.Object
	}
	c := obj.DeepCopy().Object
	if sd, ok := c["stringData"].(map[string]any); ok {
		data, _ := c["data"].(map[string]any)
		if data == nil {
			data = map[string]any{}
		}
		for k, v := range sd {
			if str, ok := v.(string); ok {
				data[k] = base64.StdEncoding.EncodeToString([]byte(str))
			}
		}
		c["data"] = data
		delete(c, "stringData")
	}
	return c
}

// ignoredPaths gathers the paths never compared for an object of a kind:
// the options' (all kinds, or "Kind:path" for this kind) and those its
// drift-ignore annotation lists, in git or live.
func ignoredPaths(kind string, fields []string, objs ...*unstructured.Unstructured) []string {
	var out []string
	for _, f := range fields {
		if k, path, ok := strings.Cut(f, ":"); ok && !strings.ContainsAny(k, ".[") {
			if k == kind {
				out = append(out, path)
			}
			continue
		}
		out = append(out, f)
	}
	for _, obj := range objs {
		for p := range strings.SplitSeq(obj.GetAnnotations()[IgnoreAnnotation], ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// step is one element of a path in managedFields terms: a map key (f:),
// or a list item matched by its key fields (k:) or its index (i:).
type step struct {
	field string
	item  map[string]any // for k: the list element, live or (when gone) git's
	index int
	kind  byte // 'f', 'k' or 'i'
}

type fieldDiff struct {
	path      string
	want, got any
	missing   bool
	manager   string
}

type comparer struct {
	ref    Ref
	secret bool
	ignore []string
	live   *unstructured.Unstructured
	owners []owner // parsed from live's managedFields when a field differs
	parsed bool
	diffs  []fieldDiff
}

func (c *comparer) ignored(path string) bool {
	for _, p := range c.ignore {
		if path == p || strings.HasPrefix(path, p+".") || strings.HasPrefix(path, p+"[") {
			return true
		}
	}
	return false
}

func (c *comparer) add(path string, steps []step, want, got any, missing bool) {
	c.diffs = append(c.diffs, fieldDiff{path: path, want: want, got: got, missing: missing, manager: c.ownerOf(steps)})
}

// walk compares the fields want sets with got. A field git sets to an
// empty value (map, list, "", false, 0) matches an absent one: the server
// drops those (omitempty fields, like a PersistentVolume's
// storageClassName: ""). An empty value in git against another live value
// is compared as any.
func (c *comparer) walk(path string, steps []step, want, got any) {
	if want == nil || (got == nil && isEmpty(want)) || c.ignored(path) {
		return
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			c.add(path, steps, want, got, got == nil)
			return
		}
		for _, k := range slices.Sorted(maps.Keys(w)) {
			if !skipField(path, k) {
				c.walk(joinPath(path, k), append(slices.Clip(steps), step{kind: 'f', field: k}), w[k], g[k])
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			c.add(path, steps, want, got, got == nil)
			return
		}
		if key := listKey(w); key != "" {
			for _, we := range w {
				kv := itemKey(we, key)
				ge := findItem(g, key, kv)
				// The item's owner is looked up by its live keys, or by
				// git's when it is gone.
				item, _ := ge.(map[string]any)
				if item == nil {
					item, _ = we.(map[string]any)
				}
				c.walk(fmt.Sprintf("%s[%s=%v]", path, key, kv), append(slices.Clip(steps), step{kind: 'k', item: item}), we, ge)
			}
			return
		}
		if len(w) != len(g) {
			c.add(path, steps, want, got, false)
			return
		}
		for i := range w {
			c.walk(fmt.Sprintf("%s[%d]", path, i), append(slices.Clip(steps), step{kind: 'i', index: i}), w[i], g[i])
		}
	default:
		if !equalScalar(path, want, got) {
			c.add(path, steps, want, got, got == nil)
		}
	}
}

func isEmpty(v any) bool {
	switch x := v.(type) {
	case map[string]any:
		return len(x) == 0
	case []any:
		return len(x) == 0
	case string:
		return x == ""
	case bool:
		return !x
	case int64:
		return x == 0
	case float64:
		return x == 0
	}
	return false
}

// skipField leaves out what the server owns and what gitopsd stamps.
func skipField(path, key string) bool {
	switch path {
	case "":
		return key == "status" || key == "apiVersion" || key == "kind"
	case "metadata":
		return ignoredMetadata[key]
	case "metadata.annotations":
		return ignoredAnnotations[key]
	}
	return false
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// listKeys are the fields that identify the items of a list of maps, in
// order of preference: containers, env, volumes and ports by name,
// volumeClaimTemplates by metadata.name, unnamed ports by port.
var listKeys = []string{"name", "metadata.name", "containerPort", "port", "mountPath", "devicePath"}

// listKey returns the field that identifies the items of a list: the first
// of listKeys every item has, with distinct values (a volume mounted twice
// under one name is not keyed by name), or "" to compare by position.
func listKey(items []any) string {
	for _, key := range listKeys {
		if len(items) > 0 && distinctKeys(items, key) {
			return key
		}
	}
	return ""
}

func distinctKeys(items []any, key string) bool {
	seen := map[string]bool{}
	for _, it := range items {
		v := itemKey(it, key)
		switch v.(type) {
		case string, int64, float64:
		default:
			return false
		}
		if s := scalarString(v); !seen[s] {
			seen[s] = true
			continue
		}
		return false
	}
	return true
}

func itemKey(item any, key string) any {
	m, ok := item.(map[string]any)
	if !ok {
		return nil
	}
	if key == "metadata.name" {
		md, _ := m["metadata"].(map[string]any)
		if md == nil {
			return nil
		}
		return md["name"]
	}
	return m[key]
}

// findItem returns the item of items whose key field is value, or nil.
func findItem(items []any, key string, value any) any {
	for _, it := range items {
		if v := itemKey(it, key); v != nil && equalScalar("", v, value) {
			return it
		}
	}
	return nil
}

// equalScalar compares two leaves: numbers by value, and quantities (under
// resources, storage or capacity) by amount, so "500m" equals "0.5".
func equalScalar(path string, want, got any) bool {
	if wf, ok := number(want); ok {
		if gf, ok := number(got); ok {
			return wf == gf
		}
	}
	if want == got {
		return true
	}
	if strings.Contains(path, "resources") || strings.Contains(path, "storage") || strings.Contains(path, "capacity") {
		wq, err1 := resource.ParseQuantity(scalarString(want))
		gq, err2 := resource.ParseQuantity(scalarString(got))
		return err1 == nil && err2 == nil && wq.Cmp(gq) == 0
	}
	return false
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case float64:
		return n, true
	case json.Number:
		f, err := n.Float64()
		return f, err == nil
	}
	return 0, false
}

func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return fmt.Sprint(v)
}

// show renders a value for a log record: scalars as themselves, the rest
// as JSON, long values cut.
func show(v any, missing bool) string {
	if missing {
		return absent
	}
	var s string
	switch v.(type) {
	case map[string]any, []any:
		data, _ := json.Marshal(v)
		s = string(data)
	default:
		s = scalarString(v)
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

func (c *comparer) finding(d fieldDiff) Finding {
	want, got := show(d.want, false), show(d.got, d.missing)
	secret := c.secret && (strings.HasPrefix(d.path, "data") || strings.HasPrefix(d.path, "stringData"))
	if secret {
		want, got = redacted, redacted
	}
	by := ""
	if d.manager != "" {
		by = " (changed by " + d.manager + ")"
	}
	var detail string
	switch {
	case secret && d.missing:
		detail = detailf("%s %s is missing in the cluster%s", c.ref, d.path, by)
	case secret:
		detail = detailf("%s %s differs from git%s", c.ref, d.path, by)
	case d.missing:
		detail = detailf("%s %s is missing in the cluster, git says %s%s", c.ref, d.path, want, by)
	default:
		detail = detailf("%s %s is %s in the cluster, git says %s%s", c.ref, d.path, got, want, by)
	}
	return Finding{Code: ObjectDrift, Object: c.ref, Detail: detail, Attrs: []slog.Attr{
		slog.String("field", d.path), slog.String("want", want), slog.String("got", got), slog.String("manager", d.manager),
	}}
}

// owner is one managedFields entry: a manager and the field set it owns.
type owner struct {
	manager string
	fields  map[string]any
}

func parseOwners(live *unstructured.Unstructured) []owner {
	var out []owner
	for _, e := range live.GetManagedFields() {
		if e.FieldsV1 == nil || e.Subresource == "status" {
			continue
		}
		var fields map[string]any
		if json.Unmarshal(e.FieldsV1.Raw, &fields) == nil {
			out = append(out, owner{manager: e.Manager, fields: fields})
		}
	}
	return out
}

// SelfManager is gitopsd's field manager: it set git's value, so when it
// shares a drifted field, the value came from the other manager.
const SelfManager = "gitopsd"

// ownerOf returns the manager owning the field at steps: the deepest
// match, so that a manager owning a whole atomic list or map wins over none,
// and another manager over gitopsd at the same depth.
func (c *comparer) ownerOf(steps []step) string {
	if !c.parsed {
		c.owners, c.parsed = parseOwners(c.live), true
	}
	best, bestDepth := "", -1
	for _, o := range c.owners {
		depth := ownedDepth(o.fields, steps)
		if depth > bestDepth || (depth == bestDepth && depth >= 0 && best == SelfManager) {
			best, bestDepth = o.manager, depth
		}
	}
	return best
}

// ownedDepth says how deep along steps a field set reaches, when it owns
// the field itself (all steps) or an atomic ancestor; -1 when it does not.
func ownedDepth(set map[string]any, steps []step) int {
	node := set
	for i, st := range steps {
		next, ok := child(node, st)
		if !ok {
			if len(node) == 0 && i > 0 {
				return i // owns an atomic ancestor (a list or map) whole
			}
			return -1
		}
		node = next
	}
	return len(steps)
}

func child(node map[string]any, st step) (map[string]any, bool) {
	switch st.kind {
	case 'f':
		n, ok := node["f:"+st.field].(map[string]any)
		return n, ok
	case 'i':
		n, ok := node["i:"+strconv.Itoa(st.index)].(map[string]any)
		return n, ok
	}
	for key, v := range node {
		raw, ok := strings.CutPrefix(key, "k:")
		if !ok {
			continue
		}
		var want map[string]any
		if json.Unmarshal([]byte(raw), &want) != nil {
			continue
		}
		match := true
		for k, wv := range want {
			if !equalScalar("", wv, st.item[k]) {
				match = false
				break
			}
		}
		if n, ok := v.(map[string]any); ok && match {
			return n, true
		}
	}
	return nil, false
}
