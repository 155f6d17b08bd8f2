// Package session keeps signed-in browsers: server-side sessions in the store, found by the
// SHA-256 of a random id that only the browser's cookie holds, with idle and absolute timeouts,
// bound to one school; and the cookies of the sign-in flow. Cookies are __Host- prefixed,
// HttpOnly and Secure; SameSite=Lax, or None and Partitioned when the app runs in an iFrame.
package session

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/store"
)

// Cookie names. The __Host- prefix makes the browser refuse the cookie unless it is Secure, has
// Path=/ and no Domain: no subdomain or plain-http page can plant or overwrite it.
const (
	CookieName       = "__Host-untis-session"
	flowCookiePrefix = "__Host-untis-flow-"
	// FormCookieName holds the token of forms used without a session (/activate): the
	// double-submit pattern, the form carries the same value.
	FormCookieName = "__Host-untis-form"
)

// ErrNoSession is returned when the request carries no live session.
var ErrNoSession = errors.New("no session")

// Config configures the Manager.
type Config struct {
	Store *store.Store
	// Embed is EMBED_MODE: cookies must travel inside the platform's iFrame (SameSite=None,
	// Partitioned).
	Embed       bool
	IdleTimeout time.Duration
	MaxAge      time.Duration
	Now         func() time.Time
	Logger      *slog.Logger
	// CacheTTL is SESSION_CACHE_TTL: how long a session read from the store may answer later
	// requests from memory. 0 turns the cache off (every request reads the store). The cache is
	// used only while the replica's listener runs with ChangeHandler, which revokes its entries.
	CacheTTL time.Duration
	// CacheSize bounds the cached sessions (default 100,000).
	CacheSize int
	// Metrics, if set, gets the cache's series.
	Metrics *metrics.Registry
}

// DefaultCacheSize bounds the session cache when Config.CacheSize is 0.
const DefaultCacheSize = 100_000

// Manager creates, finds and ends sessions, and writes the flow cookies.
type Manager struct {
	store *store.Store
	embed bool
	idle  time.Duration
	max   time.Duration
	now   func() time.Time
	log   *slog.Logger
	// touchAfter: activity is written back at most this often per session, so a busy session
	// costs one read per request, not a write.
	touchAfter time.Duration
	// cache holds live sessions while they may be trusted (nil when turned off).
	cache   *cache
	lookups struct{ hit, miss, bypass *metrics.Counter }
}

// New builds a Manager.
func New(cfg Config) *Manager {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Hour
	}
	if cfg.MaxAge < cfg.IdleTimeout {
		cfg.MaxAge = max(cfg.IdleTimeout, 12*time.Hour)
	}
	m := &Manager{
		store: cfg.Store, embed: cfg.Embed, idle: cfg.IdleTimeout, max: cfg.MaxAge, now: cfg.Now, log: cfg.Logger,
		touchAfter: min(time.Minute, cfg.IdleTimeout/10),
	}
	if cfg.CacheTTL > 0 {
		if cfg.CacheSize <= 0 {
			cfg.CacheSize = DefaultCacheSize
		}
		m.cache = newCache(cfg.CacheTTL, cfg.CacheSize)
	}
	m.registerMetrics(cfg.Metrics)
	return m
}

// Start signs the browser in as user: a new session with a fresh id (never one the browser
// brought), replacing the browser's previous session if it had one. It returns the school's
// state at that moment.
func (m *Manager) Start(ctx context.Context, w http.ResponseWriter, r *http.Request, user store.User, launch map[string]string) (string, error) {
	id := NewToken()
	now := m.now()
	l := store.Login{
		User: user, SessionIDHash: store.HashID(id), CSRFToken: []byte(NewToken()), Launch: launch,
		Now: now, IdleExpiresAt: now.Add(m.idle), ExpiresAt: now.Add(m.max),
	}
	prev := cookieIDs(r, CookieName)
	if len(prev) > 0 {
		l.ReplacesIDHash = store.HashID(prev[0])
	}
	state, err := m.store.CreateLogin(ctx, l)
	if l.ReplacesIDHash != nil && m.cache != nil {
		// Other replicas hear of it; this one forgets it before answering.
		m.cache.drop(l.ReplacesIDHash)
	}
	if err != nil {
		return "", fmt.Errorf("start session: %w", err)
	}
	// A browser that brought two session cookies (see cookieIDs) has its other session ended
	// too: a new sign-in replaces whatever this browser was signed in as.
	for i, old := range prev {
		if i == 0 {
			continue // replaced by CreateLogin
		}
		if _, err := m.endSession(ctx, store.HashID(old)); err != nil {
			m.log.WarnContext(ctx, "end a replaced session", "tenant_id", user.TenantID, "err", err)
		}
	}
	// The other mode's cookie of the same name would otherwise be sent along (and looked up)
	// until it expires. It is removed first: a browser that does not know Partitioned takes both
	// headers for one cookie, and the last one must be the new session's.
	http.SetCookie(w, m.otherModeCookie(CookieName))
	http.SetCookie(w, m.cookie(CookieName, id, int(m.max.Seconds())))
	return state, nil
}

