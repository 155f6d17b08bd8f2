package store_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/store"
)

// Helpers of the lifecycle, setup, operator, console and limit tests carry the prefix lc, so they
// cannot collide with the helpers of the package's other test files.

// lcReceipt is the ledger entry of a webhook body.
func lcReceipt(tenant, event, body string) store.Receipt {
	sum := sha256.Sum256([]byte(body))
	return store.Receipt{TenantID: tenant, BodySHA256: sum[:], EventType: event}
}

// lcCreds are credentials whose secret and password are distinctive strings, so a scan of the
// database can look for them.
func lcCreds(tag string) store.Credentials {
	return store.Credentials{ClientID: "client-" + tag, Secret: lcSecret(tag), Password: lcPassword(tag)}
}

func lcSecret(tag string) string   { return "SECRET-" + tag + "-q7Xv" }
func lcPassword(tag string) string { return "PASSWORD-" + tag + "-k9Zw" }

func lcInfo(tenant string) store.TenantInfo {
	return store.TenantInfo{Name: "School " + tenant, Host: tenant + ".example", Country: "AT", Region: "Wien",
		Language: "de", ActivatorEmail: "admin@" + tenant + ".example", ActivatorUsername: "admin-" + tenant,
		SchoolEmail: "office@" + tenant + ".example", SchoolPhone: "+43 1 " + tenant}
}

// lcTenantKey renders every field of a tenant (the times behind pointers included) for comparison.
func lcTenantKey(tn store.Tenant) string {
	deref := func(p *time.Time) string {
		if p == nil {
			return "nil"
		}
		return p.UTC().Format(time.RFC3339Nano)
	}
	failing, webhook := deref(tn.CredentialsFailingSince), deref(tn.LastWebhookAt)
	tn.CredentialsFailingSince, tn.LastWebhookAt = nil, nil
	return fmt.Sprintf("%+v failing=%s webhook=%s", tn, failing, webhook)
}

// lcNeeds is a SetupCheck that wants a non-empty answer to field.
func lcNeeds(field string) store.SetupCheck {
	return func(answers map[string]string) bool { return answers[field] != "" }
}

func lcNever(map[string]string) bool { return false }

// lcCredentialsEvent applies a credentials webhook and fails the test on an error.
func lcCredentialsEvent(t *testing.T, s *store.Store, tenant, event, body string, check store.SetupCheck) store.Outcome {
	t.Helper()
	out, err := s.ReceiveCredentials(context.Background(), lcReceipt(tenant, event, body), lcCreds(body), lcInfo(tenant), check)
	if err != nil {
		t.Fatalf("%s for %s: %v", event, tenant, err)
	}
	return out
}

// lcEndEvent applies a DEACTIVATION (or, with deletion, DELETION) webhook.
func lcEndEvent(t *testing.T, s *store.Store, tenant, body string, deletion bool) store.Outcome {
	t.Helper()
	event := "DEACTIVATION"
	if deletion {
		event = "DELETION"
	}
	out, err := s.ReceiveDeactivation(context.Background(), lcReceipt(tenant, event, body), deletion, "CONTRACT_ENDED", "reason "+body)
	if err != nil {
		t.Fatalf("%s for %s: %v", event, tenant, err)
	}
	return out
}

func lcCount(t *testing.T, s *store.Store, query string, args ...any) int {
	t.Helper()
	var n int
	if err := s.Pool().QueryRow(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

func lcState(t *testing.T, s *store.Store, tenant string) string {
	t.Helper()
	tn, err := s.Tenant(context.Background(), tenant)
	if errors.Is(err, store.ErrNotFound) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return tn.State
}

func lcVersions(t *testing.T, s *store.Store, tenant string) int {
	t.Helper()
	return lcCount(t, s, `SELECT count(*) FROM tenant_credentials WHERE tenant_id = $1`, tenant)
}

func lcAuditCount(t *testing.T, s *store.Store, tenant string) int {
	t.Helper()
	return lcCount(t, s, `SELECT count(*) FROM audit_events WHERE tenant_id = $1`, tenant)
}

func lcReceipts(t *testing.T, s *store.Store, tenant string) int {
	t.Helper()
	return lcCount(t, s, `SELECT count(*) FROM webhook_receipts WHERE tenant_id = $1`, tenant)
}

func lcTrail(t *testing.T, s *store.Store, tenant string) []store.AuditEvent {
	t.Helper()
	trail, err := s.AuditTrail(context.Background(), tenant, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return trail
}

// lcLastAudit is the school's newest audit event.
func lcLastAudit(t *testing.T, s *store.Store, tenant string) store.AuditEvent {
	t.Helper()
	trail := lcTrail(t, s, tenant)
	if len(trail) == 0 {
		t.Fatalf("tenant %s has no audit event", tenant)
	}
	return trail[0]
}

// lcTenantTables walks the schema: every table of the public schema with a tenant_id column. A
// table added later is found without touching the tests.
func lcTenantTables(t *testing.T, s *store.Store) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), `
		SELECT c.table_name FROM information_schema.columns c
		JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
		WHERE c.table_schema = 'public' AND c.column_name = 'tenant_id' AND tb.table_type = 'BASE TABLE'
		ORDER BY c.table_name`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	// A sanity check that the walk sees the schema at all.
	for _, must := range []string{"tenants", "tenant_credentials", "tenant_settings", "users", "sessions", "auth_flows", "webhook_receipts", "audit_events"} {
		if !slices.Contains(tables, must) {
			t.Fatalf("schema walk found %v, without %s", tables, must)
		}
	}
	return tables
}

// lcRowsPerTable counts the tenant's rows in every table that has a tenant_id column.
func lcRowsPerTable(t *testing.T, s *store.Store, tenant string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, tbl := range lcTenantTables(t, s) {
		out[tbl] = lcCount(t, s, `SELECT count(*) FROM `+pgx.Identifier{tbl}.Sanitize()+` WHERE tenant_id = $1`, tenant)
	}
	return out
}

// lcScanForPlaintext looks for each needle in every column of every table of the public schema
// (text, jsonb, bytea, anything: cast to text; bytea searched as bytes) and reports where it is.
func lcScanForPlaintext(t *testing.T, s *store.Store, needles []string) {
	t.Helper()
	ctx := context.Background()
	rows, err := s.Pool().Query(ctx, `
		SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c
		JOIN information_schema.tables tb ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
		WHERE c.table_schema = 'public' AND tb.table_type = 'BASE TABLE'`)
	if err != nil {
		t.Fatal(err)
	}
	type column struct{ table, name, typ string }
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		return c, r.Scan(&c.table, &c.name, &c.typ)
	})
	if err != nil {
		t.Fatal(err)
	}
	scanned := map[string]bool{}
	for _, c := range cols {
		scanned[c.typ] = true
		tbl, col := pgx.Identifier{c.table}.Sanitize(), pgx.Identifier{c.name}.Sanitize()
		q := `SELECT count(*) FROM ` + tbl + ` WHERE strpos(` + col + `::text, $1) > 0`
		if c.typ == "bytea" {
			q = `SELECT count(*) FROM ` + tbl + ` WHERE position(convert_to($1, 'UTF8') in ` + col + `) > 0
				OR strpos(encode(` + col + `, 'escape'), $1) > 0`
		}
		for _, needle := range needles {
			if n := lcCount(t, s, q, needle); n != 0 {
				t.Errorf("%s.%s holds %q in plain text in %d rows", c.table, c.name, needle, n)
			}
		}
	}
	for _, typ := range []string{"text", "jsonb", "bytea"} {
		if !scanned[typ] {
			t.Fatalf("the scan saw no %s column: %v", typ, scanned)
		}
	}
}

