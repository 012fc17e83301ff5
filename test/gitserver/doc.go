// Package gitserver serves directories of git repositories to tests, with
// the real git binary doing the protocol work: over HTTP (git http-backend
// behind net/http/cgi; go-git's own server cannot serve shallow fetches) and
// over SSH (an in-process golang.org/x/crypto/ssh server running
// git-upload-pack and git-receive-pack). The sources/git tests and the
// end-to-end tests of test/e2e fetch from it; each server stops when its
// test ends.
package gitserver
