package main

import (
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
)

// TestLoadOrCreateKeyRace starts many "processes" on one missing key file
// at once: every one must get the same complete key, never a parse error
// from a half-written file, and no temporary file may stay behind.
func TestLoadOrCreateKeyRace(t *testing.T) {
	t.Parallel()
	const rounds, racers = 40, 16
	for round := range rounds {
		dir := t.TempDir()
		path := filepath.Join(dir, "signing.pem")
		start := make(chan struct{})
		ders := make([][]byte, racers)
		errs := make([]error, racers)
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				<-start
				k, err := loadOrCreateKey(path, platformsim.ES256)
				if err != nil {
					errs[i] = err
					return
				}
				ders[i], errs[i] = x509.MarshalPKCS8PrivateKey(k)
			})
		}
		close(start)
		wg.Wait()
		for i := range racers {
			if errs[i] != nil {
				t.Fatalf("round %d, racer %d: %v", round, i, errs[i])
			}
			if string(ders[i]) != string(ders[0]) {
				t.Fatalf("round %d: racers %d and 0 got different keys", round, i)
			}
		}
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		if len(entries) != 1 || entries[0].Name() != "signing.pem" {
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			t.Fatalf("round %d: directory holds %v, want only signing.pem", round, names)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("round %d: key file mode %v (%v)", round, fi.Mode(), err)
		}
	}
}

// TestBinaryDoesNotLinkTesting guards against test helpers creeping back
// into non-test code of the simulator.
func TestBinaryDoesNotLinkTesting(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.CommandContext(t.Context(), goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "testing" || strings.HasPrefix(pkg, "testing/") || strings.HasSuffix(pkg, "/simtest") {
			t.Errorf("cmd/platformsim links %s", pkg)
		}
	}
}
