package dir

import (
	"io/fs"
	"syscall"
)

// openFlags open a file to hash. O_NONBLOCK keeps the open of a file that
// was replaced by a pipe since it was listed from waiting for a writer;
// it changes nothing for a regular file.
const openFlags = syscall.O_RDONLY | syscall.O_NONBLOCK

// keyOf returns the stat key of fi, a regular file's.
func keyOf(fi fs.FileInfo) (statKey, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return statKey{}, false
	}
	return statKey{
		size:  fi.Size(),
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
		ino:   uint64(st.Ino),
		dev:   uint64(st.Dev),
	}, true
}
