package git

import (
	"errors"
	"fmt"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// errUnverified is wrapped by verify errors: the commit is not signed by a
// trusted key. That is permanent for the commit, unlike a network error.
var errUnverified = errors.New("commit signature not verified")

// checkKeys parses each armored key ring, so a bad key fails New rather
// than every Fetch.
func checkKeys(keys []string) error {
	for i, k := range keys {
		ring, err := openpgp.ReadArmoredKeyRing(strings.NewReader(k))
		if err != nil {
			return fmt.Errorf("key %d: %w", i+1, err)
		}
		if len(ring) == 0 {
			return fmt.Errorf("key %d: no public key in it", i+1)
		}
	}
	return nil
}

// verifyCommit checks that c carries an OpenPGP signature by one of keys.
func verifyCommit(c *object.Commit, keys []string) error {
	if strings.TrimSpace(c.PGPSignature) == "" {
		return fmt.Errorf("commit %s is not signed: %w", c.Hash, errUnverified)
	}
	errs := make([]error, 0, len(keys))
	for i, k := range keys {
		_, err := c.Verify(k)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("key %d: %w", i+1, err))
	}
	return fmt.Errorf("commit %s: not signed by any of the %d keys: %w: %w", c.Hash, len(keys), errUnverified, errors.Join(errs...))
}
