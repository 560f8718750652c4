// Package auth verifies the riders' bearer JWTs (API.md §3 "Query errors and auth"): HS256,
// RS256 and ES256 signatures against keys read from a file (PEM public keys, or an HMAC secret)
// or a JWKS file, reloaded when the file changes; exp, nbf, aud and iss checked with a small
// leeway; and the optional claim that limits what a rider may watch (mc_max_radius_m). It owns
// token verification and the key files; where a token travels (header, metadata, query) and how
// a refusal is answered belong to the transports.
package auth

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithms accepted. A key only verifies the algorithm of its type (no HMAC with a public
// key), so a token cannot pick a weaker check than its key allows.
var Algorithms = []string{"HS256", "RS256", "ES256"}

// ErrMissing is returned by Verify for an empty token.
var ErrMissing = errors.New("missing bearer token")

// Config configures a Verifier. Exactly one of KeyFile and JWKSFile is set.
type Config struct {
	// KeyFile holds PEM public keys (RSA or P-256 EC, "PUBLIC KEY", "RSA PUBLIC KEY" or
	// "CERTIFICATE" blocks) or, when it holds no PEM block, an HMAC secret (surrounding white
	// space trimmed, at least 32 bytes).
	KeyFile string
	// JWKSFile holds a JSON Web Key Set ({"keys":[...]}: kty RSA, EC P-256 or oct). A token
	// with a kid is checked against the key with that kid only.
	JWKSFile string
	// Audience, when set, must be one of the token's aud values; Issuer, when set, its iss.
	Audience, Issuer string
	// Leeway is the clock skew allowed on exp and nbf. Default 30s.
	Leeway time.Duration
	// Reload is how often the key file's modification time and size are checked; a change
	// loads the file again (a file that does not load keeps the previous keys, and is logged).
	// Default 2s.
	Reload time.Duration
	// Logger gets reload failures. Default slog.Default().
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Claims are the claims of a verified token that the edge uses.
type Claims struct {
	jwt.RegisteredClaims
	// MaxRadiusM, when not 0, is the largest radius_m this rider may watch.
	MaxRadiusM uint32 `json:"mc_max_radius_m,omitempty"`
}

// Verifier checks tokens against the current keys. It is safe for concurrent use; Close stops
// the reloading.
type Verifier struct {
	c      Config
	path   string
	jwks   bool
	keys   atomic.Pointer[keySet]
	parser *jwt.Parser
	stop   context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex // serialises loads
	stamp  fileStamp
}

type fileStamp struct {
	mod  time.Time
	size int64
}

// keySet is what one load of the file gave.
type keySet struct {
	anon []jwt.VerificationKey          // keys without a kid (key file), tried in turn
	byID map[string]jwt.VerificationKey // JWKS keys with a kid
}

// New loads the keys and starts watching the file.
func New(c Config) (*Verifier, error) {
	if (c.KeyFile == "") == (c.JWKSFile == "") {
		return nil, errors.New("auth: set exactly one of the key file and the JWKS file")
	}
	if c.Leeway == 0 {
		c.Leeway = 30 * time.Second
	}
	if c.Reload == 0 {
		c.Reload = 2 * time.Second
	}
	if c.Leeway < 0 || c.Reload < 0 {
		return nil, errors.New("auth: negative leeway or reload interval")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	v := &Verifier{c: c, path: c.KeyFile, jwks: c.JWKSFile != "", done: make(chan struct{})}
	if v.jwks {
		v.path = c.JWKSFile
	}
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(Algorithms), jwt.WithLeeway(c.Leeway), jwt.WithTimeFunc(c.Now),
		jwt.WithExpirationRequired(),
	}
	if c.Audience != "" {
		opts = append(opts, jwt.WithAudience(c.Audience))
	}
	if c.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(c.Issuer))
	}
	v.parser = jwt.NewParser(opts...)
	if _, err := v.load(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	v.stop = cancel
	go v.watch(ctx)
	return v, nil
}

// Close stops watching the file.
func (v *Verifier) Close() {
	v.stop()
	<-v.done
}

func (v *Verifier) watch(ctx context.Context) {
	defer close(v.done)
	t := time.NewTicker(v.c.Reload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if changed, err := v.load(); err != nil {
				v.c.Logger.Error("auth: keys not reloaded, keeping the previous ones", "file", v.path, "err", err.Error())
			} else if changed {
				v.c.Logger.Info("auth: keys reloaded", "file", v.path)
			}
		}
	}
}

