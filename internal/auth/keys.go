package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Key is one Ed25519 signing key with its key id.
type Key struct {
	ID      string
	Private ed25519.PrivateKey
}

// Public returns the key's public half.
func (k Key) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// KeyRing holds the access-token keys: the first signs, every key verifies. Rotating is
// adding a new key in front (tokens signed by the old one stay valid), then removing the old
// one once its tokens have expired.
type KeyRing struct {
	keys []Key
	byID map[string]ed25519.PublicKey
}

var kidPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// ParseKeyRing parses `kid:base64url(seed)` entries separated by commas, newest first.
func ParseKeyRing(spec string) (*KeyRing, error) {
	var keys []Key
	for i, entry := range strings.Split(spec, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		kid, encoded, ok := strings.Cut(entry, ":")
		if !ok || !kidPattern.MatchString(kid) {
			return nil, fmt.Errorf("APP_JWT_KEYS entry %d: want kid:base64url-seed with a kid of [A-Za-z0-9._-]{1,64}", i+1)
		}
		seed, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(encoded, "="))
		if err != nil || len(seed) != ed25519.SeedSize {
			return nil, fmt.Errorf("APP_JWT_KEYS entry %d (kid %q): the seed must be %d bytes, base64url", i+1, kid, ed25519.SeedSize)
		}
		keys = append(keys, Key{ID: kid, Private: ed25519.NewKeyFromSeed(seed)})
	}
	return NewKeyRing(keys...)
}

// NewKeyRing builds a ring from keys, newest (signing) first.
func NewKeyRing(keys ...Key) (*KeyRing, error) {
	if len(keys) == 0 {
		return nil, errors.New("the key ring is empty")
	}
	ring := &KeyRing{keys: keys, byID: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		if _, dup := ring.byID[k.ID]; dup {
			return nil, fmt.Errorf("key id %q appears twice", k.ID)
		}
		ring.byID[k.ID] = k.Public()
	}
	return ring, nil
}

// GenerateKey makes a fresh random key; its id is derived from the time-free random bytes.
func GenerateKey() (Key, string, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return Key{}, "", err
	}
	kid := "k-" + randomToken(6)
	entry := kid + ":" + base64.RawURLEncoding.EncodeToString(seed)
	return Key{ID: kid, Private: ed25519.NewKeyFromSeed(seed)}, entry, nil
}

// Signer is the key new tokens are signed with.
func (r *KeyRing) Signer() Key { return r.keys[0] }

// Lookup returns the public key for a kid, or false. The kid is untrusted input: it is only
// ever used as a map key.
func (r *KeyRing) Lookup(kid string) (ed25519.PublicKey, bool) {
	k, ok := r.byID[kid]
	return k, ok
}

// Keys returns every key, newest first.
func (r *KeyRing) Keys() []Key { return r.keys }
