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

	"github.com/untis-partner/server/internal/config"
	"github.com/untis-partner/server/internal/operator"
	"github.com/untis-partner/server/internal/store"
)

// operatorCmd is `server operator add EMAIL`: create a console account, or reset its password.
// The password is read from the first line of stdin, never from argv (other users of the machine
// can read a process's arguments).
func operatorCmd(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "add" {
		return errors.New("usage: server operator add EMAIL   (the password is read from stdin)")
	}
	email := operator.NormalizeEmail(args[1])
	if a, err := mail.ParseAddress(email); err != nil || a.Address != email {
		return fmt.Errorf("operator add: %q is not an e-mail address", args[1])
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
	cfg, err := loadConfig(getenv, config.EnvDatabaseURL)
	if err != nil {
		return err
	}
	st, err := store.Open(ctx, cfg.DatabaseURL, nil, store.Options{MaxConns: 2})
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
