// Package cursor makes opaque, tamper-evident tokens: list cursors and sync tokens are JSON,
// signed with a server secret and base64url-encoded, so clients can't forge or edit them and
// a damaged one is told apart from a valid one.
package cursor

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// macSize is the length of the truncated HMAC-SHA256 tag: 128 bits is plenty against forgery.
const macSize = 16

// ErrInvalid means a cursor is malformed, forged or from another kind of list.
var ErrInvalid = errors.New("invalid cursor")

// Signer encodes and decodes cursors with one secret.
type Signer struct {
	secret []byte
}

// NewSigner returns a Signer; the secret must be at least 32 bytes.
func NewSigner(secret []byte) (*Signer, error) {
	if len(secret) < 32 {
		return nil, errors.New("cursor secret must be at least 32 bytes")
	}
	return &Signer{secret: secret}, nil
}

// Encode signs v (JSON-encodable) under kind, which keeps a cursor of one list from being
// replayed against another.
func (s *Signer) Encode(kind string, v any) string {
	payload, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("cursor: encode %T: %v", v, err)) // our own types always encode
	}
	return s.Seal(kind, payload)
}

// Decode verifies a cursor of kind and decodes it into v.
func (s *Signer) Decode(kind, token string, v any) error {
	payload, err := s.Open(kind, token)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return ErrInvalid
	}
	return nil
}

// Seal signs a payload of any encoding under kind: for tokens that carry their own compact
// binary form rather than JSON.
func (s *Signer) Seal(kind string, payload []byte) string {
	raw := make([]byte, 0, macSize+len(payload))
	raw = append(raw, s.tag(kind, payload)...)
	return base64.RawURLEncoding.EncodeToString(append(raw, payload...))
}

// Open verifies a token of kind sealed by Seal and returns its payload.
func (s *Signer) Open(kind, token string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil || len(raw) <= macSize {
		return nil, ErrInvalid
	}
	tag, payload := raw[:macSize], raw[macSize:]
	if !hmac.Equal(tag, s.tag(kind, payload)) {
		return nil, ErrInvalid
	}
	return payload, nil
}

func (s *Signer) tag(kind string, payload []byte) []byte {
	m := hmac.New(sha256.New, s.secret)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write(payload)
	return m.Sum(nil)[:macSize]
}
