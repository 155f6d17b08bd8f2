package sso

import (
	"errors"
	"fmt"
)

// Kind is what went wrong with a sign-in, in the terms the user's page needs.
type Kind int

// The kinds of sign-in failure.
const (
	// KindBadLaunch: the launch URL names no school, or an impossible one.
	KindBadLaunch Kind = iota + 1
	// KindUnknownSchool: the school has never activated the app here.
	KindUnknownSchool
	// KindSchoolInactive: the school deactivated or deleted the app, or has no credentials.
	KindSchoolInactive
	// KindFlowMissing: the callback matches no login attempt of this browser (no flow cookie, a
	// foreign one, a state that does not match, or a flow already used).
	KindFlowMissing
	// KindFlowExpired: the login attempt is older than its lifetime.
	KindFlowExpired
	// KindPlatformError: the platform sent the user back with an OAuth error.
	KindPlatformError
	// KindRejected: the platform's answer failed a check (id_token, nonce, issuer, profile).
	KindRejected
	// KindUnavailable: the platform could not be reached or failed.
	KindUnavailable
	// KindMisconfigured: the school's connection to the app needs attention from the app's
	// operator or the school's WebUntis administrator: the platform refused the OIDC secret, or
	// the school's discovery names endpoints off UNTIS_API_URL or no client authentication the
	// app can do. Not the user's fault, and not an attack on them.
	KindMisconfigured
)

// Error is a sign-in failure. Reason is a short, fixed word for logs and metrics (never a value
// from the request); Code is the platform's OAuth error code for KindPlatformError.
type Error struct {
	Kind     Kind
	Reason   string
	Code     string
	TenantID string
	Err      error
}

func (e *Error) Error() string {
	msg := "sign-in failed: " + e.Reason
	if e.TenantID != "" {
		msg += " (tenant " + e.TenantID + ")"
	}
	if e.Code != "" {
		msg += ": platform error " + e.Code
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Err }

func failure(kind Kind, reason, tenantID string, err error) *Error {
	return &Error{Kind: kind, Reason: reason, TenantID: tenantID, Err: err}
}

func failuref(kind Kind, reason, tenantID, format string, args ...any) *Error {
	return failure(kind, reason, tenantID, fmt.Errorf(format, args...))
}

// AsError returns err's *Error, or one of KindUnavailable for anything else.
func AsError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return &Error{Kind: KindUnavailable, Reason: "internal", Err: err}
}
