package bus

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"

	"pgtrain/internal/devenv"
)

// ensureWith connects with auth and declares the streams, with a bound on the wait so a
// refused client fails the test instead of hanging it.
func ensureWith(t *testing.T, url string, auth Auth) error {
	t.Helper()
	nc, err := ConnectAuth(url, "auth-test", slog.New(slog.DiscardHandler), auth)
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = Ensure(ctx, nc, Limits{})
	return err
}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTokenIsRequiredWhenTheServerSetsOne(t *testing.T) {
	srv, err := devenv.StartNATS(devenv.NATSOptions{Token: "s3cret-token"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if strings.Contains(srv.URL, "s3cret") {
		t.Fatalf("server URL %q carries the token", srv.URL)
	}
	start := time.Now()
	err = ensureWith(t, srv.URL, Auth{})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization violation") {
		t.Fatalf("no token: err = %v, want an authorization violation", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("refusal took %v, want it at once", d)
	}
	if err := ensureWith(t, srv.URL, Auth{Token: "wrong"}); err == nil {
		t.Fatal("wrong token accepted")
	}
	if err := ensureWith(t, srv.URL, Auth{Token: "s3cret-token"}); err != nil {
		t.Fatalf("right token: %v", err)
	}
}

func TestUserAndPassword(t *testing.T) {
	srv, err := devenv.StartNATS(devenv.NATSOptions{User: "pgtrain", Password: "p@ss/w#rd"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	if err := ensureWith(t, srv.URL, Auth{User: "pgtrain", Password: "nope"}); err == nil {
		t.Fatal("wrong password accepted")
	}
	if err := ensureWith(t, srv.URL, Auth{User: "pgtrain", Password: "p@ss/w#rd"}); err != nil {
		t.Fatalf("right password: %v", err)
	}
}

func TestNkeySeedFile(t *testing.T) {
	user, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := user.PublicKey()
	seed, _ := user.Seed()
	stranger, _ := nkeys.CreateUser()
	strangerSeed, _ := stranger.Seed()

	srv, err := devenv.StartNATS(devenv.NATSOptions{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	if err := ensureWith(t, srv.URL, Auth{}); err == nil {
		t.Fatal("anonymous client accepted by a server with nkey users")
	}
	if err := ensureWith(t, srv.URL, Auth{NkeyFile: writeFile(t, "stranger.nk", strangerSeed)}); err == nil {
		t.Fatal("unknown nkey accepted")
	}
	if err := ensureWith(t, srv.URL, Auth{NkeyFile: writeFile(t, "user.nk", seed)}); err != nil {
		t.Fatalf("nkey seed file: %v", err)
	}

}

// A .creds file is for a server in operator mode: the operator signs the account, the
// account signs the user's JWT.
func TestCredsFileOnAnOperatorModeServer(t *testing.T) {
	operator, _ := nkeys.CreateOperator()
	opPub, _ := operator.PublicKey()
	opClaims := jwt.NewOperatorClaims(opPub)
	opJWT, err := opClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	if opClaims, err = jwt.DecodeOperatorClaims(opJWT); err != nil {
		t.Fatal(err)
	}
	account, _ := nkeys.CreateAccount()
	accPub, _ := account.PublicKey()
	accClaims := jwt.NewAccountClaims(accPub)
	accClaims.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := accClaims.Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	resolver := &server.MemAccResolver{}
	if err := resolver.Store(accPub, accJWT); err != nil {
		t.Fatal(err)
	}
	// JetStream in operator mode needs a system account.
	system, _ := nkeys.CreateAccount()
	sysPub, _ := system.PublicKey()
	sysJWT, err := jwt.NewAccountClaims(sysPub).Encode(operator)
	if err != nil {
		t.Fatal(err)
	}
	if err := resolver.Store(sysPub, sysJWT); err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir(), SystemAccount: sysPub,
		TrustedOperators: []*jwt.OperatorClaims{opClaims},
		AccountResolver:  resolver,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}

	creds := func(signer nkeys.KeyPair) string {
		user, _ := nkeys.CreateUser()
		pub, _ := user.PublicKey()
		seed, _ := user.Seed()
		token, err := jwt.NewUserClaims(pub).Encode(signer)
		if err != nil {
			t.Fatal(err)
		}
		b, err := jwt.FormatUserConfig(token, seed)
		if err != nil {
			t.Fatal(err)
		}
		return writeFile(t, "user.creds", b)
	}
	if err := ensureWith(t, srv.ClientURL(), Auth{}); err == nil {
		t.Fatal("anonymous client accepted in operator mode")
	}
	other, _ := nkeys.CreateAccount()
	if err := ensureWith(t, srv.ClientURL(), Auth{CredsFile: creds(other)}); err == nil {
		t.Fatal("user of an unknown account accepted")
	}
	if err := ensureWith(t, srv.ClientURL(), Auth{CredsFile: creds(account)}); err != nil {
		t.Fatalf("creds file: %v", err)
	}
}

// pki is a throwaway CA with a server certificate for 127.0.0.1 and a client certificate.
type pki struct {
	ca                           *x509.CertPool
	caFile, certFile, keyFile    string
	server                       tls.Certificate
	strangerCert, strangerKeyPEM string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pgtrain test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, usage x509.ExtKeyUsage, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (certPEM, keyPEM []byte) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial),
			Subject:      pkix.Name{CommonName: "pgtrain test"},
			NotBefore:    time.Now().Add(-time.Hour),
			NotAfter:     time.Now().Add(time.Hour),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
			IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		}
		if parent == nil {
			parent, parentKey = tmpl, key
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
			pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	}
	p := &pki{ca: x509.NewCertPool()}
	p.ca.AddCert(caCert)
	p.caFile = writeFile(t, "ca.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}))
	srvCert, srvKey := issue(2, x509.ExtKeyUsageServerAuth, caCert, caKey)
	if p.server, err = tls.X509KeyPair(srvCert, srvKey); err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey := issue(3, x509.ExtKeyUsageClientAuth, caCert, caKey)
	p.certFile, p.keyFile = writeFile(t, "client.pem", cliCert), writeFile(t, "client-key.pem", cliKey)
	// A self-signed client certificate the CA never issued.
	sCert, sKey := issue(4, x509.ExtKeyUsageClientAuth, nil, nil)
	p.strangerCert, p.strangerKeyPEM = writeFile(t, "stranger.pem", sCert), writeFile(t, "stranger-key.pem", sKey)
	return p
}

func TestTLSWithOwnCAAndClientCertificate(t *testing.T) {
	p := newPKI(t)
	srv, err := devenv.StartNATS(devenv.NATSOptions{TLS: &tls.Config{
		Certificates: []tls.Certificate{p.server},
		ClientCAs:    p.ca,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()

	// Without the CA the client cannot trust the server.
	if err := ensureWith(t, srv.URL, Auth{TLSCert: p.certFile, TLSKey: p.keyFile}); err == nil {
		t.Fatal("server certificate trusted without --nats-tls-ca")
	} else if !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the CA: err = %v, want it to say certificate", err)
	}
	// With the CA but no client certificate, the server refuses.
	if err := ensureWith(t, srv.URL, Auth{TLSCA: p.caFile}); err == nil {
		t.Fatal("client without a certificate accepted")
	}
	if err := ensureWith(t, srv.URL, Auth{TLSCA: p.caFile, TLSCert: p.strangerCert, TLSKey: p.strangerKeyPEM}); err == nil {
		t.Fatal("client certificate from another CA accepted")
	}
	if err := ensureWith(t, srv.URL, Auth{TLSCA: p.caFile, TLSCert: p.certFile, TLSKey: p.keyFile}); err != nil {
		t.Fatalf("CA and client certificate: %v", err)
	}
}

func TestAuthFilesAreCheckedBeforeConnecting(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for name, a := range map[string]Auth{
		"creds file":     {CredsFile: missing},
		"nkey seed file": {NkeyFile: missing},
		"tls ca":         {TLSCA: missing},
		"tls cert":       {TLSCert: missing, TLSKey: missing},
	} {
		_, err := ConnectAuth("nats://127.0.0.1:1", "t", slog.New(slog.DiscardHandler), a)
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), missing) {
			t.Errorf("%s missing: err = %v, want it named with the path", name, err)
		}
	}
	for _, a := range []Auth{
		{Token: "t", User: "u"},
		{Password: "p"},
		{TLSCert: "c"},
	} {
		if _, err := ConnectAuth("nats://127.0.0.1:1", "t", slog.New(slog.DiscardHandler), a); err == nil {
			t.Errorf("%+v accepted", a)
		}
	}
}
