package events

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/google/uuid"

	"github.com/parlor-dev/parlor/internal/apperr"
	"github.com/parlor-dev/parlor/internal/cursor"
)

// Token is where a reader is in the log of all its rooms. Since is a PostgreSQL snapshot:
// every event whose transaction is visible in it has been delivered, and nothing else. While
// a reader pages through one batch, Upto pins the batch's end snapshot and AfterRoom/AfterSeq
// say how far into it (in (room, seq) order) the reader got.
//
// Unlike a "highest id seen" cursor, a snapshot knows which transactions were still in
// flight when it was taken, so an event that commits late (with a lower id or xid than ones
// already delivered) is still delivered, exactly once.
//
// The WebSocket uses the same batches: the fan-out reads every room's events from one
// snapshot to the next and gives each event the token "this batch, after this (room, seq)".
// That token is the same for every socket the event goes to, whatever rooms each is in, so it
// is made once per event, and it stays the same size however many rooms a user is in: two
// snapshots (whose size grows only with the transactions in flight), a room id and a seq.
//
// Epoch names the database the snapshots come from (see CurrentPosition): transaction ids
// mean nothing in another cluster or on another timeline, so a token of another epoch is
// refused and the reader starts over.
type Token struct {
	Epoch     uint64
	Since     string
	Upto      string
	AfterRoom uuid.UUID
	AfterSeq  int64
}

// InBatch reports whether t stops inside a batch (it has an end snapshot and a cursor).
func (t Token) InBatch() bool { return t.Upto != "" }

// EpochOf turns the text epoch PostgreSQL reports (system identifier / timeline) into the
// token's compact form.
func EpochOf(text string) uint64 {
	sum := sha256.Sum256([]byte(text))
	return binary.BigEndian.Uint64(sum[:8])
}

// ErrFullSyncRequired refuses a token this database cannot continue from: malformed, altered,
// from an older token format, or from another database (a restore or a failover). The
// client starts over: GET /v1/sync without since.
var ErrFullSyncRequired = apperr.New(apperr.FullSyncRequired,
	"this sync token cannot be used here (malformed, from an older version, or from before a database restore or failover): start over with GET /v1/sync without since")

const (
	tokenKind    = "sync"
	tokenVersion = 2
	// MaxTokenBytes bounds an encoded token, whatever the rooms and the backlog: what varies
	// is the transactions in flight in its two snapshots, at most max_connections each.
	MaxTokenBytes = 1024
	maxInFlight   = 1000 // transaction ids a decoded snapshot may list
	hasBatch      = 1
)

// Tokens encodes and decodes sync tokens.
type Tokens struct{ signer *cursor.Signer }

// NewTokens returns a codec signing with signer.
func NewTokens(signer *cursor.Signer) Tokens { return Tokens{signer: signer} }

// Encode signs a token: version, epoch, since, and for a token inside a batch its end
// snapshot and cursor, in a binary form of varints.
func (t Tokens) Encode(tok Token) string {
	b := make([]byte, 0, 64)
	b = append(b, tokenVersion)
	b = binary.BigEndian.AppendUint64(b, tok.Epoch)
	b = appendSnapshot(b, tok.Since)
	if tok.InBatch() {
		b = append(b, hasBatch)
		b = appendSnapshot(b, tok.Upto)
		b = append(b, tok.AfterRoom[:]...)
		b = binary.AppendUvarint(b, uint64(tok.AfterSeq))
	} else {
		b = append(b, 0)
	}
	return t.signer.Seal(tokenKind, b)
}

// Decode checks and decodes a token. Anything it cannot use is ErrFullSyncRequired.
func (t Tokens) Decode(s string) (Token, error) {
	if len(s) > 4*MaxTokenBytes {
		return Token{}, ErrFullSyncRequired
	}
	b, err := t.signer.Open(tokenKind, s)
	if err != nil {
		return Token{}, ErrFullSyncRequired
	}
	r := reader{b: b}
	if r.byte() != tokenVersion {
		return Token{}, ErrFullSyncRequired
	}
	tok := Token{Epoch: r.uint64(), Since: r.snapshot()}
	if r.byte() == hasBatch {
		tok.Upto = r.snapshot()
		copy(tok.AfterRoom[:], r.take(16))
		tok.AfterSeq = int64(r.uvarint())
	}
	if r.err != nil || len(r.b) != 0 || tok.AfterSeq < 0 {
		return Token{}, ErrFullSyncRequired
	}
	return tok, nil
}

// appendSnapshot encodes a pg_snapshot's text form (xmin:xmax:xip,xip,…) as varints: xmin,
// xmax-xmin, the count, then each in-flight id as the distance from the one before. The
// server wrote the text, so it parses; a snapshot that does not encodes as zeros and is
// refused on decode.
func appendSnapshot(b []byte, text string) []byte {
	xmin, xmax, xip, ok := parseSnapshot(text)
	if !ok {
		xmin, xmax, xip = 0, 0, nil
	}
	b = binary.AppendUvarint(b, xmin)
	b = binary.AppendUvarint(b, xmax-xmin)
	b = binary.AppendUvarint(b, uint64(len(xip)))
	prev := xmin
	for _, x := range xip {
		b = binary.AppendUvarint(b, x-prev)
		prev = x
	}
	return b
}

func parseSnapshot(text string) (xmin, xmax uint64, xip []uint64, ok bool) {
	parts := strings.Split(text, ":")
	if len(parts) != 3 {
		return 0, 0, nil, false
	}
	var err1, err2 error
	xmin, err1 = strconv.ParseUint(parts[0], 10, 64)
	xmax, err2 = strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil || xmin == 0 || xmax < xmin {
		return 0, 0, nil, false
	}
	if parts[2] != "" {
		for _, p := range strings.Split(parts[2], ",") {
			x, err := strconv.ParseUint(p, 10, 64)
			if err != nil || x < xmin || x >= xmax {
				return 0, 0, nil, false
			}
			xip = append(xip, x)
		}
	}
	slices.Sort(xip)
	return xmin, xmax, slices.Compact(xip), true
}

// reader decodes a token's bytes; the first error sticks.
type reader struct {
	b   []byte
	err error
}

var errShort = errors.New("token: truncated")

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = errShort
		return make([]byte, n)
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte { return r.take(1)[0] }

func (r *reader) uint64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

// snapshot decodes appendSnapshot's form back into pg_snapshot text.
func (r *reader) snapshot() string {
	xmin := r.uvarint()
	xmax := xmin + r.uvarint()
	n := r.uvarint()
	if r.err != nil || xmin == 0 || xmax < xmin || n > maxInFlight {
		r.err = errShort
		return ""
	}
	var sb strings.Builder
	sb.WriteString(strconv.FormatUint(xmin, 10))
	sb.WriteByte(':')
	sb.WriteString(strconv.FormatUint(xmax, 10))
	sb.WriteByte(':')
	prev := xmin
	for i := uint64(0); i < n; i++ {
		d := r.uvarint()
		if r.err != nil || (i > 0 && d == 0) || prev+d >= xmax {
			r.err = errShort
			return ""
		}
		prev += d
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(strconv.FormatUint(prev, 10))
	}
	return sb.String()
}
