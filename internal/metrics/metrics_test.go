package metrics

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// sample is one parsed sample line.
type sample struct {
	name   string
	labels map[string]string
	order  []string // label values in order of appearance
	value  float64
}

// exposition is a parsed scrape.
type exposition struct {
	types   map[string]string // family -> type
	help    map[string]string // family -> unescaped help
	order   []string          // families in output order
	samples []sample
}

// parseExposition parses the text format strictly enough to catch what
// Prometheus would reject: samples outside a declared family, a family
// declared twice or split, bad escapes, unparsable values.
func parseExposition(t *testing.T, text string) exposition {
	t.Helper()
	exp := exposition{types: map[string]string{}, help: map[string]string{}}
	current := ""
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, help, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			if _, dup := exp.help[name]; dup {
				t.Fatalf("line %d: second HELP for %s", n, name)
			}
			exp.help[name] = unescape(t, help, false)
			current = name
		case strings.HasPrefix(line, "# TYPE "):
			name, typ, _ := strings.Cut(strings.TrimPrefix(line, "# TYPE "), " ")
			if name != current {
				t.Fatalf("line %d: TYPE %s does not follow its HELP", n, name)
			}
			if _, dup := exp.types[name]; dup {
				t.Fatalf("line %d: second TYPE for %s", n, name)
			}
			if !slices.Contains([]string{"counter", "gauge", "histogram", "summary", "untyped"}, typ) {
				t.Fatalf("line %d: unknown type %q", n, typ)
			}
			exp.types[name] = typ
			exp.order = append(exp.order, name)
		case strings.HasPrefix(line, "#") || line == "":
			t.Fatalf("line %d: unexpected line %q", n, line)
		default:
			s := parseSample(t, n, line)
			if family := familyOf(s.name, exp.types); family != current {
				t.Fatalf("line %d: sample %s outside its family (current %q, belongs to %q)", n, s.name, current, family)
			}
			exp.samples = append(exp.samples, s)
		}
	}
	if !strings.HasSuffix(text, "\n") {
		t.Fatal("output does not end with a newline")
	}
	return exp
}

// familyOf maps a sample name to its declared family, or "".
func familyOf(name string, types map[string]string) string {
	if _, ok := types[name]; ok {
		return name
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(name, suffix)
		if !ok {
			continue
		}
		if typ := types[base]; typ == "histogram" || typ == "summary" && suffix != "_bucket" {
			return base
		}
	}
	return ""
}

func parseSample(t *testing.T, n int, line string) sample {
	t.Helper()
	s := sample{labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i <= 0 {
		t.Fatalf("line %d: no metric name: %q", n, line)
	}
	s.name, line = line[:i], line[i:]
	if !validMetricName(s.name) {
		t.Fatalf("line %d: invalid metric name %q", n, s.name)
	}
	if strings.HasPrefix(line, "{") {
		line = line[1:]
		for !strings.HasPrefix(line, "}") {
			name, rest, ok := strings.Cut(line, `="`)
			if !ok || !validLabelName(name) {
				t.Fatalf("line %d: bad label in %q", n, line)
			}
			// Find the closing quote, skipping escaped characters.
			end := -1
			for j := 0; j < len(rest); j++ {
				if rest[j] == '\\' {
					j++
					continue
				}
				if rest[j] == '"' {
					end = j
					break
				}
			}
			if end < 0 {
				t.Fatalf("line %d: unterminated label value", n)
			}
			if _, dup := s.labels[name]; dup {
				t.Fatalf("line %d: duplicate label %s", n, name)
			}
			v := unescape(t, rest[:end], true)
			s.labels[name] = v
			s.order = append(s.order, v)
			line = strings.TrimPrefix(rest[end+1:], ",")
		}
		line = line[1:]
	}
	valueText, ok := strings.CutPrefix(line, " ")
	if !ok {
		t.Fatalf("line %d: no space before value", n)
	}
	v, err := strconv.ParseFloat(valueText, 64)
	if err != nil {
		t.Fatalf("line %d: value %q: %v", n, valueText, err)
	}
	s.value = v
	return s
}

func unescape(t *testing.T, s string, labelValue bool) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\n' || labelValue && c == '"':
			t.Fatalf("unescaped %q in %q", c, s)
		case c != '\\':
			b.WriteByte(c)
		case i+1 == len(s):
			t.Fatalf("trailing backslash in %q", s)
		default:
			i++
			switch s[i] {
			case '\\':
				b.WriteByte('\\')
			case 'n':
				b.WriteByte('\n')
			case '"':
				b.WriteByte('"')
			default:
				t.Fatalf("unknown escape \\%c in %q", s[i], s)
			}
		}
	}
	return b.String()
}

