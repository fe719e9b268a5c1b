package coordinator

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"pgtrain/messages"
)

// keyBuckets bounds how many equal-width buckets the statistics pass counts an integer key
// into. Ranges are cut at bucket edges where a bucket holds few rows against a range's
// share, and read key by key where it holds more: with 2^16 buckets a table of evenly
// spread keys needs no key reading up to 2^16 · range_rows/8 rows (400M at the default),
// and a histogram costs 1.5 MB per statistics part being read.
const keyBuckets = 1 << 16

// keySpan is the least and the greatest key of the job's rows, which the buckets cover;
// empty when no row has a key.
type keySpan struct {
	lo, hi int64
	empty  bool
}

// readKeySpan reads the job's least and greatest integer key: two descents of the key's
// btree index, whatever the table's size.
func readKeySpan(ctx context.Context, tx pgx.Tx, in *planInput) (keySpan, error) {
	key := pgx.Identifier{in.key.name}.Sanitize()
	var lo, hi *int64
	if err := tx.QueryRow(ctx, "select min("+key+")::int8, max("+key+")::int8 from "+in.source()).Scan(&lo, &hi); err != nil {
		return keySpan{}, fmt.Errorf("reading the key's least and greatest values: %w", err)
	}
	if lo == nil || hi == nil {
		return keySpan{empty: true}, nil
	}
	return keySpan{lo: *lo, hi: *hi}, nil
}

// keyHistogram is one part's integer keys counted into equal-width buckets over a keySpan,
// with the checksum of each bucket's keys, and its NULL keys. Parts merge by adding: the
// result does not depend on how the table was cut or in what order the rows came.
type keyHistogram struct {
	lo    int64
	span  uint64 // hi - lo
	shift uint   // a bucket is 1<<shift keys wide
	// buckets[j] holds the keys lo + j<<shift to lo + (j+1)<<shift - 1.
	buckets []messages.KeyChecksum
	nulls   int64
}

func newKeyHistogram(s keySpan) *keyHistogram {
	h := &keyHistogram{lo: s.lo, span: uint64(s.hi) - uint64(s.lo)}
	if s.empty {
		return h // no bucket: any key is outside the span
	}
	for h.span>>h.shift >= keyBuckets {
		h.shift++
	}
	h.buckets = make([]messages.KeyChecksum, h.span>>h.shift+1)
	return h
}

// add counts a key's binary COPY value (nil: a NULL key).
func (h *keyHistogram) add(v []byte) error {
	if v == nil {
		h.nulls++
		return nil
	}
	if len(v) != 8 {
		return fmt.Errorf("the key: a value of %d bytes, want 8", len(v))
	}
	k := int64(binary.BigEndian.Uint64(v))
	j := (uint64(k) - uint64(h.lo)) >> h.shift
	if j >= uint64(len(h.buckets)) {
		return fmt.Errorf("the key: %d is outside the least and greatest keys read in the same snapshot", k)
	}
	h.buckets[j].Add(k)
	return nil
}

func (h *keyHistogram) merge(o *keyHistogram) {
	h.nulls += o.nulls
	for j := range h.buckets {
		h.buckets[j].Merge(o.buckets[j])
	}
}

// edges are the least and the greatest key bucket j can hold.
func (h *keyHistogram) edges(j int) (int64, int64) {
	off := uint64(j) << h.shift
	return int64(uint64(h.lo) + off), int64(uint64(h.lo) + min(off+(1<<h.shift)-1, h.span))
}

// splitHistogram cuts the keys counted in h into rangeCount ranges of about equal row
// count. A cut falls at the upper edge of the bucket holding its row position when that
// bucket holds at most an eighth of a range's rows, so each range is within 1/4 of an equal
// share; a bucket holding more over more than one key value (keys clustered in a small
// part of the span) is read key by key in key order through the key's index, and cut at
// the exact row positions as the key pass would. The ranges and their checksums are a
// function of the rows alone: the histogram's sums, then the refined buckets' keys in order.
func splitHistogram(ctx context.Context, tx pgx.Tx, in *planInput, h *keyHistogram, rows int64) (*keySplit, error) {
	if rows == 0 {
		return nil, &messages.FieldError{Field: "table", Reason: fmt.Sprintf("%s.%s has no rows", in.rel.schema, in.rel.name)}
	}
	if h.nulls > 0 {
		return nil, &messages.FieldError{Field: "key", Reason: fmt.Sprintf("%d rows have a NULL key %q and could never be read", h.nulls, in.key.name)}
	}
	n := rangeCount(in.spec, rows)
	bounds, sums, err := cutHistogram(h, rows, n, func(lo, hi int64, c *keyCutter) (int64, error) {
		return readKeysInOrder(ctx, tx, in, lo, hi, c)
	})
	if err != nil {
		return nil, err
	}
	bounds[0].Lo = in.firstKey()
	return &keySplit{rows: rows, bounds: bounds, sums: sums}, nil
}

