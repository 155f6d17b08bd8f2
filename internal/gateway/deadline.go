package gateway

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// deadlines replace the server's read and write timeouts (ReadTimeout, WriteTimeout: whole
// request and whole response) for one proxied exchange with an idle rule: both move forward
// whenever a byte of the body goes up or of the answer comes down. A 100 MiB download or an
// event stream that keeps moving is never cut; one that stalls for the idle timeout is. The read
// deadline moves with the answer too: once the body is read the server waits in a background
// read on the connection, and a read deadline passing there would cancel the request.
type deadlines struct {
	rc   *http.ResponseController
	idle time.Duration
	wait time.Duration // UPSTREAM_TIMEOUT: added while the app may still be thinking
	last atomic.Int64  // unix nanoseconds of the last move (moves are throttled)
}

func newDeadlines(w http.ResponseWriter, idle, wait time.Duration) *deadlines {
	return &deadlines{rc: http.NewResponseController(w), idle: idle, wait: wait}
}

// throttle is how often the deadlines move at most: a download writes every 32 KiB.
func (d *deadlines) throttle() time.Duration { return min(time.Second, d.idle/8) }

// start runs before anything is proxied: the body may still come, and the app may take up to
// UPSTREAM_TIMEOUT after it.
func (d *deadlines) start() { d.set(true, time.Now()) }

// bodyDone runs when the whole body has been read: now the app may take UPSTREAM_TIMEOUT.
func (d *deadlines) bodyDone() { d.set(true, time.Now()) }

// moved runs when bytes went up (the body; the app may answer later) or down (the answer).
func (d *deadlines) moved(up bool) {
	now := time.Now()
	if now.UnixNano()-d.last.Load() < int64(d.throttle()) {
		return
	}
	d.set(up, now)
}

func (d *deadlines) set(waiting bool, now time.Time) {
	d.last.Store(now.UnixNano())
	var at time.Time // zero: no deadline
	switch {
	case d.idle <= 0:
	case waiting && d.wait <= 0:
		// No bound on the app's answer: no deadline until the answer moves.
	case waiting:
		at = now.Add(d.idle + d.wait)
	default:
		at = now.Add(d.idle)
	}
	// Errors mean the writer cannot set deadlines (a test's recorder): then there are none.
	_ = d.rc.SetReadDeadline(at)
	_ = d.rc.SetWriteDeadline(at)
}

// newTransport is the client side of the proxy. Requests that switch protocols (WebSockets) get
// a transport of their own without idle deadlines: once switched, the connection is theirs.
func newTransport(wait, idle time.Duration) http.RoundTripper {
	dialTimeout := 10 * time.Second
	if wait > 0 {
		dialTimeout = min(dialTimeout, wait)
	}
	dialer := &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}
	base := func() *http.Transport {
		return &http.Transport{
			Proxy:                 nil, // never an HTTP_PROXY from the environment
			DialContext:           dialer.DialContext,
			MaxIdleConns:          256,
			MaxIdleConnsPerHost:   256,
			IdleConnTimeout:       90 * time.Second,
			ResponseHeaderTimeout: wait,
			ExpectContinueTimeout: time.Second,
			// The client's Accept-Encoding goes through as it came, and the answer comes back
			// as the app encoded it.
			DisableCompression: true,
		}
	}
	plain := base()
	if idle > 0 {
		plain.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: idle, wait: wait}, nil
		}
		// A pooled connection is closed before its read deadline could fire under a new
		// request.
		plain.IdleConnTimeout = min(plain.IdleConnTimeout, idle/2)
	}
	upgrade := base()
	upgrade.MaxIdleConnsPerHost = 4
	return &splitTransport{plain: plain, upgrade: upgrade}
}

type splitTransport struct{ plain, upgrade *http.Transport }

func (t *splitTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Header.Get("Upgrade") != "" {
		return t.upgrade.RoundTrip(r)
	}
	return t.plain.RoundTrip(r)
}

// idleConn is a connection to the app with the idle rule: an answer that stops coming, or an
// app that stops reading the body, fails after the idle timeout instead of hanging.
type idleConn struct {
	net.Conn
	idle, wait time.Duration
	// lastRead is when a read last moved the read deadline; a write zeroes it, so that the
	// first read of the next answer always moves it back from the write's longer one.
	lastRead atomic.Int64
}

func (c *idleConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		now := time.Now()
		if now.UnixNano()-c.lastRead.Load() >= int64(min(time.Second, c.idle/8)) {
			c.lastRead.Store(now.UnixNano())
			_ = c.Conn.SetReadDeadline(now.Add(c.idle))
		}
	}
	return n, err
}

func (c *idleConn) Write(b []byte) (int, error) {
	// Not throttled: a write may be the start of the next request on this connection, whose
	// answer may take UPSTREAM_TIMEOUT (the transport's ResponseHeaderTimeout says so first)
	// before the idle rule applies again.
	now := time.Now()
	c.lastRead.Store(0)
	_ = c.Conn.SetWriteDeadline(now.Add(c.idle))
	if c.wait > 0 {
		_ = c.Conn.SetReadDeadline(now.Add(c.wait + c.idle))
	} else {
		_ = c.Conn.SetReadDeadline(time.Time{})
	}
	return c.Conn.Write(b)
}