// lcLogin signs a user of tenant in, with session id sid.
func lcLogin(tenant, sub, sid string, now time.Time) store.Login {
	return store.Login{
		User:          store.User{TenantID: tenant, Sub: sub, Role: "teacher", GivenName: "G", FamilyName: "F", Email: sub + "@x"},
		SessionIDHash: store.HashID(sid), CSRFToken: []byte("csrf-" + sid),
		Now: now, IdleExpiresAt: now.Add(time.Hour), ExpiresAt: now.Add(8 * time.Hour),
	}
}

func lcMustLogin(t *testing.T, s *store.Store, tenant, sub, sid string) {
	t.Helper()
	if _, err := s.CreateLogin(context.Background(), lcLogin(tenant, sub, sid, time.Now())); err != nil {
		t.Fatalf("login %s/%s: %v", tenant, sub, err)
	}
}

func lcMustFlow(t *testing.T, s *store.Store, tenant, id string) {
	t.Helper()
	now := time.Now()
	if err := s.CreateFlow(context.Background(), store.Flow{IDHash: store.HashID(id), TenantID: tenant, State: "state-" + id,
		Nonce: "nonce-" + id, PKCEVerifier: "verifier-" + id, ReturnTo: "/", CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute)}); err != nil {
		t.Fatalf("flow %s: %v", id, err)
	}
}

// lcSeedSchool makes tenant an active school with data in every table: credentials (two
// versions), setup answers, two users with sessions, a pending sign-in, receipts and audit events.
func lcSeedSchool(t *testing.T, s *store.Store, tenant string) {
	t.Helper()
	ctx := context.Background()
	lcCredentialsEvent(t, s, tenant, "CREATED", "created-"+tenant, lcNeeds("code"))
	if st, err := s.SaveSetup(ctx, tenant, map[string]string{"code": "code-" + tenant}, "admin", lcNeeds("code")); err != nil || st != store.StateActive {
		t.Fatalf("setup of %s: %q, %v", tenant, st, err)
	}
	lcCredentialsEvent(t, s, tenant, "RESET", "reset-"+tenant, lcNeeds("code"))
	lcMustLogin(t, s, tenant, "u1", "sess1-"+tenant)
	lcMustLogin(t, s, tenant, "u2", "sess2-"+tenant)
	lcMustFlow(t, s, tenant, "flow-"+tenant)
}

func TestReceiveCredentialsForAnUnknownSchool(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, event string
		check       store.SetupCheck
		want        string
	}{
		{"created without setup fields", "CREATED", nil, store.StateActive},
		{"created with incomplete setup", "CREATED", lcNever, store.StatePendingSetup},
		{"created with complete setup", "CREATED", func(map[string]string) bool { return true }, store.StateActive},
		{"reactivated", "REACTIVATED", nil, store.StateActive},
		{"reactivated with incomplete setup", "REACTIVATED", lcNeeds("code"), store.StatePendingSetup},
		{"reset activates an unknown school", "RESET", nil, store.StateActive},
		{"reset with incomplete setup", "RESET", lcNever, store.StatePendingSetup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t, keyring(t))
			rc := lcReceipt("4711", tc.event, "body-1")
			out, err := s.ReceiveCredentials(ctx, rc, lcCreds("A"), lcInfo("4711"), tc.check)
			if err != nil {
				t.Fatal(err)
			}
			if want := (store.Outcome{State: tc.want, Version: 1}); out != want {
				t.Fatalf("outcome %+v, want %+v", out, want)
			}
			tn, err := s.Tenant(ctx, "4711")
			if err != nil {
				t.Fatal(err)
			}
			info := lcInfo("4711")
			if tn.State != tc.want || tn.Name != info.Name || tn.Host != info.Host || tn.Country != info.Country ||
				tn.Region != info.Region || tn.Language != info.Language || tn.ActivatorEmail != info.ActivatorEmail ||
				tn.ActivatorUsername != info.ActivatorUsername || tn.SchoolEmail != info.SchoolEmail || tn.SchoolPhone != info.SchoolPhone ||
				tn.LastWebhookEvent != tc.event || tn.LastWebhookAt == nil {
				t.Errorf("tenant %+v", tn)
			}
			c, err := s.ActiveCredentials(ctx, "4711")
			if err != nil || c.ClientID != "client-A" || c.Secret != lcSecret("A") || c.Password != lcPassword("A") ||
				c.Version != 1 || c.Source != store.SourceWebhook {
				t.Errorf("credentials %v, %v", c, err)
			}
			if n := lcReceipts(t, s, "4711"); n != 1 {
				t.Errorf("%d receipts", n)
			}
			trail := lcTrail(t, s, "4711")
			if len(trail) != 1 {
				t.Fatalf("audit trail %+v, want one event", trail)
			}
			e := trail[0]
			if e.Actor != "webhook" || e.Action != "credentials.stored" || e.Detail["event"] != tc.event ||
				e.Detail["previous_state"] != "" || e.Detail["state"] != tc.want || e.Detail["credentials_version"] != float64(1) ||
				e.Detail["client_id"] != "client-A" || e.Detail["receipt"] != hex.EncodeToString(rc.BodySHA256[:8]) {
				t.Errorf("audit event %+v", e)
			}
		})
	}
}

