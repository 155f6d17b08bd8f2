package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/sso"
	"github.com/untis-partner/server/internal/store"
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
	if !sso.ValidTenantID(tenantID) {
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
	in.ClientID, in.Secret, in.Password = strings.TrimSpace(in.ClientID), strings.TrimSpace(in.Secret), strings.TrimSpace(in.Password)
	var missing []string
	for name, v := range map[string]string{"clientId": in.ClientID, "secret": in.Secret, "password": in.Password} {
		if v == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("activate: missing %s", strings.Join(missing, ", "))
	}

	cfg, st, clients, err := openPlatform(ctx, getenv, stderr)
	if err != nil {
		return err
	}
	defer st.Close()
	if err := clients.ProveCredentials(ctx, tenantID, in.ClientID, in.Secret, in.Password); err != nil {
		var swapped *platform.SwappedError
		var te *platform.TokenError
		switch {
		case errors.As(err, &swapped):
			return fmt.Errorf("activate: nothing stored: the platform accepts the secret as the password: the two values are swapped")
		case errors.As(err, &te):
			return fmt.Errorf("activate: nothing stored: the platform refused the credentials for tenant %s: %s", tenantID, te.Hint())
		}
		return fmt.Errorf("activate: nothing stored: %w", err)
	}
	state := store.StateActive
	if cfg.SetupFieldsFile != "" {
		state = store.StatePendingSetup
	}
	version, state, err := st.ActivateWithCredentials(ctx, tenantID, state, store.Credentials{
		ClientID: in.ClientID, Secret: in.Secret, Password: in.Password, Source: "operator",
	}, "cli")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "tenant %s: credentials proved with the platform and stored (version %d); state %s\n", tenantID, version, state)
	fmt.Fprintln(stdout, "the OIDC secret is proved at the first sign-in")
	return nil
}
