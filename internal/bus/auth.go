package bus

import (
	"errors"
	"fmt"
	"os"

	"github.com/nats-io/nats.go"
)

// Auth is how a client proves who it is to the NATS server and checks the server's
// certificate. Zero fields are not used; the empty Auth connects anonymously in plain text.
type Auth struct {
	// CredsFile is a .creds file (user JWT and nkey seed) for a server in operator mode.
	CredsFile string
	// NkeyFile holds a user nkey seed (SU...) for a server that lists nkey users.
	NkeyFile string
	User     string
	Password string
	Token    string
	// TLSCA verifies the server's certificate; TLSCert and TLSKey are the client's own,
	// for a server that asks for one.
	TLSCA   string
	TLSCert string
	TLSKey  string
}

// options turns a into nats.go options. Files are read here, so a missing or malformed
// one is an error before the first connection attempt.
func (a Auth) options() ([]nats.Option, error) {
	var opts []nats.Option
	methods := 0
	for _, set := range []bool{a.CredsFile != "", a.NkeyFile != "", a.User != "", a.Token != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return nil, errors.New("nats auth: give one of creds, nkey, user/password or token")
	}
	if a.Password != "" && a.User == "" {
		return nil, errors.New("nats auth: a password needs a user")
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return nil, errors.New("nats tls: the client certificate and key go together")
	}
	for _, f := range []struct{ what, path string }{
		{"creds file", a.CredsFile}, {"nkey seed file", a.NkeyFile},
		{"tls ca", a.TLSCA}, {"tls cert", a.TLSCert}, {"tls key", a.TLSKey},
	} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("nats %s: %w", f.what, err)
		}
	}
	switch {
	case a.CredsFile != "":
		opts = append(opts, nats.UserCredentials(a.CredsFile))
	case a.NkeyFile != "":
		o, err := nats.NkeyOptionFromSeed(a.NkeyFile)
		if err != nil {
			return nil, fmt.Errorf("nats nkey seed file %s: %w", a.NkeyFile, err)
		}
		opts = append(opts, o)
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	if a.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	return opts, nil
}
