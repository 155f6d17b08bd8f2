// Command server is the Untis partner-app server. See README.md and contract.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	// The schools' time zones (SCHOOL_TIMEZONE, and each school's country's) must load in a
	// container without zone files, such as the distroless image.
	_ "time/tzdata"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, restore the default behaviour: a second Ctrl-C during the drain
	// ends the process at once.
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