// load reads the file when its modification time or size changed since the last load.
func (v *Verifier) load() (changed bool, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	fi, err := os.Stat(v.path)
	if err != nil {
		return false, fmt.Errorf("auth: %w", err)
	}
	st := fileStamp{fi.ModTime(), fi.Size()}
	if st == v.stamp && v.keys.Load() != nil {
		return false, nil
	}
	b, err := os.ReadFile(v.path)
	if err != nil {
		return false, fmt.Errorf("auth: %w", err)
	}
	var ks *keySet
	if v.jwks {
		ks, err = parseJWKS(b)
	} else {
		ks, err = parseKeyFile(b)
	}
	if err != nil {
		return false, fmt.Errorf("auth: %s: %w", v.path, err)
	}
	v.keys.Store(ks)
	v.stamp = st
	return true, nil
}

// Verify checks a token (without the "Bearer " prefix) and returns its claims. Errors name
// what is wrong (missing, malformed, signature, expired, audience, ...) for the 401 message.
func (v *Verifier) Verify(token string) (*Claims, error) {
	if token == "" {
		return nil, ErrMissing
	}
	ks := v.keys.Load()
	var c Claims
	_, err := v.parser.ParseWithClaims(token, &c, func(t *jwt.Token) (any, error) {
		if kid, ok := t.Header["kid"].(string); ok && ks.byID != nil {
			k, ok := ks.byID[kid]
			if !ok {
				return nil, fmt.Errorf("unknown kid %q", kid)
			}
			return k, nil
		}
		keys := make([]jwt.VerificationKey, 0, len(ks.anon))
		for _, k := range ks.anon {
			if keyFits(k, t.Method.Alg()) {
				keys = append(keys, k)
			}
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("no key for %s", t.Method.Alg())
		}
		return jwt.VerificationKeySet{Keys: keys}, nil
	})
	if err != nil {
		return nil, err
	}
	return &c, nil
}

// keyFits reports whether key k verifies algorithm alg.
func keyFits(k jwt.VerificationKey, alg string) bool {
	switch k.(type) {
	case []byte:
		return alg == "HS256"
	case *rsa.PublicKey:
		return alg == "RS256"
	case *ecdsa.PublicKey:
		return alg == "ES256"
	}
	return false
}

// BearerToken returns the token of an "authorization: Bearer <token>" value ("" when the
// value is not a bearer credential).
func BearerToken(authorization string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// minSecret is the shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size).
const minSecret = 32

// parseKeyFile reads PEM public keys, or an HMAC secret when the file has no PEM block.
func parseKeyFile(b []byte) (*keySet, error) {
	if !bytes.Contains(b, []byte("-----BEGIN")) {
		secret := bytes.TrimSpace(b)
		if len(secret) < minSecret {
			return nil, fmt.Errorf("HMAC secret of %d bytes: want at least %d", len(secret), minSecret)
		}
		return &keySet{anon: []jwt.VerificationKey{bytes.Clone(secret)}}, nil
	}
	ks := &keySet{}
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		var (
			pub any
			err error
		)
		switch blk.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(blk.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(blk.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(blk.Bytes); err == nil {
				pub = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE", blk.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %w", blk.Type, err)
		}
		k, err := checkKey(pub)
		if err != nil {
			return nil, err
		}
		ks.anon = append(ks.anon, k)
	}
	if len(ks.anon) == 0 {
		return nil, errors.New("no PEM block decoded")
	}
	return ks, nil
}

// checkKey accepts RSA keys of at least 2048 bits and P-256 EC keys.
func checkKey(pub any) (jwt.VerificationKey, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return nil, fmt.Errorf("RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
		return k, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("EC key on %s: want P-256 (ES256)", k.Curve.Params().Name)
		}
		return k, nil
	}
	return nil, fmt.Errorf("public key of type %T: want RSA or EC P-256", pub)
}
