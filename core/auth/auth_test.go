package auth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var (
	secret = []byte("0123456789abcdef0123456789abcdef-secret")
	rsaKey = must(rsa.GenerateKey(rand.Reader, 2048))
	ecKey  = must(ecdsa.GenerateKey(elliptic.P256(), rand.Reader))
	now    = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func pemPublic(t *testing.T, pub any) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func sign(t *testing.T, m jwt.SigningMethod, key any, kid string, c jwt.Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(mod func(*Claims)) *Claims {
	c := &Claims{RegisteredClaims: jwt.RegisteredClaims{
		Subject: "rider-1", Issuer: "https://id.example", Audience: jwt.ClaimStrings{"meshcast"},
		ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)),
	}}
	if mod != nil {
		mod(c)
	}
	return c
}

func newVerifier(t *testing.T, c Config) *Verifier {
	t.Helper()
	c.Audience, c.Issuer, c.Now = "meshcast", "https://id.example", func() time.Time { return now }
	v, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestVerify(t *testing.T) {
	otherRSA := must(rsa.GenerateKey(rand.Reader, 2048))
	keyFile := writeFile(t, "keys.pem", append(pemPublic(t, &rsaKey.PublicKey), pemPublic(t, &ecKey.PublicKey)...))
	secretFile := writeFile(t, "secret", append(append([]byte("  "), secret...), '\n'))
	b64 := base64.RawURLEncoding.EncodeToString
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kty": "RSA", "kid": "r1", "n": b64(rsaKey.N.Bytes()), "e": b64(big.NewInt(int64(rsaKey.E)).Bytes())},
		{"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(ecKey.X.FillBytes(make([]byte, 32))), "y": b64(ecKey.Y.FillBytes(make([]byte, 32)))},
		{"kty": "oct", "kid": "h1", "k": b64(secret)},
		{"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(otherRSA.N.Bytes()), "e": "AQAB"},
	}})
	jwksFile := writeFile(t, "jwks.json", jwks)
	pemV := newVerifier(t, Config{KeyFile: keyFile})
	hsV := newVerifier(t, Config{KeyFile: secretFile})
	jwksV := newVerifier(t, Config{JWKSFile: jwksFile})

	for _, tc := range []struct {
		name  string
		v     *Verifier
		token string
		want  error // nil: valid
	}{
		{"RS256 PEM", pemV, sign(t, jwt.SigningMethodRS256, rsaKey, "", claims(nil)), nil},
		{"ES256 PEM", pemV, sign(t, jwt.SigningMethodES256, ecKey, "", claims(nil)), nil},
		{"HS256 secret", hsV, sign(t, jwt.SigningMethodHS256, secret, "", claims(nil)), nil},
		{"RS256 JWKS", jwksV, sign(t, jwt.SigningMethodRS256, rsaKey, "r1", claims(nil)), nil},
		{"ES256 JWKS", jwksV, sign(t, jwt.SigningMethodES256, ecKey, "e1", claims(nil)), nil},
		{"HS256 JWKS", jwksV, sign(t, jwt.SigningMethodHS256, secret, "h1", claims(nil)), nil},
		{"exp within leeway", hsV, sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-10 * time.Second)) })), nil},
		{"missing", hsV, "", ErrMissing},
		{"malformed", hsV, "not.a.jwt", jwt.ErrTokenMalformed},
		{"expired", hsV, sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(now.Add(-time.Minute)) })), jwt.ErrTokenExpired},
		{"no exp", hsV, sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c *Claims) { c.ExpiresAt = nil })), jwt.ErrTokenRequiredClaimMissing},
		{"not yet valid", hsV, sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Minute)) })), jwt.ErrTokenNotValidYet},
		{"wrong audience", hsV, sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c *Claims) { c.Audience = jwt.ClaimStrings{"other"} })), jwt.ErrTokenInvalidAudience},
		{"wrong issuer", hsV, sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c *Claims) { c.Issuer = "https://evil.example" })), jwt.ErrTokenInvalidIssuer},
		{"wrong signature", pemV, sign(t, jwt.SigningMethodRS256, otherRSA, "", claims(nil)), jwt.ErrTokenSignatureInvalid},
		{"wrong secret", hsV, sign(t, jwt.SigningMethodHS256, []byte(strings.Repeat("x", 40)), "", claims(nil)), jwt.ErrTokenSignatureInvalid},
		{"HS256 with the public key as secret", pemV, sign(t, jwt.SigningMethodHS256, pemPublic(t, &rsaKey.PublicKey), "", claims(nil)), jwt.ErrTokenUnverifiable},
		{"alg none", hsV, sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, "", claims(nil)), jwt.ErrTokenSignatureInvalid},
		{"RS384 not accepted", pemV, sign(t, jwt.SigningMethodRS384, rsaKey, "", claims(nil)), jwt.ErrTokenSignatureInvalid},
		{"unknown kid", jwksV, sign(t, jwt.SigningMethodRS256, rsaKey, "r9", claims(nil)), jwt.ErrTokenUnverifiable},
		{"enc key skipped", jwksV, sign(t, jwt.SigningMethodRS256, otherRSA, "enc", claims(nil)), jwt.ErrTokenUnverifiable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.v.Verify(tc.token)
			if tc.want == nil {
				if err != nil || c.Subject != "rider-1" {
					t.Fatalf("Verify = %+v, %v; want rider-1", c, err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestMaxRadiusClaim(t *testing.T) {
	v := newVerifier(t, Config{KeyFile: writeFile(t, "secret", secret)})
	c, err := v.Verify(sign(t, jwt.SigningMethodHS256, secret, "", claims(func(c *Claims) { c.MaxRadiusM = 500 })))
	if err != nil || c.MaxRadiusM != 500 {
		t.Fatalf("Verify = %+v, %v; want mc_max_radius_m 500", c, err)
	}
}

// TestReload replaces the key file and waits for a token of the new key to be accepted (and
// the old key's refused); a file that does not load keeps the keys in use.
func TestReload(t *testing.T) {
	p := writeFile(t, "secret", secret)
	v, err := New(Config{KeyFile: p, Reload: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	live := claims(func(c *Claims) { c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(time.Hour)); c.NotBefore = nil })
	oldTok := sign(t, jwt.SigningMethodHS256, secret, "", live)
	if _, err := v.Verify(oldTok); err != nil {
		t.Fatal(err)
	}
	// A broken file is ignored: the old key keeps working (mtime changes, then the next write).
	if err := os.WriteFile(p, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	newSecret := []byte(strings.Repeat("n", 48))
	newTok := sign(t, jwt.SigningMethodHS256, newSecret, "", live)
	deadline := time.Now().Add(10 * time.Second)
	// Move the mtime explicitly so a same-second rewrite is still noticed.
	if err := os.WriteFile(p, newSecret, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(p, time.Now().Add(time.Second), time.Now().Add(time.Second))
	for {
		if _, err := v.Verify(newTok); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new key was not picked up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := v.Verify(oldTok); !errors.Is(err, jwt.ErrTokenSignatureInvalid) {
		t.Fatalf("old token after reload: %v, want signature invalid", err)
	}
}

func TestNewRejects(t *testing.T) {
	small := must(rsa.GenerateKey(rand.Reader, 1024))
	p384 := must(ecdsa.GenerateKey(elliptic.P384(), rand.Reader))
	for name, c := range map[string]Config{
		"none":         {},
		"both":         {KeyFile: "a", JWKSFile: "b"},
		"no file":      {KeyFile: filepath.Join(t.TempDir(), "nope")},
		"short secret": {KeyFile: writeFile(t, "s", []byte("short"))},
		"RSA 1024":     {KeyFile: writeFile(t, "k", pemPublic(t, &small.PublicKey))},
		"P-384":        {KeyFile: writeFile(t, "k", pemPublic(t, &p384.PublicKey))},
		"private key":  {KeyFile: writeFile(t, "k", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}))},
		"bad JWKS":     {JWKSFile: writeFile(t, "j", []byte(`{"keys":[{"kty":"RSA","n":"!"}]}`))},
		"empty JWKS":   {JWKSFile: writeFile(t, "j", []byte(`{"keys":[]}`))},
	} {
		if v, err := New(c); err == nil {
			v.Close()
			t.Errorf("%s: New accepted %+v", name, c)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for in, want := range map[string]string{
		"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "": "", "Bearer": "", "abc": "",
	} {
		if got := BearerToken(in); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParseJWKS(f *testing.F) {
	f.Add([]byte(`{"keys":[{"kty":"oct","kid":"a","k":"MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`))
	f.Add([]byte(`{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB"}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ks, err := parseJWKS(b)
		if err == nil && len(ks.anon)+len(ks.byID) == 0 {
			t.Fatal("no error and no key")
		}
	})
}

func FuzzVerify(f *testing.F) {
	v, err := New(Config{KeyFile: writeFileF(f, secret)})
	if err != nil {
		f.Fatal(err)
	}
	defer v.Close()
	good, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString(secret)
	f.Add(good)
	f.Add("a.b.c")
	f.Add("")
	f.Add("eyJhbGciOiJub25lIn0.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		if c, err := v.Verify(tok); err == nil && c == nil {
			t.Fatal("nil claims without error")
		}
	})
}

func writeFileF(f *testing.F, b []byte) string {
	p := filepath.Join(f.TempDir(), "secret")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		f.Fatal(err)
	}
	return p
}

func BenchmarkVerify(b *testing.B) {
	dir := b.TempDir()
	der, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	der, _ = x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	ecPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for _, tc := range []struct {
		name string
		file []byte
		m    jwt.SigningMethod
		key  any
	}{
		{"HS256", secret, jwt.SigningMethodHS256, secret},
		{"RS256", rsaPEM, jwt.SigningMethodRS256, rsaKey},
		{"ES256", ecPEM, jwt.SigningMethodES256, ecKey},
	} {
		b.Run(tc.name, func(b *testing.B) {
			p := filepath.Join(dir, tc.name)
			os.WriteFile(p, tc.file, 0o600)
			v, err := New(Config{KeyFile: p, Now: func() time.Time { return now }})
			if err != nil {
				b.Fatal(err)
			}
			defer v.Close()
			tok, _ := jwt.NewWithClaims(tc.m, claims(nil)).SignedString(tc.key)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
