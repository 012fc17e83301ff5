package git

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	gogit "github.com/go-git/go-git/v5"
	"github.com/google/go-cmp/cmp"
)

// newPGPKey returns a signing entity and its armored public key.
func newPGPKey(t *testing.T, name string) (*openpgp.Entity, string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@example.com", &packet.Config{Algorithm: packet.PubKeyAlgoEdDSA})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := armor.Encode(&buf, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return e, buf.String()
}

func signedBy(e *openpgp.Entity) func(*gogit.CommitOptions) {
	return func(o *gogit.CommitOptions) { o.SignKey = e }
}

func TestFetchVerifiesSignatures(t *testing.T) {
	trusted, trustedPub := newPGPKey(t, "trusted")
	other, _ := newPGPKey(t, "other")
	// A ring that lacks the signer must not count: unrelated comes first.
	_, unrelatedPub := newPGPKey(t, "unrelated")
	tests := map[string]struct {
		sign    func(*gogit.CommitOptions)
		wantErr string // empty: the commit is published
	}{
		"signed by a trusted key": {sign: signedBy(trusted)},
		"unsigned":                {sign: func(*gogit.CommitOptions) {}, wantErr: "is not signed"},
		"signed by another key":   {sign: signedBy(other), wantErr: "not signed by any of the 2 keys"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, Options{VerifyKeys: []string{unrelatedPub, trustedPub}})
			f.up.write("app.yaml", "v: 2\n", 0o644)
			h := f.up.commit("change", tc.sign)

			got, err := f.src.Fetch(t.Context())

			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if diff := cmp.Diff(wantSnapshot(f, "main", h), got); diff != "" {
					t.Errorf("snapshot (-want +got):\n%s", diff)
				}
				return
			}
			if !errors.Is(err, errUnverified) || !strings.Contains(err.Error(), "verify: ") || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Fetch error = %v, want a verify error containing %q", err, tc.wantErr)
			}
			if _, err := os.Stat(f.src.snapshotDir(h)); !os.IsNotExist(err) {
				t.Errorf("unverified commit was published (stat: %v)", err)
			}
		})
	}
}

func TestNewRejectsBadVerifyKey(t *testing.T) {
	_, err := New(Options{URL: "https://example.com/r.git", VerifyKeys: []string{"not a key"}})
	if err == nil || !strings.Contains(err.Error(), "verify keys: key 1") {
		t.Errorf("New error = %v, want one naming the bad key", err)
	}
}
