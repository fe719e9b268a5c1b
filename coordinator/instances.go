package coordinator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"pgtrain/internal/pgbinary"
	"pgtrain/messages"
)

// decodeInstances reads an online prediction body (its size already bounded by the
// caller): {"instances": [{"column": value, ...}, ...]}, at most max instances. Values stay
// raw JSON until the model's columns say what each must be.
func decodeInstances(body []byte, max int) ([]map[string]json.RawMessage, error) {
	var req struct {
		Instances []map[string]json.RawMessage `json:"instances"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, &messages.FieldError{Field: "instances", Reason: "invalid JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &messages.FieldError{Field: "instances", Reason: "trailing data after the JSON object"}
	}
	switch {
	case len(req.Instances) == 0:
		return nil, &messages.FieldError{Field: "instances", Reason: `is required: {"instances": [{"column": value, ...}, ...]}`}
	case len(req.Instances) > max:
		return nil, &messages.FieldError{Field: "instances", Reason: fmt.Sprintf("%d instances, over this coordinator's limit of %d per request", len(req.Instances), max)}
	}
	for i, inst := range req.Instances {
		if inst == nil {
			return nil, &messages.FieldError{Field: fmt.Sprintf("instances[%d]", i), Reason: "is null; want an object of column values"}
		}
	}
	return req.Instances, nil
}

// integerTypes are the PostgreSQL types (as format_type names them) whose values a JSON
// number must give as an integer, since the column cannot hold a fraction.
var integerTypes = map[string]bool{"smallint": true, "integer": true, "bigint": true}

// instancesBatch turns instances into the raw batch a fetcher would have read from a row of
// the model's table with those values: the same column kinds, so the training transform
// (of onlinePlan: no label) applies unchanged. Row keys are the instance indexes. Every feature column must be in
// every instance; a value of the wrong JSON type is an error naming the instance and the
// column.
func instancesBatch(meta *messages.ModelMeta, instances []map[string]json.RawMessage) (*messages.RawBatch, error) {
	n := len(instances)
	b := &messages.RawBatch{Keys: make([]int64, n), Columns: make([]messages.RawColumn, 0, len(meta.Features))}
	for i := range b.Keys {
		b.Keys[i] = int64(i)
	}
	for _, f := range meta.Features {
		// An array column is a raw column per element, as the fetchers read it.
		cols := make([]messages.RawColumn, max(len(f.Elements), 1))
		for j := range cols {
			c := &cols[j]
			c.Name, c.Kind = f.Name, f.RawKind()
			if f.IsArray() {
				c.Name = messages.RawName(f.Name, j)
			}
			switch c.Kind {
			case messages.ColumnText:
				c.Text = make([]string, n)
			case messages.ColumnFloat32:
				c.Float32 = make([]float32, n)
			default:
				c.Float64 = make([]float64, n)
			}
		}
		for i, inst := range instances {
			raw, ok := inst[f.Name]
			if !ok {
				return nil, &messages.FieldError{Field: fmt.Sprintf("instances[%d].%s", i, f.Name),
					Reason: fmt.Sprintf("column %q is missing: the model takes %s", f.Name, featureNames(meta))}
			}
			var err error
			if f.IsArray() {
				err = setArray(cols, i, f, raw)
			} else {
				err = setValue(&cols[0], i, f, raw)
			}
			if err != nil {
				return nil, &messages.FieldError{Field: fmt.Sprintf("instances[%d].%s", i, f.Name), Reason: fmt.Sprintf("column %q: %v", f.Name, err)}
			}
		}
		b.Columns = append(b.Columns, cols...)
	}
	return b, nil
}

// setArray stores a JSON array of the column's length (numbers or nulls), or null, in row
// i of the element columns.
func setArray(cols []messages.RawColumn, i int, f messages.ColumnPlan, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if string(raw) == "null" {
		for j := range cols {
			cols[j].SetNull(i)
		}
		return nil
	}
	if len(raw) == 0 || raw[0] != '[' {
		return fmt.Errorf("got %s; want an array of %d numbers (the column is %s)", jsonKind(raw), len(cols), f.PGType)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return err
	}
	if len(elems) != len(cols) {
		return fmt.Errorf("an array of %d elements, want %d", len(elems), len(cols))
	}
	elem := f
	elem.Type = messages.TypeNumber
	for j, e := range elems {
		if err := setValue(&cols[j], i, elem, e); err != nil {
			return fmt.Errorf("element %d: %w", j, err)
		}
	}
	return nil
}

// seconds reads a date or timestamp instance value as the fetchers decode the column:
// seconds since 1970-01-01 UTC. A date is "2006-01-02"; a timestamp has no time zone
// ("2006-01-02T15:04:05.999999", or a space for the T); a timestamptz must have one
// (RFC 3339). "infinity" and "-infinity" are ±Inf.
func seconds(typ string, raw json.RawMessage) (float64, error) {
	var s string
	if raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
		return 0, fmt.Errorf("got %s; want a string (the column is a %s)", jsonKind(raw), typ)
	}
	switch s {
	case "infinity":
		return math.Inf(1), nil
	case "-infinity":
		return math.Inf(-1), nil
	}
	var layouts []string
	switch typ {
	case messages.TypeDate:
		layouts = []string{time.DateOnly}
	case messages.TypeTimestamp:
		layouts = []string{"2006-01-02T15:04:05.999999", "2006-01-02 15:04:05.999999"}
	default:
		layouts = []string{"2006-01-02T15:04:05.999999Z07:00", "2006-01-02 15:04:05.999999Z07:00"}
	}
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			return pgbinary.UnixMicroSeconds(t.UnixMicro()), nil
		}
	}
	return 0, fmt.Errorf("%q is not a %s (want the form %q)", s, typ, layouts[0])
}

func featureNames(meta *messages.ModelMeta) string {
	b, _ := json.Marshal(func() []string {
		names := make([]string, len(meta.Features))
		for i, f := range meta.Features {
			names[i] = f.Name
		}
		return names
	}())
	return string(b)
}

var errNotJSONValue = errors.New("not a JSON value")

// setValue stores one JSON value in row i of c: null is NULL; a numeric column takes a
// number (an integer for an integer type), rounded to float32 for a column that travels as
// float32 as PostgreSQL rounds a real; a categorical column takes a string, or an integer
// or a boolean for a column of that type, in the text form PostgreSQL's ::text gives it.
func setValue(c *messages.RawColumn, i int, f messages.ColumnPlan, raw json.RawMessage) error {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return errNotJSONValue
	}
	if string(raw) == "null" {
		c.SetNull(i)
		return nil
	}
	if f.Kind == messages.KindCategorical {
		switch {
		case raw[0] == '"':
			return json.Unmarshal(raw, &c.Text[i])
		case integerTypes[f.PGType] && isNumber(raw):
			v, err := strconv.ParseInt(string(raw), 10, 64)
			if err != nil {
				return fmt.Errorf("%s is not an integer (the column is of type %s)", raw, f.PGType)
			}
			c.Text[i] = strconv.FormatInt(v, 10)
			return nil
		case f.PGType == "boolean" && (string(raw) == "true" || string(raw) == "false"):
			c.Text[i] = string(raw)
			return nil
		}
		return fmt.Errorf("got %s; want a string (the column is categorical, of type %s)", jsonKind(raw), f.PGType)
	}
	switch f.Type {
	case messages.TypeBoolean:
		switch string(raw) {
		case "true":
			c.Float32[i] = 1
		case "false":
			c.Float32[i] = 0
		default:
			return fmt.Errorf("got %s; want true or false (the column is boolean)", jsonKind(raw))
		}
		return nil
	case messages.TypeDate, messages.TypeTimestamp, messages.TypeTimestampTZ:
		x, err := seconds(f.Type, raw)
		c.Float64[i] = x
		return err
	}
	if !isNumber(raw) {
		return fmt.Errorf("got %s; want a number (the column is numeric, of type %s)", jsonKind(raw), f.PGType)
	}
	s := string(raw)
	if integerTypes[f.PGType] {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%s is not an integer (the column is of type %s)", s, f.PGType)
		}
		if f.PGType == "smallint" && (v < -32768 || v > 32767) {
			return fmt.Errorf("%s is out of range for smallint", s)
		}
		if c.Kind == messages.ColumnFloat32 {
			c.Float32[i] = float32(v) // exact for a smallint
		} else {
			c.Float64[i] = float64(v) // as int8::float8 rounds
		}
		return nil
	}
	if c.Kind == messages.ColumnFloat32 {
		v, err := strconv.ParseFloat(s, 32)
		if err != nil {
			return fmt.Errorf("%s is out of range for %s", s, f.PGType)
		}
		c.Float32[i] = float32(v)
		return nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("%s is out of range for %s", s, f.PGType)
	}
	c.Float64[i] = v
	return nil
}

// isNumber reports whether a JSON value (valid JSON, as the decoder checked) is a number.
func isNumber(raw []byte) bool {
	return raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9'
}

func jsonKind(raw []byte) string {
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	}
	if isNumber(raw) {
		return "a number"
	}
	return "something else"
}
