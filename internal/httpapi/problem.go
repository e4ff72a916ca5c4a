package httpapi

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/parlor-dev/parlor/internal/apperr"
)

// problem is an RFC 9457 problem document as Parlor writes it.
type problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Instance  string       `json:"instance,omitempty"`
	Code      apperr.Code  `json:"code"`
	RequestID string       `json:"request_id,omitempty"`
	Errors    []fieldError `json:"errors,omitempty"`
}

type fieldError struct {
	Field   string `json:"field,omitempty"`
	Message string `json:"message"`
}

// maxFieldErrors matches the Problem schema's maxItems.
const maxFieldErrors = 50

// statusOf maps each code to its HTTP status: the one table of it.
var statusOf = map[apperr.Code]int{
	apperr.Invalid:               http.StatusBadRequest,
	apperr.Unauthorized:          http.StatusUnauthorized,
	apperr.InvalidCredentials:    http.StatusUnauthorized,
	apperr.RefreshTokenReused:    http.StatusUnauthorized,
	apperr.Forbidden:             http.StatusForbidden,
	apperr.NotFound:              http.StatusNotFound,
	apperr.MethodNotAllowed:      http.StatusMethodNotAllowed,
	apperr.Conflict:              http.StatusConflict,
	apperr.InsufficientCredits:   http.StatusUnprocessableEntity,
	apperr.IdempotencyRequired:   http.StatusBadRequest,
	apperr.RoomLimit:             http.StatusConflict,
	apperr.TopupLimit:            http.StatusConflict,
	apperr.FullSyncRequired:      http.StatusGone,
	apperr.IdempotencyMismatch:   http.StatusUnprocessableEntity,
	apperr.IdempotencyInFlight:   http.StatusConflict,
	apperr.Banned:                http.StatusForbidden,
	apperr.Muted:                 http.StatusForbidden,
	apperr.Archived:              http.StatusConflict,
	apperr.PayloadTooLarge:       http.StatusRequestEntityTooLarge,
	apperr.UnsupportedAPIVersion: http.StatusUnprocessableEntity,
	apperr.UnsupportedMediaType:  http.StatusUnsupportedMediaType,
	apperr.RateLimited:           http.StatusTooManyRequests,
	apperr.Internal:              http.StatusInternalServerError,
	apperr.NotReady:              http.StatusServiceUnavailable,
	apperr.Unavailable:           http.StatusServiceUnavailable,
}

// codeOfStatus maps echo's own HTTP errors (routing, body limit, binding) to codes.
var codeOfStatus = map[int]apperr.Code{
	http.StatusBadRequest:            apperr.Invalid,
	http.StatusUnauthorized:          apperr.Unauthorized,
	http.StatusForbidden:             apperr.Forbidden,
	http.StatusNotFound:              apperr.NotFound,
	http.StatusMethodNotAllowed:      apperr.MethodNotAllowed,
	http.StatusRequestEntityTooLarge: apperr.PayloadTooLarge,
	http.StatusUnsupportedMediaType:  apperr.UnsupportedMediaType,
	http.StatusTooManyRequests:       apperr.RateLimited,
	http.StatusServiceUnavailable:    apperr.Unavailable,
}

