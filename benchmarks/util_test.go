package benchmarks

import "time"

func mustUnix(sec int64) time.Time { return time.Unix(sec, 0).UTC() }
