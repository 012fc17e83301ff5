package git

import (
	"cmp"
	"encoding/base64"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// Every error a Source returns goes through Source.wrap, which scrubs it
// twice: by class, anything that looks like a credential whatever its value
// (an Authorization header, "Bearer <token>", "password=..."), and by value,
// every credential the Source holds in each spelling a message may carry it
// in. Text a server sends is cut down before it gets that far: an http error
// page is read to maxErrorBody at most and reaches go-git as a short excerpt
// (errorExcerpt), which also drops runs that look like tokens or base64.

const (
	// maxErrorBody is how much of a non-2xx http response is read: enough
	// for a git host's one-line reason, and a server that streams an
	// endless error page costs this much, not MaxFetchSize.
	maxErrorBody = 4 << 10
	// maxExcerpt is the longest excerpt of an error page kept.
	maxExcerpt = 200
	// maxErrorText is the longest error text (after the source and stage)
	// a Source returns: go-git quotes whole pkt-lines (up to 64 KiB) of
	// what a server sent when it cannot parse them.
	maxErrorText = 1 << 10
)

const redacted = "<redacted>"

// credentialClasses match credentials by their shape, whatever the value.
var credentialClasses = []struct {
	re   *regexp.Regexp
	with string
}{
	// An Authorization header as a server echoes it: name, separator,
	// scheme and value ("Authorization: Basic dXNlcjpwYXNz").
	{regexp.MustCompile(`(?i)\b((?:proxy-)?authorization)["']?\s*[:=]\s*["']?(?:(?:basic|bearer|token|digest|negotiate)\s+)?[^\s"'<>,;]*`), "${1}: " + redacted},
	// A scheme and its value on their own.
	{regexp.MustCompile(`(?i)\b(basic|bearer)\s+[A-Za-z0-9+/=._~-]{6,}`), "${1} " + redacted},
	// name=value and name: value pairs of secrets, cookies and tokens.
	{regexp.MustCompile(`(?i)\b([a-z_-]*(?:token|password|passwd|secret|api[_-]?key)|cookie|set-cookie)["']?\s*[:=]\s*["']?[^\s"'<>,;&]+`), "${1}=" + redacted},
}

// tokenRun is a run of base64 (standard or URL) characters long enough to
// be a token or an encoded credential, with a digit and a letter in it so
// that plain words are kept. Only applied to text a server sent.
var tokenRun = regexp.MustCompile(`[A-Za-z0-9+/_=-]{16,}`)

func hasDigitAndLetter(s string) bool {
	return strings.ContainsFunc(s, unicode.IsDigit) && strings.ContainsFunc(s, unicode.IsLetter)
}

// scrubClasses replaces every credential-shaped part of s.
func scrubClasses(s string) string {
	for _, c := range credentialClasses {
		s = c.re.ReplaceAllString(s, c.with)
	}
	return s
}

// htmlTag matches a markup tag, dropped from excerpts as noise.
var htmlTag = regexp.MustCompile(`<[^<>]*>`)

// errorExcerpt turns the start of an error page into one short line:
// markup dropped, anything but printable ASCII turned into a space, spaces
// collapsed, credentials (r's and credential-shaped ones) and token-like
// runs removed, at most maxExcerpt characters.
func errorExcerpt(b []byte, r *redactor) string {
	s := htmlTag.ReplaceAllString(string(b), " ")
	s = strings.Map(func(r rune) rune {
		if r < '!' || r > '~' {
			return ' '
		}
		return r
	}, s)
	s = r.scrub(strings.Join(strings.Fields(s), " "))
	s = tokenRun.ReplaceAllStringFunc(s, func(run string) string {
		if hasDigitAndLetter(run) {
			return redacted
		}
		return run
	})
	return truncate(s, maxExcerpt)
}

// truncate cuts s to n bytes at most, on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utfStart(s[cut]) {
		cut--
	}
	return s[:cut] + "... (truncated)"
}

func utfStart(b byte) bool { return b&0xc0 != 0x80 }

// redactor replaces known credentials in every spelling a message may carry:
// as is, base64 (with and without padding, standard and URL alphabets),
// URL-escaped, Go-quoted. Basic-auth pairs are listed as "user:password",
// which is what a server echoes decoded and what its header encodes.
type redactor struct {
	spellings []string // longest first, so no spelling is cut by a shorter one
}

func newRedactor(secrets ...string) *redactor {
	var all []string
	for _, v := range secrets {
		if v == "" {
			continue
		}
		all = append(all, v, url.QueryEscape(v), url.PathEscape(v), strings.Trim(strconv.Quote(v), `"`))
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			all = append(all, enc.EncodeToString([]byte(v)))
		}
	}
	slices.SortFunc(all, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	return &redactor{spellings: slices.Compact(all)}
}

// scrub removes credentials from s, by class then by value, turns control
// characters into spaces and cuts the result to maxErrorText.
func (r *redactor) scrub(s string) string {
	s = strings.Map(func(c rune) rune {
		if unicode.IsControl(c) {
			return ' '
		}
		return c
	}, s)
	s = scrubClasses(s)
	for _, v := range r.spellings {
		s = strings.ReplaceAll(s, v, redacted)
	}
	for strings.Contains(s, redacted+redacted) { // an already scrubbed text, scrubbed again
		s = strings.ReplaceAll(s, redacted+redacted, redacted)
	}
	return truncate(s, maxErrorText)
}
