package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/store"
)

const eventsUsage = `usage: server events list [--pending | --failed | --delivered | --all] [--school ID] [--limit N]
       server events retry ID...    (an id or a msg_ id from the list)
       server events retry --failed (every failed event)`

// eventsCmd is `server events list|retry`: the outbox of school lifecycle events for the
// partner's app, for operators. list shows what is pending or failed (by default), retry queues
// events again; every replica's worker hears of it at once.
func eventsCmd(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "retry") {
		return errors.New(eventsUsage)
	}
	cfg, st, err := openStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer st.Close()
	if args[0] == "list" {
		return eventsList(ctx, st, cfg, args[1:], stdout)
	}
	return eventsRetry(ctx, st, args[1:], stdout)
}

func eventsList(ctx context.Context, st *store.Store, cfg *config.Config, args []string, stdout io.Writer) error {
	statuses := []string{store.EventPending, store.EventFailed}
	f := store.EventFilter{Limit: 100}
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "--pending", "--failed", "--delivered":
			statuses = []string{strings.TrimPrefix(a, "--")}
		case "--all":
			statuses = []string{""}
		case "--school", "--limit":
			if i+1 == len(args) {
				return fmt.Errorf("events list: %s needs a value\n%s", a, eventsUsage)
			}
			i++
			if a == "--school" {
				if !store.ValidTenantID(args[i]) {
					return fmt.Errorf("events list: %q is not a tenant id", args[i])
				}
				f.TenantID = args[i]
				continue
			}
			n, err := strconv.Atoi(args[i])
			if err != nil || n < 1 || n > 10000 {
				return fmt.Errorf("events list: --limit must be a number from 1 to 10000, got %q", args[i])
			}
			f.Limit = n
		default:
			return fmt.Errorf("events list: unknown argument %q\n%s", a, eventsUsage)
		}
	}
	c, err := st.CountEvents(ctx)
	if err != nil {
		return err
	}
	to := "not sent: EVENTS_URL is unset in this environment"
	if t := eventsTarget(cfg); t != "" {
		to = "sent to " + t
	}
	fmt.Fprintf(stdout, "events: %d pending, %d failed (%s)\n", c.Pending, c.Failed, to)
	var list []store.OutboxEvent
	for _, s := range statuses {
		f.Status = s
		part, err := st.ListEvents(ctx, f)
		if err != nil {
			return err
		}
		list = append(list, part...)
	}
	if len(list) == 0 {
		fmt.Fprintln(stdout, "nothing to list")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tMESSAGE ID\tSCHOOL\tTYPE\tSTATUS\tATTEMPTS\tCREATED\tNEXT ATTEMPT\tLAST ERROR")
	for _, e := range list {
		next := "-"
		if e.Status == store.EventPending {
			next = e.NextAttemptAt.UTC().Format(time.DateTime)
		}
		lastErr := e.LastError
		if lastErr == "" {
			lastErr = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", e.ID, e.MessageID, e.TenantID, e.Type, e.Status, e.Attempts,
			e.CreatedAt.UTC().Format(time.DateTime), next, lastErr)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(list) >= f.Limit {
		fmt.Fprintf(stdout, "(at most %d per status shown; --limit N shows more)\n", f.Limit)
	}
	return nil
}

func eventsRetry(ctx context.Context, st *store.Store, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(eventsUsage)
	}
	if args[0] == "--failed" {
		if len(args) != 1 {
			return errors.New(eventsUsage)
		}
		n, err := st.RetryFailedEvents(ctx, "cli")
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%d failed event(s) queued again; each school's go out in their order\n", n)
		return nil
	}
	var failures []string
	for _, ref := range args {
		ev, err := st.RetryEvent(ctx, ref, "cli")
		switch {
		case errors.Is(err, store.ErrNotFound):
			failures = append(failures, fmt.Sprintf("%s: no such event (it may have been delivered and swept)", ref))
		case errors.Is(err, store.ErrEventDelivered):
			failures = append(failures, fmt.Sprintf("%s: delivered already; nothing to retry", ref))
		case errors.Is(err, store.ErrEventBusy):
			failures = append(failures, fmt.Sprintf("%s: being sent at this moment; look again in a few seconds", ref))
		case err != nil:
			return err
		default:
			fmt.Fprintf(stdout, "event %d (%s of school %s) queued: it is sent as soon as the school's earlier events are\n", ev.ID, ev.Type, ev.TenantID)
		}
	}
	if len(failures) > 0 {
		return errors.New("events retry: " + strings.Join(failures, "; "))
	}
	return nil
}
