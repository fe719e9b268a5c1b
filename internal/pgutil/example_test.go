package pgutil_test

import (
	"context"
	"fmt"

	"pgtrain/internal/pgutil"
)

// A malformed connection string is refused with the reason and without the password.
func ExampleNewPool_malformed() {
	_, err := pgutil.NewPool(context.Background(), "postgres://alice:se%zzkrit@db.example:5432/shop", 1)
	fmt.Println(err)
	// Output: parsing the PostgreSQL connection string postgres://alice:xxxxx@db.example:5432/shop: failed to parse as URL (invalid percent-encoded token in password)
}
