package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/store"
)

// openPlatform opens the store and a platform client for a one-shot command; its log (errors
// only) goes to stderr.
func openPlatform(ctx context.Context, getenv func(string) string, stderr io.Writer) (*config.Config, *store.Store, *platform.Clients, error) {
	cfg, st, err := openSecretStore(ctx, getenv)
	if err != nil {
		return nil, nil, nil, err
	}
	clients, err := platform.New(platform.Config{
		BaseURL: cfg.UntisAPIURL, Store: st,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		st.Close()
		return nil, nil, nil, err
	}
	return cfg, st, clients, nil
}

// checkTenant is the operator's question "does this school's connection to the platform work?":
// it fetches a client-credentials token with the stored credentials and reads the school and
// its users from OneRoster, saying which step failed and why. It records the outcome like any
// call would: a refusal marks the credentials failing, a success clears the mark, except a mark
// that the OIDC secret was refused (only a sign-in uses, and so proves, the secret).
func checkTenant(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return errors.New("usage: server check-tenant TENANT_ID")
	}
	tenantID := args[0]
	cfg, st, clients, err := openPlatform(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer st.Close()

	tn, err := st.Tenant(ctx, tenantID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("tenant %s is not known here: no activation webhook or manual entry has arrived for it", tenantID)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tenant %s (%s): state %s\n", tn.ID, orDash(tn.Name), tn.State)
	creds, err := st.CurrentCredentials(ctx, tenantID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return fmt.Errorf("tenant %s has no credentials stored (state %s)", tenantID, tn.State)
	case err != nil:
		return err
	}
	fmt.Fprintf(stdout, "credentials: version %d, client id %q, from %s on %s\n",
		creds.Version, creds.ClientID, creds.Source, creds.CreatedAt.UTC().Format(time.RFC3339))
	if tn.CredentialsFailingSince != nil {
		fmt.Fprintf(stdout, "marked failing since %s: %s\n",
			tn.CredentialsFailingSince.UTC().Format(time.RFC3339), tn.CredentialsFailureReason)
	}

	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cl := clients.For(tenantID)
	start := time.Now()
	schools, err := platform.Collect(cl.Schools(ctx, platform.ListOptions{}))
	if err != nil {
		return fmt.Errorf("the platform at %s refused or failed: %w", cfg.UntisAPIURL, err)
	}
	fmt.Fprintf(stdout, "token and OneRoster: ok (%s)\n", time.Since(start).Round(time.Millisecond))
	if tn.CredentialsFailingSince != nil && strings.HasPrefix(tn.CredentialsFailureReason, store.OIDCSecretRefused) {
		fmt.Fprintln(stdout, "note: the password works, but the OIDC secret stays marked as refused until a user's sign-in succeeds with it (only a sign-in uses the secret); if it keeps failing, the school's credentials need a reset in the Untis Platform")
	}
	for _, s := range schools {
		fmt.Fprintf(stdout, "school: %s (%s, sourcedId %s)\n", s.Name, s.Type, s.SourcedID)
	}
	users := map[string]int{}
	total := 0
	for u, err := range cl.Users(ctx, platform.ListOptions{}) {
		if err != nil {
			return fmt.Errorf("listing users: %w", err)
		}
		users[u.Role]++
		total++
	}
	var parts []string
	for _, role := range []string{platform.RoleAdministrator, platform.RoleTeacher, platform.RoleStudent, platform.RoleParent, platform.RoleAide} {
		if users[role] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", role, users[role]))
		}
	}
	fmt.Fprintf(stdout, "users: %d (%s)\n", total, strings.Join(parts, ", "))
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