func TestCredentialsForAKnownSchool(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, from, event string
		check             store.SetupCheck
		want              string
	}{
		// An active school stays active whatever its setup says: only its credentials change.
		{"active + CREATED", store.StateActive, "CREATED", lcNever, store.StateActive},
		{"active + REACTIVATED", store.StateActive, "REACTIVATED", lcNever, store.StateActive},
		{"active + RESET", store.StateActive, "RESET", lcNever, store.StateActive},
		{"pending + RESET", store.StatePendingSetup, "RESET", lcNever, store.StatePendingSetup},
		{"pending + CREATED", store.StatePendingSetup, "CREATED", lcNever, store.StatePendingSetup},
		{"deactivated + REACTIVATED", store.StateDeactivated, "REACTIVATED", nil, store.StateActive},
		{"deactivated + REACTIVATED, setup incomplete", store.StateDeactivated, "REACTIVATED", lcNever, store.StatePendingSetup},
		{"deactivated + CREATED", store.StateDeactivated, "CREATED", nil, store.StateActive},
		{"deleted + CREATED", store.StateDeleted, "CREATED", nil, store.StateActive},
		{"deleted + CREATED, setup incomplete", store.StateDeleted, "CREATED", lcNever, store.StatePendingSetup},
		{"deleted + REACTIVATED", store.StateDeleted, "REACTIVATED", nil, store.StateActive},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t, keyring(t))
			check := store.SetupCheck(nil)
			if tc.from == store.StatePendingSetup {
				check = lcNever
			}
			lcCredentialsEvent(t, s, "T", "CREATED", "first", check)
			// Version numbers are never given twice, not even after a deactivation wiped the
			// old rows: a late refusal of version 1 must not mark the new credentials.
			wantVersion := 2
			switch tc.from {
			case store.StateDeactivated:
				lcEndEvent(t, s, "T", "end", false)
			case store.StateDeleted:
				lcEndEvent(t, s, "T", "end", true)
			}
			if got := lcState(t, s, "T"); got != tc.from {
				t.Fatalf("set-up state %q, want %q", got, tc.from)
			}
			// A failing mark goes with new credentials: they are a new chance.
			if tc.from == store.StateActive || tc.from == store.StatePendingSetup {
				if ok, err := s.MarkCredentialsFailing(ctx, "T", 1, "invalid_client", time.Now()); !ok || err != nil {
					t.Fatalf("mark: %v %v", ok, err)
				}
			}
			audits := lcAuditCount(t, s, "T")

			out := lcCredentialsEvent(t, s, "T", tc.event, "second", tc.check)
			if want := (store.Outcome{PreviousState: tc.from, State: tc.want, Version: wantVersion}); out != want {
				t.Fatalf("outcome %+v, want %+v", out, want)
			}
			tn, err := s.Tenant(ctx, "T")
			if err != nil {
				t.Fatal(err)
			}
			if tn.State != tc.want || tn.CredentialsFailingSince != nil || tn.CredentialsFailureReason != "" ||
				tn.Name != "School T" || tn.ActivatorEmail != "admin@T.example" || tn.LastWebhookEvent != tc.event {
				t.Errorf("tenant %+v", tn)
			}
			c, err := s.ActiveCredentials(ctx, "T")
			if err != nil || c.Version != wantVersion || c.Secret != lcSecret("second") || c.Password != lcPassword("second") {
				t.Errorf("credentials %v, %v", c, err)
			}
			if n := lcAuditCount(t, s, "T"); n != audits+1 {
				t.Errorf("%d audit events written, want 1", n-audits)
			}
			if e := lcLastAudit(t, s, "T"); e.Action != "credentials.stored" || e.Detail["previous_state"] != tc.from ||
				e.Detail["state"] != tc.want || e.Detail["event"] != tc.event {
				t.Errorf("audit %+v", e)
			}
		})
	}
}

func TestResetDoesNotBringBackAnEndedSchool(t *testing.T) {
	t.Parallel()
	for _, deletion := range []bool{false, true} {
		t.Run(fmt.Sprintf("deletion=%v", deletion), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t, keyring(t))
			lcCredentialsEvent(t, s, "T", "CREATED", "created", nil)
			ended := lcEndEvent(t, s, "T", "end", deletion)
			receipts, audits := lcReceipts(t, s, "T"), lcAuditCount(t, s, "T")

			out := lcCredentialsEvent(t, s, "T", "RESET", "reset", nil)
			if out.Ignored == "" || out.Duplicate || out.Version != 0 || out.PreviousState != ended.State || out.State != ended.State {
				t.Fatalf("outcome %+v", out)
			}
			if got := lcState(t, s, "T"); got != ended.State {
				t.Errorf("state %q, want %q", got, ended.State)
			}
			if n := lcVersions(t, s, "T"); n != 0 {
				t.Errorf("%d credentials versions stored for an ended school", n)
			}
			if _, err := s.ActiveCredentials(ctx, "T"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("active credentials: %v", err)
			}
			if n := lcReceipts(t, s, "T"); n != receipts+1 {
				t.Errorf("receipts %d, want %d", n, receipts+1)
			}
			if n := lcAuditCount(t, s, "T"); n != audits+1 {
				t.Errorf("audit events %d, want %d", n, audits+1)
			}
			if e := lcLastAudit(t, s, "T"); e.Action != "webhook.ignored" || e.Actor != "webhook" || e.Detail["event"] != "RESET" || e.Detail["reason"] != out.Ignored {
				t.Errorf("audit %+v", e)
			}
			// The ignored RESET is in the ledger: delivered again, it is a duplicate.
			if again := lcCredentialsEvent(t, s, "T", "RESET", "reset", nil); again != (store.Outcome{Duplicate: true}) {
				t.Errorf("second delivery: %+v", again)
			}
		})
	}
}

func TestDuplicateWebhookChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	first := lcCredentialsEvent(t, s, "T", "CREATED", "body-A", nil)
	if first.Duplicate || first.Version != 1 {
		t.Fatalf("first delivery %+v", first)
	}
	type snapshot struct {
		versions, audits, receipts int
		tenant                     string
		state                      string
	}
	snap := func() snapshot {
		tn, err := s.Tenant(ctx, "T")
		if err != nil {
			t.Fatal(err)
		}
		var updated time.Time
		if err := s.Pool().QueryRow(ctx, `SELECT updated_at FROM tenants WHERE tenant_id = 'T'`).Scan(&updated); err != nil {
			t.Fatal(err)
		}
		return snapshot{lcVersions(t, s, "T"), lcAuditCount(t, s, "T"), lcReceipts(t, s, "T"),
			lcTenantKey(tn) + " updated=" + updated.UTC().Format(time.RFC3339Nano), tn.State}
	}
	before := snap()
	// The same body again, even with other credentials and info passed in (the ledger decides on
	// the body's hash), and even with a check that would make the school pending.
	out, err := s.ReceiveCredentials(ctx, lcReceipt("T", "CREATED", "body-A"), lcCreds("other"),
		store.TenantInfo{Name: "Other"}, lcNever)
	if err != nil {
		t.Fatal(err)
	}
	if out != (store.Outcome{Duplicate: true}) {
		t.Fatalf("duplicate: %+v", out)
	}
	if after := snap(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a duplicate changed the school:\nbefore %+v\nafter  %+v", before, after)
	}
	if c, _ := s.CurrentCredentials(ctx, "T"); c.Secret != lcSecret("body-A") {
		t.Error("a duplicate replaced the credentials")
	}

	// A duplicate deactivation changes nothing either.
	lcEndEvent(t, s, "T", "end", false)
	before = snap()
	if out := lcEndEvent(t, s, "T", "end", false); out != (store.Outcome{Duplicate: true}) {
		t.Fatalf("duplicate deactivation: %+v", out)
	}
	if after := snap(); fmt.Sprint(after) != fmt.Sprint(before) || after.state != store.StateDeactivated {
		t.Errorf("a duplicate deactivation changed the school:\nbefore %+v\nafter  %+v", before, after)
	}
	// Nor does a duplicate reactivation, or a duplicate ignored RESET.
	lcCredentialsEvent(t, s, "T", "RESET", "ignored reset", nil)
	lcCredentialsEvent(t, s, "T", "REACTIVATED", "back", nil)
	before = snap()
	for _, event := range []string{"REACTIVATED", "RESET"} {
		body := map[string]string{"REACTIVATED": "back", "RESET": "ignored reset"}[event]
		if out := lcCredentialsEvent(t, s, "T", event, body, nil); out != (store.Outcome{Duplicate: true}) {
			t.Fatalf("duplicate %s: %+v", event, out)
		}
	}
	if after := snap(); fmt.Sprint(after) != fmt.Sprint(before) || after.state != store.StateActive {
		t.Errorf("a duplicate changed the school:\nbefore %+v\nafter  %+v", before, after)
	}
}

func TestConcurrentDeliveriesApplyOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []string{"CREATED", "RESET", "DEACTIVATION", "DELETION", "DEACTIVATION after a reactivation"} {
		kind, again := strings.CutSuffix(tc, " after a reactivation")
		t.Run(tc, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t, keyring(t))
			if kind != "CREATED" {
				lcCredentialsEvent(t, s, "T", "CREATED", "setup", nil)
			}
			if again { // the ledger holds the body already, from before a reactivation
				if _, err := s.ReceiveDeactivation(ctx, lcReceipt("T", kind, "same body"), false, "", ""); err != nil {
					t.Fatal(err)
				}
				lcCredentialsEvent(t, s, "T", "REACTIVATED", "back", nil)
			}
			versions, audits, receipts := lcVersions(t, s, "T"), lcAuditCount(t, s, "T"), lcReceipts(t, s, "T")
			const n = 8
			start := make(chan struct{})
			outs := make([]store.Outcome, n)
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					switch kind {
					case "CREATED", "RESET":
						outs[i], errs[i] = s.ReceiveCredentials(ctx, lcReceipt("T", kind, "same body"), lcCreds(fmt.Sprint(i)), lcInfo("T"), nil)
					default:
						outs[i], errs[i] = s.ReceiveDeactivation(ctx, lcReceipt("T", kind, "same body"), kind == "DELETION", "", "")
					}
				})
			}
			close(start)
			wg.Wait()
			applied := 0
			for i := range n {
				if errs[i] != nil {
					t.Fatalf("delivery %d: %v", i, errs[i])
				}
				if !outs[i].Duplicate {
					applied++
				} else if outs[i] != (store.Outcome{Duplicate: true}) {
					t.Errorf("duplicate outcome %+v", outs[i])
				}
			}
			if applied != 1 {
				t.Fatalf("%d deliveries applied, want exactly 1", applied)
			}
			wantReceipts := receipts + 1
			if again {
				wantReceipts = receipts // renewed
			}
			if got := lcReceipts(t, s, "T"); got != wantReceipts {
				t.Errorf("receipts %d, want %d", got, wantReceipts)
			}
			if got := lcAuditCount(t, s, "T"); got != audits+1 {
				t.Errorf("audit events %d, want %d", got, audits+1)
			}
			wantVersions := versions + 1
			if kind == "DEACTIVATION" || kind == "DELETION" {
				wantVersions = 0
			}
			if got := lcVersions(t, s, "T"); got != wantVersions {
				t.Errorf("credential versions %d, want %d", got, wantVersions)
			}
		})
	}
}

// A replayed old CREATED must not revive a school deactivated since.
func TestReplayAfterDeactivation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcCredentialsEvent(t, s, "T", "CREATED", "body-A", nil)
	if out := lcEndEvent(t, s, "T", "end-1", false); out.State != store.StateDeactivated {
		t.Fatalf("deactivation %+v", out)
	}
	for _, event := range []string{"CREATED", "REACTIVATED"} { // the event type is not part of the ledger key
		if out := lcCredentialsEvent(t, s, "T", event, "body-A", nil); out != (store.Outcome{Duplicate: true}) {
			t.Fatalf("replayed %s: %+v", event, out)
		}
	}
	if got := lcState(t, s, "T"); got != store.StateDeactivated {
		t.Errorf("state after replay %q", got)
	}
	if n := lcVersions(t, s, "T"); n != 0 {
		t.Errorf("%d credentials after replay", n)
	}
	if _, err := s.ActiveCredentials(ctx, "T"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("active credentials after replay: %v", err)
	}
	// A new activation brings it back. The platform's deactivation bodies carry no date, so the
	// same deactivation bytes after a reactivation are a new deactivation; a redelivery right
	// after them is a duplicate again, and the reactivation's body replayed revives nothing.
	lcCredentialsEvent(t, s, "T", "REACTIVATED", "body-B", nil)
	if out := lcEndEvent(t, s, "T", "end-1", false); out.Duplicate || out.State != store.StateDeactivated || out.PreviousState != store.StateActive {
		t.Fatalf("deactivation bytes after a reactivation: %+v", out)
	}
	if out := lcEndEvent(t, s, "T", "end-1", false); out != (store.Outcome{Duplicate: true}) {
		t.Fatalf("redelivered deactivation %+v", out)
	}
	if out := lcCredentialsEvent(t, s, "T", "REACTIVATED", "body-B", nil); out != (store.Outcome{Duplicate: true}) {
		t.Fatalf("replayed REACTIVATED %+v", out)
	}
	if got := lcState(t, s, "T"); got != store.StateDeactivated {
		t.Errorf("state after the replays %q", got)
	}
	if n := lcVersions(t, s, "T"); n != 0 {
		t.Errorf("%d credentials after the replays", n)
	}
	if n := lcReceipts(t, s, "T"); n != 3 {
		t.Errorf("%d receipts, want 3 (the deactivation's renewed, not added)", n)
	}
}