func scrape(t *testing.T, r *Registry) (string, exposition) {
	t.Helper()
	var buf bytes.Buffer
	n, err := r.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.String(), parseExposition(t, buf.String())
}

// find returns the samples called name whose labels include want.
func (e exposition) find(name string, want map[string]string) []sample {
	var out []sample
	for _, s := range e.samples {
		if s.name != name {
			continue
		}
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
			}
		}
		if match {
			out = append(out, s)
		}
	}
	return out
}

func TestExposition(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	requests := r.NewCounterVec("http_requests_total", "HTTP requests by route.\nA backslash: \\.", "route", "code")
	inflight := r.NewGauge("http_inflight_requests", "Requests being served.")
	latency := r.NewHistogramVec("http_request_duration_seconds", "Request latency.", []float64{0.01, 0.1, 1}, "route")
	r.NewGaugeFunc("app_answer", "A value computed at scrape time.", func() float64 { return 42 })
	r.NewCollector(func(w *Writer) {
		f := w.Gauge("app_tenants", "Tenants by state.", "state")
		f.Sample(3, "active")
		f.Sample(1, "deactivated")
		w.Counter("a_first_total", "Sorts first.").Sample(7)
	})

	tricky := "a\\b\"c\nd,e=}{"
	requests.With("/b", "200").Add(2)
	requests.With("/a", "500").Inc()
	requests.With(tricky, "200").Inc()
	requests.With("/a", "200").Add(1.5)
	inflight.Set(3)
	inflight.Dec()
	for _, v := range []float64{0.005, 0.01, 0.05, 0.5, 5, 50} {
		latency.With("/a").Observe(v)
	}

	text, exp := scrape(t, r)

	if !slices.IsSorted(exp.order) {
		t.Errorf("families are not sorted: %v", exp.order)
	}
	if got := exp.help["http_requests_total"]; got != "HTTP requests by route.\nA backslash: \\." {
		t.Errorf("help round trip = %q", got)
	}
	wantTypes := map[string]string{
		"http_requests_total":           "counter",
		"http_inflight_requests":        "gauge",
		"http_request_duration_seconds": "histogram",
		"app_answer":                    "gauge",
		"app_tenants":                   "gauge",
		"a_first_total":                 "counter",
		"go_gc_duration_seconds":        "summary",
	}
	for name, typ := range wantTypes {
		if exp.types[name] != typ {
			t.Errorf("TYPE of %s = %q, want %q", name, exp.types[name], typ)
		}
	}

	// Series within a family come sorted by label values.
	var got []string
	for _, s := range exp.find("http_requests_total", nil) {
		got = append(got, strings.Join(s.order, "|")+"="+strconv.FormatFloat(s.value, 'g', -1, 64))
	}
	want := []string{"/a|200=1.5", "/a|500=1", "/b|200=2", tricky + "|200=1"}
	if !slices.Equal(got, want) {
		t.Errorf("http_requests_total samples =\n%q\nwant\n%q", got, want)
	}
	if s := exp.find("http_inflight_requests", nil); len(s) != 1 || s[0].value != 2 {
		t.Errorf("http_inflight_requests = %+v, want 2", s)
	}
	if s := exp.find("app_answer", nil); len(s) != 1 || s[0].value != 42 {
		t.Errorf("app_answer = %+v, want 42", s)
	}
	if s := exp.find("app_tenants", nil); len(s) != 2 || s[0].labels["state"] != "active" || s[1].value != 1 {
		t.Errorf("app_tenants = %+v", s)
	}

	checkHistogram(t, exp, "http_request_duration_seconds", map[string]string{"route": "/a"},
		[]float64{2, 3, 4, 6}, 55.565)
	if !strings.Contains(text, `http_request_duration_seconds_bucket{route="/a",le="+Inf"} 6`) {
		t.Errorf("no +Inf bucket line in\n%s", text)
	}
}

