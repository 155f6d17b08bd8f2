package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/onboard"
	"github.com/untis-partner/server/internal/store"
	"github.com/untis-partner/server/web"
)

// maxCredentialsInput bounds what activate reads from stdin.
const maxCredentialsInput = 16 << 10

// activate is manual activation from the command line (onboarding scenario 3 for an operator):
// the credentials the school admin copied from WebUntis are read as JSON from stdin (never from
// argv, which other users of the machine can see), proved with the platform by fetching a
// client-credentials token, and only then stored. The school becomes active, or pending setup
// when SETUP_FIELDS_FILE is set.
func activate(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return errors.New(`usage: server activate TENANT_ID < credentials.json   ({"clientId": "...", "secret": "...", "password": "..."})`)
	}
	tenantID := args[0]
	if !store.ValidTenantID(tenantID) {
		return fmt.Errorf("activate: %q is not a tenant id (1 to 64 letters, digits, - or _)", tenantID)
	}
	var in struct {
		ClientID string `json:"clientId"`
		Secret   string `json:"secret"`
		Password string `json:"password"`
	}
	if stdin == nil {
		return errors.New("activate: the credentials are read from stdin as JSON")
	}
	dec := json.NewDecoder(io.LimitReader(stdin, maxCredentialsInput))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		// The decoder's message may quote the input: keep only our own words.
		return errors.New(`activate: stdin is not the expected JSON {"clientId": "...", "secret": "...", "password": "..."}`)
	}
	cfg, st, clients, err := openPlatform(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	res, err := onboard.New(st, clients, cfg.SetupFields, nil).Activate(ctx,
		onboard.Credentials{TenantID: tenantID, ClientID: in.ClientID, Secret: in.Secret, Password: in.Password},
		store.SourceOperator, "cli")
	var (
		inputErr *onboard.InputError
		proofErr *onboard.ProofError
	)
	// The command line speaks English: the catalogs' source language.
	english := func(t i18n.Text) string { return i18n.English(web.Locales()).MustLocalize(t) }
	switch {
	case errors.As(err, &inputErr):
		var missing []string
		for _, field := range []string{onboard.FieldClientID, onboard.FieldSecret, onboard.FieldPassword} {
			if p, ok := inputErr.Problems[field]; ok {
				missing = append(missing, field+": "+english(p))
			}
		}
		return fmt.Errorf("activate: %s", strings.Join(missing, " "))
	case errors.As(err, &proofErr):
		return fmt.Errorf("activate: nothing stored: tenant %s: %s", tenantID, english(proofErr.Message))
	case err != nil:
		return fmt.Errorf("activate: %w", err)
	}
	fmt.Fprintf(stdout, "tenant %s: credentials proved with the platform and stored (version %d); state %s\n", tenantID, res.Version, res.State)
	fmt.Fprintln(stdout, "the OIDC secret is proved at the first sign-in")
	return nil
}
