package platformsim_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
)

// TestStateFileSurvivesRestart: with a state file, a restarted simulator still has the
// credentials and app status its lifecycle actions gave each demo school (as the real platform
// does), so they keep matching what the partner stored; without one it starts from the
// credentials derived from DemoSeed.
func TestStateFileSurvivesRestart(t *testing.T) {
	t.Parallel()
	partner := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer partner.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "sim-state.json")
	seed := []byte("demo seed")
	start := func(stateFile string) *platformsim.Sim {
		t.Helper()
		sim, err := platformsim.New(platformsim.Config{PartnerURL: partner.URL, DemoSeed: seed, StateFile: stateFile, BaseURL: "http://127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		sim.SeedDemo()
		return sim
	}
	creds := func(sim *platformsim.Sim, id string) [3]string {
		ti, ok := sim.Tenant(id)
		if !ok {
			t.Fatalf("no school %s", id)
		}
		return [3]string{ti.Secret, ti.Password, ti.Status}
	}
	ctx := context.Background()

	first := start(file)
	derived := creds(first, "1001")
	if _, err := first.Activate(ctx, "1001"); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Reset(ctx, "1001"); err != nil {
		t.Fatal(err)
	}
	if _, err := first.Deactivate(ctx, "1002", false); err != nil {
		t.Fatal(err)
	}
	want1001, want1002 := creds(first, "1001"), creds(first, "1002")
	if want1001 == derived {
		t.Fatal("the reset did not change the credentials")
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("state file: %v (%v), want mode 0600", fi, err)
	}

	again := start(file)
	if got := creds(again, "1001"); got != want1001 {
		t.Errorf("1001 after a restart: %q, want the reset's %q", got, want1001)
	}
	if got := creds(again, "1002"); got != want1002 || got[2] != platformsim.StatusDeactivated {
		t.Errorf("1002 after a restart: %q, want %q (deactivated)", got, want1002)
	}
	// The restored credentials are the ones the platform honours.
	cid, sec, pw, _ := again.Credentials("1001")
	if sec != want1001[0] || pw != want1001[1] || cid != platformsim.DefaultClientID {
		t.Errorf("Credentials(1001) = %s/%s/%s", cid, sec, pw)
	}

	// A reactivation without webhook is remembered as well.
	if err := again.ReactivateWithoutWebhook("1002"); err != nil {
		t.Fatal(err)
	}
	quiet := creds(again, "1002")
	if third := start(file); creds(third, "1002") != quiet {
		t.Errorf("1002 after a quiet reactivation and a restart: %q, want %q", creds(third, "1002"), quiet)
	}

	// Without a state file a restart forgets: the derived credentials, not activated.
	if got := creds(start(""), "1001"); got != [3]string{derived[0], derived[1], platformsim.StatusNew} {
		t.Errorf("without a state file: %q, want the derived credentials, new", got)
	}
}

// TestStateFileRefusedWhenBroken: a state file that does not parse stops the simulator (it
// would otherwise bring back credentials the partner no longer has), saying which file.
func TestStateFileRefusedWhenBroken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"not JSON":   "{",
		"no secret":  `{"tenants":{"1001":{"status":"active","secret":"","password":"p"}}}`,
		"bad status": `{"tenants":{"1001":{"status":"sleeping","secret":"s","password":"p"}}}`,
	} {
		file := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".json")
		if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := platformsim.New(platformsim.Config{StateFile: file})
		if err == nil || !strings.Contains(err.Error(), file) {
			t.Errorf("%s: %v, want an error naming the file", name, err)
		}
	}
}
