package coordinator

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// keyForms are the base types a key column may have, with the text form of their values.
// Each is btree-ordered, has an exact text form, and casts back from it.
var keyForms = map[string]string{
	"int2": messages.KeyFormText, "int4": messages.KeyFormText, "int8": messages.KeyFormText,
	"numeric": messages.KeyFormText, "text": messages.KeyFormText, "varchar": messages.KeyFormText,
	"bpchar": messages.KeyFormText, "uuid": messages.KeyFormText,
	"date":        messages.KeyFormDate,
	"timestamp":   messages.KeyFormTimestamp,
	"timestamptz": messages.KeyFormTimestamptz,
}

// resolveKey looks the key's columns up, checks their types, and checks that the key
// orders and identifies the rows: a btree index leads with its columns (keyset paging
// needs one) and a unique index or primary key (for a view: one query) makes it unique.
// A key that is not one integer column gets typed key columns.
func resolveKey(ctx context.Context, tx pgx.Tx, rel *relation, spec messages.KeyColumns) ([]column, []messages.KeyColumn, error) {
	if err := spec.Check(); err != nil {
		return nil, nil, err
	}
	var cols []column
	for i, name := range spec {
		field := "key"
		if len(spec) > 1 {
			field = fmt.Sprintf("key[%d]", i)
		}
		col, ok := rel.cols[name]
		if !ok {
			return nil, nil, &messages.FieldError{Field: field, Reason: fmt.Sprintf("no column %q in %s.%s", name, rel.schema, rel.name)}
		}
		if _, ok := keyForms[col.base]; !ok || !messages.ValidKeyType(col.pgType) {
			return nil, nil, &messages.FieldError{Field: field, Reason: fmt.Sprintf("column %q is %s; a key column must be an integer, numeric, text, varchar, char, uuid, date, timestamp or timestamptz", col.name, col.pgType)}
		}
		cols = append(cols, col)
	}
	var typed []messages.KeyColumn
	if len(cols) > 1 || !cols[0].integer() {
		for _, c := range cols {
			kc := messages.KeyColumn{Name: c.name, Type: c.pgType, Form: keyForms[c.base]}
			if c.collation != nil {
				kc.Collation = c.collation.Sanitize()
			}
			typed = append(typed, kc)
		}
	}
	if indexedKinds[rel.kind] {
		ordered, unique, err := keyIndexes(ctx, tx, rel, cols)
		if err != nil {
			return nil, nil, err
		}
		list := keyIdents(cols)
		if !ordered {
			return nil, nil, &messages.FieldError{Field: "key", Reason: fmt.Sprintf("%s is not the leading part of a btree index on %s.%s; keyset paging needs one (create unique index on %s (%s))",
				keyNames(cols), rel.schema, rel.name, rel.ident(), list)}
		}
		if !unique {
			return nil, nil, &messages.FieldError{Field: "key", Reason: fmt.Sprintf("%s is not unique: no unique index or primary key of %s.%s is on the key's columns, and rows sharing a key cannot be paged exactly once (create unique index on %s (%s))",
				keyNames(cols), rel.schema, rel.name, rel.ident(), list)}
		}
		return cols, typed, nil
	}
	dup, err := keyDuplicated(ctx, tx, rel, cols)
	if err != nil {
		return nil, nil, err
	}
	if dup != "" {
		return nil, nil, &messages.FieldError{Field: "key", Reason: fmt.Sprintf("%s is not unique in %s.%s: the key (%s) is on more than one row, and rows sharing a key cannot be paged exactly once",
			keyNames(cols), rel.schema, rel.name, dup)}
	}
	return cols, typed, nil
}

func keyNames(cols []column) string {
	names := make([]string, len(cols))
	for i, c := range cols {
		names[i] = fmt.Sprintf("%q", c.name)
	}
	if len(cols) == 1 {
		return "column " + names[0]
	}
	return "the key (" + strings.Join(names, ", ") + ")"
}

func keyIdents(cols []column) string {
	ids := make([]string, len(cols))
	for i, c := range cols {
		ids[i] = pgx.Identifier{c.name}.Sanitize()
	}
	return strings.Join(ids, ", ")
}

