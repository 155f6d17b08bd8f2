package events

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/store"
)

// Config configures a Worker. Zero durations take the defaults.
type Config struct {
	Store *store.Store
	// URL is EVENTS_URL. Nil: nothing is sent; the worker only sweeps the outbox, keeping the
	// recent undelivered events (RetryFor) for when a receiver is configured.
	URL *url.URL
	// Secrets sign every request (EVENTS_SECRET; several during a rotation). Required with URL.
	Secrets []Secret
	// Timeout bounds one attempt, from connecting to the answer's headers (default 10 s).
	Timeout time.Duration
	// RetryFor is how long an event is retried before it is marked failed (default 72 h).
	RetryFor time.Duration
	// Keep is how long delivered and failed events stay in the outbox (default 30 days).
	Keep time.Duration

	Logger    *slog.Logger
	Metrics   *metrics.Registry
	UserAgent string

	// Tuning; tests make them short.
	MinBackoff, MaxBackoff time.Duration // backoff after the first failed attempt, and its cap (5 s, 1 h)
	Poll                   time.Duration // look for due events at least this often (30 s)
	Busy                   time.Duration // wait when every due event is held by another worker (1 s)
	SweepEvery             time.Duration // (1 min)
	Workers                int           // events sent at once by this replica (4)
	// Now is the clock of the webhook-timestamp header (time.Now).
	Now func() time.Time
}

// Worker delivers the outbox's events. Run it on every replica; Wake it when events were written.
type Worker struct {
	cfg    Config
	url    string
	client *http.Client
	log    *slog.Logger
	wake   waker
	m      workerMetrics
}

// New checks cfg and builds a Worker, registering its metrics.
func New(cfg Config) (*Worker, error) {
	if cfg.Store == nil {
		return nil, errors.New("events: no store")
	}
	if cfg.URL != nil && len(cfg.Secrets) == 0 {
		return nil, errors.New("events: a receiver URL needs a signing secret")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Timeout, 10*time.Second)
	def(&cfg.RetryFor, 72*time.Hour)
	def(&cfg.Keep, 30*24*time.Hour)
	def(&cfg.MinBackoff, 5*time.Second)
	def(&cfg.MaxBackoff, time.Hour)
	def(&cfg.Poll, 30*time.Second)
	def(&cfg.Busy, time.Second)
	def(&cfg.SweepEvery, time.Minute)
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewRegistry()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "untis-partner-server"
	}
	w := &Worker{cfg: cfg, log: cfg.Logger, client: newHTTPClient(cfg.Workers), wake: waker{ch: make(chan struct{})}}
	if cfg.URL != nil {
		w.url = cfg.URL.String()
	}
	w.m = newWorkerMetrics(cfg.Metrics, cfg.Store)
	return w, nil
}