// Deactivation ends the sessions and sign-ins of that school only; its users and setup answers
// stay for a reactivation.
func TestDeactivationEndsOnlyThatSchool(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcSeedSchool(t, s, "A")
	lcSeedSchool(t, s, "B")
	bBefore := lcRowsPerTable(t, s, "B")
	if ok, err := s.MarkCredentialsFailing(ctx, "A", 2, "invalid_client", time.Now()); !ok || err != nil {
		t.Fatalf("mark: %v %v", ok, err)
	}

	out := lcEndEvent(t, s, "A", "end", false)
	if want := (store.Outcome{PreviousState: store.StateActive, State: store.StateDeactivated, SessionsEnded: 2, SignInsEnded: 1}); out != want {
		t.Fatalf("outcome %+v, want %+v", out, want)
	}
	a := lcRowsPerTable(t, s, "A")
	for tbl, want := range map[string]int{"tenant_credentials": 0, "sessions": 0, "auth_flows": 0, "users": 2, "tenant_settings": 1, "tenants": 1} {
		if a[tbl] != want {
			t.Errorf("A: %s has %d rows, want %d", tbl, a[tbl], want)
		}
	}
	tn, err := s.Tenant(ctx, "A")
	if err != nil {
		t.Fatal(err)
	}
	if tn.State != store.StateDeactivated || tn.Name != "School A" || tn.CredentialsFailingSince != nil || tn.LastWebhookEvent != "DEACTIVATION" {
		t.Errorf("A after deactivation: %+v", tn)
	}
	if answers, err := s.SetupAnswers(ctx, "A"); err != nil || answers["code"] != "code-A" {
		t.Errorf("A's setup answers: %v, %v", answers, err)
	}
	e := lcLastAudit(t, s, "A")
	deleted, _ := e.Detail["deleted"].(map[string]any)
	if e.Action != "tenant.deactivated" || e.Actor != "webhook" || e.Detail["previous_state"] != store.StateActive ||
		e.Detail["state"] != store.StateDeactivated || e.Detail["reason_type"] != "CONTRACT_ENDED" ||
		deleted["sessions"] != float64(2) || deleted["auth_flows"] != float64(1) || deleted["tenant_credentials"] != float64(2) {
		t.Errorf("audit %+v", e)
	}
	for _, sid := range []string{"sess1-A", "sess2-A"} {
		if _, err := s.SessionByID(ctx, store.HashID(sid), time.Now()); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("session %s after deactivation: %v", sid, err)
		}
	}
	if _, err := s.ConsumeFlow(ctx, store.HashID("flow-A"), time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("A's flow after deactivation: %v", err)
	}

	// B is untouched, row for row.
	if bAfter := lcRowsPerTable(t, s, "B"); fmt.Sprint(bAfter) != fmt.Sprint(bBefore) {
		t.Errorf("B changed:\nbefore %v\nafter  %v", bBefore, bAfter)
	}
	for _, sid := range []string{"sess1-B", "sess2-B"} {
		if ss, err := s.SessionByID(ctx, store.HashID(sid), time.Now()); err != nil || ss.TenantID != "B" {
			t.Errorf("B's session %s: %v", sid, err)
		}
	}
	if tb, _ := s.Tenant(ctx, "B"); tb.State != store.StateActive {
		t.Errorf("B's state %q", tb.State)
	}
	if c, err := s.ActiveCredentials(ctx, "B"); err != nil || c.Version != 2 {
		t.Errorf("B's credentials: %v, %v", c, err)
	}
	if f, err := s.ConsumeFlow(ctx, store.HashID("flow-B"), time.Now()); err != nil || f.TenantID != "B" {
		t.Errorf("B's flow: %v", err)
	}

	// A deactivation of a deactivated school is applied again, harmlessly.
	if out := lcEndEvent(t, s, "A", "end-again", false); out.PreviousState != store.StateDeactivated || out.State != store.StateDeactivated {
		t.Errorf("second deactivation %+v", out)
	}
	// A reactivation finds the setup answers kept: the check passes and the school is active.
	if out := lcCredentialsEvent(t, s, "A", "REACTIVATED", "back", lcNeeds("code")); out.State != store.StateActive || out.Version <= 1 {
		t.Errorf("reactivation %+v", out)
	}
}

func TestEndingAnUnknownSchool(t *testing.T) {
	t.Parallel()
	for _, deletion := range []bool{false, true} {
		t.Run(fmt.Sprintf("deletion=%v", deletion), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t, keyring(t))
			lcSeedSchool(t, s, "B")
			bBefore := lcRowsPerTable(t, s, "B")
			out := lcEndEvent(t, s, "ghost", "end", deletion)
			if out.Ignored == "" || out.Duplicate || out.PreviousState != "" || out.State != "" {
				t.Fatalf("outcome %+v", out)
			}
			for tbl, n := range lcRowsPerTable(t, s, "ghost") {
				want := 0
				if tbl == "webhook_receipts" || tbl == "audit_events" {
					want = 1
				}
				if n != want {
					t.Errorf("%s has %d rows of the unknown school, want %d", tbl, n, want)
				}
			}
			if e := lcLastAudit(t, s, "ghost"); e.Detail["ignored"] == nil || e.Actor != "webhook" {
				t.Errorf("audit %+v", e)
			}
			if out := lcEndEvent(t, s, "ghost", "end", deletion); out != (store.Outcome{Duplicate: true}) {
				t.Errorf("second delivery %+v", out)
			}
			// An operator cannot end a school that does not exist, and writes nothing trying.
			if _, err := s.EndTenant(ctx, "nobody", deletion, "operator:x@y", map[string]any{}); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("EndTenant of an unknown school: %v", err)
			}
			for tbl, n := range lcRowsPerTable(t, s, "nobody") {
				if n != 0 {
					t.Errorf("EndTenant of an unknown school wrote %d rows to %s", n, tbl)
				}
			}
			if bAfter := lcRowsPerTable(t, s, "B"); fmt.Sprint(bAfter) != fmt.Sprint(bBefore) {
				t.Errorf("B changed:\nbefore %v\nafter  %v", bBefore, bAfter)
			}
		})
	}
}

