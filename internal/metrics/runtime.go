package metrics

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"time"
)

// The runtime/metrics names read on every scrape. Unlike
// runtime.ReadMemStats they do not stop the world.
const (
	rmGoroutines  = "/sched/goroutines:goroutines"
	rmThreads     = "/sched/threads/total:threads"
	rmGOMAXPROCS  = "/sched/gomaxprocs:threads"
	rmHeapObjects = "/memory/classes/heap/objects:bytes"
	rmHeapUnused  = "/memory/classes/heap/unused:bytes"
	rmTotal       = "/memory/classes/total:bytes"
	rmHeapGoal    = "/gc/heap/goal:bytes"
)

var runtimeNames = []string{rmGoroutines, rmThreads, rmGOMAXPROCS, rmHeapObjects, rmHeapUnused, rmTotal, rmHeapGoal}

// startTime approximates the process start where /proc cannot tell.
var startTime = time.Now()

// collectRuntime writes the go_* metrics under the names client_golang
// uses, so existing dashboards work.
func collectRuntime(w *Writer) {
	samples := make([]rtmetrics.Sample, len(runtimeNames))
	for i, n := range runtimeNames {
		samples[i].Name = n
	}
	rtmetrics.Read(samples)
	val := make(map[string]float64, len(samples))
	for _, s := range samples {
		// KindBad means this Go version does not have the metric; skip it
		// rather than report a made-up zero.
		if s.Value.Kind() == rtmetrics.KindUint64 {
			val[s.Name] = float64(s.Value.Uint64())
		}
	}
	gauge := func(name, help, rm string) {
		if v, ok := val[rm]; ok {
			w.Gauge(name, help).Sample(v)
		}
	}
	gauge("go_goroutines", "Number of goroutines that currently exist.", rmGoroutines)
	gauge("go_threads", "Number of OS threads the Go runtime has.", rmThreads)
	gauge("go_sched_gomaxprocs_threads", "GOMAXPROCS: threads that can execute Go code at once.", rmGOMAXPROCS)
	gauge("go_memstats_alloc_bytes", "Bytes of allocated heap objects.", rmHeapObjects)
	gauge("go_memstats_sys_bytes", "Bytes of memory obtained from the OS.", rmTotal)
	gauge("go_memstats_next_gc_bytes", "Heap size target of the next GC cycle.", rmHeapGoal)
	if objects, ok := val[rmHeapObjects]; ok {
		if unused, ok := val[rmHeapUnused]; ok {
			w.Gauge("go_memstats_heap_inuse_bytes", "Bytes in in-use heap spans.").Sample(objects + unused)
		}
	}

	// debug.ReadGCStats takes the heap lock, not the world, and gives the
	// exact pause total that the runtime/metrics histogram cannot.
	var gc debug.GCStats
	gc.PauseQuantiles = make([]time.Duration, 5)
	debug.ReadGCStats(&gc)
	quantiles := []float64{0, 0.25, 0.5, 0.75, 1}
	values := make([]float64, len(quantiles))
	for i, d := range gc.PauseQuantiles {
		values[i] = d.Seconds()
	}
	w.summary("go_gc_duration_seconds", "Wall-time pause (stop-the-world) duration in garbage collection cycles.",
		quantiles, values, gc.PauseTotal.Seconds(), uint64(gc.NumGC))

	w.Gauge("go_info", "Information about the Go environment.", "version").Sample(1, runtime.Version())
}

// collectProcess writes the process_* metrics; what the platform cannot
// report cheaply is left out.
func collectProcess(w *Writer) {
	w.Gauge("process_start_time_seconds", "Start time of the process since the Unix epoch in seconds.").
		Sample(processStartTime())
	readProcessStats(w)
}
