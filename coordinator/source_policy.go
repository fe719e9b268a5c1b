package coordinator

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// schemaPolicy says which schemas of which source a job may read. System schemas (pg_catalog,
// information_schema, pg_toast, the temporary schemas: PostgreSQL reserves every name that
// starts with pg_) are never readable, nor is a view over them. The database role is still
// the real boundary: a view may call functions that read anything its owner can (see README).
type schemaPolicy struct {
	all    map[string]bool            // allowed in every source
	source map[string]map[string]bool // allowed in one source
}

// systemSchema reports whether a schema is PostgreSQL's own.
func systemSchema(name string) bool {
	return name == "information_schema" || strings.HasPrefix(name, "pg_")
}

// newSchemaPolicy parses Config.AllowSchemas: "schema" for every source, "source:schema"
// for one. No entry allows every schema but the system ones.
func newSchemaPolicy(entries []string) (schemaPolicy, error) {
	p := schemaPolicy{all: map[string]bool{}, source: map[string]map[string]bool{}}
	var errs []error
	for _, e := range entries {
		source, schema, scoped := strings.Cut(e, ":")
		if !scoped {
			source, schema = "", e
		}
		switch {
		case schema == "":
			errs = append(errs, fmt.Errorf("allowed schema %q: want SCHEMA or SOURCE:SCHEMA", e))
		case systemSchema(schema):
			errs = append(errs, fmt.Errorf("allowed schema %q: %s is a system schema, never readable through a job", e, schema))
		case scoped:
			if p.source[source] == nil {
				p.source[source] = map[string]bool{}
			}
			p.source[source][schema] = true
		default:
			p.all[schema] = true
		}
	}
	return p, errors.Join(errs...)
}

// restricted reports whether the source has an allowlist.
func (p schemaPolicy) restricted(source string) bool {
	return len(p.all) > 0 || len(p.source[source]) > 0
}

func (p schemaPolicy) allows(source, schema string) bool {
	if systemSchema(schema) {
		return false
	}
	return !p.restricted(source) || p.all[schema] || p.source[source][schema]
}

// describe lists what the source allows, for error messages.
func (p schemaPolicy) describe(source string) string {
	if !p.restricted(source) {
		return "every schema but the system ones"
	}
	var names []string
	for s := range p.all {
		names = append(names, s)
	}
	for s := range p.source[source] {
		if !p.all[s] {
			names = append(names, s)
		}
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
