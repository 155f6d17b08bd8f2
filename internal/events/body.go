// Package events delivers the school lifecycle events of the outbox (internal/store, events.go)
// to the partner's app: POSTs to EVENTS_URL signed as Standard Webhooks, at least once, in order
// per school, retried with exponential backoff and jitter for EVENTS_RETRY_FOR, then marked
// failed for an operator to retry. Several replicas deliver from one database without sending an
// event twice at the same time: a worker holds the event's row while it sends it.
//
// What an event says, and the guarantee that it exists exactly when its change committed, are the
// store's: the lifecycle transaction writes it. This package only carries it.
package events

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/untis-partner/server/internal/store"
)

// TimestampFormat is the payload's timestamp: RFC 3339 in UTC, to the microsecond.
const TimestampFormat = "2006-01-02T15:04:05.000000Z07:00"

type payload struct {
	Type      string          `json:"type"`
	Timestamp string          `json:"timestamp"`
	Data      json.RawMessage `json:"data"`
}

// Body renders an event as the JSON body the app receives, in the Standard Webhooks shape:
// {"type": ..., "timestamp": ..., "data": {...}}. It is the same bytes on every attempt.
func Body(ev store.OutboxEvent) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // a school called "A & B" reads as such
	if err := enc.Encode(payload{Type: ev.Type, Timestamp: ev.CreatedAt.UTC().Format(TimestampFormat), Data: ev.Data}); err != nil {
		return nil, fmt.Errorf("render event %d: %w", ev.ID, err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