// TestDeletionLeavesNothingOfTheSchool walks the schema: every table with a tenant_id column must
// hold no row of a deleted school, except its audit trail, its webhook ledger and its (wiped)
// tenants row. A table added later is checked without anyone remembering to.
func TestDeletionLeavesNothingOfTheSchool(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"webhook", "operator", "deactivated first"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t, keyring(t))
			lcSeedSchool(t, s, "A")
			lcSeedSchool(t, s, "B")
			for tbl, n := range lcRowsPerTable(t, s, "A") {
				if n == 0 {
					t.Fatalf("the seed left %s empty for A: the walk would prove nothing there", tbl)
				}
			}
			bBefore := lcRowsPerTable(t, s, "B")
			var (
				out store.Outcome
				err error
			)
			switch how {
			case "webhook":
				out = lcEndEvent(t, s, "A", "delete", true)
			case "operator":
				out, err = s.EndTenant(ctx, "A", true, "operator:ops@example", map[string]any{"reason_text": "asked"})
			case "deactivated first":
				lcEndEvent(t, s, "A", "deactivate", false)
				out = lcEndEvent(t, s, "A", "delete", true)
			}
			if err != nil {
				t.Fatal(err)
			}
			if out.State != store.StateDeleted || out.Ignored != "" {
				t.Fatalf("outcome %+v", out)
			}
			for tbl, n := range lcRowsPerTable(t, s, "A") {
				switch tbl {
				case "audit_events", "webhook_receipts":
					if n == 0 {
						t.Errorf("deletion removed the school's %s", tbl)
					}
				case "tenants":
					if n != 1 {
						t.Errorf("tenants has %d rows of the deleted school, want 1", n)
					}
				case "events":
					// Only the news of the deletion itself waits for the partner's app; the
					// school's earlier events (its name, its setup answers) are gone.
					if n != 1 || lcCount(t, s, `SELECT count(*) FROM events WHERE tenant_id = 'A' AND type = $1`, store.EventDeleted) != 1 {
						t.Errorf("events has %d rows of the deleted school, want its one school.deleted", n)
					}
				default:
					if n != 0 {
						t.Errorf("%s still has %d rows of the deleted school", tbl, n)
					}
				}
			}
			tn, err := s.Tenant(ctx, "A")
			if err != nil {
				t.Fatal(err)
			}
			if tn.State != store.StateDeleted || tn.Name != "" || tn.Country != "" || tn.Region != "" || tn.Language != "" ||
				tn.Host != "" || tn.ActivatorEmail != "" || tn.ActivatorUsername != "" || tn.SchoolEmail != "" || tn.SchoolPhone != "" ||
				tn.CredentialsFailingSince != nil {
				t.Errorf("deleted tenant %+v", tn)
			}
			// The only strings left of A are its id and what the trail records.
			lcScanForPlaintext(t, s, []string{"admin@A.example", "office@A.example", "code-A", lcSecret("created-A"), lcPassword("reset-A")})
			if e := lcLastAudit(t, s, "A"); e.Action != "tenant.deleted" || e.Detail["state"] != store.StateDeleted {
				t.Errorf("audit %+v", e)
			}
			if bAfter := lcRowsPerTable(t, s, "B"); fmt.Sprint(bAfter) != fmt.Sprint(bBefore) {
				t.Errorf("B changed:\nbefore %v\nafter  %v", bBefore, bAfter)
			}
			if tb, _ := s.Tenant(ctx, "B"); tb.ActivatorEmail != "admin@B.example" || tb.State != store.StateActive {
				t.Errorf("B %+v", tb)
			}

			// A deactivation does not undo a deletion.
			if out := lcEndEvent(t, s, "A", "late deactivation", false); out.State != store.StateDeleted {
				t.Errorf("deactivation of a deleted school: %+v", out)
			}
			// A new activation starts over: the old setup answers are gone, so it is pending.
			if out := lcCredentialsEvent(t, s, "A", "CREATED", "again", lcNeeds("code")); out.State != store.StatePendingSetup ||
				out.PreviousState != store.StateDeleted || out.Version <= 1 {
				t.Errorf("CREATED after deletion %+v", out)
			}
			if tn, _ := s.Tenant(ctx, "A"); tn.Name != "School A" {
				t.Errorf("informational fields not stored again: %+v", tn)
			}
		})
	}
}

func TestEndTenantByOperator(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcSeedSchool(t, s, "A")
	out, err := s.EndTenant(ctx, "A", false, "operator:ops@example", map[string]any{"reason_text": "unpaid"})
	if err != nil {
		t.Fatal(err)
	}
	// The outcome counts what was ended (the console says so): the seed's two sessions and its flow.
	if want := (store.Outcome{PreviousState: store.StateActive, State: store.StateDeactivated, SessionsEnded: 2, SignInsEnded: 1}); out != want {
		t.Fatalf("outcome %+v", out)
	}
	if n := lcCount(t, s, `SELECT count(*) FROM sessions WHERE tenant_id = 'A'`) + lcVersions(t, s, "A") +
		lcCount(t, s, `SELECT count(*) FROM auth_flows WHERE tenant_id = 'A'`); n != 0 {
		t.Errorf("%d sessions, flows or credentials left", n)
	}
	e := lcLastAudit(t, s, "A")
	if e.Actor != "operator:ops@example" || e.Action != "tenant.deactivated" || e.Detail["reason_text"] != "unpaid" {
		t.Errorf("audit %+v", e)
	}
	// An operator's deactivation leaves no webhook mark.
	if tn, _ := s.Tenant(ctx, "A"); tn.LastWebhookEvent != "RESET" {
		t.Errorf("last webhook event %q", tn.LastWebhookEvent)
	}
}

func TestActivateWithCredentials(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	c := lcCreds("manual")
	c.Source = store.SourceManual
	v, st, err := s.ActivateWithCredentials(ctx, "M", c, "activate:1.2.3.4", lcNever)
	if err != nil || v != 1 || st != store.StatePendingSetup {
		t.Fatalf("unknown school: %d %q %v", v, st, err)
	}
	if e := lcLastAudit(t, s, "M"); e.Actor != "activate:1.2.3.4" || e.Action != "credentials.stored" || e.Detail["source"] != store.SourceManual ||
		e.Detail["replaces_source"] != nil {
		t.Errorf("audit %+v", e)
	}
	lcCredentialsEvent(t, s, "W", "CREATED", "w", nil)
	c.Source = store.SourceOperator
	if v, st, err := s.ActivateWithCredentials(ctx, "W", c, "operator:o", lcNever); err != nil || v != 2 || st != store.StateActive {
		t.Fatalf("active school: %d %q %v", v, st, err)
	}
	if e := lcLastAudit(t, s, "W"); e.Detail["replaces_source"] != store.SourceWebhook || e.Detail["source"] != store.SourceOperator {
		t.Errorf("audit %+v", e)
	}
	if got, err := s.ActiveCredentials(ctx, "W"); err != nil || got.Source != store.SourceOperator || got.Secret != c.Secret {
		t.Errorf("credentials %v %v", got, err)
	}
	lcEndEvent(t, s, "W", "end", false)
	// Version numbers go on after the wipe: 1 and 2 were given before it.
	if v, st, err := s.ActivateWithCredentials(ctx, "W", c, "operator:o", nil); err != nil || v != 3 || st != store.StateActive {
		t.Fatalf("deactivated school: %d %q %v", v, st, err)
	}
}