// checkHistogram verifies cumulative buckets ending in +Inf, and that
// _count equals the +Inf bucket.
func checkHistogram(t *testing.T, exp exposition, name string, labels map[string]string, wantCum []float64, wantSum float64) {
	t.Helper()
	buckets := exp.find(name+"_bucket", labels)
	if len(buckets) != len(wantCum) {
		t.Fatalf("%s: %d buckets, want %d", name, len(buckets), len(wantCum))
	}
	prevLE := math.Inf(-1)
	for i, b := range buckets {
		le, err := strconv.ParseFloat(b.labels["le"], 64)
		if err != nil || le <= prevLE {
			t.Errorf("%s: bucket %d le=%q not increasing", name, i, b.labels["le"])
		}
		prevLE = le
		if i > 0 && b.value < buckets[i-1].value {
			t.Errorf("%s: buckets not cumulative at le=%s", name, b.labels["le"])
		}
		if b.value != wantCum[i] {
			t.Errorf("%s: bucket le=%s = %v, want %v", name, b.labels["le"], b.value, wantCum[i])
		}
	}
	last := buckets[len(buckets)-1]
	if last.labels["le"] != "+Inf" {
		t.Errorf("%s: last bucket le=%q, want +Inf", name, last.labels["le"])
	}
	count := exp.find(name+"_count", labels)
	sum := exp.find(name+"_sum", labels)
	if len(count) != 1 || count[0].value != last.value {
		t.Errorf("%s: _count %+v != +Inf bucket %v", name, count, last.value)
	}
	if len(sum) != 1 || math.Abs(sum[0].value-wantSum) > 1e-9 {
		t.Errorf("%s: _sum %+v, want %v", name, sum, wantSum)
	}
}

