package ebscsi

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"sigs.k8s.io/sig-storage-lib-external-provisioner/v13/controller"
)

// quantities compares resource quantities by value, as the API server does.
var quantities = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

func TestInstanceID(t *testing.T) {
	format := regexp.MustCompile(`^i-[0-9a-f]{17}$`)
	for _, name := range []string{"node-a", "node-b", "node-c", ""} {
		if id := instanceID(name); !format.MatchString(id) {
			t.Errorf("instanceID(%q) = %q, want %s", name, id, format)
		}
	}
	if a, again := instanceID("node-a"), instanceID("node-a"); a != again {
		t.Errorf("instanceID(node-a) = %q then %q, want the same", a, again)
	}
	if a, b := instanceID("node-a"), instanceID("node-b"); a == b {
		t.Errorf("instanceID(node-a) = instanceID(node-b) = %q", a)
	}
}

func TestNewVolumeID(t *testing.T) {
	format := regexp.MustCompile(`^vol-[0-9a-f]{17}$`)
	seen := map[string]bool{}
	for range 100 {
		id, err := newVolumeID(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if !format.MatchString(id) {
			t.Fatalf("newVolumeID() = %q, want %s", id, format)
		}
		if seen[id] {
			t.Fatalf("newVolumeID() repeated %q", id)
		}
		seen[id] = true
	}
	if _, err := newVolumeID(bytes.NewReader(nil)); err == nil {
		t.Error("newVolumeID(empty reader): no error")
	}
}

func TestRoundUpGiB(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"1", "1Gi"},
		{"500Mi", "1Gi"},
		{"1G", "1Gi"}, // 10^9 bytes
		{"10Gi", "10Gi"},
		{"10737418241", "11Gi"}, // 10Gi + 1 byte
		{"1Ti", "1Ti"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := roundUpGiB(resource.MustParse(tt.in)); got.String() != tt.want {
				t.Errorf("roundUpGiB(%s) = %s, want %s", tt.in, got.String(), tt.want)
			}
		})
	}
}

// Fixtures: the walkthrough's class and claim, and kwok's nodes.

func mysqlGP2() *storagev1.StorageClass {
	return &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: "mysql-gp2"},
		Provisioner:       DefaultDriverName,
		Parameters:        map[string]string{"type": "gp2", "encrypted": "true"},
		ReclaimPolicy:     new(corev1.PersistentVolumeReclaimDelete),
		MountOptions:      []string{"debug"},
		VolumeBindingMode: new(storagev1.VolumeBindingWaitForFirstConsumer),
	}
}

func dataClaim(name, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "mysql", Name: name, UID: "uid-" + types.UID(name)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: new("mysql-gp2"),
			VolumeMode:       new(corev1.PersistentVolumeFilesystem),
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			},
		},
	}
}

func kwokNode(name, zone string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: name,
		UID:  "uid-" + types.UID(name),
		Labels: map[string]string{
			zoneKey:                            zone,
			"node.kubernetes.io/instance-type": "m5.large",
		},
	}}
}

func kwokNodes() []*corev1.Node {
	return []*corev1.Node{
		kwokNode("node-a", "ap-northeast-2a"),
		kwokNode("node-b", "ap-northeast-2b"),
		kwokNode("node-c", "ap-northeast-2c"),
	}
}

// wantPV is the PV the real external-provisioner and driver make for a
// filesystem claim of size in zone, before the library adds its part.
func wantPV(size, zone string, mutate func(*corev1.PersistentVolume)) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        "pvc-1",
			Annotations: map[string]string{annDeletionSecretName: "", annDeletionSecretNamespace: ""},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver:           DefaultDriverName,
				VolumeHandle:     "vol-0123456789abcdef0",
				FSType:           "ext4",
				VolumeAttributes: map[string]string{provisionerIDKey: "1700000000000-8081-ebs.csi.aws.com"},
			}},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			MountOptions:                  []string{"debug"},
			VolumeMode:                    new(corev1.PersistentVolumeFilesystem),
			NodeAffinity:                  zoneAffinity(zone),
		},
	}
	if mutate != nil {
		mutate(pv)
	}
	return pv
}

