package metrics

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// userHZ is the unit of the times in /proc/self/stat. It is 100 on every
// Linux platform Go supports; reading it properly needs sysconf (cgo).
const userHZ = 100

// procStat holds the fields of /proc/self/stat we use.
type procStat struct {
	utime, stime uint64 // clock ticks
	starttime    uint64 // clock ticks after boot
	vsize        uint64 // bytes
	rss          uint64 // pages
}

func readProcStat() (procStat, bool) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return procStat{}, false
	}
	// The command name (field 2) is in parentheses and may contain spaces
	// or parentheses itself, so fields are counted from the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, false
	}
	f := bytes.Fields(data[i+1:]) // f[0] is field 3 (state)
	if len(f) < 22 {
		return procStat{}, false
	}
	field := func(n int) uint64 { // n is the 1-based field number in proc(5)
		v, _ := strconv.ParseUint(string(f[n-3]), 10, 64)
		return v
	}
	return procStat{
		utime:     field(14),
		stime:     field(15),
		starttime: field(22),
		vsize:     field(23),
		rss:       field(24),
	}, true
}

// processStartTime is read once: it does not change, and it needs two
// files.
var processStartTime = sync.OnceValue(func() float64 {
	fallback := float64(startTime.UnixNano()) / 1e9
	st, ok := readProcStat()
	if !ok {
		return fallback
	}
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return fallback
	}
	for line := range bytes.Lines(data) {
		if rest, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			btime, err := strconv.ParseUint(string(bytes.TrimSpace(rest)), 10, 64)
			if err != nil {
				return fallback
			}
			return float64(btime) + float64(st.starttime)/userHZ
		}
	}
	return fallback
})

func readProcessStats(w *Writer) {
	if st, ok := readProcStat(); ok {
		w.Counter("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.").
			Sample(float64(st.utime+st.stime) / userHZ)
		w.Gauge("process_resident_memory_bytes", "Resident memory size in bytes.").
			Sample(float64(st.rss) * float64(os.Getpagesize()))
		w.Gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.").
			Sample(float64(st.vsize))
	}
	if n, ok := openFDs(); ok {
		w.Gauge("process_open_fds", "Number of open file descriptors.").Sample(float64(n))
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		w.Gauge("process_max_fds", "Maximum number of open file descriptors.").Sample(float64(lim.Cur))
	}
}

func openFDs() (int, bool) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, false
	}
	return len(names) - 1, true // not counting d itself
}