// CookieID returns the id a request's cookie holds, or "" when it has none of a plausible size
// (ids are 43 characters; anything over 128 is not looked up).
func CookieID(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil || len(c.Value) > 128 {
		return ""
	}
	return c.Value
}

// maxCookieValues bounds how many cookies of one name a request may have looked up. A browser
// holds at most two of our names: after EMBED_MODE changed, the SameSite=Lax cookie of one mode
// and the Partitioned cookie of the other are, to the browser, two cookies that it sends both.
const maxCookieValues = 4

// cookieIDs returns the ids the request's cookies of that name hold, in the order the browser
// sent them, without repeats, implausible sizes (see CookieID) or more than maxCookieValues.
func cookieIDs(r *http.Request, name string) []string {
	var ids []string
	for _, c := range r.CookiesNamed(name) {
		if c.Value == "" || len(c.Value) > 128 || slices.Contains(ids, c.Value) {
			continue
		}
		if ids = append(ids, c.Value); len(ids) == maxCookieValues {
			break
		}
	}
	return ids
}

// Load returns the request's live session, or ErrNoSession. Activity moves the idle expiry
// (written at most once a minute per session). Of several session cookies (cookieIDs) the first
// live one counts: the header does not say which is which mode's, and the other is usually the
// stale one of before a mode switch, whose session the sign-in since replaced. The session
// returned may be shared with other requests (the cache's copy): callers read it and never
// modify it.
func (m *Manager) Load(ctx context.Context, r *http.Request) (*store.Session, error) {
	for _, id := range cookieIDs(r, CookieName) {
		s, err := m.lookup(ctx, id)
		if errors.Is(err, ErrNoSession) {
			continue
		}
		return s, err
	}
	return nil, ErrNoSession
}

// End deletes the request's session (if any) and clears its cookie. It reports whether a
// session was ended.
func (m *Manager) End(ctx context.Context, w http.ResponseWriter, r *http.Request) (bool, error) {
	http.SetCookie(w, m.cookie(CookieName, "", -1))
	http.SetCookie(w, m.otherModeCookie(CookieName))
	ended := false
	for _, id := range cookieIDs(r, CookieName) {
		ok, err := m.endSession(ctx, store.HashID(id))
		if err != nil {
			return ended, err
		}
		ended = ended || ok
	}
	return ended, nil
}

// endSession deletes a session. Other replicas hear of it through the store's notification;
// this one forgets its cached copy before answering.
func (m *Manager) endSession(ctx context.Context, idHash []byte) (bool, error) {
	ended, err := m.store.DeleteSession(ctx, idHash)
	if m.cache != nil {
		m.cache.drop(idHash)
	}
	return ended, err
}

// CSRFToken is the session's token for its forms.
func CSRFToken(s *store.Session) string { return string(s.CSRFToken) }

// ValidCSRF compares a submitted token with the session's in constant time.
func ValidCSRF(s *store.Session, token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), s.CSRFToken) == 1
}

// FormToken returns the browser's token for forms used without a session, setting its cookie
// when the browser has none yet. The form must carry it back (ValidFormToken).
func (m *Manager) FormToken(w http.ResponseWriter, r *http.Request) string {
	for _, v := range cookieIDs(r, FormCookieName) {
		if len(v) == 43 {
			return v
		}
	}
	t := NewToken()
	http.SetCookie(w, m.cookie(FormCookieName, t, int((12*time.Hour).Seconds())))
	return t
}

// ValidFormToken compares a submitted form token with the browser's cookie, in constant time.
// A site that cannot read our cookie cannot forge the form. Any of the browser's cookies of the
// name will do (after an EMBED_MODE switch it holds one of each mode; see cookieIDs).
func (m *Manager) ValidFormToken(r *http.Request, token string) bool {
	valid := false
	for _, v := range cookieIDs(r, FormCookieName) {
		if len(v) == 43 && subtle.ConstantTimeCompare([]byte(token), []byte(v)) == 1 {
			valid = true
		}
	}
	return token != "" && valid
}

