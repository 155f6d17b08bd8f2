package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"unicode/utf8"

	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/store"
)

const operatorUsage = "usage: server operator add EMAIL   (the password is read from stdin)\n       server operator unlock EMAIL"

// operatorCmd is `server operator add EMAIL`: create a console account, or reset its password.
// The password is read from the first line of stdin, never from argv (other users of the machine
// can read a process's arguments). `server operator unlock EMAIL` lifts the account's sign-in
// limits on every network.
func operatorCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 2 || (args[0] != "add" && args[0] != "unlock") {
		return errors.New(operatorUsage)
	}
	email := operator.NormalizeEmail(args[1])
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return fmt.Errorf("operator %s: %q is not an e-mail address", args[0], args[1])
	}
	if args[0] == "unlock" {
		return operatorUnlock(ctx, getenv, email, stdout)
	}
	if stdin == nil {
		return errors.New("operator add: the password is read from stdin")
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, operator.MaxPasswordLen+2)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("operator add: read the password: %w", err)
	}
	password := strings.TrimRight(line, "\r\n")
	switch n := utf8.RuneCountInString(password); {
	case n < operator.MinPasswordLen:
		return fmt.Errorf("operator add: the password must have at least %d characters", operator.MinPasswordLen)
	case len(password) > operator.MaxPasswordLen:
		return fmt.Errorf("operator add: the password must have at most %d bytes", operator.MaxPasswordLen)
	}
	hash, err := operator.HashPassword(password)
	if err != nil {
		return err
	}
	_, st, err := openStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer st.Close()
	created, err := st.UpsertOperator(ctx, email, hash)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stdout, "operator %s added; sign in at PUBLIC_URL/admin\n", email)
	} else {
		fmt.Fprintf(stdout, "operator %s: password reset; their console sessions ended\n", email)
	}
	return nil
}

// operatorUnlock empties the console's sign-in limit of one account on every network: for an
// operator held back after failed attempts (their own, or someone else's from their network)
// who must get in before it decays.
func operatorUnlock(ctx context.Context, getenv func(string) string, email string, stdout io.Writer) error {
	_, st, err := openStore(ctx, getenv)
	if err != nil {
		return err
	}
	defer st.Close()
	n, err := st.UnlockOperator(ctx, email)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("operator unlock: there is no operator %s (server operator add creates one)", email)
	}
	if err != nil {
		return err
	}
	switch n {
	case 0:
		fmt.Fprintf(stdout, "operator %s: no sign-in limit was holding the account back\n", email)
	default:
		fmt.Fprintf(stdout, "operator %s unlocked: failed sign-ins from %d network(s) no longer count\n", email, n)
	}
	return nil
}