// errorHandler is echo's HTTPErrorHandler: the only place that writes problem+json.
func errorHandler(logger *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		e := toAppError(err)
		status := statusOf[e.Code]
		if status == 0 {
			status = http.StatusInternalServerError
		}
		ctx := c.Request().Context()
		if status >= 500 && !errors.Is(err, errDraining) {
			// The cause goes to the log, never to the client.
			logger.ErrorContext(ctx, "request failed", "error", err.Error(), "code", e.Code)
		}
		p := problem{
			Type:      "about:blank",
			Title:     http.StatusText(status),
			Status:    status,
			Detail:    e.Message,
			Instance:  c.Request().URL.Path,
			Code:      e.Code,
			RequestID: requestIDFrom(ctx),
		}
		if e.Code == apperr.Internal {
			p.Detail = "an unexpected error occurred; quote the request id when reporting it"
		}
		for i, f := range e.Fields {
			if i == maxFieldErrors {
				break
			}
			p.Errors = append(p.Errors, fieldError(f))
		}
		h := c.Response().Header()
		if e.RetryAfter > 0 {
			h.Set("Retry-After", strconv.Itoa(int(math.Ceil(e.RetryAfter.Seconds()))))
		}
		if status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Bearer realm="parlor"`)
		}
		h.Set(echo.HeaderContentType, "application/problem+json")
		c.Response().WriteHeader(status)
		if c.Request().Method == http.MethodHead {
			return
		}
		_ = jsonEncode(c.Response(), p)
	}
}

// unavailableRetryAfter is the Retry-After of a 503: long enough not to hammer a store that
// is restarting, short enough that a client barely notices a blip.
const unavailableRetryAfter = 2 * time.Second

// unreachable reports whether err says a store could not be reached or dropped the request's
// connection — PostgreSQL or Redis refused, reset or closed it, is shutting down or starting
// up, or has no connection slot left — rather than that the request itself failed: the same
// request may succeed once the store is back.
func unreachable(err error) bool {
	var connect *pgconn.ConnectError
	var op *net.OpError
	if errors.As(err, &connect) || errors.As(err, &op) {
		return true
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		// Class 08 connection exceptions; 57P01–57P03 admin or crash shutdown, starting up;
		// 53300 too many connections.
		return strings.HasPrefix(pg.Code, "08") || pg.Code == "57P01" || pg.Code == "57P02" || pg.Code == "57P03" || pg.Code == "53300"
	}
	// A store that closes the connection without a word (a network cut, a proxy going
	// away) leaves pgx and go-redis with an end of stream: io.ErrUnexpectedEOF mid-reply,
	// a bare io.EOF between replies, or pgx's ErrConnClosed for a connection it has since
	// closed. An end of stream counts only outside an *echo.HTTPError: a truncated or empty
	// request body ends in one too, and echo's binder and the request validator hand that
	// over inside one.
	var he *echo.HTTPError
	endOfStream := (errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)) && !errors.As(err, &he)
	return errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) || pgconn.Timeout(err) ||
		errors.Is(err, pgconn.ErrConnClosed) || endOfStream
}

// toAppError classifies any error as an *apperr.Error.
func toAppError(err error) *apperr.Error {
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return ae
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return &apperr.Error{Code: apperr.Unavailable, Message: "the request took too long", RetryAfter: unavailableRetryAfter, Err: err}
	}
	if unreachable(err) {
		return &apperr.Error{Code: apperr.Unavailable, Message: "a store Parlor needs is unreachable; retry shortly", RetryAfter: unavailableRetryAfter, Err: err}
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		if inner := validationError(he); inner != nil {
			return inner
		}
		code, ok := codeOfStatus[he.Code]
		if !ok {
			return &apperr.Error{Code: apperr.Internal, Err: err}
		}
		msg, _ := he.Message.(string)
		if msg == "" {
			msg = strings.ToLower(http.StatusText(he.Code))
		}
		return &apperr.Error{Code: code, Message: msg, Err: he.Internal}
	}
	return &apperr.Error{Code: apperr.Internal, Err: err}
}

// validationError turns the OpenAPI request validator's errors into problems with field
// details; nil when he did not come from the validator.
func validationError(he *echo.HTTPError) *apperr.Error {
	if he.Internal == nil {
		return nil
	}
	// The body limit trips while the validator reads the body.
	var limit *echo.HTTPError
	if errors.As(he.Internal, &limit) && limit.Code == http.StatusRequestEntityTooLarge {
		return &apperr.Error{Code: apperr.PayloadTooLarge, Message: "the request body is too large"}
	}
	var errs []error
	var multi openapi3.MultiError
	if errors.As(he.Internal, &multi) {
		errs = multi
	} else {
		errs = []error{he.Internal}
	}
	out := &apperr.Error{Code: apperr.Invalid, Message: "the request is invalid", Err: he.Internal}
	for _, err := range errs {
		var secErr *openapi3filter.SecurityRequirementsError
		if errors.As(err, &secErr) {
			for _, inner := range secErr.Errors {
				if ae := new(apperr.Error); errors.As(inner, &ae) {
					return ae
				}
			}
			return &apperr.Error{Code: apperr.Unauthorized, Message: "authentication is required", Err: err}
		}
		var reqErr *openapi3filter.RequestError
		if !errors.As(err, &reqErr) {
			out.Fields = append(out.Fields, apperr.FieldError{Message: err.Error()})
			continue
		}
		if errors.As(reqErr.Err, &limit) && limit.Code == http.StatusRequestEntityTooLarge {
			return &apperr.Error{Code: apperr.PayloadTooLarge, Message: "the request body is too large"}
		}
		if p := reqErr.Parameter; p != nil && p.In == openapi3.ParameterInHeader && strings.EqualFold(p.Name, "Idempotency-Key") && errors.Is(reqErr.Err, openapi3filter.ErrInvalidRequired) {
			return apperr.ErrIdempotencyKeyRequired
		}
		if reqErr.RequestBody != nil && strings.HasPrefix(reqErr.Reason, "header Content-Type has unexpected value") {
			return &apperr.Error{Code: apperr.UnsupportedMediaType, Message: "the request body must be application/json", Err: err}
		}
		out.Fields = append(out.Fields, fieldErrorsOf(reqErr)...)
	}
	if len(out.Fields) == 1 {
		out.Message = out.Fields[0].Message
		if out.Fields[0].Field != "" {
			out.Message = out.Fields[0].Field + ": " + out.Message
		}
	}
	return out
}

func fieldErrorsOf(reqErr *openapi3filter.RequestError) []apperr.FieldError {
	prefix := "body"
	if p := reqErr.Parameter; p != nil {
		prefix = p.In + "." + p.Name
	}
	var schemaErrs []error
	var multi openapi3.MultiError
	if errors.As(reqErr.Err, &multi) {
		schemaErrs = multi
	} else if reqErr.Err != nil {
		schemaErrs = []error{reqErr.Err}
	}
	var out []apperr.FieldError
	for _, err := range schemaErrs {
		var se *openapi3.SchemaError
		if errors.As(err, &se) {
			field := prefix
			if ptr := se.JSONPointer(); len(ptr) > 0 {
				field += "." + strings.Join(ptr, ".")
			}
			out = append(out, apperr.FieldError{Field: field, Message: se.Reason})
			continue
		}
		if errors.Is(err, openapi3filter.ErrInvalidRequired) {
			out = append(out, apperr.FieldError{Field: prefix, Message: "is required"})
			continue
		}
		msg := reqErr.Reason
		if msg == "" {
			msg = err.Error()
		} else {
			msg += ": " + err.Error()
		}
		out = append(out, apperr.FieldError{Field: prefix, Message: firstLine(msg)})
	}
	if len(out) == 0 {
		out = append(out, apperr.FieldError{Field: prefix, Message: firstLine(reqErr.Error())})
	}
	return out
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
