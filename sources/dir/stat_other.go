//go:build !linux && !darwin

package dir

import (
	"io/fs"
	"os"
)

// openFlags open a file to hash.
const openFlags = os.O_RDONLY

// keyOf reports no key: without a ctime and an inode, the size and mtime
// alone cannot tell an edit that kept both, so every Fetch reads every
// file.
func keyOf(fs.FileInfo) (statKey, bool) { return statKey{}, false }
