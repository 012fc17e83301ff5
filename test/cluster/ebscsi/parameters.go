package ebscsi

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode"

	storagev1 "k8s.io/api/storage/v1"
)

const (
	// csiParameterPrefix marks StorageClass parameters that the
	// external-provisioner consumes itself and never passes to the driver.
	csiParameterPrefix = "csi.storage.k8s.io/"
	fsTypeKey          = csiParameterPrefix + "fstype"

	// defaultFSType is the fsType of a class that names none: the driver's
	// Helm chart starts the external-provisioner with --default-fstype=ext4.
	defaultFSType = "ext4"

	// defaultVolumeType is the EBS volume type of a class that names none.
	defaultVolumeType = "gp3"
)

// knownCSIParameters are the csi.storage.k8s.io/ keys the external-provisioner
// understands; any other key under that prefix fails provisioning.
var knownCSIParameters = map[string]bool{
	fsTypeKey: true,

	csiParameterPrefix + "secret-name":                         true,
	csiParameterPrefix + "secret-namespace":                    true,
	csiParameterPrefix + "provisioner-secret-name":             true,
	csiParameterPrefix + "provisioner-secret-namespace":        true,
	csiParameterPrefix + "controller-publish-secret-name":      true,
	csiParameterPrefix + "controller-publish-secret-namespace": true,
	csiParameterPrefix + "node-stage-secret-name":              true,
	csiParameterPrefix + "node-stage-secret-namespace":         true,
	csiParameterPrefix + "node-publish-secret-name":            true,
	csiParameterPrefix + "node-publish-secret-namespace":       true,
	csiParameterPrefix + "controller-expand-secret-name":       true,
	csiParameterPrefix + "controller-expand-secret-namespace":  true,
	csiParameterPrefix + "node-expand-secret-name":             true,
	csiParameterPrefix + "node-expand-secret-namespace":        true,
}

// sizeRange is the size an EBS volume type allows, in GiB.
type sizeRange struct{ min, max int64 }

// volumeTypes are the EBS volume types that EC2 creates in a Region, with
// their size limits.
var volumeTypes = map[string]sizeRange{
	"gp2":      {1, 16384},
	"gp3":      {1, 16384},
	"io1":      {4, 16384},
	"io2":      {4, 65536},
	"sc1":      {125, 16384},
	"st1":      {125, 16384},
	"standard": {1, 1024},
}

// Formatting options: parameters the driver checks and echoes into the
// volume context, for its node plugin's mkfs.
const (
	blockSizeKey       = "blocksize"
	inodeSizeKey       = "inodesize"
	bytesPerInodeKey   = "bytesperinode"
	numberOfInodesKey  = "numberofinodes"
	ext4BigAllocKey    = "ext4bigalloc"
	ext4ClusterSizeKey = "ext4clustersize"
)

// unsupportedFormatting lists, per fsType, the formatting options its mkfs
// lacks.
var unsupportedFormatting = map[string][]string{
	"ext2": {ext4BigAllocKey, ext4ClusterSizeKey},
	"ext3": {ext4BigAllocKey, ext4ClusterSizeKey},
	"xfs":  {bytesPerInodeKey, numberOfInodesKey, ext4BigAllocKey, ext4ClusterSizeKey},
	"ntfs": {blockSizeKey, inodeSizeKey, bytesPerInodeKey, numberOfInodesKey, ext4BigAllocKey, ext4ClusterSizeKey},
}

// classParams is what a StorageClass's parameters ask of a volume.
type classParams struct {
	volumeType string
	fsType     string
	// context is the volume context CreateVolume returns: the formatting
	// options, keyed as the driver spells them.
	context map[string]string

	iops, iopsPerGB int64
	blockExpress    bool
}

// parseClass checks sc's parameters as the external-provisioner and the
// driver's CreateVolume do, and fails where they fail. Values that the
// driver reads loosely stay loose: an "encrypted" other than "true" is an
// unencrypted volume, not an error.
func parseClass(sc *storagev1.StorageClass) (classParams, error) {
	p, err := parseParameters(sc.Parameters)
	if err != nil {
		return classParams{}, fmt.Errorf("StorageClass/%s: %w", sc.Name, err)
	}
	return p, nil
}

func parseParameters(params map[string]string) (classParams, error) {
	p := classParams{volumeType: defaultVolumeType, fsType: defaultFSType, context: map[string]string{}}
	fsTypes := 0
	for _, key := range slices.Sorted(maps.Keys(params)) {
		value := params[key]
		if key == fsTypeKey || strings.ToLower(key) == "fstype" {
			p.fsType = value
			fsTypes++
		}
		if strings.HasPrefix(key, csiParameterPrefix) {
			if !knownCSIParameters[key] {
				return p, fmt.Errorf("found unknown parameter key %q with reserved namespace %s", key, csiParameterPrefix)
			}
			continue
		}
		if err := p.set(key, value); err != nil {
			return p, err
		}
	}
	if fsTypes > 1 {
		return p, fmt.Errorf("fstype specified in parameters with both \"fstype\" and %q keys", fsTypeKey)
	}
	return p, p.check()
}

// set takes one parameter that reaches the driver, whose keys are case
// insensitive.
func (p *classParams) set(key, value string) error {
	var err error
	switch lower := strings.ToLower(key); lower {
	case "fstype", "encrypted", "kmskeyid", "allowautoiopspergbincrease":
	case "type":
		p.volumeType = value
	case "iops":
		p.iops, err = parseInt32(key, value)
	case "iopspergb":
		p.iopsPerGB, err = parseInt32(key, value)
	case "throughput":
		_, err = parseInt32(key, value)
	case "blockexpress":
		p.blockExpress = value == "true"
	case ext4BigAllocKey:
		if value == "true" {
			p.context[ext4BigAllocKey] = "true"
		}
	case blockSizeKey, inodeSizeKey, bytesPerInodeKey, numberOfInodesKey, ext4ClusterSizeKey:
		if !isAlphanumeric(value) {
			return fmt.Errorf("could not parse %s (%s): not alphanumeric", key, value)
		}
		p.context[lower] = value
	default:
		if !strings.HasPrefix(key, "tagSpecification") {
			return fmt.Errorf("invalid parameter key %s for CreateVolume", key)
		}
	}
	return err
}

// check applies the rules that span parameters.
func (p *classParams) check() error {
	if p.volumeType == "" {
		p.volumeType = defaultVolumeType
	}
	if p.fsType == "" {
		p.fsType = defaultFSType
	}
	if _, ok := volumeTypes[p.volumeType]; !ok {
		return fmt.Errorf("invalid AWS VolumeType %q", p.volumeType)
	}
	if p.context[ext4ClusterSizeKey] != "" && p.context[ext4BigAllocKey] == "" {
		return fmt.Errorf("cannot set ext4BigAllocClusterSize when ext4BigAlloc is false")
	}
	if p.blockExpress && p.volumeType != "io2" {
		return fmt.Errorf("block express is only supported on io2 volumes")
	}
	if p.iops > 0 && p.iopsPerGB > 0 {
		return fmt.Errorf("specify either IOPS or IOPSPerGb, not both")
	}
	for _, key := range unsupportedFormatting[p.fsType] {
		if _, ok := p.context[key]; ok {
			return fmt.Errorf("cannot use %s with fstype %s", key, p.fsType)
		}
	}
	return nil
}

func parseInt32(key, value string) (int64, error) {
	n, err := strconv.ParseInt(value, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("could not parse invalid %s %q: %w", key, value, err)
	}
	return n, nil
}

func isAlphanumeric(s string) bool {
	for _, r := range s {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}
