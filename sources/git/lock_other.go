//go:build !unix

package git

import "context"

// lockCache is a no-op where flock is unavailable: there a cache directory
// must not be shared by two processes.
func lockCache(context.Context, string) (func(), error) { return func() {}, nil }