// lcWaitForLockWaiters waits until n backends of the store's database wait for a lock.
func lcWaitForLockWaiters(t *testing.T, s *store.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := lcCount(t, s, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d backends wait for a lock, want %d", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A sign-in that completes while a deactivation holds the school's row waits for it, then sees
// the school deactivated and writes nothing.
func TestCreateLoginWaitsForADeactivationInProgress(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcSeedSchool(t, s, "A")

	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT state FROM tenants WHERE tenant_id = 'A' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.CreateLogin(ctx, lcLogin("A", "late-user", "late-session", time.Now()))
		done <- err
	}()
	lcWaitForLockWaiters(t, s, 1)
	select {
	case err := <-done:
		t.Fatalf("CreateLogin did not wait for the deactivation: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// What a deactivation does, committed while the sign-in waits.
	for _, q := range []string{`UPDATE tenants SET state = 'deactivated' WHERE tenant_id = 'A'`,
		`DELETE FROM sessions WHERE tenant_id = 'A'`, `DELETE FROM tenant_credentials WHERE tenant_id = 'A'`} {
		if _, err := tx.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("CreateLogin after the deactivation: %v, want ErrNotFound", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("CreateLogin still blocked")
	}
	if n := lcCount(t, s, `SELECT count(*) FROM sessions WHERE tenant_id = 'A'`); n != 0 {
		t.Errorf("%d sessions of the deactivated school", n)
	}
	if n := lcCount(t, s, `SELECT count(*) FROM users WHERE tenant_id = 'A' AND sub = 'late-user'`); n != 0 {
		t.Error("the refused sign-in wrote its user")
	}
}

// A real deactivation and a sign-in both queued behind a lock, in either order: whichever runs
// first, no session of the school is left.
func TestCreateLoginAndDeactivationQueued(t *testing.T) {
	t.Parallel()
	for _, loginFirst := range []bool{true, false} {
		t.Run(fmt.Sprintf("loginFirst=%v", loginFirst), func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := newStore(t, keyring(t))
			lcSeedSchool(t, s, "A")
			tx, err := s.Pool().Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = tx.Rollback(ctx) }()
			if _, err := tx.Exec(ctx, `SELECT state FROM tenants WHERE tenant_id = 'A' FOR UPDATE`); err != nil {
				t.Fatal(err)
			}
			loginErr, endErr := make(chan error, 1), make(chan error, 1)
			login := func() {
				go func() {
					_, err := s.CreateLogin(ctx, lcLogin("A", "racer", "racer-session", time.Now()))
					loginErr <- err
				}()
			}
			end := func() {
				go func() {
					_, err := s.ReceiveDeactivation(ctx, lcReceipt("A", "DEACTIVATION", "end"), false, "", "")
					endErr <- err
				}()
			}
			if loginFirst {
				login()
				lcWaitForLockWaiters(t, s, 1)
				end()
			} else {
				end()
				lcWaitForLockWaiters(t, s, 1)
				login()
			}
			lcWaitForLockWaiters(t, s, 2)
			if err := tx.Rollback(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-endErr; err != nil {
				t.Fatal(err)
			}
			if err := <-loginErr; err != nil && !errors.Is(err, store.ErrNotFound) {
				t.Fatal(err)
			}
			if n := lcCount(t, s, `SELECT count(*) FROM sessions WHERE tenant_id = 'A'`); n != 0 {
				t.Errorf("%d sessions survived the deactivation", n)
			}
			if got := lcState(t, s, "A"); got != store.StateDeactivated {
				t.Errorf("state %q", got)
			}
		})
	}
}

// Many sign-ins racing a deactivation: every one either fails with ErrNotFound or its session is
// deleted by the deactivation; none survives.
func TestCreateLoginsRacingADeactivation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcSeedSchool(t, s, "A")
	lcSeedSchool(t, s, "B")
	const n = 40
	start := make(chan struct{})
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ok, nf  int
		endDone = make(chan error, 1)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			if i == n/2 {
				_, err := s.ReceiveDeactivation(ctx, lcReceipt("A", "DEACTIVATION", "race"), false, "", "")
				endDone <- err
			}
			_, err := s.CreateLogin(ctx, lcLogin("A", fmt.Sprint("racer-", i), fmt.Sprint("racer-session-", i), time.Now()))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrNotFound):
				nf++
			default:
				t.Error(err)
			}
		})
	}
	close(start)
	wg.Wait()
	if err := <-endDone; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d sign-ins before the deactivation, %d refused after it", ok, nf)
	if m := lcCount(t, s, `SELECT count(*) FROM sessions WHERE tenant_id = 'A'`); m != 0 {
		t.Errorf("%d sessions survived the deactivation", m)
	}
	if m := lcCount(t, s, `SELECT count(*) FROM sessions WHERE tenant_id = 'B'`); m != 2 {
		t.Errorf("B has %d sessions, want 2", m)
	}
}