// keyIndexes reports whether a valid, whole-table btree index leads with the key's columns
// in order, and whether a unique one has only key columns as its key columns.
func keyIndexes(ctx context.Context, tx pgx.Tx, rel *relation, cols []column) (ordered, unique bool, err error) {
	nums := make([]int16, len(cols))
	for i, c := range cols {
		nums[i] = c.num
	}
	err = tx.QueryRow(ctx, `
select coalesce(bool_or((i.indkey::int2[])[0:$3 - 1] = $2::int2[]), false),
       coalesce(bool_or(i.indisunique and (i.indkey::int2[])[0:i.indnkeyatts - 1] <@ $2::int2[]), false)
  from pg_catalog.pg_index i
  join pg_catalog.pg_class ic on ic.oid = i.indexrelid
  join pg_catalog.pg_am am on am.oid = ic.relam
 where i.indrelid = $1 and am.amname = 'btree' and i.indpred is null and i.indisvalid`, rel.oid, nums, len(nums)).Scan(&ordered, &unique)
	if err != nil {
		return false, false, fmt.Errorf("checking the key's indexes: %w", err)
	}
	return ordered, unique, nil
}

// keyDuplicated is one key that is on more than one row, as text, or "" when the key is
// unique: the one query that checks a relation without indexes (a view).
func keyDuplicated(ctx context.Context, tx pgx.Tx, rel *relation, cols []column) (string, error) {
	texts := make([]string, len(cols))
	present := make([]string, len(cols))
	for i, c := range cols {
		id := pgx.Identifier{c.name}.Sanitize()
		texts[i], present[i] = id+"::text", id+" is not null"
	}
	list := keyIdents(cols)
	var dup []string
	err := tx.QueryRow(ctx, "select array["+strings.Join(texts, ", ")+"] from "+rel.ident()+
		" where "+strings.Join(present, " and ")+" group by "+list+" having count(*) > 1 limit 1").Scan(&dup)
	if err == pgx.ErrNoRows {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("checking that the key is unique: %w", err)
	}
	return strings.Join(dup, ", "), nil
}

// resolveWhere checks the spec's filters against the catalog: each names a column whose
// type its values are cast to.
func resolveWhere(rel *relation, where []messages.Filter) ([]messages.PlannedFilter, error) {
	var out []messages.PlannedFilter
	for i, f := range where {
		field := fmt.Sprintf("where[%d]", i)
		col, ok := rel.cols[f.Column]
		if !ok {
			return nil, &messages.FieldError{Field: field + ".column", Reason: fmt.Sprintf("no column %q in %s.%s", f.Column, rel.schema, rel.name)}
		}
		if !messages.ValidKeyType(col.pgType) {
			return nil, &messages.FieldError{Field: field + ".column", Reason: fmt.Sprintf("column %q is %s, which a filter cannot compare", col.name, col.pgType)}
		}
		vals, err := f.Values()
		if err != nil {
			return nil, &messages.FieldError{Field: field + ".op", Reason: err.Error()}
		}
		out = append(out, messages.PlannedFilter{Column: col.name, Op: f.Op, Type: col.pgType, Values: vals})
	}
	return out, nil
}

// whereSetting is the setting that holds filter i's values while planning reads: COPY takes
// no parameters, so the values are bound to set_config and the query reads them back.
func whereSetting(i int) string { return fmt.Sprintf("current_setting('pgtrain.where_%d')", i) }

// setWhere binds the filters' values to this transaction's settings.
func setWhere(ctx context.Context, tx pgx.Tx, where []messages.PlannedFilter) error {
	for i, f := range where {
		if _, err := tx.Exec(ctx, "select set_config($1, $2, true)", fmt.Sprintf("pgtrain.where_%d", i), f.WhereArg()); err != nil {
			return fmt.Errorf("setting the filters: %w", err)
		}
	}
	return nil
}

// source is what planning reads from: the relation, or its rows the filters and the key
// filter keep.
func (in *planInput) source() string {
	if in.conditions() == "" {
		return in.rel.ident()
	}
	return in.sourceAs("filtered")
}

// sourceAs is source under the alias alias.
func (in *planInput) sourceAs(alias string) string {
	cond := in.conditions()
	if cond == "" {
		return in.rel.ident() + " as " + alias
	}
	return "(select * from " + in.rel.ident() + " where " + cond + ") as " + alias
}
