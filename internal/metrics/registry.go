// Package metrics is a small Prometheus registry that writes the text
// exposition format (version 0.0.4).
//
// It covers what the server needs (counters, gauges, histograms, values
// computed at scrape time, Go runtime and process metrics) without the
// dependency tree of prometheus/client_golang. The hot paths, With on an
// existing series and Inc, Add, Set and Observe, take no lock and do not
// allocate.
//
// Registration mistakes (invalid or duplicate names, wrong number of label
// values) are programming errors and panic, like regexp.MustCompile.
package metrics

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// DefBuckets are histogram buckets for request latencies in seconds,
// from 1 ms to 10 s.
var DefBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Registry holds metric families and writes them in the text exposition
// format. It is safe for concurrent use.
type Registry struct {
	mu sync.Mutex
	// families is sorted by name so a scrape need not sort them.
	families []family
	// names holds every sample name a registered family writes (a
	// histogram writes name_bucket, name_sum and name_count), so that two
	// families can never produce samples with the same name.
	names      map[string]string
	collectors []func(*Writer)
}

// family is a registered metric family.
type family interface {
	familyName() string
	// appendTo appends the whole family, HELP and TYPE lines included.
	appendTo(b []byte) []byte
}

// NewRegistry returns a registry that also reports Go runtime metrics
// (go_*) and process metrics (process_*).
func NewRegistry() *Registry {
	r := &Registry{names: make(map[string]string)}
	r.NewCollector(collectRuntime)
	r.NewCollector(collectProcess)
	return r
}

// register adds f, whose samples are named sampleNames, and panics if any
// of those names is taken.
func (r *Registry) register(f family, typ metricType, sampleNames ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, n := range sampleNames {
		if owner, ok := r.names[n]; ok {
			panic(fmt.Sprintf("metrics: %s %s: sample name %s is already used by %s", typ, f.familyName(), n, owner))
		}
	}
	for _, n := range sampleNames {
		r.names[n] = f.familyName()
	}
	i, _ := slices.BinarySearchFunc(r.families, f.familyName(), func(g family, name string) int {
		return strings.Compare(g.familyName(), name)
	})
	r.families = slices.Insert(r.families, i, f)
}

// NewCollector registers fn to be called on every scrape, for metrics whose
// values live elsewhere (a database count, a pool's statistics). fn writes
// them through w; it must not keep w after returning. Collectors may run
// concurrently when scrapes overlap.
func (r *Registry) NewCollector(fn func(w *Writer)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collectors = append(r.collectors, fn)
}

var bufPool = sync.Pool{New: func() any { return new([]byte) }}

// WriteTo writes all metrics in the text exposition format, sorted by
// metric name and then by label values.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	*bp = r.appendTo((*bp)[:0])
	n, err := w.Write(*bp)
	if err != nil {
		return int64(n), fmt.Errorf("metrics: write exposition: %w", err)
	}
	return int64(n), nil
}

// appendTo renders a scrape. Registered families and those written by
// collectors are merged by name; both lists are already sorted.
func (r *Registry) appendTo(b []byte) []byte {
	r.mu.Lock()
	families := slices.Clone(r.families)
	collectors := slices.Clone(r.collectors)
	r.mu.Unlock()

	// Collectors run without the registry lock: they may be slow (a query)
	// or even register metrics themselves.
	w := &Writer{r: r}
	for _, fn := range collectors {
		fn(w)
	}
	collected := w.sorted()

	for len(families) > 0 || len(collected) > 0 {
		if len(collected) == 0 || (len(families) > 0 && families[0].familyName() < collected[0].name) {
			b = families[0].appendTo(b)
			families = families[1:]
		} else {
			b = collected[0].appendTo(b)
			collected = collected[1:]
		}
	}
	return b
}

// Handler serves the metrics, gzip-compressed when the client accepts it
// (Prometheus does).
func (r *Registry) Handler() http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		bp := bufPool.Get().(*[]byte)
		defer bufPool.Put(bp)
		*bp = r.appendTo((*bp)[:0])

		h := rw.Header()
		h.Set("Content-Type", ContentType)
		h.Set("Cache-Control", "no-store")
		h.Add("Vary", "Accept-Encoding")
		if req.Method == http.MethodHead {
			return
		}
		if acceptsGzip(req.Header.Get("Accept-Encoding")) {
			h.Set("Content-Encoding", "gzip")
			zw := gzipPool.Get().(*gzip.Writer)
			defer gzipPool.Put(zw)
			zw.Reset(rw)
			// Write errors mean the scraper went away; there is no one left
			// to report them to.
			_, _ = zw.Write(*bp)
			_ = zw.Close()
			return
		}
		_, _ = rw.Write(*bp)
	})
}

var gzipPool = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if strings.TrimSpace(coding) != "gzip" {
			continue
		}
		// "gzip;q=0" means the client refuses gzip.
		q := strings.ReplaceAll(params, " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
