package coordinator

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"pgtrain/coordinator/client"
)

// hrTable is a table of personal data in its own schema, and a view in public that reads a
// system catalog.
func hrTable(t *testing.T, e *env) {
	e.exec(t, `create schema hr`)
	e.exec(t, `create table hr.employees (id bigint primary key, name text, ssn text, salary float8, senior int)`)
	e.exec(t, `insert into hr.employees select i, 'name ' || i, lpad(i::text, 9, '0'), 1000 * i, i % 2 from generate_series(1, 50) i`)
}

func employeesSpec(t *testing.T, table string) []byte {
	return specJSON(t, func(m map[string]any) {
		m["table"] = table
		m["features"] = []any{
			map[string]any{"column": "name", "encode": "onehot"},
			map[string]any{"column": "salary", "scale": "standard"},
		}
		m["label"] = "senior"
		m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 1}]}`)
		m["loss"] = "mse"
	})
}

func TestSystemSchemasAreNeverReadable(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	// A role whose search_path puts pg_catalog first: an unqualified name resolves there.
	cfg, err := pgxpool.ParseConfig(e.dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = "pg_catalog, public"
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	r := start(t, &env{pool: pool, dsn: e.dsn, bus: e.bus}, Config{})
	for _, tc := range []struct{ table, key string }{
		{"pg_catalog.pg_roles", "oid"},
		{"pg_catalog.pg_stat_activity", "pid"},
		{"pg_stat_activity", "pid"}, // through the search path
		{"pg_authid", "oid"},
		{"information_schema.tables", "table_name"},
		{"pg_toast.pg_toast_1255", "chunk_id"},
	} {
		t.Run(tc.table, func(t *testing.T) {
			_, err := r.cl.Submit(context.Background(), specJSON(t, func(m map[string]any) {
				m["table"], m["key"] = tc.table, tc.key
			}))
			ae := apiErr(t, err)
			if ae.Status != http.StatusBadRequest || ae.Field != "table" || !strings.Contains(ae.Message, "is not readable through this coordinator") {
				t.Fatalf("submitting a job on %s: %v, want a 400 on table saying the schema is not readable", tc.table, err)
			}
		})
	}
	if _, err := r.cl.Submit(context.Background(), specJSON(t, nil)); err != nil {
		t.Fatalf("a job on public.iris: %v", err)
	}
}

// A view in an allowed schema does not open a schema the policy closes; a view over allowed
// tables is a job like any other.
func TestViewsOverClosedSchemas(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	hrTable(t, e)
	e.exec(t, `create view public.roles as select rolconnlimit as id, rolname as name, rolsuper::int as senior from pg_catalog.pg_roles`)
	e.exec(t, `create view public.roles2 as select * from public.roles`) // one view further
	e.exec(t, `create view public.staff as select * from hr.employees`)
	e.exec(t, `create view public.iris_view as select * from iris`)
	r := start(t, e, Config{AllowSchemas: []string{"public"}})
	ctx := context.Background()
	for _, tc := range []struct{ view, reads string }{
		{"roles", "pg_catalog.pg_roles"},
		{"roles2", "pg_catalog.pg_roles"},
		{"staff", "hr.employees"},
	} {
		_, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) {
			m["table"] = tc.view
			m["features"] = []any{map[string]any{"column": "name", "encode": "onehot"}}
			m["label"] = "senior"
			m["model"] = json.RawMessage(`{"layers": [{"type": "dense", "units": 1}]}`)
			m["loss"] = "mse"
		}))
		ae := apiErr(t, err)
		if ae.Status != http.StatusBadRequest || ae.Field != "table" || !strings.Contains(ae.Message, "reads "+tc.reads) {
			t.Errorf("a job on view %s: %v, want a 400 on table saying it reads %s", tc.view, err, tc.reads)
		}
	}
	if _, err := r.cl.Submit(ctx, specJSON(t, func(m map[string]any) { m["table"] = "iris_view" })); err != nil {
		t.Fatalf("a job on a view over public.iris: %v", err)
	}
}

func TestAllowSchemas(t *testing.T) {
	e := newEnv(t)
	irisTable(t, e)
	hrTable(t, e)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		allow   []string
		hrOK    bool
		irisOK  bool
		message string
	}{
		{name: "default: every user schema", hrOK: true, irisOK: true},
		{name: "public only", allow: []string{"public"}, irisOK: true, message: `schema "hr" is not readable through this coordinator (source "" allows public)`},
		{name: "per source", allow: []string{":hr"}, hrOK: true, message: `schema "public" is not readable through this coordinator (source "" allows hr)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := start(t, e, Config{AllowSchemas: tc.allow})
			for _, job := range []struct {
				spec []byte
				ok   bool
			}{
				{employeesSpec(t, "hr.employees"), tc.hrOK},
				{specJSON(t, nil), tc.irisOK},
			} {
				_, err := r.cl.Submit(ctx, job.spec)
				if job.ok {
					if err != nil {
						t.Fatalf("submitting: %v", err)
					}
					continue
				}
				ae := apiErr(t, err)
				if ae.Status != http.StatusBadRequest || ae.Field != "table" || ae.Message != tc.message {
					t.Fatalf("submitting: %v, want a 400 on table: %s", err, tc.message)
				}
			}
		})
	}
}

