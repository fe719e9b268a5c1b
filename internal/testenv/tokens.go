package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// Tokens are the bearer-token files of a coordinator run as a process: Auth is its
// --auth-token-file, Worker and User are --coordinator-token-file files for the workers
// (scope worker) and for users (scopes read and submit).
type Tokens struct {
	Auth, Worker, User       string
	WorkerSecret, UserSecret string
}

// TokenFiles writes fresh random tokens into dir (mode 0600).
func TokenFiles(t testing.TB, dir string) Tokens {
	t.Helper()
	secret := func() string {
		var b [24]byte
		if _, err := rand.Read(b[:]); err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(b[:])
	}
	tk := Tokens{
		Auth:         filepath.Join(dir, "auth.tokens"),
		Worker:       filepath.Join(dir, "worker.token"),
		User:         filepath.Join(dir, "user.token"),
		WorkerSecret: secret(),
		UserSecret:   secret(),
	}
	for path, content := range map[string]string{
		tk.Auth:   "# test tokens\n" + tk.WorkerSecret + " worker workers\n" + tk.UserSecret + " read,submit user\n",
		tk.Worker: tk.WorkerSecret + "\n",
		tk.User:   tk.UserSecret + "\n",
	} {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tk
}