func TestNewPV(t *testing.T) {
	tests := map[string]struct {
		class *storagev1.StorageClass
		claim *corev1.PersistentVolumeClaim
		node  *corev1.Node // nil: Immediate binding over kwokNodes
		want  *corev1.PersistentVolume
	}{
		"walkthrough claim on node-b": {
			class: mysqlGP2(),
			claim: dataClaim("data-mysql-0", "10Gi"),
			node:  kwokNode("node-b", "ap-northeast-2b"),
			want:  wantPV("10Gi", "ap-northeast-2b", nil),
		},
		"request rounded up to whole GiB": {
			class: mysqlGP2(),
			claim: dataClaim("data-mysql-0", "10737418241"),
			node:  kwokNode("node-a", "ap-northeast-2a"),
			want:  wantPV("11Gi", "ap-northeast-2a", nil),
		},
		"Retain class, xfs and formatting options": {
			class: func() *storagev1.StorageClass {
				sc := mysqlGP2()
				sc.ReclaimPolicy = new(corev1.PersistentVolumeReclaimRetain)
				sc.MountOptions = nil
				sc.Parameters = map[string]string{fsTypeKey: "xfs", "blockSize": "4096", "type": "gp3"}
				return sc
			}(),
			claim: dataClaim("data-mysql-0", "10Gi"),
			node:  kwokNode("node-c", "ap-northeast-2c"),
			want: wantPV("10Gi", "ap-northeast-2c", func(pv *corev1.PersistentVolume) {
				pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
				pv.Spec.MountOptions = nil
				pv.Spec.CSI.FSType = "xfs"
				pv.Spec.CSI.VolumeAttributes[blockSizeKey] = "4096"
			}),
		},
		"raw block claim has no fsType": {
			class: mysqlGP2(),
			claim: func() *corev1.PersistentVolumeClaim {
				c := dataClaim("data-mysql-0", "10Gi")
				c.Spec.VolumeMode = new(corev1.PersistentVolumeBlock)
				return c
			}(),
			node: kwokNode("node-a", "ap-northeast-2a"),
			want: wantPV("10Gi", "ap-northeast-2a", func(pv *corev1.PersistentVolume) {
				pv.Spec.VolumeMode = new(corev1.PersistentVolumeBlock)
				pv.Spec.CSI.FSType = ""
			}),
		},
		"Immediate binding in the only allowed zone": {
			class: func() *storagev1.StorageClass {
				sc := mysqlGP2()
				sc.VolumeBindingMode = new(storagev1.VolumeBindingImmediate)
				sc.AllowedTopologies = []corev1.TopologySelectorTerm{{MatchLabelExpressions: []corev1.TopologySelectorLabelRequirement{
					{Key: zoneKey, Values: []string{"ap-northeast-2c"}},
				}}}
				return sc
			}(),
			claim: dataClaim("data-mysql-0", "10Gi"),
			want:  wantPV("10Gi", "ap-northeast-2c", nil),
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := newPV(provisionRequest{
				driverName:   DefaultDriverName,
				identity:     "1700000000000-8081-ebs.csi.aws.com",
				class:        tt.class,
				claim:        tt.claim,
				pvName:       "pvc-1",
				volumeID:     "vol-0123456789abcdef0",
				selectedNode: tt.node,
				nodes:        kwokNodes(),
			})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, quantities); diff != "" {
				t.Errorf("newPV() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseClass(t *testing.T) {
	tests := map[string]struct {
		params  map[string]string
		wantErr string // "" for a class the real driver accepts
	}{
		"walkthrough":                 {params: map[string]string{"type": "gp2", "encrypted": "true"}},
		"no parameters is gp3 ext4":   {params: nil},
		"keys are case insensitive":   {params: map[string]string{"Type": "io2", "iopsPerGB": "50", "BlockExpress": "true"}},
		"encrypted is read loosely":   {params: map[string]string{"encrypted": "yes"}},
		"tags and known csi keys":     {params: map[string]string{"tagSpecification_1": "team=db", fsTypeKey: "ext4", csiParameterPrefix + "node-stage-secret-name": "s"}},
		"unknown volume type":         {params: map[string]string{"type": "gp9"}, wantErr: `invalid AWS VolumeType "gp9"`},
		"volume type is case exact":   {params: map[string]string{"type": "GP2"}, wantErr: `invalid AWS VolumeType "GP2"`},
		"unknown key":                 {params: map[string]string{"encrypt": "true"}, wantErr: "invalid parameter key encrypt for CreateVolume"},
		"unknown reserved key":        {params: map[string]string{csiParameterPrefix + "pvc/name": "x"}, wantErr: "found unknown parameter key"},
		"iops not a number":           {params: map[string]string{"type": "io1", "iops": "lots"}, wantErr: "could not parse invalid iops"},
		"iops and iopsPerGB":          {params: map[string]string{"type": "io1", "iops": "3000", "iopsPerGB": "10"}, wantErr: "not both"},
		"both fstype keys":            {params: map[string]string{"fstype": "ext4", fsTypeKey: "xfs"}, wantErr: "fstype specified in parameters with both"},
		"block express needs io2":     {params: map[string]string{"type": "gp3", "blockExpress": "true"}, wantErr: "only supported on io2"},
		"cluster size needs bigalloc": {params: map[string]string{"ext4ClusterSize": "16k"}, wantErr: "ext4BigAlloc is false"},
		"formatting option for xfs":   {params: map[string]string{fsTypeKey: "xfs", "bytesPerInode": "4096"}, wantErr: "cannot use bytesperinode with fstype xfs"},
		"formatting option not alnum": {params: map[string]string{"inodeSize": "-1"}, wantErr: "could not parse inodeSize"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			sc := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "fast"}, Parameters: tt.params}
			_, err := parseClass(sc)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("parseClass() = %v, want no error", err)
			case tt.wantErr == "":
			case err == nil:
				t.Fatalf("parseClass() = nil, want error containing %q", tt.wantErr)
			case !strings.HasPrefix(err.Error(), "StorageClass/fast: ") || !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("parseClass() = %q, want StorageClass/fast: ...%s...", err, tt.wantErr)
			}
		})
	}
}

