package platformsim

import (
	"log/slog"
	"net/http/httptest"
	"testing"
)

// NewTestServer starts a simulator on an httptest server, points its base
// URL at it and closes it when the test ends. Without cfg.Logger it logs
// nothing, so parallel tests stay quiet.
func NewTestServer(t testing.TB, cfg Config) (*Sim, *httptest.Server) {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	sim, err := New(cfg)
	if err != nil {
		t.Fatalf("platformsim.New: %v", err)
	}
	srv := httptest.NewServer(sim.Handler())
	t.Cleanup(srv.Close)
	sim.SetBaseURL(srv.URL)
	return sim, srv
}
