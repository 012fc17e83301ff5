package git

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/google/go-cmp/cmp"
)

func TestParseRef(t *testing.T) {
	sha := strings.Repeat("0123456789", 4)
	tests := map[string]struct {
		in       string
		wantKind refKind
		wantVal  string
		wantRng  bool
		wantErr  string
	}{
		"empty is the default branch":  {in: "", wantKind: refDefault},
		"blank is the default branch":  {in: "  ", wantKind: refDefault},
		"bare name":                    {in: "main", wantKind: refAuto, wantVal: "main"},
		"bare version is also a range": {in: "v1.2.0", wantKind: refAuto, wantVal: "v1.2.0", wantRng: true},
		"bare range":                   {in: ">=1.0.0 <2.0.0", wantKind: refAuto, wantVal: ">=1.0.0 <2.0.0", wantRng: true},
		"branch prefix":                {in: "branch:1.x", wantKind: refBranch, wantVal: "1.x"},
		"tag prefix":                   {in: "tag:v1", wantKind: refTag, wantVal: "v1"},
		"semver prefix":                {in: "semver:1.x", wantKind: refSemver, wantVal: "1.x", wantRng: true},
		"commit prefix":                {in: "commit:" + strings.ToUpper(sha), wantKind: refCommit, wantVal: sha},
		"full branch ref":              {in: "refs/heads/feature/x", wantKind: refBranch, wantVal: "feature/x"},
		"full tag ref":                 {in: "refs/tags/v2", wantKind: refTag, wantVal: "v2"},
		"bare 40-hex is a commit":      {in: sha, wantKind: refCommit, wantVal: sha},
		"39 hex is a name":             {in: sha[:39], wantKind: refAuto, wantVal: sha[:39]},
		"short commit refused":         {in: "commit:abc123", wantErr: "full 40-hex"},
		"bad range refused":            {in: "semver:>=x.y", wantErr: "semver range"},
		"empty branch refused":         {in: "branch:", wantErr: "empty branch name"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := parseRef(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseRef(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseRef(%q): %v", tc.in, err)
			}
			type view struct {
				Kind  string
				Value string
				Range bool
			}
			want := view{tc.wantKind.String(), tc.wantVal, tc.wantRng}
			if diff := cmp.Diff(want, view{got.kind.String(), got.value, got.rng != nil}); diff != "" {
				t.Errorf("parseRef(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

// h makes a recognisable hash from a short label.
func h(label string) plumbing.Hash {
	return plumbing.NewHash(strings.Repeat("0", 40-len(label)) + label)
}

func TestResolve(t *testing.T) {
	head := plumbing.NewSymbolicReference(plumbing.HEAD, "refs/heads/trunk")
	refs := []*plumbing.Reference{
		head,
		plumbing.NewHashReference("refs/heads/trunk", h("a1")),
		plumbing.NewHashReference("refs/heads/main", h("a2")),
		plumbing.NewHashReference("refs/heads/v1.0.0", h("a3")), // a branch named like a tag
		plumbing.NewHashReference("refs/heads/1.x", h("a4")),
		plumbing.NewHashReference("refs/tags/v1.0.0", h("b1")),
		plumbing.NewHashReference("refs/tags/v1.2.0", h("b2")),    // annotated: tag object...
		plumbing.NewHashReference("refs/tags/v1.2.0^{}", h("c2")), // ...peeled to its commit
		plumbing.NewHashReference("refs/tags/v1.10.0", h("b3")),
		plumbing.NewHashReference("refs/tags/1.10.0", h("b4")), // same version, other name
		plumbing.NewHashReference("refs/tags/v2.0.0", h("b5")),
		plumbing.NewHashReference("refs/tags/v2.1.0-rc.1", h("b6")),
		plumbing.NewHashReference("refs/tags/release-3", h("b7")),
		plumbing.NewHashReference("refs/pull/1/head", h("d1")),
	}
	branch := func(name string, hash plumbing.Hash) target {
		return target{kind: refBranch, name: name, ref: plumbing.NewBranchReferenceName(name), hash: hash}
	}
	tag := func(name string, hash plumbing.Hash) target {
		return target{kind: refTag, name: name, ref: plumbing.NewTagReferenceName(name), hash: hash}
	}
	tests := map[string]struct {
		ref     string
		refs    []*plumbing.Reference // default: refs
		want    target
		wantErr string
	}{
		"default follows HEAD symref":   {ref: "", want: branch("trunk", h("a1"))},
		"default from HEAD hash":        {ref: "", refs: []*plumbing.Reference{plumbing.NewHashReference("HEAD", h("a2")), refs[1], refs[2]}, want: branch("main", h("a2"))},
		"default without HEAD is main":  {ref: "", refs: refs[1:], want: branch("main", h("a2"))},
		"default main missing":          {ref: "", refs: refs[5:], wantErr: `branch "main" not found`},
		"bare branch":                   {ref: "main", want: branch("main", h("a2"))},
		"bare name: branch beats tag":   {ref: "v1.0.0", want: branch("v1.0.0", h("a3"))},
		"bare name: branch beats range": {ref: "1.x", want: branch("1.x", h("a4"))},
		"bare tag":                      {ref: "v1.10.0", want: tag("v1.10.0", h("b3"))},
		"bare tag not a version":        {ref: "release-3", want: tag("release-3", h("b7"))},
		"annotated tag is peeled":       {ref: "tag:v1.2.0", want: tag("v1.2.0", h("c2"))},
		"tag prefix skips branch":       {ref: "tag:v1.0.0", want: tag("v1.0.0", h("b1"))},
		"bare range":                    {ref: ">=1.0.0 <2.0.0", want: tag("v1.10.0", h("b3"))},
		"semver prefix skips branch":    {ref: "semver:1.x", want: tag("v1.10.0", h("b3"))},
		"semver: numeric not lexical":   {ref: "semver:~1", want: tag("v1.10.0", h("b3"))},
		"semver: peeled":                {ref: "semver:~1.2.0", want: tag("v1.2.0", h("c2"))},
		"semver: prerelease excluded":   {ref: "semver:>=2.0.0", want: tag("v2.0.0", h("b5"))},
		"semver: prerelease opt-in":     {ref: "semver:>=2.1.0-0", want: tag("v2.1.0-rc.1", h("b6"))},
		"semver: equal versions stable": {ref: "semver:=1.10.0", want: tag("v1.10.0", h("b3"))},
		"semver: none":                  {ref: "semver:>=9", wantErr: `tag matching semver range ">=9" not found`},
		"commit ignores refs":           {ref: strings.Repeat("ab", 20), want: target{kind: refCommit, hash: plumbing.NewHash(strings.Repeat("ab", 20))}},
		"unknown bare name":             {ref: "nope", wantErr: `branch or tag "nope" not found`},
		"unknown branch":                {ref: "branch:v1.2.0", wantErr: `branch "v1.2.0" not found`},
		"pull refs are not branches":    {ref: "refs/heads/pull/1/head", wantErr: `branch "pull/1/head" not found`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			spec, err := parseRef(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			in := tc.refs
			if in == nil {
				in = refs
			}
			got, err := resolve(spec, in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, errRefNotFound) {
					t.Fatalf("resolve(%q) error = %v, want errRefNotFound containing %q", tc.ref, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolve(%q): %v", tc.ref, err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(target{})); diff != "" {
				t.Errorf("resolve(%q) (-want +got):\n%s", tc.ref, diff)
			}
		})
	}
}

func TestRevision(t *testing.T) {
	c := h("c0ffee")
	tests := map[string]struct {
		name string
		want string
	}{
		"branch": {name: "main", want: "main@sha1:" + c.String()},
		"tag":    {name: "v1.2.0", want: "v1.2.0@sha1:" + c.String()},
		"commit": {name: "", want: "sha1:" + c.String()},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := revision(tc.name, c); got != tc.want {
				t.Errorf("revision(%q) = %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}
