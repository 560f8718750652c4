package transport

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/coder/websocket"
	"github.com/meshcast/meshcast/edge/session"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Close codes of the WebSocket transport (API.md §3).
const (
	closeGoingAway = websocket.StatusGoingAway       // 1001: drain or shutdown, reconnect
	closePolicy    = websocket.StatusPolicyViolation // 1008: bad request or move, binary frame
	closeInternal  = websocket.StatusInternalError   // 1011: the server failed
	closeTryAgain  = websocket.StatusTryAgainLater   // 1013: overload, limits
	closeTooSlow   = websocket.StatusCode(4008)      // the client did not read fast enough
	maxCloseReason = 123                             // RFC 6455: control frame payload 125 - code
)

// Messages shared by the transports.
const (
	msgTooSlow  = "too slow: the client did not read fast enough"
	msgStopping = "server shutting down: reconnect"
)

// errStopping ends streams when the server shuts down.
var errStopping = errors.New(msgStopping)

// kind classifies an error that ends or refuses a stream, once for all transports.
type kind uint8

const (
	kindInvalid  kind = iota + 1 // the request or a move is invalid
	kindTooSlow                  // the session was cut
	kindStopping                 // the server is shutting down
	kindGone                     // the client went away: nothing to report
	kindAuth                     // missing or invalid token
	kindLimit                    // over a limit, or draining
	kindInternal                 // anything else
)

func classify(err error) kind {
	var (
		inv *session.InvalidError
		ae  *authError
		le  *limitError
	)
	switch {
	case errors.As(err, &inv):
		return kindInvalid
	case errors.As(err, &ae):
		return kindAuth
	case errors.As(err, &le):
		return kindLimit
	case errors.Is(err, errMaxAge), errors.Is(err, errDrainEnd):
		return kindStopping
	case errors.Is(err, session.ErrTooSlow):
		return kindTooSlow
	case errors.Is(err, errStopping), errors.Is(err, session.ErrClosed):
		return kindStopping
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return kindGone
	default:
		return kindInternal
	}
}

// grpcError maps an error that ends a gRPC stream to its status: INVALID_ARGUMENT,
// UNAUTHENTICATED, RESOURCE_EXHAUSTED (too slow, per-address limit), UNAVAILABLE (going away,
// draining, process limits, bus trouble), CANCELED.
func grpcError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch classify(err) {
	case kindInvalid:
		return status.Error(codes.InvalidArgument, err.Error())
	case kindTooSlow:
		return status.Error(codes.ResourceExhausted, msgTooSlow)
	case kindStopping:
		return status.Error(codes.Unavailable, stoppingMsg(err))
	case kindAuth:
		return status.Error(codes.Unauthenticated, err.Error())
	case kindLimit:
		var le *limitError
		errors.As(err, &le)
		return status.Error(le.code, le.msg)
	case kindGone:
		return status.FromContextError(err).Err()
	default:
		return status.Error(codes.Unavailable, err.Error())
	}
}

// httpError is the JSON body of an HTTP error (API.md §3).
type httpError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// writeHTTPError answers a request that was refused before any stream or upgrade:
// 400 invalid_argument, 401 unauthenticated, 503 unavailable or resource_exhausted (with
// Retry-After).
func writeHTTPError(w http.ResponseWriter, err error) {
	switch classify(err) {
	case kindInvalid:
		writeJSONError(w, http.StatusBadRequest, "invalid_argument", err.Error())
	case kindAuth:
		w.Header().Set("WWW-Authenticate", `Bearer realm="meshcast"`)
		writeJSONError(w, http.StatusUnauthorized, "unauthenticated", err.Error())
	case kindLimit:
		var le *limitError
		errors.As(err, &le)
		code := "unavailable"
		if le.code == codes.ResourceExhausted {
			code = "resource_exhausted"
		}
		w.Header().Set("Retry-After", strconv.Itoa(1))
		writeJSONError(w, http.StatusServiceUnavailable, code, le.msg)
	default:
		w.Header().Set("Retry-After", strconv.Itoa(1))
		writeJSONError(w, http.StatusServiceUnavailable, "unavailable", err.Error())
	}
}

// writeJSONError writes {"error":{"code":code,"message":msg}} with the status.
func writeJSONError(w http.ResponseWriter, statusCode int, code, msg string) {
	var e httpError
	e.Error.Code, e.Error.Message = code, msg
	b, _ := json.Marshal(e)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(statusCode)
	w.Write(append(b, '\n'))
}

// wsClose returns the close code and reason for an error that ends a WebSocket stream.
func wsClose(err error) (websocket.StatusCode, string) {
	switch classify(err) {
	case kindInvalid:
		return closePolicy, closeReason(err.Error())
	case kindTooSlow:
		return closeTooSlow, msgTooSlow
	case kindStopping:
		return closeGoingAway, closeReason(stoppingMsg(err))
	case kindLimit:
		return closeTryAgain, closeReason(err.Error())
	default:
		return closeInternal, closeReason(err.Error())
	}
}

// closeReason cuts a reason to what fits a close frame, on a UTF-8 boundary.
func closeReason(s string) string {
	if len(s) <= maxCloseReason {
		return s
	}
	i := maxCloseReason
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}

// stoppingMsg is the message of a "going away": why the stream was told to reconnect.
func stoppingMsg(err error) string {
	if errors.Is(err, errMaxAge) || errors.Is(err, errDrainEnd) {
		return err.Error()
	}
	return msgStopping
}