func TestAllowSchemasConfig(t *testing.T) {
	for _, tc := range []struct {
		allow []string
		want  string
	}{
		{[]string{"pg_catalog"}, "pg_catalog is a system schema"},
		{[]string{"src:information_schema"}, "information_schema is a system schema"},
		{[]string{"pg_temp_3"}, "pg_temp_3 is a system schema"},
		{[]string{"src:"}, "want SCHEMA or SOURCE:SCHEMA"},
	} {
		err := (Config{AllowSchemas: tc.allow}).WithDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AllowSchemas %q: %v, want an error with %q", tc.allow, err, tc.want)
		}
	}
	e := newEnv(t)
	_, err := New(context.Background(), Config{AllowSchemas: []string{"nosuch:public"}}, map[string]*pgxpool.Pool{"": e.pool}, e.bus, nil)
	if err == nil || !strings.Contains(err.Error(), `source "nosuch"`) {
		t.Fatalf("New with an allowed schema of an unknown source: %v", err)
	}
}

// The plan over HTTP shows the table's values (vocabularies, statistics) only to a token
// with the data scope.
func TestPlanOmitsDataWithoutTheDataScope(t *testing.T) {
	e := newEnv(t)
	hrTable(t, e)
	secret := func(s string) string { return s + strings.Repeat("x", MinTokenLength) }
	user, err := NewToken("user", secret("user"), ScopeRead, ScopeSubmit)
	if err != nil {
		t.Fatal(err)
	}
	analyst, err := NewToken("analyst", secret("analyst"), ScopeRead, ScopeData)
	if err != nil {
		t.Fatal(err)
	}
	r := start(t, e, Config{Tokens: []Token{user, analyst}})
	ctx := context.Background()
	url := "http://" + r.c.Addr()
	st, err := client.New(url, nil, client.WithToken(secret("user"))).Submit(ctx, employeesSpec(t, "hr.employees"))
	if err != nil {
		t.Fatal(err)
	}

	p, err := client.New(url, nil, client.WithToken(secret("user"))).Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Omitted == "" || !strings.Contains(p.Omitted, `"data" scope`) {
		t.Errorf("plan.omitted = %q, want it to say what was left out and why", p.Omitted)
	}
	for _, c := range append(p.Features, p.Label) {
		if len(c.Vocabulary) > 0 || c.Stats.Count != 0 || c.Stats.Max != 0 || c.Stats.Mean != 0 || c.Offset != 0 || c.Factor != 0 {
			t.Errorf("column %q shows data to a token without the data scope: %+v", c.Name, c)
		}
	}
	if p.InputDim != 52 || len(p.Ranges) == 0 {
		t.Errorf("the plan lost its shape: input_dim %d, %d ranges", p.InputDim, len(p.Ranges))
	}

	full, err := client.New(url, nil, client.WithToken(secret("analyst"))).Plan(ctx, st.ID)
	if err != nil {
		t.Fatal(err)
	}
	if full.Omitted != "" || len(full.Features[0].Vocabulary) != 50 || full.Features[1].Stats.Max != 50000 {
		t.Errorf("plan for the data scope: omitted %q, %d names, salary max %v; want everything", full.Omitted,
			len(full.Features[0].Vocabulary), full.Features[1].Stats.Max)
	}
}