func TestNewPVRejectsClaims(t *testing.T) {
	withClass := func(params map[string]string) *storagev1.StorageClass {
		sc := mysqlGP2()
		sc.Parameters = params
		return sc
	}
	tests := map[string]struct {
		class   *storagev1.StorageClass
		mutate  func(*corev1.PersistentVolumeClaim)
		wantErr string
	}{
		"bad class is named": {
			class:   withClass(map[string]string{"type": "gp9"}),
			wantErr: `StorageClass/mysql-gp2: invalid AWS VolumeType "gp9"`,
		},
		"ReadWriteMany filesystem": {
			mutate: func(c *corev1.PersistentVolumeClaim) {
				c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
			},
			wantErr: "PersistentVolumeClaim/mysql/data-mysql-0: volume capabilities not supported",
		},
		"ReadOnlyMany": {
			mutate: func(c *corev1.PersistentVolumeClaim) {
				c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadOnlyMany}
			},
			wantErr: "volume capabilities not supported: ReadOnlyMany",
		},
		"too small for st1": {
			class:   withClass(map[string]string{"type": "st1"}),
			wantErr: "volume of 10GiB is too small for st1; minimum is 125GiB",
		},
		"selector": {
			mutate:  func(c *corev1.PersistentVolumeClaim) { c.Spec.Selector = &metav1.LabelSelector{} },
			wantErr: "claim Selector is not supported",
		},
		"clone": {
			mutate: func(c *corev1.PersistentVolumeClaim) {
				c.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: "data-mysql-1"}
			},
			wantErr: "does not support clone operations",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			class := tt.class
			if class == nil {
				class = mysqlGP2()
			}
			claim := dataClaim("data-mysql-0", "10Gi")
			if tt.mutate != nil {
				tt.mutate(claim)
			}
			_, err := newPV(provisionRequest{class: class, claim: claim, selectedNode: kwokNode("node-a", "ap-northeast-2a")})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("newPV() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewPVLeavesPopulatedClaims(t *testing.T) {
	claim := dataClaim("data-mysql-0", "10Gi")
	claim.Spec.DataSourceRef = &corev1.TypedObjectReference{APIGroup: new("example.com"), Kind: "Backup", Name: "b"}
	_, err := newPV(provisionRequest{class: mysqlGP2(), claim: claim, selectedNode: kwokNode("node-a", "ap-northeast-2a")})
	var ignored *controller.IgnoredError
	if !errors.As(err, &ignored) {
		t.Fatalf("newPV() = %v, want an IgnoredError", err)
	}
}

func TestPickZone(t *testing.T) {
	zones := candidateZones(mysqlGP2(), kwokNodes())
	if diff := cmp.Diff([]string{"ap-northeast-2a", "ap-northeast-2b", "ap-northeast-2c"}, zones); diff != "" {
		t.Fatalf("candidateZones() mismatch (-want +got):\n%s", diff)
	}
	got := map[string]bool{}
	for _, claim := range []string{"data-mysql-0", "data-mysql-1", "data-mysql-2"} {
		zone, err := pickZone(zones, claim)
		if err != nil {
			t.Fatal(err)
		}
		got[zone] = true
	}
	if len(got) != 3 {
		t.Errorf("a StatefulSet's three claims went to zones %v, want all three", got)
	}
	if _, err := pickZone(nil, "data-mysql-0"); err == nil {
		t.Error("pickZone(no zones): no error")
	}
}

// boundPair is a claim whose status says have, bound to a PV of pvSize,
// the claim asking for request.
func boundPair(have, pvSize, request string) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume) {
	claim := dataClaim("data-mysql-0", request)
	claim.Spec.VolumeName = "pvc-1"
	claim.Status.Phase = corev1.ClaimBound
	claim.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(have)}
	return claim, wantPV(pvSize, "ap-northeast-2a", nil)
}

