package httpserver

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/untis-partner/server/internal/i18n"
	"github.com/untis-partner/server/internal/setup"
	"github.com/untis-partner/server/internal/store"
)

// The console's audit trail as sentences in the reader's language: who (the platform, an
// operator, a school administrator), when (UTC), and what changed. Each known event type has
// its own sentence and known detail keys their own lines; a key this code does not know (a newer
// event's) is still shown, as "key: value" with the value written plainly, never as program
// syntax.

// auditRow is one event of the trail.
type auditRow struct {
	At      time.Time
	Actor   i18n.Text
	What    i18n.Text
	Details []i18n.Text
}

func auditRows(events []store.AuditEvent, fields setup.Fields) []auditRow {
	labels := map[string]string{}
	for _, f := range fields {
		labels[f.Name] = f.Label
	}
	rows := make([]auditRow, 0, len(events))
	for _, e := range events {
		rows = append(rows, auditRowOf(e, labels))
	}
	return rows
}

// auditActor names who acted, from the actor the store recorded.
func auditActor(actor string) i18n.Text {
	switch {
	case actor == "webhook":
		return i18n.T("audit.actor.platform")
	case actor == "cli":
		return i18n.T("audit.actor.cli")
	case actor == "activation page":
		return i18n.T("audit.actor.activation_page")
	case strings.HasPrefix(actor, "operator "):
		return i18n.T("audit.actor.operator", "Email", strings.TrimPrefix(actor, "operator "))
	case strings.HasPrefix(actor, "school admin "):
		return i18n.T("audit.actor.school_admin", "User", strings.TrimPrefix(actor, "school admin "))
	}
	return i18n.T("audit.actor.other", "Actor", actor)
}

// auditDetail reads an event's details, marking each key it uses; the rest are listed plainly.
type auditDetail struct {
	m    map[string]any
	used map[string]bool
}

func (d *auditDetail) str(k string) string {
	d.used[k] = true
	switch v := d.m[k].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return plainValue(v)
	}
}

func (d *auditDetail) num(k string) (int64, bool) {
	d.used[k] = true
	switch v := d.m[k].(type) {
	case float64:
		return int64(v), true
	case int:
		return int64(v), true
	case int64:
		return v, true
	}
	return 0, false
}

func (d *auditDetail) flag(k string) bool {
	d.used[k] = true
	b, _ := d.m[k].(bool)
	return b
}

func auditRowOf(e store.AuditEvent, labels map[string]string) auditRow {
	d := &auditDetail{m: e.Detail, used: map[string]bool{}}
	row := auditRow{At: e.At, Actor: auditActor(e.Actor)}
	add := func(t i18n.Text) { row.Details = append(row.Details, t) }
	stateChange := func() {
		prev, state := d.str("previous_state"), d.str("state")
		switch {
		case state == "" || prev == state:
		case prev == "":
			add(i18n.T("audit.state.new", "State", stateText(state)))
		default:
			add(i18n.T("audit.state.changed", "From", stateText(prev), "To", stateText(state)))
		}
	}
	event := d.str("event")
	switch e.Action {
	case "credentials.stored":
		v, _ := d.num("credentials_version")
		if event != "" {
			row.What = i18n.T("audit.credentials.webhook", "Event", event, "Version", v)
		} else {
			row.What = i18n.T("audit.credentials.stored", "Version", v)
		}
		d.str("source")
		if d.str("proved") != "" {
			add(i18n.T("audit.credentials.proved"))
		}
		if c := d.str("client_id"); c != "" {
			add(i18n.T("audit.client_id", "ClientID", c))
		}
		if src := d.str("replaces_source"); src != "" {
			add(i18n.T("audit.credentials.replaces", "Source", i18n.T("source."+sourceName(src))))
		}
		stateChange()
	case "credentials.refused":
		row.What = i18n.T("audit.credentials.refused")
		if reason := d.str("reason"); reason != "" {
			add(i18n.T("audit.reason", "Reason", reasonText(reason)))
		}
	case "webhook.ignored":
		row.What = i18n.T("audit.webhook.ignored", "Event", event)
		if reason := d.str("reason"); reason != "" {
			add(i18n.T("audit.reason", "Reason", reason))
		}
	case "tenant.deactivated", "tenant.deleted":
		deleted := e.Action == "tenant.deleted"
		switch {
		case event != "" && deleted:
			row.What = i18n.T("audit.tenant.deleted_webhook", "Event", event)
		case event != "":
			row.What = i18n.T("audit.tenant.deactivated_webhook", "Event", event)
		case deleted:
			row.What = i18n.T("audit.tenant.deleted")
		default:
			row.What = i18n.T("audit.tenant.deactivated")
		}
		if d.str("ignored") != "" {
			add(i18n.T("audit.tenant.unknown"))
		}
		if counts, ok := e.Detail["deleted"].(map[string]any); ok {
			d.used["deleted"] = true
			for _, k := range slices.Sorted(maps.Keys(counts)) {
				n, _ := counts[k].(float64)
				if id, known := endedCounts[k]; known {
					if n > 0 { // nothing to say about what was not there
						add(i18n.T(id, "Count", int64(n)))
					}
				} else {
					add(i18n.T("audit.detail", "Key", k, "Value", plainValue(counts[k])))
				}
			}
		}
		if t := d.str("reason_type"); t != "" {
			if id, known := reasonKinds[t]; known {
				add(i18n.T(id, "Code", t))
			} else {
				add(i18n.T("audit.reason_type", "Type", t)) // a newer platform's code, as it came
			}
		}
		if t := d.str("reason_text"); t != "" {
			add(i18n.T("audit.reason", "Reason", t))
		}
		if d.flag("repeated_body") {
			add(i18n.T("audit.repeated_body"))
		}
		stateChange()
	case "setup.saved":
		var names []string
		if fs, ok := e.Detail["fields"].([]any); ok {
			d.used["fields"] = true
			for _, f := range fs {
				n := fmt.Sprint(f)
				if l := labels[n]; l != "" {
					n = l
				}
				names = append(names, n)
			}
		}
		if len(names) > 0 {
			row.What = i18n.T("audit.setup.saved", "Fields", strings.Join(names, ", "), "Count", len(names))
		} else {
			row.What = i18n.T("audit.setup.saved_unchanged")
		}
		stateChange()
	case "event.retried":
		// An operator (console or command line) queued events to the app again: one, or every
		// failed one at once.
		if ids, ok := e.Detail["event_ids"].([]any); ok {
			d.used["event_ids"] = true
			row.What = i18n.T("audit.event.retried_failed", "Count", len(ids), "Events", plainValue(ids))
			d.str("previous_status")
			break
		}
		id, _ := d.num("event_id")
		row.What = i18n.T("audit.event.retried", "Event", id)
		if typ := d.str("type"); typ != "" {
			add(i18n.T("audit.event.type", "Type", eventTypeText(typ)))
		}
		switch d.str("previous_status") {
		case store.EventFailed:
			add(i18n.T("audit.event.was_failed"))
		case store.EventPending:
			add(i18n.T("audit.event.was_pending"))
		}
	case "operator.added", "operator.password_reset", "operator.unlocked":
		row.What = i18n.T("audit."+e.Action, "Email", d.str("operator"))
		if n, ok := d.num("networks"); ok {
			add(i18n.T("audit.operator.networks", "Count", n))
		}
	default:
		row.What = i18n.T("audit.unknown", "Action", e.Action)
	}
	if ref := d.str("receipt"); ref != "" {
		add(i18n.T("audit.receipt", "Ref", ref))
	}
	for _, k := range slices.Sorted(maps.Keys(e.Detail)) {
		if !d.used[k] {
			add(i18n.T("audit.detail", "Key", k, "Value", plainValue(e.Detail[k])))
		}
	}
	return row
}

