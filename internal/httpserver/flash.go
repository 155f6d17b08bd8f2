package httpserver

import (
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/session"
)

// A flash says on the next page what an action did ("School 1002 is deactivated; its 3 sessions
// were ended"): the action answers with a redirect (POST-redirect-GET, so a reload does not send
// the form again) and a short-lived cookie naming one of the fixed kinds below with its values.
// The cookie never carries words: a forged one can only pick one of these sentences, with values
// that must look like tenant ids and numbers.

const flashCookie = "__Host-untis-flash"

// flashKinds are the sentences a flash can say: the message and the names of its values. A value
// named Count is a number (it picks the plural form); one named State is a school's state.
var flashKinds = map[string]struct {
	id    string
	names []string
}{
	"deactivated":  {"console.flash.deactivated", []string{"Tenant", "Count"}},
	"deactivated0": {"console.flash.deactivated_none", []string{"Tenant"}},
	"credentials":  {"console.flash.credentials", []string{"Tenant", "Version", "State"}},
	"console_out":  {"console.flash.signed_out", nil},
	"setup_saved":  {"setup.flash.saved", nil},
	// The events page: one event queued again (a failed one, or a pending one sent now), every
	// failed one, or none there to retry.
	"event_retried":   {"events.flash.retried", []string{"Event"}},
	"events_retried":  {"events.flash.retried_failed", []string{"Count"}},
	"events_retried0": {"events.flash.retried_none", nil},
	"setup_done":      {"setup.flash.done", nil},
}

var flashValue = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// setFlash makes the next page say what happened. values must match the kind's names.
func (s *Server) setFlash(w http.ResponseWriter, kind string, values ...string) {
	k, ok := flashKinds[kind]
	if !ok || len(values) != len(k.names) {
		return
	}
	for _, v := range values {
		if !flashValue.MatchString(v) {
			return
		}
	}
	http.SetCookie(w, s.flashCookie(strings.Join(append([]string{kind}, values...), "."), 60))
}

// takeFlash reads and removes the flash, if the request brought one.
func (s *Server) takeFlash(w http.ResponseWriter, r *http.Request) i18n.Text {
	c, err := r.Cookie(flashCookie)
	if err != nil {
		return i18n.Text{}
	}
	http.SetCookie(w, s.flashCookie("", -1))
	parts := strings.Split(c.Value, ".")
	k, ok := flashKinds[parts[0]]
	if !ok || len(parts)-1 != len(k.names) {
		return i18n.Text{}
	}
	kv := make([]any, 0, 2*len(k.names))
	for i, name := range k.names {
		v := parts[i+1]
		if !flashValue.MatchString(v) {
			return i18n.Text{}
		}
		var val any = v
		switch name {
		case "Count", "Version":
			n, err := strconv.Atoi(v)
			if err != nil {
				return i18n.Text{}
			}
			val = n
		case "State":
			val = i18n.T("state." + v)
			if !isState(v) {
				return i18n.Text{}
			}
		}
		kv = append(kv, name, val)
	}
	return i18n.T(k.id, kv...)
}

func isState(v string) bool {
	switch v {
	case "active", "pending_setup", "deactivated", "deleted":
		return true
	}
	return false
}

// flashCookie is the flash's cookie, with the attributes of the session's for EMBED_MODE.
func (s *Server) flashCookie(value string, maxAge int) *http.Cookie {
	return session.ModeCookie(s.embedMode, flashCookie, value, maxAge)
}
