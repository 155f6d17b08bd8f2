package exampleapp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// WebSocket limits: a message is a line someone typed; a connection lives as long as a page.
const (
	wsMaxMessage = 4 << 10
	wsMaxLife    = 30 * time.Minute
)

// handleEcho is a WebSocket that greets the signed-in user (as the identity headers name them)
// and then echoes every message back, as it came (text or binary).
func (a *app) handleEcho(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		// A page on another site must not open a socket with the user's gateway session.
		http.Error(w, "cross-origin WebSocket refused", http.StatusForbidden)
		return
	}
	// The origin is checked above (Host and the gateway's X-Forwarded-Host, compared exactly).
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		return // Accept has answered the request
	}
	defer c.CloseNow()
	c.SetReadLimit(wsMaxMessage)
	ctx, cancel := context.WithTimeout(r.Context(), wsMaxLife)
	defer cancel()

	id := fromHeaders(r)
	greeting := "Connected without identity headers: this socket did not come through the gateway."
	if id.Present && id.UserID != "" {
		greeting = "Connected as " + id.Name() + " (" + id.Role + ", school " + id.TenantID + "). Type something: it comes back."
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(greeting)); err != nil {
		return
	}
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			if websocket.CloseStatus(err) == websocket.StatusMessageTooBig || errors.Is(err, context.DeadlineExceeded) {
				a.log.Info("websocket closed", "reason", err.Error())
			}
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// sameOrigin reports whether a browser's WebSocket comes from a page of this app: its Origin is
// the Host the request names, or the public host the gateway forwarded it for. A client without
// an Origin (not a browser) is no cross-site risk.
func sameOrigin(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(u.Host, r.Host) {
		return true
	}
	fwd, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Host"), ",")
	fwd = strings.TrimSpace(fwd)
	return fwd != "" && strings.EqualFold(u.Host, fwd)
}
