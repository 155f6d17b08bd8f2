// Command demosync is step 4 of `make run` (scripts/run.sh): it makes the platform simulator and
// the partner server agree on every demo school, and says truthfully where each one stands.
//
// The simulator plays the platform, so its view of a school is the truth the server must hold:
// the app's status (activated or not) and the current credentials. For each school demosync
// compares the two sides and, where they differ, has the simulator do what the platform does
// for a school in that situation, always through signed webhooks:
//
//   - not activated on the simulator: a CREATED webhook (the first `make run`);
//   - activated there, but the server holds other credentials, none, or has forgotten the school
//     (a reset before a restart, a wiped database, a pasted secret that was wrong): the simulator
//     issues new credentials and sends them, in a RESET for a school the server has active, a
//     REACTIVATED for one it has deactivated or does not know. A webhook with new credentials is
//     never a duplicate, so it always reaches the store;
//   - deactivated or deleted there, but active on the server (its webhook was lost): the
//     deactivation is sent again.
//
// A school an operator of the server switched off (the console) stays off: that is the
// partner's decision, which the platform cannot see; the report says how to undo it.
//
// "Ready" means verified, not hoped: the server's stored client id, OIDC secret and password
// equal the simulator's (compared in constant time, never printed), and the platform issued a
// client-credentials token for them.
//
// Usage (DATABASE_URL, ENCRYPTION_KEYS and UNTIS_API_URL as the server has them):
//
//	demosync -sim http://localhost:8081 [-tenants 1001,1002]
//
// It prints one line per school and exits 1 when a school is left where sign-in fails without
// anyone having chosen that.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "demosync:", err)
		os.Exit(1)
	}
}

// errNotReady is returned when at least one school was left unusable.
var errNotReady = errors.New("sign-in to at least one demo school would fail (see above)")

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	name := "demosync"
	if len(args) > 0 {
		name, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	simURL := fs.String("sim", "http://localhost:8081", "the platform simulator's base URL (its control API is under /sim/api)")
	tenants := fs.String("tenants", "1001,1002", "comma-separated demo schools (tenant ids)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	sy, err := open(ctx, getenv, *simURL)
	if err != nil {
		return err
	}
	defer sy.close()

	ready := true
	for _, tid := range strings.Split(*tenants, ",") {
		tid = strings.TrimSpace(tid)
		if tid == "" {
			continue
		}
		r := sy.reconcile(ctx, tid)
		fmt.Fprintf(stdout, "demo school %s%s: %s\n", tid, r.named(), r.text)
		if !r.ok {
			ready = false
		}
	}
	if !ready {
		return errNotReady
	}
	return nil
}
