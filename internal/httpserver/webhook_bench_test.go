package httpserver_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkWebhookToCommit is the platform's credentials webhook from the request to its commit
// in PostgreSQL: a signed CREATED (a school's first) or RESET body over HTTP, verified, parsed,
// sealed and stored with its receipt, audit event and notification, with 8 deliveries in flight.
// Every body is distinct, so each is a real commit, never a duplicate. The bodies are signed
// before the clock starts: signing is the platform's cost, not ours.
//
//	go test -run '^$' -bench BenchmarkWebhookToCommit -benchtime 2000x ./internal/httpserver
func BenchmarkWebhookToCommit(b *testing.B) {
	const (
		concurrency = 8
		schools     = 64 // spread over schools, as real traffic is: one school's changes queue on its row
	)
	e := newSigninEnv(b, signinOptions{})
	// Test databases commit asynchronously; credentials, receipts and audit events are durable
	// writes in production, so measure them that way: every commit waits for its WAL flush.
	if _, err := e.store.Pool().Exec(e.ctx(), `DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET synchronous_commit = on', current_database()); END $$`); err != nil {
		b.Fatal(err)
	}
	e.store.Pool().Reset() // new connections take the setting
	var syncCommit string
	if err := e.store.Pool().QueryRow(e.ctx(), `SHOW synchronous_commit`).Scan(&syncCommit); err != nil || syncCommit != "on" {
		b.Fatalf("synchronous_commit = %q (%v), want on", syncCommit, err)
	}
	type delivery struct {
		body   []byte
		header http.Header
	}
	deliveries := make([]delivery, b.N)
	for i := range deliveries {
		tid := fmt.Sprintf("b%d", i%schools)
		event := "RESET"
		if i < schools {
			event = "CREATED"
		}
		body := credsBody(tid, event, "bench-client", fmt.Sprintf("secret-%d-%d", i, time.Now().UnixNano()),
			fmt.Sprintf("password-%d", i))
		deliveries[i] = delivery{body: body, header: e.signedHeader(body)}
	}
	tr := &http.Transport{MaxIdleConns: concurrency, MaxIdleConnsPerHost: concurrency}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := e.app.srv.URL + "/webhooks/credentials"

	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(deliveries) {
					return
				}
				d := deliveries[i]
				req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(d.body))
				if err != nil {
					fail(err)
					return
				}
				req.Header = d.header
				resp, err := client.Do(req)
				if err != nil {
					fail(err)
					return
				}
				answer, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || !bytes.Contains(answer, []byte(`"status":"processed"`)) {
					fail(fmt.Errorf("delivery %d: %d %s", i, resp.StatusCode, answer))
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
	if n := e.countRows("tenant_credentials"); n != b.N {
		b.Fatalf("%d credentials versions stored, want %d", n, b.N)
	}
}
