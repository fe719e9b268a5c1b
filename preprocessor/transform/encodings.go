package transform

import (
	"hash/fnv"
	"math"
	"time"
)

// Hash is the hash of a hashed column's value: 32-bit FNV-1a of its UTF-8 bytes (its text
// form, as col::text gives it). The value goes to bucket Hash(v) % buckets, in training,
// in batch prediction and in online prediction alike.
func Hash(v string) uint32 {
	h := fnv.New32a()
	_, _ = h.Write([]byte(v))
	return h.Sum32()
}

// Cyclical writes the six inputs of a date or timestamp given as seconds since
// 1970-01-01 UTC: the sine and cosine of the time of day (in fractions of 24 hours), of the
// day of week (Sunday 0 to Saturday 6, in sevenths) and of the day of year (January 1st 0,
// in fractions of the year's 365 or 366 days), all in UTC. A timestamptz is the instant, so
// its UTC time; a timestamp or date is its own wall-clock time. An infinite value gives
// zeros (clip or null it first).
func Cyclical(dst []float32, secs float64) {
	if math.IsInf(secs, 0) || math.IsNaN(secs) {
		clear(dst[:6])
		return
	}
	days := math.Floor(secs / 86400)
	day := secs/86400 - days
	dow := math.Mod(days+4, 7) // 1970-01-01 was a Thursday
	if dow < 0 {
		dow += 7
	}
	t := time.Unix(int64(days)*86400, 0).UTC()
	yearDays := 365.0
	if y := t.Year(); y%4 == 0 && (y%100 != 0 || y%400 == 0) {
		yearDays = 366
	}
	for i, frac := range [3]float64{day, dow / 7, float64(t.YearDay()-1) / yearDays} {
		s, c := math.Sincos(2 * math.Pi * frac)
		dst[2*i], dst[2*i+1] = float32(s), float32(c)
	}
}
