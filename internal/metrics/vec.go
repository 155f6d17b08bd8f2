package metrics

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// vec is the label-values-to-series map shared by CounterVec, GaugeVec and
// HistogramVec.
type vec[M any] struct {
	name       string
	help       string
	typ        metricType
	labelNames []string
	// init prepares a new series' metric (a histogram needs its buckets).
	init func(*M)
	// appendSamples appends the sample lines of one series.
	appendSamples func(b []byte, name, labels string, m *M) []byte

	// index maps appendKey(values) to the series. It is never modified,
	// only replaced by a copy with one more series, so a lookup is an
	// atomic load and a map read: it writes no shared memory (a read lock
	// would, and cores updating metrics at once would fight over it), and
	// indexing with string(key) does not allocate (a sync.Map's any key
	// would, for keys over 32 bytes). Adding a series costs a copy of the
	// index, which is fine for the label cardinalities Prometheus itself
	// tolerates.
	index atomic.Pointer[map[string]*series[M]]

	mu     sync.Mutex   // serialises series creation and guards sorted
	sorted []*series[M] // by label values, for stable output without sorting per scrape
}

type series[M any] struct {
	values []string
	labels string // rendered once: a="x",b="y"
	metric M
}

// keyStack is the size of the lookup-key buffer kept on the stack; keys of
// a few short label values (route, method, status) fit, longer ones cost
// one allocation.
const keyStack = 128

// with returns the series for values, creating it on first use. A lookup
// of an existing series takes no lock and does not allocate.
func (v *vec[M]) with(values []string) *M {
	if len(values) != len(v.labelNames) {
		panic(fmt.Sprintf("metrics: %s: got %d label values, want %d (%s)",
			v.name, len(values), len(v.labelNames), strings.Join(v.labelNames, ", ")))
	}
	var buf [keyStack]byte
	key := appendKey(buf[:0], values)
	if s := (*v.index.Load())[string(key)]; s != nil {
		return &s.metric
	}
	return v.create(string(key), values)
}

func (v *vec[M]) create(key string, values []string) *M {
	v.mu.Lock()
	defer v.mu.Unlock()
	old := *v.index.Load()
	if s := old[key]; s != nil {
		return &s.metric // another goroutine created it first
	}
	s := &series[M]{values: slices.Clone(values)}
	s.labels = string(appendLabels(nil, v.labelNames, s.values))
	if v.init != nil {
		v.init(&s.metric)
	}
	index := make(map[string]*series[M], len(old)+1)
	maps.Copy(index, old)
	index[key] = s
	v.index.Store(&index)
	i, _ := slices.BinarySearchFunc(v.sorted, s.values, func(e *series[M], vals []string) int {
		return slices.Compare(e.values, vals)
	})
	v.sorted = slices.Insert(v.sorted, i, s)
	return &s.metric
}

// appendKey encodes values unambiguously: each value is prefixed by its
// length, so ("a,b", "c") and ("a", "b,c") get different keys whatever
// bytes the values contain.
func appendKey(b []byte, values []string) []byte {
	for _, s := range values {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

func (v *vec[M]) familyName() string { return v.name }

func (v *vec[M]) appendTo(b []byte) []byte {
	v.mu.Lock()
	all := slices.Clone(v.sorted)
	v.mu.Unlock()
	// A family without series is still declared, so that "no events yet"
	// and "no such metric" look different.
	b = appendHeader(b, v.name, v.help, v.typ)
	for _, s := range all {
		b = v.appendSamples(b, v.name, s.labels, &s.metric)
	}
	return b
}

// newVec validates the names, then registers and returns a new family.
func newVec[M any](r *Registry, typ metricType, name, help string, labelNames []string,
	init func(*M), appendSamples func(b []byte, name, labels string, m *M) []byte,
) *vec[M] {
	var reserved, sampleNames []string
	switch typ {
	case typeHistogram:
		reserved = []string{"le"}
		sampleNames = []string{name + "_bucket", name + "_sum", name + "_count"}
	default:
		sampleNames = []string{name}
	}
	checkNames(typ, name, labelNames, reserved...)
	v := &vec[M]{
		name:          name,
		help:          help,
		typ:           typ,
		labelNames:    slices.Clone(labelNames),
		init:          init,
		appendSamples: appendSamples,
	}
	v.index.Store(&map[string]*series[M]{})
	r.register(v, typ, sampleNames...)
	return v
}
