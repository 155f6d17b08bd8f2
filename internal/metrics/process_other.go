//go:build !linux

package metrics

func processStartTime() float64 { return float64(startTime.UnixNano()) / 1e9 }

// readProcessStats reports nothing: without /proc there is no cheap,
// portable source for memory and file-descriptor counts.
func readProcessStats(*Writer) {}
