package reconciler

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1apply "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
)

// The labels and annotations of kubectl's ApplySet specification (KEP 3659),
// so that `kubectl apply --prune --applyset` users recognise gitopsd's
// inventory and kubectl refuses to prune what gitopsd manages.
const (
	applySetIDLabel          = "applyset.kubernetes.io/id"
	applySetPartOfLabel      = "applyset.kubernetes.io/part-of"
	applySetToolingKey       = "applyset.kubernetes.io/tooling"
	applySetGroupKindsKey    = "applyset.kubernetes.io/contains-group-kinds"
	applySetNamespacesKey    = "applyset.kubernetes.io/additional-namespaces"
	inventoryDataKey         = "inventory.json"
	inventoryRevisionDataKey = "revision"
)

// Tooling is written into the ApplySet parent's tooling annotation.
const Tooling = "gitopsd/v1"

// Inventory is the ApplySet parent of one source and path: a ConfigMap whose
// labels and annotations follow the ApplySet specification and whose data
// records exactly which objects the last sync applied, so that a prune never
// has to guess from labels alone.
type Inventory struct {
	cs        kubernetes.Interface
	Namespace string
	Name      string
}

// NewInventory returns the inventory kept in ConfigMap namespace/name.
func NewInventory(cs kubernetes.Interface, namespace, name string) *Inventory {
	return &Inventory{cs: cs, Namespace: namespace, Name: name}
}

// ID is the ApplySet id, computed as the specification says from the
// parent's name, namespace, kind and group.
func (inv *Inventory) ID() string {
	sum := sha256.Sum256([]byte(inv.Name + "." + inv.Namespace + ".ConfigMap."))
	return "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
}

func (inv *Inventory) ref() string { return "ConfigMap/" + inv.Namespace + "/" + inv.Name }

// Load returns the objects the inventory records and the revision they were
// applied at; a missing inventory is empty.
func (inv *Inventory) Load(ctx context.Context) ([]ObjRef, string, error) {
	cm, err := inv.cs.CoreV1().ConfigMaps(inv.Namespace).Get(ctx, inv.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("%s: read inventory: %w", inv.ref(), err)
	}
	var refs []ObjRef
	if data := cm.Data[inventoryDataKey]; data != "" {
		if err := json.Unmarshal([]byte(data), &refs); err != nil {
			return nil, "", fmt.Errorf("%s: decode inventory: %w", inv.ref(), err)
		}
	}
	return refs, cm.Data[inventoryRevisionDataKey], nil
}

// Store records refs as the inventory, with the ApplySet annotations that
// list their group-kinds and namespaces.
func (inv *Inventory) Store(ctx context.Context, refs []ObjRef, revision string) error {
	if err := inv.ensureNamespace(ctx); err != nil {
		return err
	}
	refs = slices.Clone(refs)
	slices.SortFunc(refs, compareRefs)
	refs = slices.Compact(refs)
	data, err := json.Marshal(refs)
	if err != nil {
		return err
	}
	cm := corev1apply.ConfigMap(inv.Name, inv.Namespace).
		WithLabels(map[string]string{applySetIDLabel: inv.ID(), "app.kubernetes.io/managed-by": "gitopsd"}).
		WithAnnotations(map[string]string{
			applySetToolingKey:    Tooling,
			applySetGroupKindsKey: groupKinds(refs),
			applySetNamespacesKey: additionalNamespaces(refs, inv.Namespace),
		}).
		WithData(map[string]string{inventoryDataKey: string(data), inventoryRevisionDataKey: revision})
	if _, err := inv.cs.CoreV1().ConfigMaps(inv.Namespace).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("%s: write inventory: %w", inv.ref(), err)
	}
	return nil
}

func (inv *Inventory) ensureNamespace(ctx context.Context) error {
	_, err := inv.cs.CoreV1().Namespaces().Get(ctx, inv.Namespace, metav1.GetOptions{})
	if !apierrors.IsNotFound(err) {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: inv.Namespace}}
	if _, err := inv.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("Namespace/%s: create for the inventory: %w", inv.Namespace, err)
	}
	return nil
}

// groupKinds is the contains-group-kinds annotation: Kind.group, sorted,
// comma separated, the core group without suffix.
func groupKinds(refs []ObjRef) string {
	var gks []string
	for _, r := range refs {
		gk := r.Kind
		if r.Group != "" {
			gk += "." + r.Group
		}
		gks = append(gks, gk)
	}
	slices.Sort(gks)
	return strings.Join(slices.Compact(gks), ",")
}

// additionalNamespaces lists the namespaces of members other than the parent's.
func additionalNamespaces(refs []ObjRef, parentNamespace string) string {
	var nss []string
	for _, r := range refs {
		if r.Namespace != "" && r.Namespace != parentNamespace {
			nss = append(nss, r.Namespace)
		}
	}
	slices.Sort(nss)
	return strings.Join(slices.Compact(nss), ",")
}
