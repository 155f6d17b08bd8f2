package platform

import (
	"context"
	"time"

	"github.com/untis-partner/server/internal/metrics"
)

// Outcomes of a platform request, the outcome label of the metrics.
const (
	outcomeOK           = "ok"
	outcomeBadRequest   = "bad_request"
	outcomeUnauthorized = "unauthorized"
	outcomeForbidden    = "forbidden"
	outcomeNotFound     = "not_found"
	outcomeRateLimited  = "rate_limited"
	outcomeServerError  = "server_error"
	outcomeRejected     = "credentials_rejected"
	outcomeNetwork      = "network_error"
	outcomeInvalid      = "invalid_response"
)

// endpointToken is the endpoint label of token requests.
const endpointToken = "token"

func outcomeFor(kind error) string {
	switch kind {
	case ErrBadRequest:
		return outcomeBadRequest
	case ErrUnauthorized:
		return outcomeUnauthorized
	case ErrForbidden:
		return outcomeForbidden
	case ErrNotFound:
		return outcomeNotFound
	case ErrRateLimited:
		return outcomeRateLimited
	case ErrCredentialsRejected:
		return outcomeRejected
	}
	return outcomeServerError
}

// clientMetrics are the platform client's series. None has a tenant label: a deployment serves
// thousands of schools, and a label per school would multiply every series by that. Which schools
// fail is in the store (the console lists them); the metrics say how many and how often.
type clientMetrics struct {
	latency       *metrics.HistogramVec
	tokenRequests *metrics.CounterVec
	cacheHit      *metrics.Counter
	cacheRefresh  *metrics.Counter
	cacheMiss     *metrics.Counter
	fastFail      *metrics.Counter
	unauthorized  *metrics.Counter
	retries       *metrics.Counter
	invalidations *metrics.Counter
	// refreshFailures counts failed token requests of the cache.
	refreshFailures *metrics.Counter
}

// latencyBuckets suit calls that cross the internet: 5 ms to 10 s.
var latencyBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

func newClientMetrics(r *metrics.Registry, c *Clients) clientMetrics {
	cache := r.NewCounterVec("platform_token_cache_lookups_total",
		"Token cache lookups by result: hit, refresh (served while a refresh runs), miss (waited for a token request).", "result")
	r.NewGaugeFunc("platform_tenant_listener_connected",
		"1 while this replica hears credential changes of other replicas (PostgreSQL LISTEN), else 0.",
		func() float64 {
			if c.listening.Load() {
				return 1
			}
			return 0
		})
	// The store's mark is what every replica agrees on; read it at scrape time.
	r.NewCollector(func(w *metrics.Writer) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := c.store.CountCredentialsFailing(ctx)
		if err != nil {
			return // the database is down; /readyz says so
		}
		w.Gauge("platform_tenants_credentials_failing",
			"Active or pending schools whose credentials are marked failing in the store.").Sample(float64(n))
	})
	return clientMetrics{
		latency: r.NewHistogramVec("platform_request_duration_seconds",
			"Platform request latency by endpoint family and outcome.", latencyBuckets, "endpoint", "outcome"),
		tokenRequests: r.NewCounterVec("platform_token_requests_total",
			"Client-credentials token requests by outcome.", "outcome"),
		cacheHit:     cache.With("hit"),
		cacheRefresh: cache.With("refresh"),
		cacheMiss:    cache.With("miss"),
		fastFail: r.NewCounter("platform_calls_backed_off_total",
			"Calls failed without asking the platform because the school is backing off after failures."),
		unauthorized: r.NewCounter("platform_unauthorized_total",
			"401 answers to API calls (each leads to one token refetch, or to the failing mark)."),
		retries: r.NewCounter("platform_retries_total",
			"Retries of idempotent calls after 429, 5xx or a network failure."),
		invalidations: r.NewCounter("platform_token_invalidations_total",
			"Cached tokens dropped because a school's credentials or state changed."),
		refreshFailures: r.NewCounter("platform_token_refresh_failures_total",
			"Failed token requests of the token cache."),
	}
}

func (m *clientMetrics) observe(endpoint, outcome string, d time.Duration) {
	m.latency.With(endpoint, outcome).Observe(d.Seconds())
}

// countTokenRequest counts a token request and observes its latency.
func (m *clientMetrics) countTokenRequest(outcome string, d time.Duration) {
	m.tokenRequests.With(outcome).Inc()
	m.observe(endpointToken, outcome, d)
}
