package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// kwokNodeAnnotation marks the nodes kwok plays the kubelet for.
const kwokNodeAnnotation = "kwok.x-k8s.io/node"

// Region is the AWS region the simulated nodes claim to be in.
const Region = "ap-northeast-2"

// Node is one simulated worker node.
type Node struct {
	// Name is the node name; EKS names nodes after their private DNS name.
	Name string
	// Zone is the availability zone (topology.kubernetes.io/zone).
	Zone string
	// InstanceType is the EC2 instance type label.
	InstanceType string
	// CPU, Memory and Pods are the node's capacity.
	CPU, Memory string
	Pods        int
	// IP is the node's InternalIP.
	IP string
}

// DefaultNodes are three EKS-like m5.xlarge workers, one per zone.
func DefaultNodes() []Node {
	nodes := make([]Node, 0, 3)
	for i, zone := range []string{"a", "b", "c"} {
		ip := fmt.Sprintf("192.168.%d.10", 32*(i+1))
		nodes = append(nodes, Node{
			Name:         fmt.Sprintf("ip-192-168-%d-10.%s.compute.internal", 32*(i+1), Region),
			Zone:         Region + zone,
			InstanceType: "m5.xlarge",
			CPU:          "4",
			Memory:       "16Gi",
			Pods:         110,
			IP:           ip,
		})
	}
	return nodes
}

// instanceID is a stable fake EC2 instance id for a node.
func instanceID(name string) string {
	sum := sha256.Sum256([]byte(name))
	return "i-" + hex.EncodeToString(sum[:])[:17]
}

func nodeObject(n Node, index int) *corev1.Node {
	cidr := fmt.Sprintf("10.244.%d.0/24", index)
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: n.Name,
			Labels: map[string]string{
				"kubernetes.io/hostname":           n.Name,
				"kubernetes.io/os":                 "linux",
				"kubernetes.io/arch":               "amd64",
				"topology.kubernetes.io/region":    Region,
				"topology.kubernetes.io/zone":      n.Zone,
				"topology.ebs.csi.aws.com/zone":    n.Zone,
				"node.kubernetes.io/instance-type": n.InstanceType,
				"eks.amazonaws.com/nodegroup":      "workers",
				"eks.amazonaws.com/capacityType":   "ON_DEMAND",
				"type":                             "kwok",
			},
			Annotations: map[string]string{kwokNodeAnnotation: "fake"},
		},
		Spec: corev1.NodeSpec{
			PodCIDR:    cidr,
			PodCIDRs:   []string{cidr},
			ProviderID: fmt.Sprintf("aws:///%s/%s", n.Zone, instanceID(n.Name)),
		},
	}
}

func nodeStatus(n Node) corev1.NodeStatus {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse(n.CPU),
		corev1.ResourceMemory: resource.MustParse(n.Memory),
		corev1.ResourcePods:   *resource.NewQuantity(int64(n.Pods), resource.DecimalSI),
	}
	return corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: n.IP},
			{Type: corev1.NodeHostName, Address: n.Name},
			{Type: corev1.NodeInternalDNS, Address: n.Name},
		},
	}
}

// createNodes registers the nodes, as kubelets would on start.
func createNodes(ctx context.Context, cs kubernetes.Interface, nodes []Node) error {
	for i, n := range nodes {
		_, err := cs.CoreV1().Nodes().Create(ctx, nodeObject(n, i), metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("Node/%s: create: %w", n.Name, err)
		}
		// kwok and the node controller write the status too: re-read and
		// retry on a conflict.
		err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
			obj, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			status := nodeStatus(n)
			obj.Status.Capacity, obj.Status.Allocatable, obj.Status.Addresses = status.Capacity, status.Allocatable, status.Addresses
			_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, obj, metav1.UpdateOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("Node/%s: status: %w", n.Name, err)
		}
	}
	return nil
}

func waitNodesReady(ctx context.Context, cs kubernetes.Interface, want int) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return poll(ctx, 200*time.Millisecond, func() error {
		list, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		ready := 0
		for _, n := range list.Items {
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready < want {
			return fmt.Errorf("%d of %d nodes Ready", ready, want)
		}
		return nil
	})
}

func waitServiceAccount(ctx context.Context, cs kubernetes.Interface, namespace string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return poll(ctx, 200*time.Millisecond, func() error {
		_, err := cs.CoreV1().ServiceAccounts(namespace).Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("ServiceAccount/%s/default: %w", namespace, err)
		}
		return nil
	})
}

//go:embed stages/*.yaml
var stages embed.FS

// writeStages writes kwok's Stage configuration: node and pod lifecycles and
// the fault switches (stages/pods.yaml).
func writeStages(path string) error {
	var all bytes.Buffer
	for _, name := range []string{"stages/nodes.yaml", "stages/pods.yaml"} {
		data, err := stages.ReadFile(name)
		if err != nil {
			return err
		}
		all.Write(data)
		all.WriteString("\n---\n")
	}
	return os.WriteFile(path, all.Bytes(), 0o644)
}
