package store_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/untis-partner/server/internal/store"
)

func addCreds(t *testing.T, s *store.Store, tenantID, password string) int {
	t.Helper()
	v, err := s.AddCredentials(context.Background(), tenantID, store.Credentials{
		ClientID: "app", Secret: "s-" + password, Password: password, Source: "webhook"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCredentialsFailingMark(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t, key("k", 1)))
	for id, state := range map[string]string{"a": store.StateActive, "b": store.StatePendingSetup, "c": store.StateDeactivated} {
		if err := s.UpsertTenant(ctx, id, state, ""); err != nil {
			t.Fatal(err)
		}
		addCreds(t, s, id, "p1")
	}
	at := time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC)

	if ok, err := s.MarkCredentialsFailing(ctx, "nobody", 1, "x", at); ok || err != nil {
		t.Errorf("unknown tenant: %v, %v", ok, err)
	}
	if ok, err := s.MarkCredentialsFailing(ctx, "a", 1, "invalid_client", at); !ok || err != nil {
		t.Fatalf("mark: %v, %v", ok, err)
	}
	// A later refusal keeps the start of the failure and takes the newest reason.
	if ok, _ := s.MarkCredentialsFailing(ctx, "a", 1, "invalid_grant", at.Add(time.Minute)); !ok {
		t.Fatal("second mark not written")
	}
	tn, _ := s.Tenant(ctx, "a")
	if tn.CredentialsFailingSince == nil || !tn.CredentialsFailingSince.Equal(at) || tn.CredentialsFailureReason != "invalid_grant" {
		t.Errorf("mark = %v %q", tn.CredentialsFailingSince, tn.CredentialsFailureReason)
	}
	// Marks are per tenant.
	if tb, _ := s.Tenant(ctx, "b"); tb.CredentialsFailingSince != nil {
		t.Error("marking a marked b")
	}
	for _, id := range []string{"b", "c"} {
		if _, err := s.MarkCredentialsFailing(ctx, id, 1, "x", at); err != nil {
			t.Fatal(err)
		}
	}
	// Deactivated schools do not count.
	if n, err := s.CountCredentialsFailing(ctx); n != 2 || err != nil {
		t.Errorf("CountCredentialsFailing = %d, %v; want 2", n, err)
	}
	if err := s.ClearCredentialsFailing(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if tn, _ := s.Tenant(ctx, "a"); tn.CredentialsFailingSince != nil || tn.CredentialsFailureReason != "" {
		t.Errorf("not cleared: %v %q", tn.CredentialsFailingSince, tn.CredentialsFailureReason)
	}
	if tn, _ := s.Tenant(ctx, "b"); tn.CredentialsFailingSince == nil {
		t.Error("clearing a cleared b")
	}

	// A refusal of version 1 arriving after version 2 was stored (a RESET raced it) is not
	// written: the new credentials are not known to fail.
	addCreds(t, s, "a", "p2")
	if ok, err := s.MarkCredentialsFailing(ctx, "a", 1, "stale", at); ok || err != nil {
		t.Errorf("stale mark: %v, %v", ok, err)
	}
	if tn, _ := s.Tenant(ctx, "a"); tn.CredentialsFailingSince != nil {
		t.Error("a stale refusal marked the new credentials")
	}

	// The reason quotes the platform: it is bounded and stays valid UTF-8.
	long := strings.Repeat("ü", 600)
	if _, err := s.MarkCredentialsFailing(ctx, "a", 2, long, at); err != nil {
		t.Fatal(err)
	}
	if tn, _ := s.Tenant(ctx, "a"); len(tn.CredentialsFailureReason) > 520 || !utf8.ValidString(tn.CredentialsFailureReason) {
		t.Errorf("reason of %d bytes, valid UTF-8: %v", len(tn.CredentialsFailureReason), utf8.ValidString(tn.CredentialsFailureReason))
	}
}

func TestActiveCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t, key("k", 1)))
	for id, state := range map[string]string{"a": store.StateActive, "p": store.StatePendingSetup, "d": store.StateDeactivated, "e": store.StateActive} {
		if err := s.UpsertTenant(ctx, id, state, ""); err != nil {
			t.Fatal(err)
		}
		if id != "e" {
			addCreds(t, s, id, "p1")
		}
	}
	addCreds(t, s, "a", "p2")
	if c, err := s.ActiveCredentials(ctx, "a"); err != nil || c.Password != "p2" || c.Version != 2 {
		t.Errorf("active: %v, %v", c, err)
	}
	if c, err := s.ActiveCredentials(ctx, "p"); err != nil || c.Password != "p1" {
		t.Errorf("pending setup: %v, %v", c, err)
	}
	for _, id := range []string{"d", "e", "nobody"} {
		if _, err := s.ActiveCredentials(ctx, id); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", id, err)
		}
	}
	// CurrentCredentials still reads a deactivated school's (for the operator).
	if _, err := s.CurrentCredentials(ctx, "d"); err != nil {
		t.Errorf("CurrentCredentials(d) = %v", err)
	}
}

