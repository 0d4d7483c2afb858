package plural

import "strconv"

// Count writes n and the noun: singular where n is 1, else plural
// ("0 rows", "1 row", "2 rows"). It takes the int64 counts of files and
// indexes as they are.
func Count[N int | int64](n N, singular, plural string) string {
	if n == 1 {
		return "1 " + singular
	}
	return strconv.FormatInt(int64(n), 10) + " " + plural
}
