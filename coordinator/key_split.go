package coordinator

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// keySplit is the key pass of planning: the keys in order, cut into ranges of about equal
// row count, with the exact count and checksum of each range.
type keySplit struct {
	rows   int64 // every row, NULL keys included
	bounds []messages.KeyRange
	sums   []messages.KeyChecksum
	// keyWidths is a typed key's average text width per column, which its pages carry.
	keyWidths map[string]float64
	// last is a typed key's greatest key (its text per column).
	last []string
}

// addKeyWidths adds the typed key's text widths to a plan's text widths: a page carries
// them as text, like a text column's values (a key column is never a feature or the label).
func (s *keySplit) addKeyWidths(avgText map[string]float64) {
	for name, w := range s.keyWidths {
		avgText[name] = w
	}
}

// rangeCount is how many ranges a table of rows rows is cut into.
func rangeCount(spec messages.JobSpec, rows int64) int {
	n := int((rows + int64(spec.RangeRows) - 1) / int64(spec.RangeRows))
	if spec.ValidationSplit > 0 {
		// Validation takes whole ranges: with at least 20 of them the held-out share is
		// within 5% of the asked fraction, even for a table smaller than one range.
		n = max(n, min(minValidationGranularity, int(rows)), 2)
	}
	return max(n, 1)
}

// keyCutter takes keys in ascending order and cuts them where percentile_disc would: the
// i-th split is the key at row ceil(i/n · total) (PostgreSQL's arithmetic, in float64), and
// each range (previous split, split] gets the checksum of its keys.
type keyCutter struct {
	cuts   []int64 // 1-based row positions of the splits, ascending
	next   int
	pos    int64
	splits []int64
	// closing: a split was taken and the next greater key opens the next range.
	closing bool
	cur     messages.KeyChecksum
	sums    []messages.KeyChecksum
}

func newKeyCutter(total int64, n int) *keyCutter {
	c := &keyCutter{}
	for i := 1; i < n; i++ {
		f := float64(i) / float64(n)
		c.cuts = append(c.cuts, max(int64(math.Ceil(f*float64(total))), 1))
	}
	return c
}

func (c *keyCutter) add(k int64) {
	var s messages.KeyChecksum
	s.Add(k)
	c.addSum(k, s)
}

// addSum takes s.Rows keys at once, none greater than k and all greater than the keys
// before (a bucket of the statistics pass, k its upper edge): a split that falls among
// them is taken at k.
func (c *keyCutter) addSum(k int64, s messages.KeyChecksum) {
	c.pos += s.Rows
	if c.closing && k > c.splits[len(c.splits)-1] {
		c.sums = append(c.sums, c.cur)
		c.cur, c.closing = messages.KeyChecksum{}, false
	}
	c.cur.Merge(s)
	for c.next < len(c.cuts) && c.cuts[c.next] <= c.pos {
		c.next++
		// Equal splits (many rows on one key) make one range, as in rangeBounds.
		if len(c.splits) == 0 || k > c.splits[len(c.splits)-1] {
			c.splits = append(c.splits, k)
			c.closing = true
		}
	}
}

// result is the ranges and their checksums. A last split at the greatest key leaves an
// empty last range.
func (c *keyCutter) result() ([]messages.KeyRange, []messages.KeyChecksum) {
	bounds := rangeBounds(c.splits)
	sums := append(c.sums, c.cur)
	for len(sums) < len(bounds) {
		sums = append(sums, messages.KeyChecksum{})
	}
	return bounds, sums[:len(bounds)]
}

