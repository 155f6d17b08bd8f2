package ratelimit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestLimiterBurstAndRefill(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2026, 3, 2, 7, 55, 0, 0, time.UTC)}
	l := New(60, c.now) // one a second
	for i := range 60 {
		if d := l.Allow("a"); !d.Allowed {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	d := l.Allow("a")
	if d.Allowed || !d.FirstRefusal || d.RetryAfter != time.Second {
		t.Fatalf("over the burst: %+v", d)
	}
	if d := l.Allow("a"); d.Allowed || d.FirstRefusal {
		t.Fatalf("second refusal: %+v", d)
	}
	// Other keys have their own buckets.
	if d := l.Allow("b"); !d.Allowed {
		t.Fatal("another key refused")
	}
	// Refilled evenly: half a second gives nothing, a second one token.
	c.advance(500 * time.Millisecond)
	if d := l.Allow("a"); d.Allowed || d.RetryAfter != time.Second {
		t.Fatalf("after 0.5 s: %+v", d)
	}
	c.advance(500 * time.Millisecond)
	if d := l.Allow("a"); !d.Allowed {
		t.Fatal("after 1 s: refused")
	}
	if d := l.Allow("a"); d.Allowed || !d.FirstRefusal {
		t.Fatalf("right after: %+v (a refusal after an admitted request is a first refusal)", d)
	}
	// Never more than the burst, however long the quiet.
	c.advance(24 * time.Hour)
	n := 0
	for l.Allow("a").Allowed {
		n++
	}
	if n != 60 {
		t.Errorf("after a day: %d admitted, want the burst of 60", n)
	}
	// A clock that goes back refills nothing.
	c.advance(-time.Hour)
	if l.Allow("a").Allowed {
		t.Error("a clock going back refilled the bucket")
	}
}

func TestLimiterOff(t *testing.T) {
	t.Parallel()
	for _, perMinute := range []int{0, -1} {
		l := New(perMinute, nil)
		if l != nil {
			t.Fatalf("New(%d) = %v, want nil (off)", perMinute, l)
		}
		for range 10000 {
			if !l.Allow("a").Allowed {
				t.Fatal("an off limiter refused")
			}
		}
		if l.Len() != 0 {
			t.Error("an off limiter keeps buckets")
		}
	}
}

// The table of buckets is bounded: made-up keys (every IPv6 /64 is one) cannot grow it without
// end, and making room never locks anyone out (a forgotten bucket is a full one).
func TestLimiterKeysAreBounded(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Now()}
	l := New(10, c.now)
	l.maxKeys = 1000
	for i := range 5000 {
		l.Allow(fmt.Sprint("client-", i))
		if n := l.Len(); n > l.maxKeys {
			t.Fatalf("%d buckets after %d keys, over the bound %d", n, i+1, l.maxKeys)
		}
	}
	// When room is needed, buckets that refilled go first, all at once.
	c.advance(time.Minute)
	for i := 0; l.Len() >= 100; i++ {
		if i > l.maxKeys {
			t.Fatalf("%d buckets: the refilled ones were not dropped", l.Len())
		}
		l.Allow(fmt.Sprint("new-", i))
	}
	// A bucket that was in use is kept while it is not full: its client stays limited.
	l.Allow("busy")
	for l.Allow("busy").Allowed {
	}
	for i := range 2 * l.maxKeys {
		l.Allow(fmt.Sprint("later-", i))
		if i < l.maxKeys/2 && l.Allow("busy").Allowed {
			t.Fatal("a client in use was forgotten while there was room")
		}
	}
}

func TestLimiterConcurrent(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Now()}
	l := New(100, c.now)
	var admitted atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 50 {
				if l.Allow("nat").Allowed {
					admitted.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := admitted.Load(); n != 100 {
		t.Errorf("%d of 800 concurrent requests admitted, want the burst of 100", n)
	}
}

// The default limits (config: LAUNCH_LIMIT_PER_CLIENT 1500, LAUNCH_LIMIT_PER_SCHOOL 3000) never
// refuse a school's real users, and hold a flood to a steady trickle.
func TestDefaultLaunchNumbers(t *testing.T) {
	t.Parallel()
	c := &clock{t: time.Date(2026, 3, 2, 7, 59, 0, 0, time.UTC)}
	perClient, perSchool := New(1500, c.now), New(3000, c.now)
	launch := func(client string) bool {
		return perClient.Allow(client).Allowed && perSchool.Allow("school").Allowed
	}
	// 08:00: the whole school, 1,500 users behind the school's NAT address, at the same moment.
	for i := range 1500 {
		if !launch("nat") {
			t.Fatalf("launch %d of the first lesson refused", i+1)
		}
	}
	// Within the minute, every user launches once more from elsewhere (a phone, another tab).
	c.advance(30 * time.Second)
	for i := range 1500 {
		if !launch(fmt.Sprint("phone-", i)) {
			t.Fatalf("second launch %d refused", i+1)
		}
	}
	// A flood from one address: after its burst, 25 a second.
	c.advance(time.Hour)
	admitted := 0
	for range 10 { // 10 s of 1,000 requests a second
		for range 1000 {
			if perClient.Allow("attacker").Allowed {
				admitted++
			}
		}
		c.advance(time.Second)
	}
	if want := 1500 + 9*25; admitted != want {
		t.Errorf("a 10 s flood of 10,000 launches admitted %d, want %d", admitted, want)
	}
}

// The limiter is on the login path: it must cost next to nothing.
func BenchmarkAllow(b *testing.B) {
	l := New(1500, nil)
	keys := make([]string, 256)
	for i := range keys {
		keys[i] = fmt.Sprint("198.51.100.", i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Allow(keys[i%len(keys)])
			i++
		}
	})
}
