package metrics

import (
	"fmt"
	"math"
	"sync/atomic"
)

// Counter is a monotonically increasing value. Its methods are lock-free
// and safe for concurrent use.
type Counter struct {
	// Integral increments, by far the most common, are a single atomic add
	// here; only fractional amounts need the compare-and-swap loop on the
	// float64 bits.
	n    atomic.Uint64
	bits atomic.Uint64
}

// Inc adds 1.
func (c *Counter) Inc() { c.n.Add(1) }

// Add adds v, which must be non-negative: a counter that goes down would
// make rate() report a restart.
func (c *Counter) Add(v float64) {
	if !(v >= 0) { // also rejects NaN
		panic(fmt.Sprintf("metrics: counter cannot add %v", v))
	}
	if u := uint64(v); float64(u) == v {
		c.n.Add(u)
		return
	}
	addFloat(&c.bits, v)
}

// Value returns the current value.
func (c *Counter) Value() float64 {
	return float64(c.n.Load()) + math.Float64frombits(c.bits.Load())
}

// addFloat atomically adds v to the float64 stored as bits.
func addFloat(bits *atomic.Uint64, v float64) {
	for {
		old := bits.Load()
		if bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// CounterVec is a family of counters partitioned by label values.
type CounterVec struct{ v *vec[Counter] }

// NewCounterVec registers a counter family with the given label names.
func (r *Registry) NewCounterVec(name, help string, labelNames ...string) *CounterVec {
	return &CounterVec{newVec(r, typeCounter, name, help, labelNames, nil, appendCounter)}
}

// NewCounter registers a counter without labels.
func (r *Registry) NewCounter(name, help string) *Counter {
	return r.NewCounterVec(name, help).With()
}

// With returns the counter for the label values, given in the order of the
// label names; it panics if their number is wrong. Keep the result when
// the labels are fixed, to skip the lookup.
func (cv *CounterVec) With(labelValues ...string) *Counter { return cv.v.with(labelValues) }

func appendCounter(b []byte, name, labels string, c *Counter) []byte {
	return appendSample(b, name, "", labels, c.Value())
}

// Gauge is a value that can go up and down. Its methods are lock-free and
// safe for concurrent use.
type Gauge struct{ bits atomic.Uint64 }

// Set sets the gauge to v.
func (g *Gauge) Set(v float64) { g.bits.Store(math.Float64bits(v)) }

// Add adds v, which may be negative.
func (g *Gauge) Add(v float64) { addFloat(&g.bits, v) }

// Inc adds 1.
func (g *Gauge) Inc() { g.Add(1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { g.Add(-1) }

// Value returns the current value.
func (g *Gauge) Value() float64 { return math.Float64frombits(g.bits.Load()) }

// GaugeVec is a family of gauges partitioned by label values.
type GaugeVec struct{ v *vec[Gauge] }

// NewGaugeVec registers a gauge family with the given label names.
func (r *Registry) NewGaugeVec(name, help string, labelNames ...string) *GaugeVec {
	return &GaugeVec{newVec(r, typeGauge, name, help, labelNames, nil, appendGauge)}
}

// NewGauge registers a gauge without labels.
func (r *Registry) NewGauge(name, help string) *Gauge {
	return r.NewGaugeVec(name, help).With()
}

// With returns the gauge for the label values; see CounterVec.With.
func (gv *GaugeVec) With(labelValues ...string) *Gauge { return gv.v.with(labelValues) }

func appendGauge(b []byte, name, labels string, g *Gauge) []byte {
	return appendSample(b, name, "", labels, g.Value())
}

// gaugeFunc is a gauge whose value fn computes at scrape time.
type gaugeFunc struct {
	name, help string
	fn         func() float64
}

// NewGaugeFunc registers a gauge whose value is fn's result at scrape
// time. fn must be safe for concurrent use and fast.
func (r *Registry) NewGaugeFunc(name, help string, fn func() float64) {
	checkNames(typeGauge, name, nil)
	r.register(&gaugeFunc{name: name, help: help, fn: fn}, typeGauge, name)
}

func (g *gaugeFunc) familyName() string { return g.name }

func (g *gaugeFunc) appendTo(b []byte) []byte {
	b = appendHeader(b, g.name, g.help, typeGauge)
	return appendSample(b, g.name, "", "", g.fn())
}