func TestLabelValueEscaping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, value, want string
	}{
		{"plain", "abc", `v="abc"`},
		{"backslash", `a\b`, `v="a\\b"`},
		{"quote", `a"b`, `v="a\"b"`},
		{"newline", "a\nb", `v="a\nb"`},
		{"all three", "\\\"\n", `v="\\\"\n"`},
		{"unicode", "Zürich ✓", `v="Zürich ✓"`},
		{"invalid utf-8", "a\xffb", `v="a` + "\uFFFD" + `b"`},
		{"empty", "", `v=""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := string(appendLabels(nil, []string{"v"}, []string{tt.value})); got != tt.want {
				t.Errorf("appendLabels(%q) = %s, want %s", tt.value, got, tt.want)
			}
		})
	}
}

func TestAppendFloat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0"}, {1, "1"}, {-2.5, "-2.5"}, {0.001, "0.001"}, {1e21, "1e+21"},
		{math.Inf(1), "+Inf"}, {math.Inf(-1), "-Inf"}, {math.NaN(), "NaN"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			t.Parallel()
			if got := string(appendFloat(nil, tt.v)); got != tt.want {
				t.Errorf("appendFloat(%v) = %s, want %s", tt.v, got, tt.want)
			}
		})
	}
}

func TestRegistrationPanics(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		register  func(r *Registry)
		wantPanic string
	}{
		{"duplicate name", func(r *Registry) {
			r.NewCounter("x_total", "")
			r.NewGauge("x_total", "")
		}, "already used"},
		{"name used by a histogram sample", func(r *Registry) {
			r.NewHistogram("lat", "", nil)
			r.NewCounter("lat_count", "")
		}, "already used"},
		{"histogram over an existing sample", func(r *Registry) {
			r.NewGauge("lat_sum", "")
			r.NewHistogram("lat", "", nil)
		}, "already used"},
		{"gauge func duplicate", func(r *Registry) {
			r.NewGaugeFunc("g", "", func() float64 { return 0 })
			r.NewGaugeFunc("g", "", func() float64 { return 0 })
		}, "already used"},
		{"runtime metric name", func(r *Registry) {
			// Runtime metrics come from a collector, so the clash shows at
			// scrape time.
			r.NewGauge("go_goroutines", "")
			_, _ = r.WriteTo(io.Discard)
		}, "registered by go_goroutines"},
		{"empty name", func(r *Registry) { r.NewCounter("", "") }, "invalid metric name"},
		{"name starts with digit", func(r *Registry) { r.NewCounter("1x", "") }, "invalid metric name"},
		{"name with dash", func(r *Registry) { r.NewCounter("a-b", "") }, "invalid metric name"},
		{"label with colon", func(r *Registry) { r.NewCounterVec("c", "", "a:b") }, "invalid label name"},
		{"reserved label prefix", func(r *Registry) { r.NewCounterVec("c", "", "__name") }, "invalid label name"},
		{"empty label", func(r *Registry) { r.NewGaugeVec("c", "", "") }, "invalid label name"},
		{"duplicate label", func(r *Registry) { r.NewGaugeVec("c", "", "a", "a") }, "duplicate label name"},
		{"le on histogram", func(r *Registry) { r.NewHistogramVec("h", "", nil, "le") }, "reserved"},
		{"unsorted buckets", func(r *Registry) { r.NewHistogram("h", "", []float64{1, 0.5}) }, "strictly increasing"},
		{"duplicate bucket", func(r *Registry) { r.NewHistogram("h", "", []float64{1, 1}) }, "strictly increasing"},
		{"NaN bucket", func(r *Registry) { r.NewHistogram("h", "", []float64{math.NaN()}) }, "strictly increasing"},
		{"too few label values", func(r *Registry) { r.NewCounterVec("c", "", "a", "b").With("x") }, "got 1 label values, want 2"},
		{"too many label values", func(r *Registry) { r.NewHistogramVec("h", "", nil, "a").With("x", "y") }, "got 2 label values, want 1"},
		{"negative counter add", func(r *Registry) { r.NewCounter("c", "").Add(-1) }, "cannot add"},
		{"NaN counter add", func(r *Registry) { r.NewCounter("c", "").Add(math.NaN()) }, "cannot add"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewRegistry()
			msg := catchPanic(func() { tt.register(r) })
			if msg == "" {
				t.Fatal("no panic")
			}
			if !strings.Contains(msg, tt.wantPanic) {
				t.Fatalf("panic %q does not contain %q", msg, tt.wantPanic)
			}
		})
	}
}

func catchPanic(fn func()) (msg string) {
	defer func() {
		if v := recover(); v != nil {
			msg = fmt.Sprint(v)
		}
	}()
	fn()
	return ""
}

func TestCollectorMistakesPanic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		collect   func(w *Writer)
		wantPanic string
	}{
		{"type changes", func(w *Writer) {
			w.Gauge("x", "")
			w.Counter("x", "")
		}, "as gauge() and as counter()"},
		{"labels change", func(w *Writer) {
			w.Gauge("x", "", "a")
			w.Gauge("x", "", "b")
		}, "as gauge(a) and as gauge(b)"},
		{"label count", func(w *Writer) { w.Gauge("x", "", "a").Sample(1) }, "got 0 label values, want 1"},
		{"invalid name", func(w *Writer) { w.Gauge("x y", "") }, "invalid metric name"},
		{"registered name", func(w *Writer) { w.Gauge("registered", "") }, "registered by registered"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewRegistry()
			r.NewCounter("registered", "")
			r.NewCollector(tt.collect)
			msg := catchPanic(func() { _, _ = r.WriteTo(io.Discard) })
			if !strings.Contains(msg, tt.wantPanic) {
				t.Fatalf("panic %q does not contain %q", msg, tt.wantPanic)
			}
		})
	}
}

func TestCollectorFamilySpansCalls(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	r.NewCollector(func(w *Writer) { w.Gauge("pool_conns", "Connections.", "state").Sample(2, "idle") })
	r.NewCollector(func(w *Writer) { w.Gauge("pool_conns", "Connections.", "state").Sample(5, "busy") })
	_, exp := scrape(t, r)
	s := exp.find("pool_conns", nil)
	if len(s) != 2 || s[0].labels["state"] != "busy" || s[1].labels["state"] != "idle" {
		t.Fatalf("pool_conns = %+v, want busy then idle", s)
	}
}

func TestRuntimeMetrics(t *testing.T) {
	t.Parallel()
	_, exp := scrape(t, NewRegistry())
	want := []string{
		"go_goroutines", "go_threads", "go_gc_duration_seconds", "go_memstats_alloc_bytes",
		"go_memstats_heap_inuse_bytes", "go_memstats_sys_bytes", "go_info", "process_start_time_seconds",
		"process_resident_memory_bytes", "process_open_fds", // Linux only; the tests run on Linux
	}
	for _, name := range want {
		if _, ok := exp.types[name]; !ok {
			t.Errorf("%s missing", name)
		}
	}
	positive := []string{"go_goroutines", "go_threads", "go_memstats_alloc_bytes", "go_memstats_sys_bytes",
		"process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds"}
	for _, name := range positive {
		if s := exp.find(name, nil); len(s) != 1 || !(s[0].value > 0) {
			t.Errorf("%s = %+v, want one positive sample", name, s)
		}
	}
	if s := exp.find("go_info", nil); len(s) != 1 || !strings.HasPrefix(s[0].labels["version"], "go") {
		t.Errorf("go_info = %+v", s)
	}
	if s := exp.find("go_gc_duration_seconds", map[string]string{"quantile": "0.5"}); len(s) != 1 {
		t.Errorf("go_gc_duration_seconds median = %+v", s)
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	r.NewCounter("hits_total", "Hits.").Add(3)
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(srv.Close) // not defer: the parallel subtests outlive this function

	tests := []struct {
		name, method, acceptEncoding string
		wantGzip, wantBody           bool
	}{
		{"plain", http.MethodGet, "identity", false, true},
		{"gzip", http.MethodGet, "gzip, deflate", true, true},
		{"gzip refused", http.MethodGet, "gzip;q=0", false, true},
		{"head", http.MethodHead, "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequest(tt.method, srv.URL, nil)
			if err != nil {
				t.Fatal(err)
			}
			// Setting the header ourselves stops the transport from
			// decompressing transparently.
			req.Header.Set("Accept-Encoding", tt.acceptEncoding)
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if got := resp.Header.Get("Content-Type"); got != "text/plain; version=0.0.4; charset=utf-8" {
				t.Errorf("Content-Type = %q", got)
			}
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status = %d", resp.StatusCode)
			}
			body := io.Reader(resp.Body)
			if gz := resp.Header.Get("Content-Encoding") == "gzip"; gz != tt.wantGzip {
				t.Fatalf("gzip = %v, want %v", gz, tt.wantGzip)
			} else if gz {
				zr, err := gzip.NewReader(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				body = zr
			}
			b, err := io.ReadAll(body)
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(b), "\nhits_total 3\n"); got != tt.wantBody {
				t.Errorf("body has hits_total: %v, want %v\n%s", got, tt.wantBody, b)
			}
		})
	}
}

// TestConcurrentUpdates runs writers, series creation and scrapes at once
// (meant for -race) and checks that no increment is lost.
func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	r := NewRegistry()
	counter := r.NewCounterVec("c_total", "", "worker")
	shared := r.NewCounter("shared_total", "")
	gauge := r.NewGauge("g", "")
	hist := r.NewHistogramVec("h", "", []float64{1, 2}, "k")

	const workers, iterations = 8, 2000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			label := strconv.Itoa(w % 3)
			for i := range iterations {
				counter.With(label).Inc()
				shared.Inc()
				shared.Add(0.5)
				gauge.Add(1)
				gauge.Dec()
				gauge.Add(0.25)
				hist.With(strconv.Itoa(i % 4)).Observe(float64(i % 3))
			}
		})
	}
	wg.Go(func() { // scrapes while the writers run
		for range 20 {
			if _, err := r.WriteTo(io.Discard); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()

	var total float64
	for _, l := range []string{"0", "1", "2"} {
		total += counter.With(l).Value()
	}
	if total != workers*iterations {
		t.Errorf("c_total sums to %v, want %d", total, workers*iterations)
	}
	if got, want := shared.Value(), 1.5*workers*iterations; got != want {
		t.Errorf("shared_total = %v, want %v", got, want)
	}
	if got, want := gauge.Value(), 0.25*workers*iterations; got != want {
		t.Errorf("g = %v, want %v", got, want)
	}
	_, exp := scrape(t, r)
	var count float64
	for _, s := range exp.find("h_count", nil) {
		count += s.value
	}
	if count != workers*iterations {
		t.Errorf("h_count sums to %v, want %d", count, workers*iterations)
	}
	// i%3 is 0, 1, 2 in turn: the "1" bucket holds two thirds.
	for _, k := range []string{"0", "1", "2", "3"} {
		b := exp.find("h_bucket", map[string]string{"k": k, "le": "1"})
		c := exp.find("h_count", map[string]string{"k": k})
		if len(b) != 1 || len(c) != 1 || b[0].value > c[0].value {
			t.Errorf("k=%s: bucket %+v, count %+v", k, b, c)
		}
	}
}

func TestWithDoesNotAllocate(t *testing.T) {
	// Not parallel: AllocsPerRun counts every goroutine's allocations.
	r := NewRegistry()
	cv := r.NewCounterVec("c_total", "", "a", "b", "c", "d")
	hv := r.NewHistogramVec("h", "", nil, "route", "method", "code")
	cv.With("GET", "/api/me", "200", "tenant").Inc()
	hv.With("/api/me", "GET", "200").Observe(1)
	if n := testing.AllocsPerRun(1000, func() { cv.With("GET", "/api/me", "200", "tenant").Inc() }); n != 0 {
		t.Errorf("CounterVec.With(4 labels).Inc allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { hv.With("/api/me", "GET", "200").Observe(0.003) }); n != 0 {
		t.Errorf("HistogramVec.With(3 labels).Observe allocates %v times", n)
	}
	// Longer than the 32 bytes Go converts []byte to string without
	// allocating in general; the map-index conversion must still not.
	long := "/api/v1/tenants/{tenantId}/users/{userId}"
	hv.With(long, "GET", "200").Observe(1)
	if n := testing.AllocsPerRun(1000, func() { hv.With(long, "GET", "200").Observe(0.003) }); n != 0 {
		t.Errorf("HistogramVec.With(long route).Observe allocates %v times", n)
	}
}

func TestAcceptsGzip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		header string
		want   bool
	}{
		{"", false}, {"gzip", true}, {"deflate, gzip", true}, {"gzip;q=0", false},
		{"gzip; q=0.5", true}, {"x-gzip", false}, {"identity", false},
	}
	for _, tt := range tests {
		t.Run(tt.header, func(t *testing.T) {
			t.Parallel()
			if got := acceptsGzip(tt.header); got != tt.want {
				t.Errorf("acceptsGzip(%q) = %v, want %v", tt.header, got, tt.want)
			}
		})
	}
}

func BenchmarkCounterWithInc(b *testing.B) {
	cv := NewRegistry().NewCounterVec("http_requests_total", "", "route", "code")
	cv.With("/api/me", "200").Inc()
	b.ReportAllocs()
	for b.Loop() {
		cv.With("/api/me", "200").Inc()
	}
}

func BenchmarkCounterWithIncParallel(b *testing.B) {
	cv := NewRegistry().NewCounterVec("http_requests_total", "", "route", "code")
	cv.With("/api/me", "200").Inc()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			cv.With("/api/me", "200").Inc()
		}
	})
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewRegistry().NewHistogram("latency_seconds", "", DefBuckets)
	b.ReportAllocs()
	v := 0.0
	for b.Loop() {
		h.Observe(v)
		v += 0.0001
	}
}

func BenchmarkHistogramWithObserve(b *testing.B) {
	hv := NewRegistry().NewHistogramVec("http_request_duration_seconds", "", DefBuckets, "route", "method", "code")
	hv.With("/api/me", "GET", "200").Observe(0)
	b.ReportAllocs()
	for b.Loop() {
		hv.With("/api/me", "GET", "200").Observe(0.003)
	}
}

// BenchmarkWriteTo measures a scrape of a registry of realistic size.
func BenchmarkWriteTo(b *testing.B) {
	r := NewRegistry()
	cv := r.NewCounterVec("http_requests_total", "", "route", "code")
	hv := r.NewHistogramVec("http_request_duration_seconds", "", DefBuckets, "route")
	for i := range 20 {
		route := "/route/" + strconv.Itoa(i)
		cv.With(route, "200").Inc()
		hv.With(route).Observe(0.01)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.WriteTo(io.Discard); err != nil {
			b.Fatal(err)
		}
	}
}
