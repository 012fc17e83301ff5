package kustomize

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"

	yaml "go.yaml.in/yaml/v3"
)

// The YAML bounds are checked on every file a build reads, before
// kustomize parses it: a parse into yaml.Node costs memory linear in the
// file (aliases are not expanded), so a bomb is refused while it is still
// the size of its bytes. kustomize expands aliases when it copies nodes
// (kyaml's DeAnchor), and its encoders recurse and indent per level, which
// is where 50 KB of aliases or 9,999 nested flow maps used to run the
// process out of memory.

// documentSeparator splits a YAML stream where kyaml's ByteReader does
// (kio/byteio_reader.go), so that each document is checked as kustomize
// will parse it: a broken document does not hide the ones after it.
var documentSeparator = regexp.MustCompile(`\n---.*\n`)

// aliasNodes is the room aliases get beyond the nodes a document spells: a
// document may at most double by its aliases, and a small one may grow by
// this many nodes.
const aliasNodes = 100_000

// yamlStats is what checkYAML learned of one file.
type yamlStats struct {
	objects int          // documents (or List items) with a kind: what the build may render
	docs    []*yaml.Node // every document that parsed, for the secret scan
}

// checkYAML parses data (the file name) document by document and refuses
// documents nested deeper than maxDepth or whose aliases would expand them
// beyond the aliasNodes rule. It stops early, without an error, once the
// file holds more than maxObjects objects: the caller refuses that. A
// document that does not
// parse is left to kustomize, which reports it or, for a generator's data
// file, does not parse it at all.
func checkYAML(name string, data []byte, maxDepth, maxObjects int) (yamlStats, error) {
	var st yamlStats
	if len(bytes.TrimSpace(data)) == 0 {
		return st, nil
	}
	data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
	for i, doc := range splitDocuments(data) {
		var n yaml.Node
		if err := yaml.Unmarshal(doc, &n); err != nil {
			continue
		}
		w := nodeWalk{memo: map[*yaml.Node]nodeSize{}, active: map[*yaml.Node]bool{}}
		size, err := w.size(&n)
		if err != nil {
			return st, fmt.Errorf("%s: document %d: %w", name, i+1, err)
		}
		if size.height > maxDepth {
			return st, &LimitError{Limit: "MaxYAMLDepth",
				Msg: fmt.Sprintf("%s: document %d is nested %d levels deep, over the limit of %d", name, i+1, size.height, maxDepth)}
		}
		if extra := size.nodes - w.parsed; extra > max(w.parsed, aliasNodes) {
			return st, &LimitError{Limit: "YAML aliases",
				Msg: fmt.Sprintf("%s: document %d: its aliases expand %d nodes to %d (at most twice the document, or %d more)", name, i+1, w.parsed, size.nodes, aliasNodes)}
		}
		st.objects += countObjects(&n)
		st.docs = append(st.docs, &n)
		if st.objects > maxObjects {
			return st, nil
		}
	}
	return st, nil
}

// splitDocuments is kyaml's split of a stream into documents.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	prev := 0
	for _, loc := range documentSeparator.FindAllIndex(data, -1) {
		docs = append(docs, data[prev:loc[0]])
		prev = loc[1]
	}
	return append(docs, data[prev:])
}

// nodeSize is a node's size with its aliases expanded: how many nodes and
// how many levels.
type nodeSize struct {
	nodes  int
	height int
}

// nodeWalk computes nodeSizes, each node once (an anchor aliased a
// thousand times is walked once), so the walk is linear in the parsed
// document however large its expansion.
type nodeWalk struct {
	memo   map[*yaml.Node]nodeSize
	active map[*yaml.Node]bool // on the current path: an alias to one is a cycle
	parsed int                 // nodes of the document as written
}

var errRecursiveAlias = errors.New("an alias refers to a node that contains it (recursive YAML alias)")

func (w *nodeWalk) size(n *yaml.Node) (nodeSize, error) {
	if s, ok := w.memo[n]; ok {
		return s, nil
	}
	if w.active[n] {
		return nodeSize{}, errRecursiveAlias
	}
	w.active[n] = true
	defer delete(w.active, n)
	w.parsed++
	s := nodeSize{nodes: 1, height: 1}
	children := n.Content
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		children = []*yaml.Node{n.Alias}
	}
	for _, c := range children {
		cs, err := w.size(c)
		if err != nil {
			return nodeSize{}, err
		}
		s.nodes = min(s.nodes+cs.nodes, 1<<40) // no overflow, whatever the bomb
		s.height = max(s.height, cs.height+1)
	}
	w.memo[n] = s
	return s, nil
}

// countObjects counts the objects a parsed document may render: one for a
// mapping with a kind, the items of a List.
func countObjects(doc *yaml.Node) int {
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind != yaml.MappingNode {
		return 0
	}
	kind, items := mappingValue(n, "kind"), mappingValue(n, "items")
	switch {
	case kind == nil:
		return 0
	case kind.Value == "List" && items != nil && items.Kind == yaml.SequenceNode:
		return len(items.Content)
	}
	return 1
}

// mappingValue returns the value of key in the mapping n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}