// Every change writes an audit event, and no column of any table (audit details included) holds
// a secret or password in plain text.
func TestLifecycleAuditsEveryChangeAndStoresNoSecret(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	var secrets []string
	creds := func(tag string) store.Credentials {
		secrets = append(secrets, lcSecret(tag), lcPassword(tag))
		return lcCreds(tag)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	check := lcNeeds("code")
	var err error
	_, err = s.ReceiveCredentials(ctx, lcReceipt("A", "CREATED", "1"), creds("c1"), lcInfo("A"), check)
	must(err)
	_, err = s.SaveSetup(ctx, "A", map[string]string{"code": "setup-value-1"}, "admin:a", check)
	must(err)
	_, err = s.SaveSetup(ctx, "A", map[string]string{"code": "setup-value-1"}, "admin:a", check) // no change, no event
	must(err)
	_, err = s.ReceiveCredentials(ctx, lcReceipt("A", "RESET", "2"), creds("r1"), lcInfo("A"), check)
	must(err)
	_, err = s.ReceiveCredentials(ctx, lcReceipt("A", "RESET", "2"), creds("dup"), lcInfo("A"), check) // duplicate, no event
	must(err)
	c := creds("m1")
	c.Source = store.SourceManual
	_, _, err = s.ActivateWithCredentials(ctx, "A", c, "activate:ip", check)
	must(err)
	_, err = s.ReceiveDeactivation(ctx, lcReceipt("A", "DEACTIVATION", "3"), false, "T", "text")
	must(err)
	_, err = s.ReceiveCredentials(ctx, lcReceipt("A", "RESET", "4"), creds("r2"), lcInfo("A"), check) // ignored, audited
	must(err)
	_, err = s.ReceiveCredentials(ctx, lcReceipt("A", "REACTIVATED", "5"), creds("re1"), lcInfo("A"), check)
	must(err)
	_, err = s.EndTenant(ctx, "A", false, "operator:o", map[string]any{"reason_text": "why"})
	must(err)
	_, err = s.ReceiveCredentials(ctx, lcReceipt("A", "CREATED", "6"), creds("c2"), lcInfo("A"), check)
	must(err)
	_, err = s.ReceiveDeactivation(ctx, lcReceipt("A", "DELETION", "7"), true, "T", "text")
	must(err)
	// Operator accounts: the hash is what the store gets; it is not in the trail either.
	_, err = s.UpsertOperator(ctx, "ops@example", "HASH-of-operator-pw")
	must(err)
	_, err = s.UpsertOperator(ctx, "ops@example", "HASH-of-new-operator-pw")
	must(err)

	var got []string
	for _, e := range slices.Backward(lcTrail(t, s, "A")) {
		got = append(got, e.Actor+" "+e.Action)
	}
	want := []string{
		"webhook credentials.stored", "admin:a setup.saved", "webhook credentials.stored", "activate:ip credentials.stored",
		"webhook tenant.deactivated", "webhook webhook.ignored", "webhook credentials.stored", "operator:o tenant.deactivated",
		"webhook credentials.stored", "webhook tenant.deleted",
	}
	if !slices.Equal(got, want) {
		t.Errorf("audit trail\n got %q\nwant %q", got, want)
	}
	var ops []string
	for _, e := range slices.Backward(lcTrail(t, s, "")) {
		ops = append(ops, e.Action)
	}
	if !slices.Equal(ops, []string{"operator.added", "operator.password_reset"}) {
		t.Errorf("operator trail %q", ops)
	}
	lcScanForPlaintext(t, s, append(secrets, "setup-value-1"))
	for _, e := range append(lcTrail(t, s, "A"), lcTrail(t, s, "")...) {
		detail := fmt.Sprint(e.Detail)
		for _, x := range append(secrets, "setup-value-1", "HASH-of") {
			if strings.Contains(detail, x) {
				t.Errorf("audit %s holds %q", e.Action, x)
			}
		}
	}
}

// Every applied change tells the other replicas (tenant_changed); a duplicate or an ignored event
// does not.
func TestLifecycleNotifiesReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	s := openStore(t, url, keyring(t))
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	if _, err := conn.Exec(ctx, `LISTEN tenant_changed`); err != nil {
		t.Fatal(err)
	}
	next := func(wait time.Duration) string {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, wait)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		if err != nil {
			return ""
		}
		return n.Payload
	}
	lcCredentialsEvent(t, s, "A", "CREATED", "a", nil)
	if got := next(5 * time.Second); got != "A" {
		t.Fatalf("notification after CREATED: %q", got)
	}
	lcCredentialsEvent(t, s, "A", "CREATED", "a", nil)
	if got := next(300 * time.Millisecond); got != "" {
		t.Errorf("a duplicate notified %q", got)
	}
	lcEndEvent(t, s, "A", "end", false)
	if got := next(5 * time.Second); got != "A" {
		t.Fatalf("notification after DEACTIVATION: %q", got)
	}
	lcCredentialsEvent(t, s, "A", "RESET", "reset", nil)
	lcEndEvent(t, s, "ghost", "end", false)
	if got := next(300 * time.Millisecond); got != "" {
		t.Errorf("an ignored event notified %q", got)
	}
}

// A deactivation body is a duplicate only while the school has had no new credentials since the
// body was received. Credentials stored by a reactivation that started before the deactivation's
// transaction but took the school's lock after it are new all the same: the same deactivation
// bytes arriving after them must deactivate again.
func TestRedeliveredDeactivationAfterARacingReactivation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, keyring(t))
	lcCredentialsEvent(t, s, "T", "CREATED", "created", nil)

	// A blocker holds the school's row and, uncommitted, the reactivation's receipt: the
	// reactivation begins first and waits on its receipt; the deactivation begins after it and
	// queues first for the school's row.
	tx, err := s.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	rr := lcReceipt("T", "REACTIVATED", "reactivated")
	if _, err := tx.Exec(ctx, `SELECT 1 FROM tenants WHERE tenant_id = 'T' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO webhook_receipts (tenant_id, body_sha256, event_type) VALUES ($1, $2, $3)`,
		rr.TenantID, rr.BodySHA256, rr.EventType); err != nil {
		t.Fatal(err)
	}
	reactivated, deactivated := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := s.ReceiveCredentials(ctx, rr, lcCreds("reactivated"), lcInfo("T"), nil)
		reactivated <- err
	}()
	lcWaitForLockWaiters(t, s, 1)
	time.Sleep(5 * time.Millisecond) // the deactivation's transaction starts strictly later
	go func() {
		_, err := s.ReceiveDeactivation(ctx, lcReceipt("T", "DEACTIVATION", "deactivation"), false, "", "")
		deactivated <- err
	}()
	lcWaitForLockWaiters(t, s, 2)
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-deactivated; err != nil {
		t.Fatal(err)
	}
	if err := <-reactivated; err != nil {
		t.Fatal(err)
	}
	// Both wake when the blocker rolls back; which takes the school's row first is up to
	// PostgreSQL. Whichever committed last decides, and the same deactivation bytes again must
	// follow it: after the reactivation they deactivate again, after the deactivation they are a
	// duplicate.
	switch got := lcState(t, s, "T"); got {
	case store.StateActive:
		if n := lcVersions(t, s, "T"); n != 1 {
			t.Fatalf("%d credentials, want the reactivation's", n)
		}
		out := lcEndEvent(t, s, "T", "deactivation", false)
		if out.Duplicate || lcState(t, s, "T") != store.StateDeactivated {
			t.Errorf("the deactivation body after the (later) reactivation: %+v, school %q; want it deactivated again",
				out, lcState(t, s, "T"))
		}
	case store.StateDeactivated:
		out := lcEndEvent(t, s, "T", "deactivation", false)
		if !out.Duplicate || lcState(t, s, "T") != store.StateDeactivated {
			t.Errorf("the deactivation body again after it applied last: %+v, school %q; want a duplicate",
				out, lcState(t, s, "T"))
		}
	default:
		t.Fatalf("school %q after a racing reactivation and deactivation", got)
	}
}