// endedCounts name the rows a deactivation or deletion removed, by table.
var endedCounts = map[string]string{
	"sessions":           "audit.ended.sessions",
	"auth_flows":         "audit.ended.signins",
	"tenant_credentials": "audit.ended.credentials",
	"users":              "audit.ended.users",
	"tenant_settings":    "audit.ended.answers",
	"events":             "audit.ended.events",
}

// reasonKinds say the platform's kinds of reason of a deactivation webhook (its reasonType) in
// words; each message shows the code too, which is what the platform's support knows.
var reasonKinds = map[string]string{
	"NO_REASON":           "audit.reason_kind.none",
	"SCHOOL_DEACTIVATION": "audit.reason_kind.school_deactivation",
	"SCHOOL_DELETION":     "audit.reason_kind.school_deletion",
	"REMOTE_DEACTIVATION": "audit.reason_kind.remote_deactivation",
	"REMOTE_DELETION":     "audit.reason_kind.remote_deletion",
}

// eventTypes are the lifecycle events' types the console names (event_type.*).
var eventTypes = []string{store.EventActivated, store.EventPendingSetup, store.EventSetupCompleted, store.EventSetupChanged,
	store.EventCredentialsReset, store.EventDeactivated, store.EventDeleted}

// eventTypeText names an event's type with the type itself, as the app receives it.
func eventTypeText(typ string) i18n.Text {
	if slices.Contains(eventTypes, typ) {
		return i18n.T("audit.event.type_named", "Name", i18n.T("event_type."+typ), "Type", typ)
	}
	return i18n.T("audit.raw", "Text", typ)
}

func stateText(s string) i18n.Text {
	if isState(s) {
		return i18n.T("state." + s)
	}
	return i18n.T("audit.raw", "Text", s)
}

func sourceName(s string) string {
	switch s {
	case store.SourceWebhook, store.SourceManual, store.SourceOperator:
		return s
	}
	return "unknown"
}

// reasonText is a recorded reason: a message id (newer events) in the reader's language, or the
// words recorded (older events).
func reasonText(reason string) i18n.Text {
	if strings.HasPrefix(reason, "proof.") && !strings.ContainsAny(reason, " \t") {
		return i18n.T(reason)
	}
	return i18n.T("audit.raw", "Text", reason)
}

// plainValue writes a detail's value for people: numbers without exponent, lists and maps as
// "a, b" and "a 1, b 2", never Go's syntax.
func plainValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "–"
	case string:
		return v
	case bool:
		if v {
			return "✓"
		}
		return "✗"
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case []any:
		parts := make([]string, 0, len(v))
		for _, x := range v {
			parts = append(parts, plainValue(x))
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		parts := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			parts = append(parts, k+" "+plainValue(v[k]))
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprint(v)
}
