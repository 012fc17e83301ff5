package dir

import (
	"path"
	"strings"
)

// rule is one pattern of a .gitignore, as gitignore(5) describes it.
//
// The matching is done here rather than with go-git's
// plumbing/format/gitignore because that matcher answers for a path and
// its ancestors at once, as a walk that does not skip ignored directories
// needs, where git's answers for the path alone. Under a walk that skips
// them the difference shows both ways: go-git ignores the directory config
// itself for config/**, so that !config/prod.yaml could not re-include
// the file as git does, and for the idiom *, !*/, !*.yaml it keeps every
// file below the top level, where git keeps only the .yaml files.
type rule struct {
	elems    []string // the pattern's /-separated elements; ** stands for any number of them
	negate   bool     // !pattern: re-include what an earlier pattern ignores
	dirOnly  bool     // pattern/: matches directories only
	anchored bool     // a / at the start or in the middle: matched against the path below the .gitignore's directory, else the name alone
}

// ruleSet is the rules of the .gitignore of a directory depth elements
// below the tree's root.
type ruleSet struct {
	depth int
	rules []rule
}

// parseIgnore returns the rules of a .gitignore in order, read as git
// reads them: one pattern a line, skipping blank lines and lines that
// start with #, dropping a line's CR and unescaped trailing spaces and the
// file's leading UTF-8 byte order mark.
func parseIgnore(content string) []rule {
	content = strings.TrimPrefix(content, "\ufeff")
	var rules []rule
	for line := range strings.Lines(content) {
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if strings.HasPrefix(line, "#") {
			continue
		}
		if r, ok := parseRule(line); ok {
			rules = append(rules, r)
		}
	}
	return rules
}

// parseRule parses one line of a .gitignore. It reports false for a line
// that holds no pattern.
func parseRule(line string) (rule, bool) {
	for strings.HasSuffix(line, " ") && !strings.HasSuffix(line, `\ `) {
		line = line[:len(line)-1]
	}
	var r rule
	if rest, ok := strings.CutPrefix(line, "!"); ok {
		r.negate, line = true, rest
	}
	if rest, ok := strings.CutSuffix(line, "/"); ok {
		r.dirOnly, line = true, rest
	}
	r.anchored = strings.Contains(line, "/")
	line = strings.TrimPrefix(line, "/")
	if line == "" {
		return rule{}, false
	}
	r.elems = strings.Split(line, "/")
	for i, e := range r.elems {
		r.elems[i] = posixNegation(e)
	}
	return r, true
}

// posixNegation rewrites the class negation [!...] of fnmatch(3), which
// git takes, as path.Match's [^...].
func posixNegation(elem string) string {
	if !strings.Contains(elem, "[!") {
		return elem
	}
	b := []byte(elem)
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == '\\':
			i++ // an escaped character is literal
		case b[i] == '[' && i+1 < len(b) && b[i+1] == '!':
			b[i+1] = '^'
		}
	}
	return string(b)
}

// match reports whether r matches the entry at rel, its path elements
// below the directory of r's .gitignore.
func (r *rule) match(rel []string, isDir bool) bool {
	if r.dirOnly && !isDir {
		return false
	}
	if !r.anchored {
		return matchElem(r.elems[0], rel[len(rel)-1])
	}
	return matchElems(r.elems, rel)
}

// matchElems matches pattern elements against path elements, a ** element
// against any number of them; a trailing ** needs at least one, since
// dir/** matches everything inside dir but not dir itself.
func matchElems(pattern, elems []string) bool {
	for len(pattern) > 0 {
		if pattern[0] == "**" {
			if len(pattern) == 1 {
				return len(elems) > 0
			}
			for i := range len(elems) + 1 {
				if matchElems(pattern[1:], elems[i:]) {
					return true
				}
			}
			return false
		}
		if len(elems) == 0 || !matchElem(pattern[0], elems[0]) {
			return false
		}
		pattern, elems = pattern[1:], elems[1:]
	}
	return len(elems) == 0
}

// matchElem matches one element; a malformed pattern matches nothing.
func matchElem(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return ok && err == nil
}

// ignored reports whether the entry at the path elements elems is ignored
// by sets, the rules of the .gitignore files of the directories above it,
// shallowest first. As in git, the last rule that matches decides, a
// deeper file's rules coming after a shallower one's. An entry below an
// ignored directory is never asked about: the walk skips the directory
// whole, so that nothing below it can be re-included, as in git.
func ignored(sets []ruleSet, elems []string, isDir bool) bool {
	for i := len(sets) - 1; i >= 0; i-- {
		s := &sets[i]
		rel := elems[s.depth:]
		for j := len(s.rules) - 1; j >= 0; j-- {
			if s.rules[j].match(rel, isDir) {
				return !s.rules[j].negate
			}
		}
	}
	return false
}
