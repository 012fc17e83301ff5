package git

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-git/v5/plumbing"
)

// refKind says how a ref string is matched against the remote's refs.
type refKind int

const (
	refDefault refKind = iota // the remote HEAD's branch, else "main"
	refAuto                   // a branch of that name, else a tag, else a semver range
	refBranch
	refTag
	refSemver
	refCommit
)

func (k refKind) String() string {
	return [...]string{"default", "auto", "branch", "tag", "semver", "commit"}[k]
}

// refSpec is a parsed Options.Ref.
type refSpec struct {
	kind  refKind
	value string              // branch or tag name, range, or 40-hex commit
	rng   *semver.Constraints // set for refSemver, and for refAuto when value parses as a range
}

// parseRef parses Options.Ref; see the Ref field's comment for the forms.
func parseRef(s string) (refSpec, error) {
	s = strings.TrimSpace(s)
	prefixes := []struct {
		prefix string
		kind   refKind
	}{
		{"branch:", refBranch}, {"tag:", refTag}, {"semver:", refSemver}, {"commit:", refCommit},
		{"refs/heads/", refBranch}, {"refs/tags/", refTag},
	}
	spec := refSpec{kind: refAuto, value: s}
	for _, p := range prefixes {
		if v, ok := strings.CutPrefix(s, p.prefix); ok {
			spec = refSpec{kind: p.kind, value: strings.TrimSpace(v)}
			break
		}
	}
	switch {
	case spec.kind == refAuto && s == "":
		return refSpec{kind: refDefault}, nil
	case spec.kind == refAuto && isFullSHA(s):
		spec.kind = refCommit
	case spec.value == "":
		return refSpec{}, fmt.Errorf("ref %q: empty %s name", s, spec.kind)
	}
	switch spec.kind {
	case refCommit:
		if !isFullSHA(spec.value) {
			return refSpec{}, fmt.Errorf("ref %q: a commit must be a full 40-hex SHA-1", s)
		}
		spec.value = strings.ToLower(spec.value)
	case refSemver:
		c, err := semver.NewConstraint(spec.value)
		if err != nil {
			return refSpec{}, fmt.Errorf("ref %q: semver range: %w", s, err)
		}
		spec.rng = c
	case refAuto:
		spec.rng, _ = semver.NewConstraint(spec.value) // nil when not a range: fine
	}
	return spec, nil
}

