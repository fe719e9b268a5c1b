package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Filter ops and their SQL; "in", "is_null" and "not_null" are written out by WhereSQL.
var filterOps = map[string]string{
	"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">=",
	"in": "", "is_null": "", "not_null": "",
}

// Filter is one condition of a spec's `where`: column op value. Value is a JSON string,
// number or boolean (a list of them for "in", none for "is_null" and "not_null"); it reaches
// PostgreSQL as a bound parameter and is cast there to the column's type.
type Filter struct {
	Column string          `json:"column" msgpack:"column"`
	Op     string          `json:"op" msgpack:"op"`
	Value  json.RawMessage `json:"value,omitempty" msgpack:"value,omitempty"`
}

// Values is the filter's values as text, checked against its op.
func (f Filter) Values() ([]string, error) {
	if _, ok := filterOps[f.Op]; !ok {
		return nil, fmt.Errorf("op %q is not one of = != < <= > >= in is_null not_null", f.Op)
	}
	v := bytes.TrimSpace(f.Value)
	none := len(v) == 0 || string(v) == "null"
	switch f.Op {
	case "is_null", "not_null":
		if !none {
			return nil, fmt.Errorf("op %q takes no value", f.Op)
		}
		return nil, nil
	case "in":
		var list []json.RawMessage
		if none || json.Unmarshal(v, &list) != nil || len(list) == 0 {
			return nil, fmt.Errorf("op \"in\" takes a non-empty list of values")
		}
		out := make([]string, len(list))
		for i, e := range list {
			s, err := scalarText(e)
			if err != nil {
				return nil, fmt.Errorf("value[%d]: %w", i, err)
			}
			out[i] = s
		}
		return out, nil
	}
	if none {
		return nil, fmt.Errorf("op %q takes a value (is_null tests for NULL)", f.Op)
	}
	s, err := scalarText(v)
	if err != nil {
		return nil, err
	}
	return []string{s}, nil
}

// scalarText is a JSON string's text, or a number's or a boolean's as written.
func scalarText(v json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s, nil
	}
	var n json.Number
	if json.Unmarshal(v, &n) == nil {
		return n.String(), nil
	}
	var b bool
	if json.Unmarshal(v, &b) == nil {
		return strconv.FormatBool(b), nil
	}
	return "", fmt.Errorf("%s is not a string, a number or a boolean", v)
}

// CheckWhere checks a spec's filters on their own and against the limits: at most
// maxFilters of them, at most maxIn values in an "in" list (a limit of 0 is none).
func CheckWhere(where []Filter, maxFilters, maxIn int) error {
	if maxFilters > 0 && len(where) > maxFilters {
		return &FieldError{Field: "where", Reason: fmt.Sprintf("%d filters, at most %d (the coordinator's --max-filters)", len(where), maxFilters)}
	}
	for i, f := range where {
		field := fmt.Sprintf("where[%d]", i)
		if strings.TrimSpace(f.Column) == "" {
			return &FieldError{Field: field + ".column", Reason: "is required"}
		}
		vals, err := f.Values()
		if err != nil {
			return &FieldError{Field: field + ".op", Reason: err.Error()}
		}
		if maxIn > 0 && len(vals) > maxIn {
			return &FieldError{Field: field + ".value", Reason: fmt.Sprintf("%d values, at most %d (the coordinator's --max-in-values)", len(vals), maxIn)}
		}
	}
	return nil
}

// PlannedFilter is a filter resolved against the catalog: its column's type (format_type,
// checked by ValidKeyType before it is spliced into a cast) and its values as text.
type PlannedFilter struct {
	Column string   `msgpack:"column" json:"column"`
	Op     string   `msgpack:"op" json:"op"`
	Type   string   `msgpack:"type" json:"type"`
	Values []string `msgpack:"values,omitempty" json:"values,omitempty"`
}

// WhereArg is the text the value reference of a filter stands for: its values as a JSON
// array of strings.
func (f PlannedFilter) WhereArg() string {
	b, _ := json.Marshal(f.Values) // a []string always encodes
	return string(b)
}

// WhereSQL is the filters' condition, each ANDed: ref(i) is a text expression holding
// WhereArg of filter i (a bound parameter, or a setting a COPY reads, since COPY takes no
// parameters). Every value is cast to its column's type in SQL; none is spliced.
func WhereSQL(where []PlannedFilter, ref func(i int) string) (string, error) {
	conds := make([]string, len(where))
	for i, f := range where {
		if !ValidKeyType(f.Type) {
			return "", fmt.Errorf("filter on %q: type %q", f.Column, f.Type)
		}
		col := pgx.Identifier{f.Column}.Sanitize()
		vals := "(" + ref(i) + ")::jsonb"
		switch op := filterOps[f.Op]; {
		case f.Op == "is_null":
			conds[i] = col + " is null"
		case f.Op == "not_null":
			conds[i] = col + " is not null"
		case f.Op == "in":
			conds[i] = col + " = any(array(select jsonb_array_elements_text(" + vals + "))::" + f.Type + "[])"
		case op != "":
			conds[i] = col + " " + op + " (" + vals + " ->> 0)::" + f.Type
		default:
			return "", fmt.Errorf("filter on %q: op %q", f.Column, f.Op)
		}
	}
	return strings.Join(conds, " and "), nil
}