// recorder is a TenantChangeHandler that remembers what it heard.
type recorder struct {
	mu                   sync.Mutex
	changed              []string
	resyncs, disconnects int
}

func (r *recorder) handler() store.TenantChangeHandler {
	return store.TenantChangeHandler{
		Changed:      func(id string) { r.mu.Lock(); r.changed = append(r.changed, id); r.mu.Unlock() },
		Resync:       func() { r.mu.Lock(); r.resyncs++; r.mu.Unlock() },
		Disconnected: func() { r.mu.Lock(); r.disconnects++; r.mu.Unlock() },
		PingEvery:    30 * time.Millisecond,
	}
}

func (r *recorder) snapshot() (changed []string, resyncs, disconnects int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.changed...), r.resyncs, r.disconnects
}

func TestListenTenantChanges(t *testing.T) {
	t.Parallel()
	s := newStore(t, keyring(t, key("k", 1)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &recorder{}
	done := make(chan struct{})
	go func() {
		s.ListenTenantChanges(ctx, slog.New(slog.DiscardHandler), rec.handler())
		close(done)
	}()
	waitFor(t, "the first resync", func() bool { _, r, _ := rec.snapshot(); return r == 1 })
	// Several ping intervals pass on a quiet connection without losing it.
	time.Sleep(150 * time.Millisecond)

	bg := context.Background()
	if err := s.UpsertTenant(bg, "t1", store.StateActive, ""); err != nil {
		t.Fatal(err)
	}
	addCreds(t, s, "t1", "p")
	// A rolled-back change tells nobody: AddCredentials for an unknown tenant fails.
	if _, err := s.AddCredentials(bg, "nobody", store.Credentials{ClientID: "x", Secret: "y", Password: "z"}); err == nil {
		t.Fatal("credentials for an unknown tenant were stored")
	}
	waitFor(t, "two notifications", func() bool { c, _, _ := rec.snapshot(); return len(c) >= 2 })
	if c, r, d := rec.snapshot(); strings.Join(c, ",") != "t1,t1" || r != 1 || d != 0 {
		t.Errorf("heard %v, %d resyncs, %d disconnects", c, r, d)
	}

	// The connection is killed: the listener reconnects and resyncs, since notifications sent
	// meanwhile are lost.
	if _, err := s.Pool().Exec(bg, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND application_name = 'untis-partner-server tenant listener'`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reconnect", func() bool { _, r, d := rec.snapshot(); return r == 2 && d == 1 })
	if err := s.UpsertTenant(bg, "t2", store.StateDeactivated, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a notification after the reconnect", func() bool { c, _, _ := rec.snapshot(); return len(c) == 3 && c[2] == "t2" })

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("ListenTenantChanges did not return after cancel")
	}
	if _, _, d := rec.snapshot(); d != 2 {
		t.Errorf("disconnects = %d, want 2 (the kill and the stop)", d)
	}
}
