// Package apperr is Parlor's one error vocabulary. Domain packages return *Error with a Code
// from the closed set below; the HTTP layer maps each code to a status and renders it as an
// RFC 9457 problem in exactly one place. Anything that is not an *Error is internal: it is
// logged with the request id and shown as a bare 500.
package apperr

import (
	"errors"
	"fmt"
	"time"
)

// Code is a stable, machine-readable problem code; clients branch on it.
type Code string

// The closed set of codes. Keep in step with the Problem schema in api/openapi.yaml.
const (
	Invalid             Code = "invalid_request"
	Unauthorized        Code = "unauthorized"
	InvalidCredentials  Code = "invalid_credentials"
	RefreshTokenReused  Code = "refresh_token_reused"
	Forbidden           Code = "forbidden"
	NotFound            Code = "not_found"
	Conflict            Code = "conflict"
	InsufficientCredits Code = "insufficient_credits"
	IdempotencyRequired Code = "idempotency_key_required"
	IdempotencyMismatch Code = "idempotency_key_reused"
	IdempotencyInFlight Code = "idempotency_key_in_use"
	RoomLimit           Code = "room_limit_reached"
	TopupLimit          Code = "topup_limit_reached"
	FullSyncRequired    Code = "full_sync_required"
	Banned              Code = "banned"
	Muted               Code = "muted"
	Archived            Code = "archived"
	PayloadTooLarge     Code = "payload_too_large"
	// UnsupportedAPIVersion refuses a provider event of another API version whose object
	// cannot be read.
	UnsupportedAPIVersion Code = "unsupported_api_version"
	UnsupportedMediaType  Code = "unsupported_media_type"
	MethodNotAllowed      Code = "method_not_allowed"
	RateLimited           Code = "rate_limited"
	NotReady              Code = "not_ready"
	Unavailable           Code = "unavailable"
	Internal              Code = "internal"
)

// ErrIdempotencyKeyRequired refuses a money-moving request sent without an Idempotency-Key.
var ErrIdempotencyKeyRequired = New(IdempotencyRequired,
	"this request moves credits: send an Idempotency-Key header (a new UUID per operation) so a retry is safe")

// FieldError points at one bad field of a request.
type FieldError struct {
	Field   string
	Message string
}

// Error is an expected failure with a code and a message safe to show to the caller.
type Error struct {
	Code    Code
	Message string
	// Fields lists individual bad fields, when known.
	Fields []FieldError
	// RetryAfter tells the caller when to try again (rate_limited, unavailable).
	RetryAfter time.Duration
	// Err is the cause, for logs only; it is never shown to the caller.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s: %s: %v", e.Code, e.Message, e.Err)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// New returns an *Error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// RateLimit returns a rate_limited error that tells the caller when to retry.
func RateLimit(retryAfter time.Duration, message string) *Error {
	return &Error{Code: RateLimited, Message: message, RetryAfter: retryAfter}
}

// CodeOf returns the code of the first *Error in err's chain, or Internal.
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}
