package coordinator

import (
	"errors"
	"strings"
	"testing"

	"pgtrain/messages"
)

// since "last" continues only a stored model whose key is the table's, column for column
// with type and collation, and whose typed last key was recorded; each refusal names the
// field and what differs.
func TestSinceLastSameKey(t *testing.T) {
	icu := []messages.KeyColumn{{Name: "tenant", Type: "text", Collation: `"pg_catalog"."en-x-icu"`}, {Name: "id", Type: "integer"}}
	c := []messages.KeyColumn{{Name: "tenant", Type: "text", Collation: `"pg_catalog"."C"`}, {Name: "id", Type: "integer"}}
	tests := []struct {
		name          string
		table         []messages.KeyColumn
		stored        []messages.KeyColumn
		last          []string
		field, wantIn string
	}{
		{name: "integer key", table: nil, stored: nil},
		{name: "same typed key", table: icu, stored: icu, last: []string{"acme", "7"}},
		{name: "other collation", table: c, stored: icu, last: []string{"acme", "7"}, field: "key", wantIn: `"pg_catalog"."C"`},
		{name: "typed table, integer model", table: icu, stored: nil, field: "key", wantIn: "integer key"},
		{name: "integer table, typed model", table: nil, stored: icu, last: []string{"acme", "7"}, field: "key", wantIn: "en-x-icu"},
		{name: "no last key", table: icu, stored: icu, field: "init_from", wantIn: "does not record the last key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &planInput{rel: &relation{schema: "public", name: "t"}, key: column{name: "tenant"}, keyCols: tt.table}
			from := &messages.ModelMeta{JobID: "t-0001", Key: "tenant", KeyColumns: tt.stored, LastKeyText: tt.last}
			err := sameKey(in, from)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var fe *messages.FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field || !strings.Contains(fe.Reason, tt.wantIn) || !strings.Contains(fe.Reason, "t-0001") {
				t.Fatalf("sameKey = %v, want a %s error naming %s and the model", err, tt.field, tt.wantIn)
			}
		})
	}
}
