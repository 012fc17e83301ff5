package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// modulePath is the module whose go.mod marks the repository root. The
// nested test/tools module has a go.mod of its own and must not match.
const modulePath = "github.com/gitopsd/gitopsd"

// RepoRoot returns the repository root: the nearest directory at or above
// the working directory whose go.mod declares module
// github.com/gitopsd/gitopsd. Tests run in their package's directory, so
// they use it to find base/ and overlays/.
func RepoRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		ok, err := declaresModule(filepath.Join(dir, "go.mod"), modulePath)
		if err != nil {
			return "", fmt.Errorf("repo root: %w", err)
		}
		if ok {
			return dir, nil
		}
		if filepath.Dir(dir) == dir {
			return "", fmt.Errorf("repo root: no go.mod for module %s at or above %s", modulePath, wd)
		}
	}
}

// declaresModule reports whether the go.mod file at path declares module
// want. A missing file is not an error.
func declaresModule(path, want string) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == want, nil
		}
	}
	return false, sc.Err()
}
