package main

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/platform"
	"github.com/untis-partner/server/internal/platformsim"
	"github.com/untis-partner/server/internal/store"
)

// syncer holds both sides: the simulator's control API and the server's store.
type syncer struct {
	sim   string // the simulator's base URL
	http  *http.Client
	store *store.Store
	api   *url.URL // UNTIS_API_URL, for the token proof
}

func open(ctx context.Context, getenv func(string) string, simURL string) (*syncer, error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, err
	}
	if err := cfg.Require(config.EnvDatabaseURL, config.EnvEncryptionKeys); err != nil {
		return nil, err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, cfg.Keyring, store.Options{MaxConns: 2})
	if err != nil {
		return nil, err
	}
	// A webhook's delivery waits for the server's answer; 20 s covers a slow first one.
	return &syncer{sim: strings.TrimRight(simURL, "/"), http: &http.Client{Timeout: 20 * time.Second}, store: st, api: cfg.UntisAPIURL}, nil
}

func (sy *syncer) close() { sy.store.Close() }

// result is one school's outcome: ok is false when sign-in fails without anyone having chosen
// it; text says where the school stands and, when it is off, how to bring it back.
type result struct {
	name string
	ok   bool
	text string
}

func (r result) named() string {
	if r.name == "" {
		return ""
	}
	return " (" + r.name + ")"
}

// reconcile brings one school's two sides into agreement (see the package comment).
func (sy *syncer) reconcile(ctx context.Context, tid string) result {
	sim, err := sy.simTenant(ctx, tid)
	if err != nil {
		return result{text: "NOT READY: " + err.Error()}
	}
	r := result{name: sim.Name}
	fail := func(format string, args ...any) result {
		r.ok, r.text = false, "NOT READY: "+fmt.Sprintf(format, args...)
		return r
	}

	var did []string // what was sent, for the report
	switch sim.Status {
	case platformsim.StatusDeactivated, platformsim.StatusDeleted:
		return sy.keepEnded(ctx, tid, sim, r)
	case platformsim.StatusNew:
		if err := sy.action(ctx, tid, "activate"); err != nil {
			return fail("the simulator's CREATED webhook: %v", err)
		}
		did = append(did, "the simulator sent its signed CREATED webhook")
		if sim, err = sy.simTenant(ctx, tid); err != nil {
			return fail("%v", err)
		}
	}

	problem, err := sy.verify(ctx, tid, sim)
	if err != nil {
		return fail("%v", err)
	}
	if problem != "" {
		end, err := sy.store.TenantEnding(ctx, tid)
		switch {
		case err == nil && end.Ended && end.ByOperator:
			// The partner's own decision: respected, and said.
			r.ok = true
			r.text = "switched off by an operator of this server (console), so sign-in is refused. " +
				"To bring it back: the console's manual entry with the credentials shown on the simulator page, " +
				"or Reactivate on the simulator page (the platform's new activation)"
			return r
		case err != nil && !errors.Is(err, store.ErrNotFound):
			return fail("%v", err)
		}
		// The platform issues new credentials and sends them signed: a RESET for a school the
		// server has in use, a REACTIVATED for one it has ended or never heard of.
		action, event := "reactivate", "REACTIVATED"
		if err == nil && (end.State == store.StateActive || end.State == store.StatePendingSetup) {
			action, event = "reset", "RESET"
		}
		if err := sy.action(ctx, tid, action); err != nil {
			return fail("%s (the simulator's %s webhook did not repair it: %v)", problem, event, err)
		}
		did = append(did, problem+", so the simulator issued new ones in a signed "+event+" webhook")
		if sim, err = sy.simTenant(ctx, tid); err != nil {
			return fail("%v", err)
		}
		again, err := sy.verify(ctx, tid, sim)
		if err != nil {
			return fail("%v", err)
		}
		if again != "" {
			return fail("%s, still after a %s webhook", again, event)
		}
	}
	r.ok = true
	r.text = "ready: the server holds the simulator's credentials, and the platform accepts them"
	if len(did) > 0 {
		r.text = "ready: " + strings.Join(did, "; ") + "; now the server holds the simulator's credentials, and the platform accepts them"
	}
	return r
}