// SetFlowCookie gives the browser the id of a sign-in flow, under a name of its own (tag), so
// that several tabs can sign in at once.
func (m *Manager) SetFlowCookie(w http.ResponseWriter, tag, flowID string, expires time.Time) {
	http.SetCookie(w, m.cookie(flowCookiePrefix+tag, flowID, max(1, int(expires.Sub(m.now()).Seconds()))))
}

// FlowCookie returns the flow id the browser holds under tag ("" when none, or when the flow was
// used: FlowUsed).
func (m *Manager) FlowCookie(r *http.Request, tag string) string {
	if id := CookieID(r, flowCookiePrefix+tag); id != usedFlow {
		return id
	}
	return ""
}

// usedFlow is the value a flow cookie keeps once its callback arrived, for usedFlowMarkAge.
const usedFlow = "used"

// usedFlowMarkAge is how long a browser remembers that a sign-in's callback arrived: long
// enough for going Back to it or reloading it, short enough that the few bytes per sign-in do
// not pile up.
const usedFlowMarkAge = time.Hour

// MarkFlowUsed replaces the flow cookie named by tag with a mark that its callback arrived (its
// flow is consumed at once). The same callback again, from Back or a reload, then finds the mark
// (FlowUsed) and can be told apart from a browser that never kept the cookie (blocked cookies).
func (m *Manager) MarkFlowUsed(w http.ResponseWriter, tag string) {
	http.SetCookie(w, m.cookie(flowCookiePrefix+tag, usedFlow, int(usedFlowMarkAge.Seconds())))
}

// FlowUsed reports whether the browser marked the flow named by tag as used (MarkFlowUsed).
func (m *Manager) FlowUsed(r *http.Request, tag string) bool {
	return CookieID(r, flowCookiePrefix+tag) == usedFlow
}

// cookie builds a __Host- cookie for the manager's EMBED_MODE (ModeCookie).
func (m *Manager) cookie(name, value string, maxAge int) *http.Cookie {
	return ModeCookie(m.embed, name, value, maxAge)
}

// ModeCookie builds a __Host- cookie (name must carry the prefix) of the server's pages for
// EMBED_MODE embed. Outside an iFrame SameSite=Lax: the cookie comes along when the platform
// sends the browser back (a top-level navigation) but not on cross-site subrequests. In an
// iFrame the platform's page is the top-level site, so the cookies must be SameSite=None;
// Partitioned (CHIPS) keeps them to that embedding site.
func ModeCookie(embed bool, name, value string, maxAge int) *http.Cookie {
	c := &http.Cookie{
		Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode,
	}
	if embed {
		c.SameSite = http.SameSiteNoneMode
		c.Partitioned = true
	}
	return c
}

// otherModeCookie removes the cookie of that name that the other EMBED_MODE sets: the browser
// keeps a Partitioned cookie apart from an unpartitioned one of the same name, so each is
// removed with its own attributes. (A browser refuses the removal of a SameSite=Lax cookie
// from inside another site's iFrame; there that cookie is not sent either.)
func (m *Manager) otherModeCookie(name string) *http.Cookie {
	return ModeCookie(!m.embed, name, "", -1)
}

// Sweep deletes expired flows and sessions, in batches, until none is left or ctx ends.
func (m *Manager) Sweep(ctx context.Context) (flows, sessions int64, err error) {
	const batch = 1000
	for ctx.Err() == nil {
		f, s, err := m.store.SweepExpired(ctx, m.now(), batch)
		flows, sessions = flows+f, sessions+s
		if err != nil || (f < batch && s < batch) {
			return flows, sessions, err
		}
	}
	return flows, sessions, ctx.Err()
}

// RunSweeper sweeps every interval until ctx ends.
func (m *Manager) RunSweeper(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if m.cache != nil {
			m.cache.purge(m.now())
		}
		f, s, err := m.Sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			m.log.WarnContext(ctx, "sweeping expired sessions failed", "err", err)
		case f+s > 0:
			m.log.DebugContext(ctx, "swept expired sign-in flows and sessions", "flows", f, "sessions", s)
		}
	}
}

// NewToken is a fresh random id: 256 bits, base64url without padding (43 characters).
func NewToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
