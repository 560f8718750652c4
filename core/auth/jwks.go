package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/golang-jwt/jwt/v5"
)

// jwk is one key of a JSON Web Key Set (RFC 7517, 7518 §6).
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
}

// parseJWKS reads a JSON Web Key Set: RSA (RS256), EC P-256 (ES256) and oct (HS256) keys.
// Keys meant for encryption (use "enc") or for another algorithm are skipped; a set with no
// usable key, or a malformed key, is an error.
func parseJWKS(b []byte) (*keySet, error) {
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	ks := &keySet{byID: map[string]jwt.VerificationKey{}}
	for i, k := range set.Keys {
		if k.Use == "enc" {
			continue
		}
		key, alg, err := k.key()
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, k.Kid, err)
		}
		if k.Alg != "" && k.Alg != alg {
			continue
		}
		if k.Kid == "" {
			ks.anon = append(ks.anon, key)
			continue
		}
		if _, dup := ks.byID[k.Kid]; dup {
			return nil, fmt.Errorf("JWKS: kid %q twice", k.Kid)
		}
		ks.byID[k.Kid] = key
	}
	if len(ks.anon)+len(ks.byID) == 0 {
		return nil, errors.New("JWKS: no RS256, ES256 or HS256 key")
	}
	return ks, nil
}

func b64(field, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("%s: not base64url", field)
	}
	return b, nil
}

// key decodes the key and names the algorithm it verifies.
func (k jwk) key() (jwt.VerificationKey, string, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64("n", k.N)
		if err != nil {
			return nil, "", err
		}
		e, err := b64("e", k.E)
		if err != nil {
			return nil, "", err
		}
		if len(e) > 4 {
			return nil, "", errors.New("e: too large")
		}
		pub := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if pub.E < 3 || pub.E%2 == 0 {
			return nil, "", errors.New("e: not an odd exponent above 2")
		}
		key, err := checkKey(pub)
		return key, "RS256", err
	case "EC":
		if k.Crv != "P-256" {
			return nil, "", fmt.Errorf("crv %q: want P-256", k.Crv)
		}
		x, err := b64("x", k.X)
		if err != nil {
			return nil, "", err
		}
		y, err := b64("y", k.Y)
		if err != nil {
			return nil, "", err
		}
		if len(x) != 32 || len(y) != 32 {
			return nil, "", errors.New("x, y: want 32 bytes each")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, "", fmt.Errorf("point: %w", err)
		}
		return pub, "ES256", nil
	case "oct":
		secret, err := b64("k", k.K)
		if err != nil {
			return nil, "", err
		}
		if len(secret) < minSecret {
			return nil, "", fmt.Errorf("k: %d bytes, want at least %d", len(secret), minSecret)
		}
		return secret, "HS256", nil
	}
	return nil, "", fmt.Errorf("kty %q: want RSA, EC or oct", k.Kty)
}
