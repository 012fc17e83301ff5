package reconciler

import (
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// CachedMapper remembers the RESTMapping answers of a RESTMapper. client-go's
// discovery-backed mapper recomputes every answer from its discovery data
// (a sync of 1,000 objects asked it thousands of times, and that was a fifth
// of all the daemon allocated). Only successful answers are kept, so a kind
// whose CRD appears later still maps; Reset forgets everything.
type CachedMapper struct {
	meta.ResettableRESTMapper

	mu       sync.RWMutex
	mappings map[mappingKey]*meta.RESTMapping
}

type mappingKey struct {
	gk       schema.GroupKind
	versions string
}

// NewCachedMapper wraps m.
func NewCachedMapper(m meta.ResettableRESTMapper) *CachedMapper {
	return &CachedMapper{ResettableRESTMapper: m, mappings: map[mappingKey]*meta.RESTMapping{}}
}

// RESTMapping implements meta.RESTMapper. The mapping returned is shared:
// callers must not change it.
func (c *CachedMapper) RESTMapping(gk schema.GroupKind, versions ...string) (*meta.RESTMapping, error) {
	key := mappingKey{gk: gk, versions: strings.Join(versions, ",")}
	c.mu.RLock()
	m, ok := c.mappings[key]
	c.mu.RUnlock()
	if ok {
		return m, nil
	}
	m, err := c.ResettableRESTMapper.RESTMapping(gk, versions...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.mappings[key] = m
	c.mu.Unlock()
	return m, nil
}

// Reset implements meta.ResettableRESTMapper.
func (c *CachedMapper) Reset() {
	c.mu.Lock()
	clear(c.mappings)
	c.mu.Unlock()
	c.ResettableRESTMapper.Reset()
}
