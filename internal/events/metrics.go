package events

import (
	"context"
	"time"

	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/store"
)

type workerMetrics struct {
	attempts *metrics.CounterVec
	gaveUp   *metrics.Counter
	duration *metrics.Histogram
}

// newWorkerMetrics registers the delivery metrics, and the outbox's gauges, which are read from
// the database at scrape time (like tenants{state}): they are the same on every replica.
func newWorkerMetrics(r *metrics.Registry, st *store.Store) workerMetrics {
	m := workerMetrics{
		attempts: r.NewCounterVec("events_delivery_attempts_total",
			"Attempts to deliver a lifecycle event to EVENTS_URL, by outcome (delivered, rejected: an answer that is not 2xx, timeout, error: no answer).", "outcome"),
		gaveUp: r.NewCounter("events_gave_up_total",
			"Lifecycle events marked failed because their retry window (EVENTS_RETRY_FOR) ended without a 2xx."),
		duration: r.NewHistogram("events_delivery_duration_seconds",
			"Time of one delivery attempt, until the app's answer or the timeout.", metrics.DefBuckets),
	}
	for _, o := range []string{outcomeDelivered, outcomeRejected, outcomeTimeout, outcomeError} {
		m.attempts.With(o)
	}
	r.NewCollector(func(w *metrics.Writer) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		c, err := st.CountEvents(ctx)
		if err != nil {
			return // the database is down; /readyz says so
		}
		w.Gauge("events_pending", "Lifecycle events not yet delivered (being retried, or waiting behind an earlier event of their school).").Sample(float64(c.Pending))
		w.Gauge("events_failed", "Lifecycle events whose delivery failed for good, until an operator retries them or they are swept.").Sample(float64(c.Failed))
		age := 0.0
		if c.OldestPending != nil {
			age = max(time.Since(*c.OldestPending).Seconds(), 0)
		}
		w.Gauge("events_oldest_pending_age_seconds", "Age of the oldest lifecycle event not yet delivered (0 when none).").Sample(age)
	})
	return m
}