func TestExpansionFor(t *testing.T) {
	expandable := mysqlGP2()
	expandable.AllowVolumeExpansion = new(true)
	tests := map[string]struct {
		have, pvSize, request string
		class                 *storagev1.StorageClass
		mutate                func(*corev1.PersistentVolumeClaim, *corev1.PersistentVolume)
		want                  expansion
		wantOK                bool
	}{
		"grows to the request": {
			have: "10Gi", pvSize: "10Gi", request: "20Gi", class: expandable,
			want:   expansion{requested: resource.MustParse("20Gi"), capacity: resource.MustParse("20Gi"), resizePV: true},
			wantOK: true,
		},
		"grows to whole GiB": {
			have: "10Gi", pvSize: "10Gi", request: "10737418241", class: expandable,
			want:   expansion{requested: resource.MustParse("10737418241"), capacity: resource.MustParse("11Gi"), resizePV: true},
			wantOK: true,
		},
		"PV already large enough": {
			have: "10Gi", pvSize: "11Gi", request: "10.5Gi", class: expandable,
			want:   expansion{requested: resource.MustParse("10.5Gi"), capacity: resource.MustParse("11Gi")},
			wantOK: true,
		},
		"request not larger":             {have: "11Gi", pvSize: "11Gi", request: "10737418241", class: expandable},
		"class does not allow expansion": {have: "10Gi", pvSize: "10Gi", request: "20Gi", class: mysqlGP2()},
		"class gone":                     {have: "10Gi", pvSize: "10Gi", request: "20Gi"},
		"another driver's volume": {
			have: "10Gi", pvSize: "10Gi", request: "20Gi", class: expandable,
			mutate: func(_ *corev1.PersistentVolumeClaim, pv *corev1.PersistentVolume) {
				pv.Spec.CSI.Driver = "other.csi.example.com"
			},
		},
		"claim not bound": {
			have: "10Gi", pvSize: "10Gi", request: "20Gi", class: expandable,
			mutate: func(c *corev1.PersistentVolumeClaim, _ *corev1.PersistentVolume) {
				c.Status.Phase = corev1.ClaimPending
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			claim, pv := boundPair(tt.have, tt.pvSize, tt.request)
			if tt.mutate != nil {
				tt.mutate(claim, pv)
			}
			got, ok := expansionFor(DefaultDriverName, claim, pv, tt.class)
			if ok != tt.wantOK {
				t.Fatalf("expansionFor() ok = %v, want %v", ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got, quantities, cmp.AllowUnexported(expansion{})); diff != "" {
				t.Errorf("expansionFor() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestExpandedClaimStatus(t *testing.T) {
	status := corev1.PersistentVolumeClaimStatus{
		Phase:    corev1.ClaimBound,
		Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10Gi")},
		AllocatedResourceStatuses: map[corev1.ResourceName]corev1.ClaimResourceStatus{
			corev1.ResourceStorage: corev1.PersistentVolumeClaimControllerResizeInProgress,
		},
		Conditions: []corev1.PersistentVolumeClaimCondition{
			{Type: corev1.PersistentVolumeClaimResizing, Status: corev1.ConditionTrue},
			{Type: corev1.PersistentVolumeClaimFileSystemResizePending, Status: corev1.ConditionTrue},
			{Type: "Other", Status: corev1.ConditionTrue},
		},
	}
	e := expansion{requested: resource.MustParse("10737418241"), capacity: resource.MustParse("11Gi"), resizePV: true}
	want := corev1.PersistentVolumeClaimStatus{
		Phase:              corev1.ClaimBound,
		Capacity:           corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("11Gi")},
		AllocatedResources: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("10737418241")},
		Conditions:         []corev1.PersistentVolumeClaimCondition{{Type: "Other", Status: corev1.ConditionTrue}},
	}
	if diff := cmp.Diff(want, expandedClaimStatus(status, e), quantities); diff != "" {
		t.Errorf("expandedClaimStatus() mismatch (-want +got):\n%s", diff)
	}
	if len(status.Conditions) != 3 {
		t.Error("expandedClaimStatus() changed its argument")
	}
}

func TestDesiredCSINode(t *testing.T) {
	node := kwokNode("node-a", "ap-northeast-2a")
	entry := storagev1.CSINodeDriver{
		Name:         DefaultDriverName,
		NodeID:       instanceID("node-a"),
		TopologyKeys: []string{osKey, driverZoneKey, zoneKey},
		Allocatable:  &storagev1.VolumeNodeResources{Count: new(int32(25))},
	}
	other := storagev1.CSINodeDriver{Name: "other.csi.example.com", NodeID: "n1"}
	owner := metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: "node-a", UID: "uid-node-a"}
	registered := &storagev1.CSINode{
		ObjectMeta: metav1.ObjectMeta{Name: "node-a", OwnerReferences: []metav1.OwnerReference{owner}},
		Spec:       storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{other, entry}},
	}
	tests := map[string]struct {
		live        *storagev1.CSINode
		want        *storagev1.CSINode
		wantChanged bool
	}{
		"none yet": {
			want: &storagev1.CSINode{
				ObjectMeta: metav1.ObjectMeta{Name: "node-a", OwnerReferences: []metav1.OwnerReference{owner}},
				Spec:       storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{entry}},
			},
			wantChanged: true,
		},
		"another driver's, from a stale Node": {
			live: &storagev1.CSINode{
				ObjectMeta: metav1.ObjectMeta{Name: "node-a", OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: "node-a", UID: "old"}}},
				Spec:       storagev1.CSINodeSpec{Drivers: []storagev1.CSINodeDriver{other}},
			},
			want:        registered,
			wantChanged: true,
		},
		"already registered": {live: registered, want: registered},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, changed := desiredCSINode(tt.live, node, DefaultDriverName)
			if changed != tt.wantChanged {
				t.Errorf("desiredCSINode() changed = %v, want %v", changed, tt.wantChanged)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("desiredCSINode() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNodeRegistrationPatch(t *testing.T) {
	fresh := kwokNode("node-a", "ap-northeast-2a")
	patch, err := nodeRegistrationPatch(fresh, DefaultDriverName)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"metadata":{"annotations":{"csi.volume.kubernetes.io/nodeid":"{\"ebs.csi.aws.com\":\"` + instanceID("node-a") + `\"}"},` +
		`"labels":{"kubernetes.io/os":"linux","topology.ebs.csi.aws.com/zone":"ap-northeast-2a"}}}`
	if diff := cmp.Diff(want, string(patch)); diff != "" {
		t.Errorf("nodeRegistrationPatch(fresh) mismatch (-want +got):\n%s", diff)
	}

	registered := fresh.DeepCopy()
	registered.Labels[osKey] = "windows" // another value is left alone
	registered.Labels[driverZoneKey] = "ap-northeast-2a"
	registered.Annotations = map[string]string{nodeIDAnnotation: `{"ebs.csi.aws.com":"` + instanceID("node-a") + `"}`}
	if patch, err := nodeRegistrationPatch(registered, DefaultDriverName); err != nil || patch != nil {
		t.Errorf("nodeRegistrationPatch(registered) = %s, %v; want nil, nil", patch, err)
	}
}

func TestRegisterDriver(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	if err := registerDriver(ctx, client, DefaultDriverName); err != nil {
		t.Fatal(err)
	}
	drifted, err := client.StorageV1().CSIDrivers().Get(ctx, DefaultDriverName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	drifted.Spec.AttachRequired = new(false)
	if _, err := client.StorageV1().CSIDrivers().Update(ctx, drifted, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := registerDriver(ctx, client, DefaultDriverName); err != nil {
		t.Fatal(err)
	}
	got, err := client.StorageV1().CSIDrivers().Get(ctx, DefaultDriverName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(csiDriver(DefaultDriverName).Spec, got.Spec); diff != "" {
		t.Errorf("CSIDriver spec mismatch (-want +got):\n%s", diff)
	}
}

func TestLibraryLoggerDemotes(t *testing.T) {
	var buf bytes.Buffer
	l := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	lib := libraryLogger(l, "test")
	lib.Info("chatter")
	lib.V(4).Info("detail")
	lib.Error(errors.New("boom"), "failure")
	out := buf.String()
	if strings.Contains(out, "chatter") || strings.Contains(out, "detail") {
		t.Errorf("DEBUG handler got the library's info records:\n%s", out)
	}
	if !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "failure") {
		t.Errorf("DEBUG handler lost the library's error:\n%s", out)
	}
}

func TestProvisioningFailureLoggedOnce(t *testing.T) {
	var buf bytes.Buffer
	p := &provisioner{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	claim := dataClaim("data-mysql-0", "10Gi")
	ctx := context.Background()
	p.logFailure(ctx, claim, errors.New("StorageClass/bad: one"))
	p.logFailure(ctx, claim, errors.New("StorageClass/bad: one")) // a retry
	p.logFailure(ctx, claim, errors.New("StorageClass/bad: two"))
	if got := strings.Count(buf.String(), "level=ERROR"); got != 2 {
		t.Errorf("logged %d errors, want 2 (one per distinct error):\n%s", got, buf.String())
	}
}