// newHTTPClient sends to EVENTS_URL only: a redirect is an answer like any other non-2xx (a
// failed attempt), never followed, so no answer can point our signed events elsewhere.
func newHTTPClient(workers int) *http.Client {
	t := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          workers,
		MaxIdleConnsPerHost:   workers,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
	return &http.Client{Transport: t, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// Wake makes the worker look for due events now (an event was written or queued again).
func (w *Worker) Wake() { w.wake.wake() }

// ChangeHandler wakes the worker on the store's notifications: every lifecycle change notifies
// its school's change when it commits (with its event), an operator's retry notifies the events
// channel, and a reconnect may have missed either.
func (w *Worker) ChangeHandler() store.TenantChangeHandler {
	return store.TenantChangeHandler{
		Changed:      func(string) { w.Wake() },
		Resync:       w.Wake,
		EventsQueued: w.Wake,
	}
}

// Run delivers and sweeps until ctx ends. An attempt in flight when ctx ends is abandoned
// unrecorded: the event is sent again later (at least once; the app dedupes on webhook-id).
func (w *Worker) Run(ctx context.Context) {
	if w.cfg.URL == nil {
		w.log.InfoContext(ctx, "EVENTS_URL is unset: school lifecycle events are kept in the outbox for EVENTS_RETRY_FOR, not sent",
			"retry_for", w.cfg.RetryFor)
	}
	var wg sync.WaitGroup
	wg.Go(func() { w.sweepLoop(ctx) })
	if w.cfg.URL != nil {
		for range w.cfg.Workers {
			wg.Go(func() { w.deliverLoop(ctx) })
		}
	}
	wg.Wait()
}

func (w *Worker) deliverLoop(ctx context.Context) {
	errWait := time.Second
	for ctx.Err() == nil {
		// Take the wake-up channel before looking: a wake-up that comes while we look is not lost.
		woken := w.wake.wait()
		claimed, err := w.cfg.Store.DeliverNext(ctx, w.attempt)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.WarnContext(ctx, "event delivery: the outbox cannot be read; trying again", "err", err, "retry_in", errWait)
			if !sleep(ctx, errWait, nil) {
				return
			}
			errWait = min(2*errWait, 30*time.Second)
			continue
		}
		errWait = time.Second
		if claimed {
			continue
		}
		wait := w.cfg.Poll
		if due, ok, err := w.cfg.Store.NextEventDue(ctx); err == nil && ok {
			if due <= 0 {
				due = w.cfg.Busy // due, yet not claimable: another worker is sending that school's event
			}
			wait = min(wait, due)
		}
		if !sleep(ctx, wait, woken) {
			return
		}
	}
}

func (w *Worker) sweepLoop(ctx context.Context) {
	for {
		p := store.EventSweep{Keep: w.cfg.Keep}
		if w.cfg.URL == nil {
			p.Undelivered = w.cfg.RetryFor
		}
		n, err := w.cfg.Store.SweepEvents(ctx, p)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			w.log.WarnContext(ctx, "event outbox sweep failed", "err", err)
		case n > 0:
			w.log.InfoContext(ctx, "event outbox swept", "deleted", n)
		}
		if !sleep(ctx, w.cfg.SweepEvery, nil) {
			return
		}
	}
}

// sleep waits d, or until woken; false when ctx ended.
func sleep(ctx context.Context, d time.Duration, woken <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-woken:
	case <-t.C:
	}
	return true
}

// attempt sends one event once; now is the database's clock at the claim.
func (w *Worker) attempt(ctx context.Context, ev store.OutboxEvent, now time.Time) store.Attempt {
	body, err := Body(ev)
	if err != nil {
		// Cannot happen with data the store wrote; give up at once rather than retry for days.
		w.log.ErrorContext(ctx, "event cannot be rendered", "event_id", ev.ID, "err", err)
		return store.Attempt{Outcome: store.AttemptFailed, Error: "the event could not be rendered"}
	}
	start := time.Now()
	outcome, status, retryAfter, errText := w.send(ctx, ev, body)
	elapsed := time.Since(start)
	if outcome == outcomeAbandoned {
		return store.Attempt{Outcome: store.AttemptAbandoned}
	}
	w.m.attempts.With(outcome).Inc()
	w.m.duration.Observe(elapsed.Seconds())
	if outcome == outcomeDelivered {
		if ev.Attempts > 0 {
			w.log.InfoContext(ctx, "event delivered after retries", "event_id", ev.ID, "tenant_id", ev.TenantID, "type", ev.Type, "attempts", ev.Attempts+1)
		}
		return store.Attempt{Outcome: store.AttemptDelivered}
	}
	deadline := ev.WindowStart.Add(w.cfg.RetryFor)
	after := now.Add(elapsed)
	attrs := []any{"event_id", ev.ID, "tenant_id", ev.TenantID, "type", ev.Type, "attempts", ev.Attempts + 1, "reason", errText}
	if status != 0 {
		attrs = append(attrs, "status", status)
	}
	if !after.Before(deadline) {
		w.m.gaveUp.Inc()
		w.log.WarnContext(ctx, "event delivery failed for good: the retry window is over; the console and `server events retry` can send it again", attrs...)
		return store.Attempt{Outcome: store.AttemptFailed, Error: errText}
	}
	delay := w.backoff(ev.Attempts + 1)
	if retryAfter > 0 {
		// The app says when to come back: believe it within our own bounds.
		delay = min(max(retryAfter, w.cfg.MinBackoff), w.cfg.MaxBackoff)
	}
	// The last attempt comes at the end of the window, not after it.
	delay = min(delay, deadline.Sub(after))
	level := slog.LevelDebug
	if ev.Attempts == 0 {
		level = slog.LevelWarn // the first failure of an event says so; its retries are counted in the metrics
	}
	w.log.Log(ctx, level, "event delivery failed; will retry", append(attrs, "retry_in", delay)...)
	return store.Attempt{Outcome: store.AttemptRetry, RetryIn: delay, Error: errText}
}