// cutHistogram is splitHistogram on keys keys in n ranges, read feeding the cutter the keys
// from lo to hi in key order and saying how many there were.
func cutHistogram(h *keyHistogram, keys int64, n int, read func(lo, hi int64, c *keyCutter) (int64, error)) ([]messages.KeyRange, []messages.KeyChecksum, error) {
	c := newKeyCutter(keys, n)
	refine := refineBuckets(h, c.cuts, max(keys/int64(n)/8, 1))
	var seen int64
	for j := 0; j < len(h.buckets); j++ {
		if len(refine) > 0 && refine[0][0] == j {
			first, last := refine[0][0], refine[0][1]
			refine = refine[1:]
			var want int64
			for _, b := range h.buckets[first : last+1] {
				want += b.Rows
			}
			lo, _ := h.edges(first)
			_, hi := h.edges(last)
			got, err := read(lo, hi, c)
			if err != nil {
				return nil, nil, err
			}
			if got != want {
				return nil, nil, fmt.Errorf("splitting the key range: %d keys in [%d, %d] read, %d counted in the same snapshot", got, lo, hi, want)
			}
			seen += got
			j = last
			continue
		}
		if b := h.buckets[j]; b.Rows > 0 {
			_, hi := h.edges(j)
			c.addSum(hi, b)
			seen += b.Rows
		}
	}
	if seen != keys {
		return nil, nil, fmt.Errorf("splitting the key range: %d keys counted, %d rows read", seen, keys)
	}
	bounds, sums := c.result()
	return bounds, sums, nil
}

// refineBuckets are the runs of buckets to read key by key, first and last bucket of each,
// in key order: each bucket holding a cut's row position and more than tol rows over more
// than one key value. Runs separated only by empty buckets are read in one query.
func refineBuckets(h *keyHistogram, cuts []int64, tol int64) [][2]int {
	var runs [][2]int
	var pos int64 // rows in the buckets up to j
	next := 0
	for j, b := range h.buckets {
		// The cuts up to pos fell in earlier buckets: any left up to pos+b.Rows is in j.
		pos += b.Rows
		holds := false
		for next < len(cuts) && cuts[next] <= pos {
			holds = true
			next++
		}
		if lo, hi := h.edges(j); !holds || b.Rows <= tol || lo == hi {
			continue
		}
		if k := len(runs) - 1; k >= 0 && emptyBetween(h, runs[k][1], j) {
			runs[k][1] = j
			continue
		}
		runs = append(runs, [2]int{j, j})
	}
	return runs
}

// emptyBetween says whether the buckets strictly between a and b hold no rows.
func emptyBetween(h *keyHistogram, a, b int) bool {
	for _, x := range h.buckets[a+1 : b] {
		if x.Rows > 0 {
			return false
		}
	}
	return true
}

// readKeysInOrder feeds the cutter the job's keys from lo to hi in key order (the key's
// btree index, so no sort) and says how many it read.
func readKeysInOrder(ctx context.Context, tx pgx.Tx, in *planInput, lo, hi int64, c *keyCutter) (int64, error) {
	key := pgx.Identifier{in.key.name}.Sanitize()
	var n int64
	r := newCopyReader(1, func(f [][]byte) error {
		if len(f[0]) != 8 {
			return fmt.Errorf("the key: a value of %d bytes, want 8", len(f[0]))
		}
		c.add(int64(binary.BigEndian.Uint64(f[0])))
		n++
		return nil
	})
	// COPY takes no parameters: the bounds are int64 literals.
	sql := "copy (select " + key + "::int8 from " + in.source() + " where " + key + " >= " + strconv.FormatInt(lo, 10) + "::int8 and " +
		key + " <= " + strconv.FormatInt(hi, 10) + "::int8 order by " + key + ") to stdout (format binary)"
	if _, err := tx.Conn().PgConn().CopyTo(ctx, r, sql); err != nil {
		return 0, fmt.Errorf("splitting the key range: %w", err)
	}
	if err := r.finish(); err != nil {
		return 0, fmt.Errorf("splitting the key range: %w", err)
	}
	return n, nil
}

// splitKeysInParts cuts the ranges as training's planning does, without its statistics (a
// prediction's, which uses the model's): an integer key alone is read in the table's parts
// on the planning connections and counted into buckets, then cut (splitHistogram); a typed
// key has its key pass.
func splitKeysInParts(ctx context.Context, pc planConns, in *planInput) (*keySplit, error) {
	if in.keyCols != nil {
		return splitTypedKeys(ctx, pc.tx, in)
	}
	span, err := readKeySpan(ctx, pc.tx, in)
	if err != nil {
		return nil, err
	}
	total, err := pc.scanParts(ctx, in, nil, 0, &span, nil)
	if err != nil {
		return nil, err
	}
	return splitHistogram(ctx, pc.tx, in, total.keys, total.rows)
}
