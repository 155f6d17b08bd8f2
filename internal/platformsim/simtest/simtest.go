// Package simtest starts the Untis Platform simulator for tests. It lives
// apart from platformsim so that the simulator binary does not link the
// testing package.
package simtest

import (
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/untis-partner/server/internal/platformsim"
)

// NewServer starts a simulator on an httptest server, points its base URL
// at it and closes it when the test ends. Without cfg.Logger it logs
// nothing, so parallel tests stay quiet.
//
// Simulators share one default webhook key and one default signing key
// per process; set cfg.FreshKeys (or give keys) for a platform whose keys
// no other simulator uses.
func NewServer(t testing.TB, cfg platformsim.Config) (*platformsim.Sim, *httptest.Server) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sim, err := platformsim.New(cfg)
	if err != nil {
		t.Fatalf("platformsim.New: %v", err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	sim.SetBaseURL(srv.URL)
	return sim, srv
}