// Outcomes of an attempt (the metric's label values).
const (
	outcomeDelivered = "delivered"
	outcomeRejected  = "rejected" // an answer that is not 2xx
	outcomeTimeout   = "timeout"
	outcomeError     = "error" // no answer: connection refused, TLS, DNS, ...
	outcomeAbandoned = ""      // the worker stopped
)

// send POSTs body to EVENTS_URL and classifies the answer. errText is for the console: the
// status and the start of the app's answer, or what kept us from getting one (never the URL,
// which may carry a token in its query).
func (w *Worker) send(ctx context.Context, ev store.OutboxEvent, body []byte) (outcome string, status int, retryAfter time.Duration, errText string) {
	actx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return outcomeError, 0, 0, "the request could not be made"
	}
	ts := w.cfg.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", w.cfg.UserAgent)
	req.Header.Set(HeaderID, ev.MessageID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(w.cfg.Secrets, ev.MessageID, ts, body))
	resp, err := w.client.Do(req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return outcomeAbandoned, 0, 0, ""
		case actx.Err() != nil:
			return outcomeTimeout, 0, 0, fmt.Sprintf("no answer within %s", w.cfg.Timeout)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return outcomeError, 0, 0, "no answer: " + clean(err.Error(), 200)
	}
	defer resp.Body.Close()
	// The start of the answer tells an operator why the app refused; the rest is read (bounded)
	// so the connection can be reused.
	head, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return outcomeDelivered, resp.StatusCode, 0, ""
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), w.cfg.Now())
	}
	errText = fmt.Sprintf("HTTP %d", resp.StatusCode)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		errText += " (a redirect; events are sent to EVENTS_URL only)"
	}
	if s := clean(string(head), 160); s != "" {
		errText += ": " + s
	}
	return outcomeRejected, resp.StatusCode, retryAfter, errText
}

// backoff is the wait after the n-th failed attempt: MinBackoff doubling up to MaxBackoff, with
// equal jitter (half fixed, half random), so the retries of many events spread out.
func (w *Worker) backoff(n int) time.Duration {
	d := w.cfg.MinBackoff
	for i := 1; i < n && d < w.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, w.cfg.MaxBackoff)
	half := d / 2
	return half + rand.N(half+1)
}

// parseRetryAfter reads a Retry-After header: seconds, or an HTTP date; 0 when absent or unusable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(min(secs, int64(30*24*time.Hour/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// clean makes text from outside storable and readable: valid UTF-8, no control or format
// characters, at most n bytes.
func clean(s string, n int) string {
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return ' '
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		cut := n
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// waker wakes every goroutine waiting on its current channel at once.
type waker struct {
	mu sync.Mutex
	ch chan struct{}
}

func (k *waker) wait() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.ch
}

func (k *waker) wake() {
	k.mu.Lock()
	defer k.mu.Unlock()
	close(k.ch)
	k.ch = make(chan struct{})
}
