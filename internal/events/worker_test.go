package events_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/untis-partner/server/internal/events"
	"github.com/untis-partner/server/internal/logtest"
	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/secret"
	"github.com/untis-partner/server/internal/store"
)

// The tests run the real worker against a real PostgreSQL and a real HTTP receiver, which checks
// every request with the Standard Webhooks Go library, as a partner's app would.

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" // the spec's published test secret

func openStore(t *testing.T, dbURL string) *store.Store {
	t.Helper()
	kr, err := secret.NewKeyring(secret.Key{ID: "k1", Secret: bytes.Repeat([]byte{5}, secret.KeySize)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(context.Background(), dbURL, kr, store.Options{MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	return st
}

// emit writes n lifecycle events of the school: its activation, then credential resets.
func emit(t *testing.T, st *store.Store, tenant string, n int) {
	t.Helper()
	for i := range n {
		event, body := "RESET", fmt.Sprintf("%s-%d-%d", tenant, i, time.Now().UnixNano())
		if i == 0 {
			event = "CREATED"
		}
		sum := sha256.Sum256([]byte(body))
		_, err := st.ReceiveCredentials(context.Background(), store.Receipt{TenantID: tenant, BodySHA256: sum[:], EventType: event},
			store.Credentials{ClientID: "app", Secret: "oidc-secret-" + body, Password: "password-" + body}, store.TenantInfo{Name: "School " + tenant}, nil)
		if err != nil {
			t.Fatal(err)
		}
	}
}

// received is one event as the receiver got it.
type received struct {
	MessageID string
	Tenant    string
	Seq       int64
	Type      string
	Data      map[string]any
	At        time.Time
}

// receiver is the partner's app. answer decides each request's answer (nil: 204); it sees the
// request's number (from 1) and may block. Every request must verify with the Standard Webhooks
// library; the receiver fails the test on two requests of one school, or of one event, at once.
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	wh     *standardwebhooks.Webhook
	answer atomic.Pointer[func(r *http.Request, ev received, n int) (int, http.Header, string)]

	mu       sync.Mutex
	requests int
	got      []received // every request answered 2xx, in the order answered
	attempts []received // every request
	inFlight map[string]bool
	ids      map[string]bool
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{t: t, wh: wh, inFlight: map[string]bool{}, ids: map[string]bool{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setAnswer(f func(r *http.Request, ev received, n int) (int, http.Header, string)) {
	rc.answer.Store(&f)
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	if err := rc.wh.Verify(body, r.Header); err != nil {
		rc.t.Errorf("the Standard Webhooks library refuses a request: %v", err)
		http.Error(w, "bad signature", http.StatusBadRequest)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || r.URL.Path != "/hooks" {
		rc.t.Errorf("request %s %s, content type %q", r.Method, r.URL, r.Header.Get("Content-Type"))
	}
	var p struct {
		Type      string         `json:"type"`
		Timestamp string         `json:"timestamp"`
		Data      map[string]any `json:"data"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		rc.t.Errorf("body %s: %v", body, err)
		return
	}
	if _, err := time.Parse(time.RFC3339Nano, p.Timestamp); err != nil || p.Type == "" {
		rc.t.Errorf("payload %s", body)
	}
	seq, _ := p.Data["sequence"].(float64)
	ev := received{MessageID: r.Header.Get(events.HeaderID), Tenant: fmt.Sprint(p.Data["tenantId"]), Seq: int64(seq), Type: p.Type, Data: p.Data, At: time.Now()}

	rc.mu.Lock()
	rc.requests++
	n := rc.requests
	if rc.inFlight[ev.Tenant] {
		rc.t.Errorf("two events of school %s in flight at once (the second is %d)", ev.Tenant, ev.Seq)
	}
	if rc.ids[ev.MessageID] {
		rc.t.Errorf("event %s sent twice at once", ev.MessageID)
	}
	rc.inFlight[ev.Tenant], rc.ids[ev.MessageID] = true, true
	rc.attempts = append(rc.attempts, ev)
	rc.mu.Unlock()

	status, header, text := http.StatusNoContent, http.Header(nil), ""
	if f := rc.answer.Load(); f != nil {
		status, header, text = (*f)(r, ev, n)
	}

	rc.mu.Lock()
	rc.inFlight[ev.Tenant], rc.ids[ev.MessageID] = false, false
	if status >= 200 && status < 300 {
		rc.got = append(rc.got, ev)
	}
	rc.mu.Unlock()
	for k, v := range header {
		w.Header()[k] = v
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, text)
}

func (rc *receiver) url() *url.URL {
	u, _ := url.Parse(rc.srv.URL + "/hooks")
	return u
}

func (rc *receiver) delivered() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

func (rc *receiver) allAttempts() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.attempts)
}

// fastConfig is a worker configuration whose waits are milliseconds.
func fastConfig(st *store.Store, rc *receiver) events.Config {
	secrets, err := events.ParseSecrets(testSecret)
	if err != nil {
		panic(err)
	}
	cfg := events.Config{Store: st, Secrets: secrets, Timeout: 5 * time.Second,
		MinBackoff: 5 * time.Millisecond, MaxBackoff: 40 * time.Millisecond, Poll: 50 * time.Millisecond, Busy: 5 * time.Millisecond,
		SweepEvery: time.Hour}
	if rc != nil {
		cfg.URL = rc.url()
	}
	return cfg
}

// start runs a worker until the test ends or stop is called; stop returns once it has stopped.
func start(t *testing.T, cfg events.Config) (w *events.Worker, stop func()) {
	t.Helper()
	w, err := events.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		w.Run(ctx)
		close(done)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(stop)
	return w, stop
}

// waitFor polls cond until it holds, or fails the test after a generous while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func counts(t *testing.T, st *store.Store) store.EventCounts {
	t.Helper()
	c, err := st.CountEvents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// checkOrder asserts that every event of the outbox reached the receiver, and that each school's
// events first arrived in their order (a repeat after a lost answer is allowed: at least once).
func checkOrder(t *testing.T, st *store.Store, got []received) {
	t.Helper()
	all, err := st.ListEvents(context.Background(), store.EventFilter{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	firstSeen := map[string]bool{}
	last := map[string]int64{}
	for _, ev := range got {
		if firstSeen[ev.MessageID] {
			continue
		}
		firstSeen[ev.MessageID] = true
		if ev.Seq <= last[ev.Tenant] {
			t.Errorf("school %s: event %d arrived after %d", ev.Tenant, ev.Seq, last[ev.Tenant])
		}
		last[ev.Tenant] = ev.Seq
	}
	for _, ev := range all {
		if !firstSeen[ev.MessageID] {
			t.Errorf("event %d (%s of %s) never arrived", ev.ID, ev.Type, ev.TenantID)
		}
		if ev.Status != store.EventDelivered {
			t.Errorf("event %d is %s", ev.ID, ev.Status)
		}
	}
	if len(firstSeen) != len(all) {
		t.Errorf("%d distinct events arrived, the outbox has %d", len(firstSeen), len(all))
	}
}

// The app is down for a while (refusing, then unreachable), then back: every event arrives, in
// order per school, none lost, including those written during the outage.
func TestEveryEventArrivesInOrderAfterAnOutage(t *testing.T) {
	t.Parallel()
	st := openStore(t, pgtest.NewDatabase(t))
	rc := newReceiver(t)
	var down atomic.Bool
	down.Store(true)
	rc.setAnswer(func(_ *http.Request, _ received, _ int) (int, http.Header, string) {
		if down.Load() {
			return http.StatusServiceUnavailable, nil, "maintenance"
		}
		return http.StatusOK, nil, ""
	})
	log, logs := logtest.New()
	cfg := fastConfig(st, rc)
	cfg.Logger = log
	start(t, cfg)
	for _, tn := range []string{"A", "B", "C"} {
		emit(t, st, tn, 3)
	}
	waitFor(t, "a few failed attempts", func() bool { return len(rc.allAttempts()) >= 12 })
	if n := len(rc.delivered()); n != 0 {
		t.Fatalf("%d events accepted while down", n)
	}
	emit(t, st, "A", 2)
	emit(t, st, "D", 2)
	down.Store(false)
	waitFor(t, "every event delivered", func() bool { return counts(t, st).Pending == 0 })
	checkOrder(t, st, rc.delivered())
	if c := counts(t, st); c.Failed != 0 {
		t.Errorf("counts %+v", c)
	}
	ev, err := st.ListEvents(context.Background(), store.EventFilter{TenantID: "A", Limit: 1})
	if err != nil || len(ev) != 1 || ev[0].LastError != "" {
		t.Errorf("A's newest event %+v, %v", ev, err)
	}
	logs.AssertNoSecrets(t, strings.TrimPrefix(testSecret, events.SecretPrefix), "oidc-secret-", "password-")
}

// A crash between the commit and the delivery loses nothing: events written while no worker
// runs, and an event whose attempt was cut off mid-way, are delivered by the next worker. The
// cut-off one arrives again with the same webhook-id (at least once).
func TestCrashBetweenCommitAndDeliveryLosesNothing(t *testing.T) {
	t.Parallel()
	st := openStore(t, pgtest.NewDatabase(t))
	rc := newReceiver(t)
	arrived := make(chan struct{}, 1)
	var first atomic.Bool
	first.Store(true)
	rc.setAnswer(func(r *http.Request, _ received, _ int) (int, http.Header, string) {
		if first.CompareAndSwap(true, false) {
			arrived <- struct{}{}
			<-r.Context().Done() // hangs until the worker dies
			return http.StatusOK, nil, ""
		}
		return http.StatusOK, nil, ""
	})
	emit(t, st, "A", 2) // committed while no worker runs
	cfg := fastConfig(st, rc)
	cfg.Workers = 1
	_, stop := start(t, cfg)
	<-arrived
	stop() // the crash: the attempt in flight is cut off
	if c := counts(t, st); c.Pending != 2 {
		t.Fatalf("after the crash %+v, want both events pending", c)
	}
	cut := rc.allAttempts()[0]
	if ev, err := st.Event(context.Background(), cut.MessageID); err != nil || ev.Attempts != 0 || ev.Status != store.EventPending {
		t.Fatalf("the cut-off event %+v, %v: want it unrecorded", ev, err)
	}
	emit(t, st, "B", 1) // written while nothing runs
	start(t, cfg)
	waitFor(t, "every event delivered", func() bool { return counts(t, st).Pending == 0 })
	got := rc.delivered()
	checkOrder(t, st, got)
	if got[0].MessageID != cut.MessageID && got[1].MessageID != cut.MessageID {
		t.Errorf("the cut-off event %s was not sent again first in its school: %+v", cut.MessageID, got)
	}
}

// Two replicas (two stores, two workers of three each) on one database never send one event, or
// two events of one school, at the same time; every event arrives once, in order per school.
func TestTwoReplicasNeverSendOneEventAtOnce(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	st1, st2 := openStore(t, dbURL), openStore(t, dbURL)
	rc := newReceiver(t)
	rc.setAnswer(func(_ *http.Request, ev received, _ int) (int, http.Header, string) {
		time.Sleep(time.Duration(ev.Seq%4) * time.Millisecond) // overlap, if the claims allowed it
		return http.StatusOK, nil, ""
	})
	for _, st := range []*store.Store{st1, st2} {
		cfg := fastConfig(st, rc)
		cfg.Workers = 3
		start(t, cfg)
	}
	schools := []string{"A", "B", "C", "D", "E"}
	var wg sync.WaitGroup
	for i, tn := range schools {
		wg.Go(func() { emit(t, []*store.Store{st1, st2}[i%2], tn, 6) })
	}
	wg.Wait()
	waitFor(t, "every event delivered", func() bool { return counts(t, st1).Pending == 0 })
	got := rc.delivered()
	checkOrder(t, st1, got)
	if len(got) != 30 {
		t.Errorf("%d deliveries of 30 events: some were sent twice", len(got))
	}
}

// After the retry window an event is marked failed (and the school's next event goes on); an
// operator's retry sends it again; the metrics count it all.
func TestFailsAfterTheRetryWindowAndRetryRequeues(t *testing.T) {
	t.Parallel()
	st := openStore(t, pgtest.NewDatabase(t))
	rc := newReceiver(t)
	var reject atomic.Bool
	reject.Store(true)
	rc.setAnswer(func(_ *http.Request, ev received, _ int) (int, http.Header, string) {
		if reject.Load() && ev.Type == store.EventActivated {
			return http.StatusInternalServerError, nil, "boom:\x00 \u202e unknown school\n"
		}
		return http.StatusOK, nil, ""
	})
	reg := metrics.NewRegistry()
	cfg := fastConfig(st, rc)
	cfg.RetryFor = 300 * time.Millisecond
	cfg.Metrics = reg
	start(t, cfg)
	emit(t, st, "A", 2)
	waitFor(t, "the activation failed for good", func() bool { return counts(t, st).Failed == 1 })
	waitFor(t, "the reset behind it delivered", func() bool { return counts(t, st).Pending == 0 })
	failed, err := st.ListEvents(context.Background(), store.EventFilter{Status: store.EventFailed})
	if err != nil || len(failed) != 1 {
		t.Fatal(failed, err)
	}
	f := failed[0]
	if f.Type != store.EventActivated || f.Attempts < 2 || f.FailedAt == nil || f.LastError != "HTTP 500: boom: unknown school" {
		t.Errorf("failed event %+v", f)
	}
	if got := rc.delivered(); len(got) != 1 || got[0].Type != store.EventCredentialsReset {
		t.Errorf("delivered %+v, want the reset only", got)
	}
	scrape := scrapeText(t, reg)
	for _, want := range []string{"events_failed 1", "events_pending 0", "events_gave_up_total 1", `events_delivery_attempts_total{outcome="delivered"} 1`} {
		if !strings.Contains(scrape, want+"\n") {
			t.Errorf("metrics lack %q:\n%s", want, grep(scrape, "events_"))
		}
	}

	reject.Store(false)
	if _, err := st.RetryEvent(context.Background(), fmt.Sprint(f.ID), "operator test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retried event delivered", func() bool { c := counts(t, st); return c.Pending == 0 && c.Failed == 0 })
	if got := rc.delivered(); len(got) != 2 || got[1].MessageID != f.MessageID {
		t.Errorf("delivered %+v", got)
	}
}

func scrapeText(t *testing.T, reg *metrics.Registry) string {
	t.Helper()
	var b strings.Builder
	if _, err := reg.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func grep(text, prefix string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A 429 or 503 with Retry-After is believed, within bounds: a second is waited, a day is not.
func TestHonoursRetryAfterWithinBounds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, retryAfter string
		atLeast          time.Duration
	}{
		{"seconds", "1", 900 * time.Millisecond},
		{"a day, capped at the longest backoff", "86400", time.Second},
		{"a date", "", 900 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := openStore(t, pgtest.NewDatabase(t))
			rc := newReceiver(t)
			rc.setAnswer(func(_ *http.Request, _ received, n int) (int, http.Header, string) {
				if n == 1 {
					ra := tc.retryAfter
					if ra == "" {
						ra = time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)
					}
					return http.StatusTooManyRequests, http.Header{"Retry-After": {ra}}, ""
				}
				return http.StatusOK, nil, ""
			})
			cfg := fastConfig(st, rc)
			cfg.MaxBackoff = 1500 * time.Millisecond // also the longest Retry-After believed
			start(t, cfg)
			emit(t, st, "A", 1)
			waitFor(t, "delivery", func() bool { return len(rc.delivered()) == 1 })
			a := rc.allAttempts()
			if len(a) != 2 {
				t.Fatalf("%d attempts", len(a))
			}
			if gap := a[1].At.Sub(a[0].At); gap < tc.atLeast {
				t.Errorf("retried after %v, want at least %v", gap, tc.atLeast)
			}
		})
	}
}

// A redirect is a failed attempt: the worker never follows it, so no answer can send our events
// elsewhere. A hung app is cut off by the timeout. Neither is logged with the URL's query.
func TestRedirectsAreNotFollowedAndHungAppsTimeOut(t *testing.T) {
	t.Parallel()
	var elsewhere atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { elsewhere.Add(1) }))
	t.Cleanup(other.Close)
	for _, tc := range []struct {
		name    string
		answer  func(r *http.Request) (int, http.Header, string)
		wantErr string
	}{
		{"redirect", func(*http.Request) (int, http.Header, string) {
			return http.StatusTemporaryRedirect, http.Header{"Location": {other.URL + "/steal"}}, ""
		}, "HTTP 307 (a redirect; events are sent to EVENTS_URL only)"},
		{"hangs", func(r *http.Request) (int, http.Header, string) {
			<-r.Context().Done()
			return http.StatusOK, nil, ""
		}, "no answer within 200ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st := openStore(t, pgtest.NewDatabase(t))
			rc := newReceiver(t)
			rc.setAnswer(func(r *http.Request, _ received, _ int) (int, http.Header, string) { return tc.answer(r) })
			log, logs := logtest.New()
			cfg := fastConfig(st, rc)
			cfg.Timeout = 200 * time.Millisecond
			cfg.URL.RawQuery = "token=query-token-never-logged"
			cfg.Logger = log
			start(t, cfg)
			emit(t, st, "A", 1)
			waitFor(t, "two attempts", func() bool {
				ev, err := st.ListEvents(context.Background(), store.EventFilter{})
				return err == nil && len(ev) == 1 && ev[0].Attempts >= 2
			})
			ev, _ := st.ListEvents(context.Background(), store.EventFilter{})
			if ev[0].Status != store.EventPending || ev[0].LastError != tc.wantErr {
				t.Errorf("event %+v, want pending with %q", ev[0], tc.wantErr)
			}
			if n := elsewhere.Load(); n != 0 {
				t.Errorf("the redirect target got %d requests", n)
			}
			logs.AssertNoSecrets(t, "query-token-never-logged")
		})
	}
}

// A committed event wakes the idle worker at once (the lifecycle change's notification), and so
// does an operator's retry (the events channel): the worker does not wait for its poll.
func TestCommitAndRetryWakeTheWorker(t *testing.T) {
	t.Parallel()
	st := openStore(t, pgtest.NewDatabase(t))
	rc := newReceiver(t)
	var reject atomic.Bool
	reject.Store(true)
	rc.setAnswer(func(_ *http.Request, _ received, _ int) (int, http.Header, string) {
		if reject.Load() {
			return http.StatusGone, nil, ""
		}
		return http.StatusOK, nil, ""
	})
	cfg := fastConfig(st, rc)
	cfg.Poll = time.Hour
	cfg.RetryFor = time.Millisecond // the first failure is final
	w, _ := start(t, cfg)
	listening := make(chan struct{}, 1)
	h := w.ChangeHandler()
	resync := h.Resync
	h.Resync = func() {
		resync()
		select {
		case listening <- struct{}{}:
		default:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go st.ListenTenantChanges(ctx, slog.New(slog.DiscardHandler), h)
	<-listening
	time.Sleep(50 * time.Millisecond) // the workers found nothing and sleep for their hour
	emit(t, st, "A", 1)
	waitFor(t, "the event failed", func() bool { return counts(t, st).Failed == 1 })
	reject.Store(false)
	if n, err := st.RetryFailedEvents(context.Background(), "operator test"); err != nil || n != 1 {
		t.Fatal(n, err)
	}
	waitFor(t, "the retried event delivered", func() bool { return len(rc.delivered()) == 1 })
}

// Without EVENTS_URL nothing is sent; the sweeper keeps the events of the retry window (for a
// receiver configured later) and drops older ones.
func TestWithoutAReceiverTheOutboxIsOnlySwept(t *testing.T) {
	t.Parallel()
	st := openStore(t, pgtest.NewDatabase(t))
	emit(t, st, "A", 2)
	if _, err := st.Pool().Exec(context.Background(), `UPDATE events SET created_at = now() - interval '4 days' WHERE id = (SELECT min(id) FROM events)`); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(st, nil)
	cfg.SweepEvery = 10 * time.Millisecond
	start(t, cfg)
	waitFor(t, "the old event swept", func() bool { return counts(t, st).Pending == 1 })
	time.Sleep(50 * time.Millisecond)
	if c := counts(t, st); c.Pending != 1 {
		t.Errorf("counts %+v", c)
	}
	if _, err := events.New(events.Config{Store: st, URL: &url.URL{Scheme: "https", Host: "app.example"}}); err == nil {
		t.Error("a receiver without a secret was accepted")
	}
}

// The body is the Standard Webhooks shape, the same bytes on every attempt.
func TestBodyShape(t *testing.T) {
	t.Parallel()
	at := time.Date(2025, 3, 4, 5, 6, 7, 890000000, time.FixedZone("CET", 3600))
	ev := store.OutboxEvent{ID: 9, Type: store.EventDeleted, CreatedAt: at,
		Data: json.RawMessage(`{"tenantId": "1001", "message": "A & B <x>", "sequence": 9}`)}
	b1, err := events.Body(ev)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := events.Body(ev)
	want := `{"type":"school.deleted","timestamp":"2025-03-04T04:06:07.890000Z","data":{"tenantId":"1001","message":"A & B <x>","sequence":9}}`
	if string(b1) != want || !bytes.Equal(b1, b2) {
		t.Errorf("body %s\nwant %s", b1, want)
	}
}