func isFullSHA(s string) bool {
	if len(s) != 40 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// String gives the ref as the user would write it, for messages.
func (r refSpec) String() string {
	switch r.kind {
	case refDefault:
		return "HEAD"
	case refAuto, refCommit:
		return r.value
	}
	return r.kind.String() + ":" + r.value
}

// target is what a ref resolved to on the remote.
type target struct {
	kind refKind                // refBranch, refTag or refCommit
	name string                 // short name for the revision: "main", "v1.2.0"; empty for a commit
	ref  plumbing.ReferenceName // full remote ref name; empty for a commit
	hash plumbing.Hash          // the commit (annotated tags peeled when the remote says)
}

// revision formats t's revision the way Flux does: "main@sha1:<hex>",
// "v1.2.0@sha1:<hex>", or "sha1:<hex>" for a bare commit.
func revision(name string, commit plumbing.Hash) string {
	if name == "" {
		return "sha1:" + commit.String()
	}
	return name + "@sha1:" + commit.String()
}

// errRefNotFound is wrapped by resolve errors for refs the remote lacks, so
// callers (and tests) can tell a typo from a transport failure.
var errRefNotFound = errors.New("not found on remote")

// resolve picks the remote ref that spec names, from an ls-remote listing
// (annotated tags listed twice, once peeled with a "^{}" suffix). It does no
// I/O. A commit spec resolves to itself without looking at refs.
func resolve(spec refSpec, refs []*plumbing.Reference) (target, error) {
	l := indexRefs(refs)
	switch spec.kind {
	case refCommit:
		return target{kind: refCommit, hash: plumbing.NewHash(spec.value)}, nil
	case refDefault:
		return l.branch(l.defaultBranch())
	case refBranch:
		return l.branch(spec.value)
	case refTag:
		return l.tag(spec.value)
	case refSemver:
		return l.highest(spec)
	}
	// refAuto: branch, then tag, then semver range.
	if _, ok := l.hashes[plumbing.NewBranchReferenceName(spec.value)]; ok {
		return l.branch(spec.value)
	}
	if _, ok := l.hashes[plumbing.NewTagReferenceName(spec.value)]; ok {
		return l.tag(spec.value)
	}
	if spec.rng != nil {
		return l.highest(spec)
	}
	return target{}, fmt.Errorf("branch or tag %q %w", spec.value, errRefNotFound)
}

// refIndex is an ls-remote listing keyed by ref name, tags peeled.
type refIndex struct {
	hashes  map[plumbing.ReferenceName]plumbing.Hash
	headSym plumbing.ReferenceName // HEAD's target when the remote says
	head    plumbing.Hash
}

func indexRefs(refs []*plumbing.Reference) refIndex {
	l := refIndex{hashes: map[plumbing.ReferenceName]plumbing.Hash{}}
	peeled := map[plumbing.ReferenceName]plumbing.Hash{}
	for _, r := range refs {
		name := r.Name()
		switch {
		case name == plumbing.HEAD && r.Type() == plumbing.SymbolicReference:
			l.headSym = r.Target()
		case name == plumbing.HEAD:
			l.head = r.Hash()
		case strings.HasSuffix(name.String(), "^{}"):
			peeled[plumbing.ReferenceName(strings.TrimSuffix(name.String(), "^{}"))] = r.Hash()
		case r.Type() == plumbing.HashReference:
			l.hashes[name] = r.Hash()
		}
	}
	for name, h := range peeled {
		l.hashes[name] = h
	}
	return l
}

// defaultBranch is the branch HEAD points to: from the symref the remote
// advertises, else the one branch whose commit equals HEAD's, else "main".
func (l refIndex) defaultBranch() string {
	if l.headSym.IsBranch() {
		return l.headSym.Short()
	}
	var match []string
	for name, h := range l.hashes {
		if name.IsBranch() && !l.head.IsZero() && h == l.head {
			match = append(match, name.Short())
		}
	}
	if len(match) == 1 {
		return match[0]
	}
	return "main"
}

func (l refIndex) branch(name string) (target, error) {
	ref := plumbing.NewBranchReferenceName(name)
	h, ok := l.hashes[ref]
	if !ok {
		return target{}, fmt.Errorf("branch %q %w", name, errRefNotFound)
	}
	return target{kind: refBranch, name: name, ref: ref, hash: h}, nil
}

func (l refIndex) tag(name string) (target, error) {
	ref := plumbing.NewTagReferenceName(name)
	h, ok := l.hashes[ref]
	if !ok {
		return target{}, fmt.Errorf("tag %q %w", name, errRefNotFound)
	}
	return target{kind: refTag, name: name, ref: ref, hash: h}, nil
}

// highest picks the tag with the highest version inside spec.rng. Tags that
// are not versions are ignored; of two tags with equal versions ("1.0.0" and
// "v1.0.0") the name sorting last wins, so the choice is stable.
func (l refIndex) highest(spec refSpec) (target, error) {
	type cand struct {
		v    *semver.Version
		name string
	}
	var cands []cand
	for ref := range l.hashes {
		if !ref.IsTag() {
			continue
		}
		v, err := semver.NewVersion(ref.Short())
		if err != nil || !spec.rng.Check(v) {
			continue
		}
		cands = append(cands, cand{v, ref.Short()})
	}
	if len(cands) == 0 {
		return target{}, fmt.Errorf("tag matching semver range %q %w", spec.value, errRefNotFound)
	}
	sort.Slice(cands, func(i, j int) bool {
		if c := cands[i].v.Compare(cands[j].v); c != 0 {
			return c > 0
		}
		return cands[i].name > cands[j].name
	})
	return l.tag(cands[0].name)
}
