package httpserver

import (
	"context"
	"time"

	"github.com/untis-partner/server/internal/metrics"
	"github.com/untis-partner/server/internal/store"
)

type httpMetrics struct {
	requests *metrics.CounterVec
	duration *metrics.HistogramVec
}

// newHTTPMetrics labels by route pattern (bounded), never by raw path (unbounded, and may carry ids).
func newHTTPMetrics(r *metrics.Registry) httpMetrics {
	return httpMetrics{
		requests: r.NewCounterVec("http_requests_total", "HTTP requests by route pattern, method and status code.", "route", "method", "code"),
		duration: r.NewHistogramVec("http_request_duration_seconds", "HTTP request latency by route pattern, method and status code.", metrics.DefBuckets, "route", "method", "code"),
	}
}

func registerPoolMetrics(r *metrics.Registry, st *store.Store) {
	r.NewCollector(func(w *metrics.Writer) {
		stat := st.Pool().Stat()
		w.Gauge("db_pool_connections", "Database pool connections by state.", "state").
			Sample(float64(stat.AcquiredConns()), "acquired")
		w.Gauge("db_pool_connections", "Database pool connections by state.", "state").
			Sample(float64(stat.IdleConns()), "idle")
		w.Gauge("db_pool_max_connections", "Database pool size limit.").Sample(float64(stat.MaxConns()))
		w.Counter("db_pool_acquire_total", "Connections acquired from the pool.").Sample(float64(stat.AcquireCount()))
		w.Counter("db_pool_empty_acquire_total", "Acquires that had to wait for a connection.").Sample(float64(stat.EmptyAcquireCount()))
	})
}

// registerTenantMetrics reports the schools by lifecycle state, read at scrape time (every
// replica agrees on the store).
func registerTenantMetrics(r *metrics.Registry, st *store.Store) {
	r.NewCollector(func(w *metrics.Writer) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		counts, err := st.CountTenantsByState(ctx)
		if err != nil {
			return // the database is down; /readyz says so
		}
		g := w.Gauge("tenants", "Schools by lifecycle state.", "state")
		for _, state := range []string{store.StatePendingSetup, store.StateActive, store.StateDeactivated, store.StateDeleted} {
			g.Sample(float64(counts[state]), state)
		}
	})
}
