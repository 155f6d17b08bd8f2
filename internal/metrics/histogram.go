package metrics

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync/atomic"
)

// Histogram counts observations in buckets. Observe is lock-free and safe
// for concurrent use.
type Histogram struct {
	upper  []float64       // bucket upper bounds, shared by the family
	counts []atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Uint64   // float64 bits
}

// linearSearchMax is the bucket count up to which a linear scan beats a
// binary search (branch prediction, no function call).
const linearSearchMax = 32

// Observe records v.
func (h *Histogram) Observe(v float64) {
	var i int
	if len(h.upper) <= linearSearchMax {
		for i < len(h.upper) && v > h.upper[i] {
			i++
		}
	} else {
		// The first bound >= v: buckets are "le", less than or equal.
		i, _ = slices.BinarySearch(h.upper, v)
	}
	h.counts[i].Add(1)
	addFloat(&h.sum, v)
}

// HistogramVec is a family of histograms partitioned by label values.
type HistogramVec struct{ v *vec[Histogram] }

// NewHistogramVec registers a histogram family. buckets are the upper
// bounds, strictly increasing; nil means DefBuckets. A trailing +Inf is
// implied and may be omitted.
func (r *Registry) NewHistogramVec(name, help string, buckets []float64, labelNames ...string) *HistogramVec {
	upper := checkBuckets(name, buckets)
	// The "le" label values are formatted once, not on every scrape.
	les := make([]string, len(upper)+1)
	for i, u := range upper {
		les[i] = string(appendFloat(nil, u))
	}
	les[len(upper)] = "+Inf"

	init := func(h *Histogram) {
		h.upper = upper
		h.counts = make([]atomic.Uint64, len(upper)+1)
	}
	appendSamples := func(b []byte, name, labels string, h *Histogram) []byte {
		return appendHistogram(b, name, labels, les, h)
	}
	return &HistogramVec{newVec(r, typeHistogram, name, help, labelNames, init, appendSamples)}
}

// NewHistogram registers a histogram without labels.
func (r *Registry) NewHistogram(name, help string, buckets []float64) *Histogram {
	return r.NewHistogramVec(name, help, buckets).With()
}

// With returns the histogram for the label values; see CounterVec.With.
func (hv *HistogramVec) With(labelValues ...string) *Histogram { return hv.v.with(labelValues) }

func checkBuckets(name string, buckets []float64) []float64 {
	if len(buckets) == 0 {
		buckets = DefBuckets
	}
	upper := slices.Clone(buckets)
	if math.IsInf(upper[len(upper)-1], +1) {
		upper = upper[:len(upper)-1]
	}
	for i, u := range upper {
		if math.IsNaN(u) || math.IsInf(u, 0) || i > 0 && u <= upper[i-1] {
			panic(fmt.Sprintf("metrics: histogram %s: buckets must be finite and strictly increasing, got %v", name, buckets))
		}
	}
	return upper
}

// appendHistogram writes cumulative buckets, then _sum and _count. _count
// is derived from the same bucket reads, so it always equals the +Inf
// bucket even while observations run concurrently; _sum may include an
// observation or two that the buckets do not yet show.
func appendHistogram(b []byte, name, labels string, les []string, h *Histogram) []byte {
	var cum uint64
	for i := range h.counts {
		cum += h.counts[i].Load()
		b = append(b, name...)
		b = append(b, "_bucket{"...)
		if labels != "" {
			b = append(b, labels...)
			b = append(b, ',')
		}
		b = append(b, `le="`...)
		b = append(b, les[i]...)
		b = append(b, `"} `...)
		b = strconv.AppendUint(b, cum, 10)
		b = append(b, '\n')
	}
	b = appendSample(b, name, "_sum", labels, math.Float64frombits(h.sum.Load()))
	b = append(b, name...)
	b = append(b, "_count"...)
	if labels != "" {
		b = append(b, '{')
		b = append(b, labels...)
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = strconv.AppendUint(b, cum, 10)
	return append(b, '\n')
}