// keepEnded handles a school the simulator has deactivated or deleted: the server must not
// keep it in use (a lost deactivation webhook is sent again).
func (sy *syncer) keepEnded(ctx context.Context, tid string, sim platformsim.TenantInfo, r result) result {
	word, action, event := "deactivated", "deactivate", "DEACTIVATION"
	if sim.Status == platformsim.StatusDeleted {
		word, action, event = "deleted", "delete", "DELETION"
	}
	end, err := sy.store.TenantEnding(ctx, tid)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		r.text = "NOT READY: " + err.Error()
		return r
	}
	resent := ""
	if err == nil && (end.State == store.StateActive || end.State == store.StatePendingSetup) {
		if err := sy.action(ctx, tid, action); err != nil {
			r.text = fmt.Sprintf("NOT READY: %s on the simulator but still in use on the server, and the %s webhook failed: %v", word, event, err)
			return r
		}
		resent = " (the server still had it in use: the simulator sent the " + event + " webhook again)"
	}
	r.ok = true
	r.text = word + " on the simulator page and on the server" + resent + ", so sign-in is refused; press Reactivate on the simulator page to bring it back"
	return r
}

// verify reports what keeps the school from signing users in, "" when nothing does: the server
// must have it in use with exactly the simulator's credentials, and the platform must issue a
// token for them. err is for failures of the check itself.
func (sy *syncer) verify(ctx context.Context, tid string, sim platformsim.TenantInfo) (string, error) {
	held, err := sy.store.ActiveCredentials(ctx, tid)
	if errors.Is(err, store.ErrNotFound) {
		if _, err := sy.store.Tenant(ctx, tid); errors.Is(err, store.ErrNotFound) {
			return "the server did not know the school", nil
		}
		return "the server had the school switched off or without credentials", nil
	}
	if err != nil {
		return "", err
	}
	if held.ClientID != sim.ClientID || !equal(held.Secret, sim.Secret) || !equal(held.Password, sim.Password) {
		return "the server held other credentials than the simulator (a reset before a restart? a mistyped manual entry?)", nil
	}
	// A fresh client each time: no token cached from before a repair.
	clients, err := platform.New(platform.Config{BaseURL: sy.api, Store: sy.store})
	if err != nil {
		return "", err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := platform.Collect(clients.For(tid).Schools(pctx, platform.ListOptions{})); err != nil {
		return "the platform refused the server's credentials (" + platform.PublicMessage(err) + ")", nil
	}
	return "", nil
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// simTenant reads one school from the simulator's control API.
func (sy *syncer) simTenant(ctx context.Context, tid string) (platformsim.TenantInfo, error) {
	var ti platformsim.TenantInfo
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, sy.sim+"/sim/api/tenants/"+url.PathEscape(tid), nil)
	if err != nil {
		return ti, err
	}
	resp, err := sy.http.Do(req)
	if err != nil {
		return ti, fmt.Errorf("the simulator at %s does not answer: %w", sy.sim, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return ti, fmt.Errorf("the simulator has no school %s", tid)
	}
	if resp.StatusCode != http.StatusOK {
		return ti, fmt.Errorf("the simulator answered %d for school %s", resp.StatusCode, tid)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ti); err != nil {
		return ti, fmt.Errorf("the simulator's answer for school %s: %w", tid, err)
	}
	return ti, nil
}

// action runs a lifecycle action on the simulator (it signs and sends the webhook) and checks
// that the server took it.
func (sy *syncer) action(ctx context.Context, tid, action string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sy.sim+"/sim/api/tenants/"+url.PathEscape(tid)+"/"+action, bytes.NewReader(nil))
	if err != nil {
		return err
	}
	resp, err := sy.http.Do(req)
	if err != nil {
		return fmt.Errorf("the simulator does not answer: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the simulator could not deliver it (%d: %s)", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	var res platformsim.WebhookResult
	if err := json.Unmarshal(body, &res); err != nil {
		return fmt.Errorf("the simulator's answer: %w", err)
	}
	if res.Status != http.StatusOK {
		return fmt.Errorf("the server answered the webhook with %d: %s", res.Status, strings.TrimSpace(res.ResponseBody))
	}
	return nil
}
