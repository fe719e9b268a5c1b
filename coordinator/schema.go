package coordinator

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// relation is a table or view resolved through the catalog.
type relation struct {
	oid    uint32
	schema string
	name   string
	kind   string // pg_class.relkind
	cols   map[string]column
}

// column is one attribute with its type; base is the type name under any domain.
type column struct {
	num    int16
	name   string
	pgType string
	base   string
	// collation is the column's collation (schema, name), nil for a type without one.
	collation pgx.Identifier
}

// Kinds of relation a job may read; only tables can be required to have an index.
var (
	readableKinds = []string{"r", "p", "v", "m", "f"}
	indexedKinds  = map[string]bool{"r": true, "p": true, "m": true}
)

func (c column) numeric() bool {
	switch c.base {
	case "int2", "int4", "int8", "float4", "float8", "numeric":
		return true
	}
	return false
}

// valueType is how a feature column of this type is read as numbers (a messages.Type*),
// and false for a type that is not one of them.
func (c column) valueType() (string, bool) {
	if c.numeric() {
		return messages.TypeNumber, true
	}
	switch c.base {
	case "bool":
		return messages.TypeBoolean, true
	case "date":
		return messages.TypeDate, true
	case "timestamp":
		return messages.TypeTimestamp, true
	case "timestamptz":
		return messages.TypeTimestampTZ, true
	case "_float4":
		return messages.TypeFloat4Array, true
	case "_float8":
		return messages.TypeFloat8Array, true
	}
	return "", false
}

// textual reports whether the column holds words, so that a one-hot or hashed encoding is
// what its values want.
func (c column) textual() bool {
	switch c.base {
	case "text", "varchar", "bpchar", "char", "name", "citext", "uuid":
		return true
	}
	return false
}

func (c column) integer() bool { return c.base == "int2" || c.base == "int4" || c.base == "int8" }

// ident is the quoted form of the relation, for SQL.
func (r *relation) ident() string { return pgx.Identifier{r.schema, r.name}.Sanitize() }

// schemaCheck refuses a schema a job may not read, with an error on the table field.
type schemaCheck func(schema string) error

// resolveRelation finds "name" (on the search path) or "schema.name" by exact catalog
// match with bind parameters: user text is compared, never parsed as SQL, so quoting tricks
// are just names that do not exist. The schema the catalog resolves to is the one allowed
// checks (a qualified name's is checked first too, so a refused schema's tables are not
// even looked up).
func resolveRelation(ctx context.Context, tx pgx.Tx, table string, allowed schemaCheck) (*relation, error) {
	var schema *string
	name := table
	if i := strings.IndexByte(table, '.'); i >= 0 {
		s := table[:i]
		schema, name = &s, table[i+1:]
		if err := allowed(s); err != nil {
			return nil, err
		}
	}
	rel := &relation{cols: map[string]column{}}
	var canSelect bool
	err := tx.QueryRow(ctx, `
select c.oid, n.nspname, c.relname, c.relkind::text, has_table_privilege(c.oid, 'SELECT')
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where c.relname = $1
  and c.relkind::text = any($3)
  and (($2::text is null and n.nspname = any(current_schemas(false))) or n.nspname = $2::text)
order by array_position(current_schemas(false), n.nspname::text) nulls last
limit 1`, name, schema, readableKinds).Scan(&rel.oid, &rel.schema, &rel.name, &rel.kind, &canSelect)
	if errors.Is(err, pgx.ErrNoRows) {
		where := "on the search path"
		if schema != nil {
			where = fmt.Sprintf("in schema %q", *schema)
		}
		return nil, &messages.FieldError{Field: "table", Reason: fmt.Sprintf("no table or view %q %s", name, where)}
	}
	if err != nil {
		return nil, fmt.Errorf("looking up table: %w", err)
	}
	if err := allowed(rel.schema); err != nil {
		return nil, err
	}
	if err := checkViewSources(ctx, tx, rel, allowed); err != nil {
		return nil, err
	}
	if !canSelect {
		return nil, &messages.FieldError{Field: "table", Reason: fmt.Sprintf("the coordinator's role may not SELECT from %s.%s", rel.schema, rel.name)}
	}
	rows, err := tx.Query(ctx, `
select a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), bt.typname::text,
       coalesce(cn.nspname::text, ''), coalesce(co.collname::text, '')
from pg_catalog.pg_attribute a
join pg_catalog.pg_type t on t.oid = a.atttypid
join pg_catalog.pg_type bt on bt.oid = case when t.typtype = 'd' then t.typbasetype else t.oid end
left join pg_catalog.pg_collation co on co.oid = a.attcollation
left join pg_catalog.pg_namespace cn on cn.oid = co.collnamespace
where a.attrelid = $1 and a.attnum > 0 and not a.attisdropped`, rel.oid)
	if err != nil {
		return nil, fmt.Errorf("listing columns: %w", err)
	}
	defer rows.Close() // an early return leaves the connection busy otherwise
	for rows.Next() {
		var col column
		var collSchema, collName string
		if err := rows.Scan(&col.num, &col.name, &col.pgType, &col.base, &collSchema, &collName); err != nil {
			return nil, fmt.Errorf("listing columns: %w", err)
		}
		if collName != "" {
			col.collation = pgx.Identifier{collSchema, collName}
		}
		rel.cols[col.name] = col
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing columns: %w", err)
	}
	return rel, nil
}

// checkViewSources refuses a view (or materialized view) that reads, directly or through
// other views, a relation in a schema a job may not read: a view in public over pg_authid
// must not open what the schema policy closes. Only relations are followed, not functions a
// view calls, so the database role stays the real boundary.
func checkViewSources(ctx context.Context, tx pgx.Tx, rel *relation, allowed schemaCheck) error {
	if rel.kind != "v" && rel.kind != "m" {
		return nil
	}
	rows, err := tx.Query(ctx, `
with recursive deps(oid) as (
  select $1::oid
  union
  select d.refobjid
  from deps
  join pg_catalog.pg_rewrite rw on rw.ev_class = deps.oid
  join pg_catalog.pg_depend d on d.classid = 'pg_catalog.pg_rewrite'::regclass and d.objid = rw.oid
  where d.refclassid = 'pg_catalog.pg_class'::regclass and d.refobjid <> deps.oid
)
select distinct n.nspname::text, c.relname::text
from deps
join pg_catalog.pg_class c on c.oid = deps.oid
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where deps.oid <> $1
order by 1, 2`, rel.oid)
	if err != nil {
		return fmt.Errorf("listing what view %s.%s reads: %w", rel.schema, rel.name, err)
	}
	type source struct{ Schema, Name string }
	sources, err := pgx.CollectRows(rows, pgx.RowToStructByPos[source])
	if err != nil {
		return fmt.Errorf("listing what view %s.%s reads: %w", rel.schema, rel.name, err)
	}
	for _, s := range sources {
		if err := allowed(s.Schema); err != nil {
			var fe *messages.FieldError
			if errors.As(err, &fe) {
				return &messages.FieldError{Field: fe.Field, Reason: fmt.Sprintf("view %s.%s reads %s.%s: %s", rel.schema, rel.name, s.Schema, s.Name, fe.Reason)}
			}
			return err
		}
	}
	return nil
}
