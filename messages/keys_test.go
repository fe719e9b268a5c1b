package messages

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// A key is written as a string for one column (as every spec and stored plan before
// composite keys) and as a list otherwise; both read back, in JSON and in msgpack.
func TestKeyColumnsCompatible(t *testing.T) {
	for _, tt := range []struct {
		json string
		want KeyColumns
	}{
		{`"id"`, KeyColumns{"id"}},
		{`["tenant_id","id"]`, KeyColumns{"tenant_id", "id"}},
	} {
		var k KeyColumns
		if err := json.Unmarshal([]byte(tt.json), &k); err != nil || !reflect.DeepEqual(k, tt.want) {
			t.Fatalf("%s: %v %v", tt.json, k, err)
		}
		if b, _ := json.Marshal(k); string(b) != tt.json {
			t.Fatalf("%v marshals to %s, want %s", k, b, tt.json)
		}
		b, err := msgpack.Marshal(k)
		if err != nil {
			t.Fatal(err)
		}
		var back KeyColumns
		if err := msgpack.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, tt.want) {
			t.Fatalf("msgpack %v: %v %v", tt.want, back, err)
		}
	}
	// A plan stored before composite keys: the spec's key is a msgpack string.
	old, _ := msgpack.Marshal(map[string]any{"key": "id"})
	var s struct {
		Key KeyColumns `msgpack:"key"`
	}
	if err := msgpack.Unmarshal(old, &s); err != nil || !reflect.DeepEqual(s.Key, KeyColumns{"id"}) {
		t.Fatalf("old plan key: %v %v", s.Key, err)
	}
	tooMany, _ := msgpack.Marshal([]string{"a", "b", "c", "d"})
	if err := msgpack.Unmarshal(tooMany, &s.Key); err == nil {
		t.Fatal("a 4-column key decoded")
	}
	for _, bad := range []KeyColumns{nil, {"a", "b", "c", "d"}, {"a", "a"}, {"a", " "}} {
		if err := bad.Check(); err == nil {
			t.Errorf("key %q passed the check", bad)
		}
	}
}

func TestValidKeyType(t *testing.T) {
	for _, ok := range []string{"text", "character varying(20)", "numeric(10,2)", "timestamp with time zone", `"My Domain"`, "public.slug"} {
		if !ValidKeyType(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "int); drop table x; --", "text'", `"open`, "int[]", "a--b"} {
		if ValidKeyType(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}

func FuzzKeyColumns(f *testing.F) {
	f.Add([]byte(`"id"`))
	f.Add([]byte(`["a","b","c"]`))
	one, _ := msgpack.Marshal("id")
	many, _ := msgpack.Marshal([]string{"a", "b"})
	f.Add(one)
	f.Add(many)
	f.Add([]byte{0xdd, 0x7f, 0xff, 0xff, 0xff}) // an array claiming 2^31 - 1 names
	f.Fuzz(func(t *testing.T, data []byte) {
		var k KeyColumns
		if json.Unmarshal(data, &k) == nil && k.Check() == nil && len(k) > MaxKeyColumns {
			t.Fatalf("%d columns passed the check", len(k))
		}
		if msgpack.Unmarshal(data, &k) == nil && len(k) > MaxKeyColumns {
			t.Fatalf("msgpack decoded %d columns", len(k))
		}
	})
}

func FuzzFilterValues(f *testing.F) {
	f.Add("in", []byte(`["a", 1, true]`))
	f.Add("=", []byte(`"x'; drop table t; --"`))
	f.Add("is_null", []byte(``))
	f.Fuzz(func(t *testing.T, op string, value []byte) {
		vals, err := Filter{Column: "c", Op: op, Value: value}.Values()
		if err == nil && op != "in" && len(vals) > 1 {
			t.Fatalf("op %q gave %d values", op, len(vals))
		}
	})
}

// The since "last" filter on text expressions is the range bound's row comparison: the same
// columns, casts and operator, with the text read from the given expressions.
func TestKeysAfterTextSQL(t *testing.T) {
	cols := []KeyColumn{{Name: "Tenant", Type: "text"}, {Name: "at", Type: "timestamp with time zone", Form: KeyFormTimestamptz}}
	got := KeysAfterTextSQL(cols, []string{"current_setting('a_0')", "current_setting('a_1')"})
	want := `("Tenant", "at") > (current_setting('a_0')::text::text, (current_setting('a_1')::text::timestamp at time zone 'UTC'))`
	if got != want {
		t.Fatalf("KeysAfterTextSQL = %s, want %s", got, want)
	}
	params, next := KeysAfterSQL(cols, 3)
	if params != `("Tenant", "at") > ($3::text::text, ($4::text::timestamp at time zone 'UTC'))` || next != 5 {
		t.Fatalf("KeysAfterSQL = %s, %d", params, next)
	}
}
