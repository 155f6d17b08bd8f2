package sso

import "github.com/untis-partner/server/internal/metrics"

// ssoMetrics are the sign-in series. The outcome label is "ok" or one of the fixed Reason words
// of Error, so it stays bounded whatever requests arrive; there is no tenant label.
type ssoMetrics struct {
	started     *metrics.Counter
	logins      *metrics.CounterVec
	duration    *metrics.Histogram
	jwksFetches *metrics.Counter
	jwksRefresh *metrics.CounterVec
}

func newMetrics(r *metrics.Registry) ssoMetrics {
	return ssoMetrics{
		started: r.NewCounter("sso_flows_started_total", "Sign-ins started: flows created and browsers sent to the platform."),
		logins: r.NewCounterVec("sso_logins_total",
			"Sign-in callbacks by outcome: ok, or the reason the sign-in was refused.", "outcome"),
		duration: r.NewHistogram("sso_login_duration_seconds",
			"Time to complete a sign-in callback: code exchange, id_token check and OneRoster profile.",
			[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}),
		jwksFetches: r.NewCounter("sso_jwks_fetches_total",
			"Fetches of the platform's JWKS: first use, an unknown key id (a key id still unknown after a fetch waits 30 s per URL), and refreshes after the JWKS's max-age."),
		jwksRefresh: r.NewCounterVec("sso_jwks_background_refreshes_total",
			"Background refreshes of JWKS in use whose max-age ended, by outcome.", "outcome"),
	}
}