// splitTypedKeys cuts a typed key's ranges in one key pass: the keys come in key order (the column
// types' own order and collations) as text with their hash computed in SQL, and each is
// hashed again here: the expected checksums are SQL's, the fetchers' are Go's, so the two
// must agree on every key, and a key where they do not stops the plan.
func splitTypedKeys(ctx context.Context, tx pgx.Tx, in *planInput) (*keySplit, error) {
	cols := in.keyCols
	present := make([]string, len(cols))
	texts := make([]string, len(cols))
	for i, c := range cols {
		present[i] = pgx.Identifier{c.Name}.Sanitize() + " is not null"
		texts[i] = c.TextSQL()
	}
	all := strings.Join(present, " and ")
	var rows, keys int64
	if err := tx.QueryRow(ctx, "select count(*), count(*) filter (where "+all+") from "+in.source()).Scan(&rows, &keys); err != nil {
		return nil, fmt.Errorf("counting the rows: %w", err)
	}
	if rows == 0 {
		return nil, &messages.FieldError{Field: "table", Reason: fmt.Sprintf("%s.%s has no rows", in.rel.schema, in.rel.name)}
	}
	if rows > keys {
		return nil, &messages.FieldError{Field: "key", Reason: fmt.Sprintf("%d rows have a NULL in the key (%s) and could never be read", rows-keys, messages.KeyList(cols))}
	}
	c := newTypedCutter(keys, rangeCount(in.spec, rows))
	n := len(cols)
	bytes := make([]int64, n)
	r := newCopyReader(n+1, func(f [][]byte) error {
		key := make([]string, n)
		for i := range key {
			if f[i] == nil {
				return fmt.Errorf("a NULL key text")
			}
			key[i] = string(f[i])
			bytes[i] += int64(len(f[i]))
		}
		if len(f[n]) != 8 {
			return fmt.Errorf("the key hash: a value of %d bytes, want 8", len(f[n]))
		}
		if h := int64(binary.BigEndian.Uint64(f[n])); h != messages.KeyHash(key) {
			return fmt.Errorf("key (%s): PostgreSQL hashes it to %d, pgtrain to %d (is the database's encoding UTF8?)", strings.Join(key, ", "), h, messages.KeyHash(key))
		}
		c.add(key, int64(binary.BigEndian.Uint64(f[n])))
		return nil
	})
	sql := "copy (select " + strings.Join(texts, ", ") + ", " + messages.KeyHashSQL(cols) + " from " + in.sourceAs("keyed") +
		" where " + all + " order by " + messages.KeyOrderSQL(cols, "keyed") + ") to stdout (format binary)"
	if _, err := tx.Conn().PgConn().CopyTo(ctx, r, sql); err != nil {
		return nil, fmt.Errorf("splitting the key range: %w", err)
	}
	if err := r.finish(); err != nil {
		return nil, fmt.Errorf("splitting the key range: %w", err)
	}
	if c.pos != keys {
		return nil, fmt.Errorf("splitting the key range: %d keys read, %d counted", c.pos, keys)
	}
	bounds, sums := c.result()
	bounds[0].After = in.afterText
	widths := map[string]float64{}
	for i, col := range cols {
		widths[col.Name] = float64(bytes[i]) / float64(keys)
	}
	return &keySplit{rows: rows, bounds: bounds, sums: sums, keyWidths: widths, last: c.last}, nil
}

// typedCutter is keyCutter for a unique typed key: the keys arrive in order and are all
// distinct, so a split is the key at a cut position, and the next key opens a range.
type typedCutter struct {
	cuts   []int64
	next   int
	pos    int64
	splits [][]string
	cur    messages.KeyChecksum
	sums   []messages.KeyChecksum
	last   []string
}

func newTypedCutter(total int64, n int) *typedCutter {
	return &typedCutter{cuts: newKeyCutter(total, n).cuts}
}

func (c *typedCutter) add(key []string, hash int64) {
	c.pos++
	c.cur.Add(hash)
	c.last = key
	taken := false
	for c.next < len(c.cuts) && c.cuts[c.next] == c.pos {
		c.next++
		if !taken { // equal cut positions (more ranges than rows) make one split
			c.splits = append(c.splits, key)
			c.sums = append(c.sums, c.cur)
			c.cur, taken = messages.KeyChecksum{}, true
		}
	}
}

// result is the ranges: (previous split, split], the first open below and the last above.
// A last split at the greatest key leaves an empty last range.
func (c *typedCutter) result() ([]messages.KeyRange, []messages.KeyChecksum) {
	bounds := make([]messages.KeyRange, len(c.splits)+1)
	for i := range bounds {
		bounds[i].Index = i
		if i > 0 {
			bounds[i].After = c.splits[i-1]
		}
		if i < len(c.splits) {
			bounds[i].Through = c.splits[i]
		}
	}
	return bounds, append(c.sums, c.cur)
}
