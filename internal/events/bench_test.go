package events_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/untis-partner/server/internal/events"
	"github.com/untis-partner/server/internal/pgtest"
	"github.com/untis-partner/server/internal/store"
)

// BenchmarkDelivery is the worker's throughput with a quick app: b.N events of 64 schools, written
// before the clock starts, delivered by one replica's default four workers to a receiver that
// answers 204 at once. Each delivery is a claim, a signed POST and a durable commit.
//
//	go test -run '^$' -bench BenchmarkDelivery -benchtime 2000x ./internal/events
func BenchmarkDelivery(b *testing.B) {
	ctx := context.Background()
	dbURL := pgtest.NewDatabase(b)
	st, err := store.Open(ctx, dbURL, nil, store.Options{MaxConns: 8})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(st.Close)
	for _, q := range []string{
		// Deliveries are durable writes in production: measure them so.
		`DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = on', current_database()); END $$`,
		`INSERT INTO tenants (tenant_id, state) SELECT 'b' || g, 'active' FROM generate_series(1, 64) g`,
	} {
		if _, err := st.Pool().Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	st.Pool().Reset()
	if _, err := st.Pool().Exec(ctx, `INSERT INTO events (message_id, tenant_id, type, data)
		SELECT 'msg_' || g, 'b' || (g % 64 + 1), 'school.credentials_reset', jsonb_build_object('tenantId', 'b' || (g % 64 + 1)) FROM generate_series(1, $1) g`, b.N); err != nil {
		b.Fatal(err)
	}
	var got atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		got.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	b.Cleanup(app.Close)
	u, _ := url.Parse(app.URL)
	secrets, _ := events.ParseSecrets(testSecret)
	w, err := events.New(events.Config{Store: st, URL: u, Secrets: secrets, SweepEvery: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	b.ResetTimer()
	go func() { w.Run(runCtx); close(done) }()
	for {
		c, err := st.CountEvents(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if c.Pending == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	if n := got.Load(); n != int64(b.N) {
		b.Fatalf("%d requests for %d events", n, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
